//! The event log: every write appends the right events with consecutive seqs, a failing write
//! leaves nothing, concurrent writers never share or skip a seq, and restarts keep it all.

use liveplan_testkit::*;
use serde_json::{Value, json};
use std::collections::HashSet;

fn types(log: &Value) -> Vec<String> {
    log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap().to_owned())
        .collect()
}

fn seqs(log: &Value) -> Vec<i64> {
    log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn every_write_appends_its_events_with_consecutive_seqs() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let project = server.project(&admin, "Log").await;
    let a = server
        .create(
            &admin,
            &project,
            "tasks",
            json!({ "name": "A", "duration": 2 }),
        )
        .await;
    let b = server
        .create(
            &admin,
            &project,
            "tasks",
            json!({ "name": "B", "duration": 3 }),
        )
        .await;
    let link = server
        .create(
            &admin,
            &project,
            "dependencies",
            json!({ "predecessor_id": a["id"], "successor_id": b["id"] }),
        )
        .await;
    let (status, updated) = server
        .call(
            reqwest::Method::PATCH,
            &format!(
                "/api/v1/projects/{project}/tasks/{}",
                a["id"].as_str().unwrap()
            ),
            Some(&admin),
            Some(json!({ "name": "A2", "status": "doing" })),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["version"], 2);
    let log = server.log(&admin, &project, 0).await;
    assert_eq!(
        types(&log),
        [
            "member_added",
            "task_created",
            "task_created",
            "dependency_created",
            "task_updated"
        ]
    );
    assert_eq!(seqs(&log), [1, 2, 3, 4, 5]);
    assert_eq!(log["latest_seq"], 5);
    let update = &log["events"][4];
    assert_eq!(update["payload"]["id"], a["id"]);
    assert_eq!(update["payload"]["version"], 2);
    let mut changed: Vec<&str> = update["payload"]["changed_fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    changed.sort();
    assert_eq!(changed, ["name", "status"]);
    assert_eq!(update["data"]["name"], "A2");
    assert_eq!(log["events"][3]["payload"], json!({ "id": link["id"] }));
    assert_eq!(log["events"][3]["data"]["successor_id"], b["id"]);

    // since/limit page through the same log.
    let tail = server.log(&admin, &project, 3).await;
    assert_eq!(seqs(&tail), [4, 5]);

    // Deleting a task takes its dependency with it, dependents first, in one transaction.
    let (status, _) = server
        .delete(
            &format!(
                "/api/v1/projects/{project}/tasks/{}",
                a["id"].as_str().unwrap()
            ),
            &admin,
        )
        .await;
    assert_eq!(status, 204);
    let log = server.log(&admin, &project, 5).await;
    assert_eq!(types(&log), ["dependency_deleted", "task_deleted"]);
    assert_eq!(seqs(&log), [6, 7]);
    assert_eq!(log["events"][1]["data"], json!({ "id": a["id"] }));
}

#[tokio::test]
async fn a_write_that_fails_midway_leaves_no_rows_and_no_events() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let project = server.project(&admin, "Before").await;
    server
        .create(&admin, &project, "tasks", json!({ "name": "kept" }))
        .await;
    let before = server.fingerprint().await;
    // The import deletes the projects there are before it finds, inside its transaction, that
    // the document's Owner is the importer, whose account the document's one (same email)
    // replaces: the write fails after rows and events were already deleted. (The document
    // itself passes the checks made before any write, which a clashing key no longer does.)
    let (_, me) = server.get("/api/v1/users/me", &admin).await;
    let document = json!({
        "format": "liveplan-export-1",
        "users": [{ "id": "01900000-0000-7000-8000-000000000009", "email": ADMIN_EMAIL.to_uppercase(),
                    "username": null, "display_name": "Other", "password_hash": "x",
                    "is_admin": true, "is_active": true }],
        "projects": [
            { "project": { "id": "01900000-0000-7000-8000-000000000001", "name": "One", "key": "DUP" },
              "members": [{ "id": "01900000-0000-7000-8000-000000000004", "user_id": me["id"], "role": 400 }],
              "records": [{ "collection": "tasks", "record": { "id": "01900000-0000-7000-8000-000000000002", "name": "t" } }] }
        ]
    });
    let (status, body) = server.post("/api/v1/admin/import", &admin, document).await;
    assert_error(
        status,
        &body,
        reqwest::StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert_eq!(body["error"]["details"]["field"], "members", "{body}");
    assert!(!body.to_string().contains("UNIQUE"), "no SQL leaks: {body}");
    assert_eq!(
        server.fingerprint().await,
        before,
        "nothing of the failed import remains"
    );
    assert_eq!(server.log(&admin, &project, 0).await["latest_seq"], 2);
}

#[tokio::test]
async fn concurrent_writers_get_distinct_consecutive_seqs() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let project = server.project(&admin, "Busy").await;
    const WRITERS: usize = 8;
    const EACH: usize = 25;
    let mut tokens = Vec::new();
    for i in 0..WRITERS {
        let (id, token) = server.user(&admin, &format!("writer{i}")).await;
        server.add_member(&admin, &project, &id, 100).await;
        tokens.push(token);
    }
    let start = server.log(&admin, &project, 0).await["latest_seq"]
        .as_i64()
        .unwrap();
    let server = std::sync::Arc::new(server);
    let mut handles = Vec::new();
    for (w, token) in tokens.into_iter().enumerate() {
        let server = server.clone();
        let project = project.clone();
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..EACH {
                let task = server
                    .create(
                        &token,
                        &project,
                        "tasks",
                        json!({ "name": format!("w{w}-{i}") }),
                    )
                    .await;
                ids.push(task["id"].as_str().unwrap().to_owned());
            }
            ids
        }));
    }
    let mut created = HashSet::new();
    for handle in handles {
        created.extend(handle.await.unwrap());
    }
    assert_eq!(created.len(), WRITERS * EACH);
    let log = server.log(&admin, &project, start).await;
    let seqs = seqs(&log);
    let expected: Vec<i64> = (start + 1..=start + (WRITERS * EACH) as i64).collect();
    assert_eq!(seqs, expected, "no gaps, no duplicates");
    let logged: HashSet<String> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["event_type"], "task_created");
            e["payload"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(logged, created, "exactly one event per committed task");
}

#[tokio::test]
async fn data_and_seqs_survive_a_restart() {
    let mut server = TestServer::start().await;
    let admin = server.admin().await;
    let project = server.project(&admin, "Durable").await;
    let task = server
        .create(
            &admin,
            &project,
            "tasks",
            json!({ "name": "T", "custom": { "x": 1 } }),
        )
        .await;
    let before = server.log(&admin, &project, 0).await;
    server.restart().await;
    // Tokens survive too: the signing secret and the session are in the store.
    let (status, again) = server
        .get(
            &format!(
                "/api/v1/projects/{project}/tasks/{}",
                task["id"].as_str().unwrap()
            ),
            &admin,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(again, task);
    assert_eq!(server.log(&admin, &project, 0).await, before);
    server
        .create(
            &admin,
            &project,
            "tasks",
            json!({ "name": "after restart" }),
        )
        .await;
    let log = server.log(&admin, &project, 0).await;
    assert_eq!(
        seqs(&log),
        (1..=before["latest_seq"].as_i64().unwrap() + 1).collect::<Vec<_>>()
    );
}

/// `/log` says where it starts and whether a position can be resumed from, as the live
/// transports do with `resync_required`: `limit=0` gives the head alone, a negative `since` and
/// a position before an import's cut are not resumable.
#[tokio::test]
async fn the_log_says_where_it_starts_and_when_a_position_is_gone() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let project = server.project(&admin, "Cut").await;
    for name in ["a", "b", "c"] {
        server.task(&admin, project.parse().unwrap(), name).await;
    }
    let log = |query: String| {
        let (server, admin, project) = (&server, &admin, &project);
        async move {
            let (status, body) = server
                .get(&format!("/api/v1/projects/{project}/log?{query}"), admin)
                .await;
            assert_eq!(status, 200, "{query}: {body}");
            body
        }
    };
    let whole = log("since=0".into()).await;
    let latest = whole["latest_seq"].as_i64().unwrap();
    assert_eq!(whole["first_seq"], 1);
    assert_eq!(whole["resync_required"], false);
    assert_eq!(seqs(&whole), (1..=latest).collect::<Vec<_>>());

    let head = log("since=0&limit=0".into()).await;
    assert_eq!(seqs(&head), Vec::<i64>::new(), "limit=0 gives no event");
    assert_eq!(head["latest_seq"], latest);

    let negative = log("since=-1".into()).await;
    assert_eq!(negative["resync_required"], true, "{negative}");

    // An import keeps each stream's seqs going but not its events: the log starts past 1.
    let (status, export) = server.get("/api/v1/admin/export", &admin).await;
    assert_eq!(status, 200);
    let (status, summary) = server.post("/api/v1/admin/import", &admin, export).await;
    assert_eq!(status, 200, "{summary}");
    let admin = server.admin().await;
    let (status, after) = server
        .get(&format!("/api/v1/projects/{project}/log?since=0"), &admin)
        .await;
    assert_eq!(status, 200, "{after}");
    let first = after["first_seq"].as_i64().unwrap();
    let latest = after["latest_seq"].as_i64().unwrap();
    assert!(first > 1, "the imported log starts past 1: {after}");
    assert_eq!(after["resync_required"], true, "seq 1.. is gone: {after}");
    let (_, at_head) = server
        .get(
            &format!("/api/v1/projects/{project}/log?since={latest}"),
            &admin,
        )
        .await;
    assert_eq!(at_head["resync_required"], false, "{at_head}");
}
