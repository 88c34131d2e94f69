//! Delivery under faults: random disconnects while writes run, a server restart while clients
//! are connected, and readers that stop reading. Every client must end with exactly the log's
//! seq list (or an explicit resync), and one slow reader must not hold back the others.

mod live_support;

use live_support::*;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::watch;
use uuid::Uuid;

/// A member of a fresh project on `server`: (project, member token).
async fn project_with_member(server: &TestServer, name: &str) -> (Uuid, String) {
    let project = server.project(name).await;
    let (member, token) = server.user(name).await;
    server.add_member(project, member, 100).await;
    (project, token)
}

/// What a client read in one connection.
enum Read {
    Event(i64),
    Resync(i64),
    Other,
    Closed,
}

async fn ws_read(ws: &mut Ws) -> Read {
    match ws_next(ws).await {
        WsNext::Closed(_) => Read::Closed,
        WsNext::Json(frame) => match (frame["event_type"].as_str(), frame["seq"].as_i64()) {
            (Some("resync_required"), _) => {
                Read::Resync(frame["payload"]["latest_seq"].as_i64().unwrap())
            }
            (_, Some(seq)) => Read::Event(seq),
            _ => Read::Other,
        },
    }
}

async fn sse_read(sse: &mut SseReader) -> Read {
    match sse.next().await {
        None => Read::Closed,
        Some(message) => match (&message.id, &message.data) {
            (Some(id), _) => Read::Event(id.parse().unwrap()),
            (None, Some(_)) if message.json()["type"] == "resync_required" => {
                Read::Resync(message.json()["data"]["latest_seq"].as_i64().unwrap())
            }
            _ => Read::Other,
        },
    }
}

enum Conn {
    Ws(Ws),
    Sse(SseReader),
}

impl Conn {
    async fn open(server: &TestServer, token: &str, project: Uuid, sse: bool, since: i64) -> Conn {
        if sse {
            let path = format!("/api/v1/projects/{project}/events");
            Conn::Sse(server.sse(token, &path, Some(since)).await)
        } else {
            Conn::Ws(server.ws_project(token, project, Some(since)).await)
        }
    }

    async fn read(&mut self) -> Read {
        match self {
            Conn::Ws(ws) => ws_read(ws).await,
            Conn::Sse(sse) => sse_read(sse).await,
        }
    }
}

/// Reads one client's events until it holds `target` (from `done`), reconnecting with its last
/// seq whenever the connection ends, and also after a random number of frames when `chaos`.
async fn follow(
    server: Arc<TestServer>,
    token: String,
    project: Uuid,
    sse: bool,
    seed: u64,
    chaos: bool,
    mut done: watch::Receiver<i64>,
) -> Vec<i64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut got: Vec<i64> = Vec::new();
    loop {
        let last = got.last().copied().unwrap_or(0);
        if *done.borrow() == last && last > 0 {
            return got;
        }
        let mut conn = Conn::open(&server, &token, project, sse, last).await;
        let mut budget: u32 = if chaos {
            rng.random_range(1..40)
        } else {
            u32::MAX
        };
        loop {
            let target = *done.borrow();
            if target > 0 && got.last().copied() == Some(target) {
                return got;
            }
            let read = tokio::select! {
                read = conn.read() => read,
                _ = done.changed() => continue,
            };
            match read {
                Read::Event(seq) => {
                    let expected = got.last().copied().unwrap_or(0) + 1;
                    assert_eq!(
                        seq, expected,
                        "seed {seed}: a gap or a duplicate (sse: {sse})"
                    );
                    got.push(seq);
                    budget -= 1;
                    if budget == 0 {
                        // An abrupt drop: no close frame, no goodbye.
                        break;
                    }
                }
                Read::Resync(latest) => panic!("seed {seed}: unexpected resync to {latest}"),
                Read::Other => {}
                Read::Closed => break,
            }
        }
    }
}

#[tokio::test]
async fn random_disconnects_while_writing_lose_nothing() {
    let server = Arc::new(TestServer::start().await);
    let (project, token) = project_with_member(&server, "chaos").await;
    let (done_tx, done_rx) = watch::channel(0i64);
    let seed: u64 = rand::rng().random();
    println!("seed {seed}");
    let mut clients = Vec::new();
    for i in 0..6u64 {
        clients.push(tokio::spawn(follow(
            server.clone(),
            token.clone(),
            project,
            i % 3 == 2,
            seed + i,
            true,
            done_rx.clone(),
        )));
    }
    let mut last_task = Value::Null;
    for i in 0..300 {
        if i % 5 == 4 {
            let id = last_task["id"].as_str().unwrap();
            server
                .ok(
                    reqwest::Method::PATCH,
                    &server.admin,
                    &format!("/api/v1/projects/{project}/tasks/{id}"),
                    json!({"percent_complete": i % 100}),
                )
                .await;
        } else {
            last_task = server
                .task(&server.admin, project, &format!("task {i}"))
                .await;
        }
    }
    let log = server.log_seqs(project).await;
    assert_eq!(log, (1..=302).collect::<Vec<_>>());
    done_tx.send(*log.last().unwrap()).unwrap();
    for client in clients {
        let got = client.await.unwrap();
        assert_eq!(got, log, "seed {seed}");
    }
}

#[tokio::test]
async fn clients_resume_across_a_server_restart() {
    let first = TestServer::start().await;
    let (project, token) = project_with_member(&first, "restart").await;
    let addr = first.addr();
    let head = first.log_seqs(project).await.len() as i64;
    let mut ws = first.ws_project(&token, project, Some(head)).await;
    let mut sse = first
        .sse(
            &token,
            &format!("/api/v1/projects/{project}/events"),
            Some(head),
        )
        .await;
    for i in 0..5 {
        first
            .task(&first.admin, project, &format!("before {i}"))
            .await;
    }
    let (mut ws_got, mut sse_got) = (Vec::new(), Vec::new());
    while ws_got.len() < 5 {
        if let Read::Event(seq) = ws_read(&mut ws).await {
            ws_got.push(seq);
        }
    }
    while sse_got.len() < 5 {
        if let Read::Event(seq) = sse_read(&mut sse).await {
            sse_got.push(seq);
        }
    }

    // SIGTERM's path: the socket hears 1001, the SSE stream ends.
    let TestServer {
        server: running,
        dir,
        http: _,
        admin,
    } = first;
    let state = running.state.clone();
    running.shutdown().await.unwrap();
    assert_eq!(ws_close_code(&mut ws).await, Some(1001));
    sse.ended().await;
    drop(state);

    // Writes while no server runs (the CLI's way): the log keeps them.
    {
        let store = Arc::new(
            store::sqlite::SqliteStore::open_in_dir(dir.path())
                .await
                .unwrap(),
        );
        let domain = domain::Domain::new(store.clone(), Arc::new(domain::NoListener));
        let admin_user = domain
            .find_user_by_login(ADMIN_EMAIL)
            .await
            .unwrap()
            .unwrap();
        let actor = domain::Actor {
            user_id: admin_user.id,
            is_admin: true,
            tab_id: None,
        };
        let tasks = domain::collections::by_name("tasks").unwrap();
        for i in 0..3 {
            domain
                .create_record(
                    &actor,
                    project,
                    tasks,
                    &json!({"name": format!("offline {i}")}),
                )
                .await
                .unwrap();
        }
        store.close().await;
    }

    // The same address again, the same data.
    let second = liveplan_server::start(config(dir.path()), addr)
        .await
        .unwrap();
    let server = TestServer {
        server: second,
        dir,
        http: reqwest::Client::new(),
        admin,
    };
    let mut ws = server
        .ws_project(&token, project, ws_got.last().copied())
        .await;
    let mut sse = server
        .sse(
            &token,
            &format!("/api/v1/projects/{project}/events"),
            sse_got.last().copied(),
        )
        .await;
    for i in 0..2 {
        server
            .task(&server.admin, project, &format!("after {i}"))
            .await;
    }
    let log = server.log_seqs(project).await;
    let last = *log.last().unwrap();
    while ws_got.last() != Some(&last) {
        match ws_read(&mut ws).await {
            Read::Event(seq) => ws_got.push(seq),
            Read::Other => {}
            Read::Resync(_) | Read::Closed => panic!("no resync or close expected"),
        }
    }
    while sse_got.last() != Some(&last) {
        match sse_read(&mut sse).await {
            Read::Event(seq) => sse_got.push(seq),
            Read::Other => {}
            Read::Resync(_) | Read::Closed => panic!("no resync or close expected"),
        }
    }
    let tail: Vec<i64> = log[head as usize..].to_vec();
    assert_eq!(ws_got, tail);
    assert_eq!(sse_got, tail);
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Two clients stop reading (a native socket and an SSE stream) while 10,000 events of about
/// 8 KB each are committed. The fast readers get every event in order; the server's memory
/// grows by far less than what the slow ones failed to read; when the slow ones read again
/// they get either everything or a resync_required, never a gap, and then live events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_holds_back_nobody_and_memory_stays_bounded() {
    const EVENTS: i64 = 10_000;
    let server = Arc::new(TestServer::start().await);
    let (project, token) = project_with_member(&server, "slow").await;
    let head = server.log_seqs(project).await.len() as i64;
    let (done_tx, done_rx) = watch::channel(0i64);
    let mut fast = Vec::new();
    for sse in [false, true] {
        fast.push(tokio::spawn(follow(
            server.clone(),
            token.clone(),
            project,
            sse,
            0,
            false,
            done_rx.clone(),
        )));
    }
    let slow_ws = Conn::open(&server, &token, project, false, head).await;
    let mut slow_sse = Conn::open(&server, &token, project, true, head).await;
    assert!(matches!(slow_sse.read().await, Read::Other), "connected");

    let state = server.server.state.clone();
    let admin = state
        .domain
        .find_user_by_login(ADMIN_EMAIL)
        .await
        .unwrap()
        .unwrap();
    let actor = domain::Actor {
        user_id: admin.id,
        is_admin: true,
        tab_id: None,
    };
    let tasks = domain::collections::by_name("tasks").unwrap();
    let description = "x".repeat(8 * 1024);
    let baseline = rss_bytes();
    let mut peak = baseline;
    for i in 0..EVENTS {
        state
            .domain
            .create_record(
                &actor,
                project,
                tasks,
                &json!({"name": format!("t{i}"), "description": description}),
            )
            .await
            .unwrap();
        if i % 250 == 0 {
            peak = peak.max(rss_bytes());
        }
    }
    peak = peak.max(rss_bytes());
    let last = head + EVENTS;
    done_tx.send(last).unwrap();
    for client in fast {
        let got = client.await.unwrap();
        assert_eq!(got, (1..=last).collect::<Vec<_>>());
    }
    let published = EVENTS as u64 * description.len() as u64;
    let growth = peak.saturating_sub(baseline);
    println!(
        "RSS grew {} MiB while {} MiB went unread",
        growth >> 20,
        published >> 20
    );
    assert!(
        growth < published / 2,
        "memory grew by {growth} bytes while {published} bytes went unread"
    );

    // The slow readers, reading again: in order, maybe a resync, then live.
    server.task(&server.admin, project, "after").await;
    let after = last + 1;
    for mut conn in [slow_ws, slow_sse] {
        let mut position = head;
        loop {
            match conn.read().await {
                Read::Event(seq) => {
                    assert_eq!(seq, position + 1, "no gap, no duplicate");
                    position = seq;
                }
                Read::Resync(latest) => {
                    assert!(latest >= position && latest <= after);
                    position = latest;
                }
                Read::Other => {}
                Read::Closed => panic!("a slow reader is not closed"),
            }
            if position == after {
                break;
            }
        }
    }
}
