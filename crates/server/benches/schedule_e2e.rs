//! The scheduler end to end at 10,000 tasks: from sending a `PATCH` that changes a duration
//! to a native WebSocket subscriber receiving `task_dates_updated` (which the worker commits
//! together with `cpm_complete`, after it). Includes the HTTP write, the commit, the worker
//! applying the change to its cached plan and engine (the first edit after the import reads
//! the project and computes it whole), writing the moved tasks and the delivery. Each edit
//! waits for the previous result, so the worker is idle when it arrives and computes at once.
//!
//! `cargo bench -p liveplan-server --bench schedule_e2e`

use futures::StreamExt;
use serde_json::{Value, json};
use std::time::Instant;
use tokio_tungstenite::tungstenite::Message;

const TASKS: usize = 10_000;

fn main() {
    divan::main();
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    token: String,
    base: String,
    project: String,
    first: String,
    last: String,
    ws: Ws,
    _server: liveplan_server::RunningServer,
    _dir: tempfile::TempDir,
}

fn id(n: usize) -> String {
    format!("01900000-0000-7000-8000-{n:012}")
}

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (server, client, token, base, project, ws) = runtime.block_on(async {
        let mut config = liveplan_server::Config::new(dir.path().to_path_buf());
        config.admin_email = Some("bench@example.test".into());
        config.admin_password = Some("bench-password".into());
        let server = liveplan_server::start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let base = format!("http://{}", server.address);
        let client = reqwest::Client::new();
        let login: Value = client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({ "email": "bench@example.test", "password": "bench-password" }))
            .send().await.unwrap().json().await.unwrap();
        let token = login["access_token"].as_str().unwrap().to_owned();
        let admin = login["user"]["id"].clone();
        // A 10,000-task plan with a link from every task to the next and every tenth task
        // to the one 50 ahead, loaded through the admin import.
        let project = id(999_999_999);
        let mut records = Vec::new();
        for n in 0..TASKS {
            records.push(json!({ "collection": "tasks", "record": { "id": id(n), "name": format!("t{n}"), "duration": 1 + n % 5 } }));
        }
        let mut link = 0;
        for n in 0..TASKS - 1 {
            for to in [n + 1, n + 50] {
                if to < TASKS && (to == n + 1 || n % 10 == 0) {
                    link += 1;
                    records.push(json!({ "collection": "dependencies", "record": { "id": id(100_000 + link), "predecessor_id": id(n), "successor_id": id(to), "type": "FS", "lag": 0 } }));
                }
            }
        }
        let document = json!({
            "format": "liveplan-export-1",
            "users": [],
            "projects": [{ "project": { "id": project, "name": "e2e", "start_date": "2026-03-02" }, "members": [{ "id": id(888_888_888), "user_id": admin, "role": 400 }], "records": records }],
        });
        let response = client.post(format!("{base}/api/v1/admin/import")).bearer_auth(&token).json(&document).send().await.unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        let ticket: Value = client.post(format!("{base}/api/v1/ws/ticket/")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws/v1/projects/{project}/?ticket={}", server.address, ticket["ticket"].as_str().unwrap()))
            .await
            .unwrap();
        (server, client, token, base, project, ws)
    });
    Fixture {
        runtime,
        client,
        token,
        base,
        project,
        first: id(0),
        last: id(TASKS - 1),
        ws,
        _server: server,
        _dir: dir,
    }
}

/// Sends one duration change and waits for the `task_dates_updated` that follows it.
async fn edit_and_wait(f: &mut Fixture, task: &str, duration: u64) -> usize {
    let response = f
        .client
        .patch(format!(
            "{}/api/v1/projects/{}/tasks/{task}",
            f.base, f.project
        ))
        .bearer_auth(&f.token)
        .json(&json!({ "duration": duration }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    loop {
        let Some(Ok(Message::Text(text))) = f.ws.next().await else {
            panic!("socket closed")
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        if frame["event_type"] == "task_dates_updated" {
            return frame["payload"]["count"].as_u64().unwrap() as usize;
        }
    }
}

fn run(bencher: divan::Bencher, which: fn(&Fixture) -> String) {
    let mut f = fixture();
    let task = which(&f);
    // Warm up: the first pass computes the whole plan.
    let first = Instant::now();
    let runtime = std::mem::replace(
        &mut f.runtime,
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap(),
    );
    let moved = runtime.block_on(edit_and_wait(&mut f, &task, 7));
    eprintln!(
        "first recompute of {TASKS} tasks: {:?}, {moved} moved",
        first.elapsed()
    );
    let mut n = 0u64;
    bencher.bench_local(|| {
        n += 1;
        runtime.block_on(edit_and_wait(&mut f, &task, 3 + n % 2));
    });
}

#[divan::bench(sample_count = 10, sample_size = 3)]
fn edit_last_task(bencher: divan::Bencher) {
    run(bencher, |f| f.last.clone());
}

#[divan::bench(sample_count = 10, sample_size = 3)]
fn edit_first_task_moves_everything(bencher: divan::Bencher) {
    run(bencher, |f| f.first.clone());
}
