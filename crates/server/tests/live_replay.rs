//! Delivery under faults: random disconnects while writes run and a server restart while
//! clients are connected. Every client must end with exactly the log's seq list.

use liveplan_testkit::follow::*;
use liveplan_testkit::*;
use rand::Rng;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::watch;

#[tokio::test]
async fn random_disconnects_while_writing_lose_nothing() {
    let server = Arc::new(TestServer::start_relaxed().await);
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
    // Closed, dropped and reset connections all released their subscriptions. The server
    // notices on its own, with no event to wait for, so this polls within the guard.
    let live = server.state().live.clone();
    let deadline = tokio::time::Instant::now() + GUARD;
    while live.hub().subscriber_count(None) > 0 || live.open_connections() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "subscriptions leak");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn clients_resume_across_a_server_restart() {
    let first = TestServer::start_relaxed().await;
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
    first.admin_tasks(project, "before", 5).await;
    let (mut ws_got, mut sse_got) = (Vec::new(), Vec::new());
    ws.events(&mut ws_got, 5).await;
    sse.events(&mut sse_got, 5).await;

    // SIGTERM's path: the socket hears 1001, the SSE stream ends.
    let mut server = first;
    let state = server.state().clone();
    server.stop().await;
    assert_eq!(ws_close_code(&mut ws).await, Some(1001));
    sse.ended().await;
    drop(state);

    // Writes while no server runs (the CLI's way): the log keeps them.
    server.offline_tasks(project, "offline", 3).await;

    // The same address again, the same data.
    server.start_on(addr).await;
    let ws = server
        .ws_project(&token, project, ws_got.last().copied())
        .await;
    let sse = server
        .sse(
            &token,
            &format!("/api/v1/projects/{project}/events"),
            sse_got.last().copied(),
        )
        .await;
    after_reconnecting(&server, project, head, (ws, ws_got), (sse, sse_got)).await;
}

/// The network between clients and the server breaks (no close frame, no goodbye) while the
/// server stays up: both clients see their connection end, reconnect with their last seq and
/// get what was committed meanwhile, each event once and in order.
#[tokio::test]
async fn clients_resume_after_the_network_cuts_them() {
    let server = TestServer::start_relaxed().await;
    let (project, token) = project_with_member(&server, "cut").await;
    let proxy = server.proxy().await;
    let head = server.log_seqs(project).await.len() as i64;
    let open_ws = async |since: i64| {
        let ticket = server.ticket(&token).await;
        ws_connect(
            proxy.address(),
            &format!("/ws/v1/projects/{project}/?ticket={ticket}&since={since}"),
        )
        .await
    };
    let open_sse = async |since: i64| {
        let response = server
            .http
            .get(proxy.url(&format!("/api/v1/projects/{project}/events")))
            .bearer_auth(&token)
            .header("Last-Event-ID", since.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        SseReader::new(response)
    };
    let (mut ws, mut sse) = (open_ws(head).await, open_sse(head).await);
    server.admin_tasks(project, "before", 3).await;
    let (mut ws_got, mut sse_got) = (Vec::new(), Vec::new());
    ws.events(&mut ws_got, 3).await;
    sse.events(&mut sse_got, 3).await;

    proxy.cut();
    ws.until_closed().await;
    sse.until_closed().await;
    server.admin_tasks(project, "while cut", 3).await;

    let ws = open_ws(*ws_got.last().unwrap()).await;
    let sse = open_sse(*sse_got.last().unwrap()).await;
    after_reconnecting(&server, project, head, (ws, ws_got), (sse, sse_got)).await;
}

/// The end of a resume test: two more tasks, then each client, reconnected with `got` so far,
/// must hold exactly the log after `head`.
async fn after_reconnecting(
    server: &TestServer,
    project: uuid::Uuid,
    head: i64,
    (mut ws, mut ws_got): (Ws, Vec<i64>),
    (mut sse, mut sse_got): (SseReader, Vec<i64>),
) {
    server.admin_tasks(project, "after", 2).await;
    let log = server.log_seqs(project).await;
    let last = *log.last().unwrap();
    ws.through(&mut ws_got, last).await;
    sse.through(&mut sse_got, last).await;
    let tail: Vec<i64> = log[head as usize..].to_vec();
    assert_eq!(ws_got, tail);
    assert_eq!(sse_got, tail);
}
