//! `liveplan backup --out FILE` (CONTRACT §12), the real binary against a running server: a
//! copy taken while writes go on is one consistent moment (its log and its records agree, and
//! are a prefix of the original's), `liveplan serve` serves it, and clients that saw later
//! commits are sent to resync. PostgreSQL is refused with a pointer to pg_dump.

use liveplan_testkit::backend::Backend;
use liveplan_testkit::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use uuid::Uuid;

async fn liveplan(args: &[&str]) -> Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_liveplan"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("LIVEPLAN_DATA_DIR")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(GUARD, run)
        .await
        .expect("the command ends in time")
        .expect("the command runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every event of the project's log: (seq, type, record id).
async fn events(server: &TestServer, project: Uuid) -> Vec<(i64, String, String)> {
    let mut all = Vec::new();
    let mut since = 0;
    loop {
        let page = server.log(&server.admin, &project.to_string(), since).await;
        let events = page["events"].as_array().unwrap();
        if events.is_empty() {
            return all;
        }
        for event in events {
            since = event["seq"].as_i64().unwrap();
            all.push((
                since,
                event["event_type"].as_str().unwrap().to_owned(),
                event["data"]["id"].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_during_writes_is_a_consistent_prefix_that_serves() {
    if backend::postgres_requested() {
        println!("skipped: the backup copies SQLite (its refusal on PostgreSQL is tested below)");
        return;
    }
    let server = TestServer::start_on_backend(Backend::sqlite(), relax_rates).await;
    let project = server.new_project("Backed up").await;

    // Two writers, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for writer in 0..2 {
        let (http, url, token) = (
            server.http.clone(),
            server.url(&format!("/api/v1/projects/{project}/tasks")),
            server.admin.clone(),
        );
        let (stop, written) = (stop.clone(), written.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..2_000 {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                let response = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"name": format!("w{writer}-{i}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::CREATED);
                written.fetch_add(1, Ordering::AcqRel);
            }
        }));
    }
    let wait_for = |n: usize| {
        let written = written.clone();
        async move {
            for _ in 0..600 {
                if written.load(Ordering::Acquire) >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("the writers did not reach {n}");
        }
    };
    wait_for(40).await;

    let copy = Backend::sqlite();
    let out = copy.sqlite_file();
    let data_dir = server.data_dir().to_str().unwrap().to_owned();
    let made = liveplan(&[
        "backup",
        "--data-dir",
        &data_dir,
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    assert!(made.status.success(), "{}", text(&made.stderr));
    let summary: Value = serde_json::from_slice(&made.stdout).unwrap();
    assert_eq!(summary["bytes"], std::fs::metadata(&out).unwrap().len());
    let at_backup = written.load(Ordering::Acquire);
    wait_for(at_backup + 40).await;
    stop.store(true, Ordering::Release);
    for writer in writers {
        writer.await.unwrap();
    }
    let original = events(&server, project).await;
    let leftovers: Vec<_> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The copy serves, with the same logins.
    let served = TestServer::start_on_backend(copy, relax_rates).await;
    let copied = events(&served, project).await;
    assert!(
        copied.len() >= 40,
        "the copy has what was written before it: {} of {}",
        copied.len(),
        original.len()
    );
    assert!(copied.len() < original.len(), "and not what came after");
    assert_eq!(
        copied[..],
        original[..copied.len()],
        "a prefix of the original log"
    );
    let seqs: Vec<i64> = copied.iter().map(|e| e.0).collect();
    assert_eq!(
        seqs,
        (1..=copied.len() as i64).collect::<Vec<_>>(),
        "no hole"
    );
    // Its records are exactly those its log created.
    let logged: BTreeSet<String> = copied
        .iter()
        .filter(|e| e.1 == "task_created")
        .map(|e| e.2.clone())
        .collect();
    let (status, tasks) = served
        .get(
            &format!("/api/v1/projects/{project}/tasks?limit=10000"),
            &served.admin,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let stored: BTreeSet<String> = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(stored, logged);

    // Seqs on the copy jump past anything the original handed out after the backup, so a
    // client that saw those is told to resync rather than shown other events under them.
    served.task(&served.admin, project, "on the copy").await;
    let head = served.log(&served.admin, &project.to_string(), 0).await["latest_seq"]
        .as_i64()
        .unwrap();
    assert!(head > store::LOST_TAIL_SKIP, "{head}");
    let last_seen = original.last().unwrap().0;
    let mut ws = served
        .ws_project(&served.admin, project, Some(last_seen))
        .await;
    assert_eq!(ws_event(&mut ws).await["event_type"], "resync_required");
}

#[tokio::test]
async fn a_backup_refuses_what_it_cannot_do_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let data = data.to_str().unwrap();
    let out = dir.path().join("copy.db");
    let out_text = out.to_str().unwrap();

    // No database there.
    let refused = liveplan(&["backup", "--data-dir", data, "--out", out_text]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("no SQLite database"),
        "{}",
        text(&refused.stderr)
    );
    assert!(!out.exists());

    // PostgreSQL: pg_dump's job (nothing is connected to).
    let refused = liveplan(&[
        "backup",
        "--database-url",
        "postgres://nobody@127.0.0.1:1/none",
        "--out",
        out_text,
    ])
    .await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("pg_dump"),
        "{}",
        text(&refused.stderr)
    );
    assert!(!out.exists());

    // An existing file is never overwritten.
    let made = liveplan(&[
        "user",
        "create",
        "--email",
        "a@example.test",
        "--password",
        "long-enough-1",
        "--data-dir",
        data,
    ])
    .await;
    assert!(made.status.success(), "{}", text(&made.stderr));
    std::fs::write(&out, b"keep me").unwrap();
    let refused = liveplan(&["backup", "--data-dir", data, "--out", out_text]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("exists"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");

    // Into a directory that does not exist: refused, nothing left behind.
    let nowhere = dir.path().join("missing").join("copy.db");
    let refused = liveplan(&[
        "backup",
        "--data-dir",
        data,
        "--out",
        nowhere.to_str().unwrap(),
    ])
    .await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(!Path::new(&nowhere).exists());
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("partial")), "{names:?}");
}
