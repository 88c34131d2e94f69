//! Delivery under faults: random disconnects while writes run and a server restart while
//! clients are connected. Every client must end with exactly the log's seq list.

mod live_support;

use live_support::follow::*;
use live_support::*;
use rand::Rng;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::watch;

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
    // Closed, dropped and reset connections all released their subscriptions. The server
    // notices on its own, with no event to wait for, so this polls within the guard.
    let live = server.server.state.live.clone();
    let deadline = tokio::time::Instant::now() + GUARD;
    while live.hub().subscriber_count(None) > 0 || live.open_connections() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "subscriptions leak");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
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
        let store = liveplan_server::backends::open_store(None, dir.path())
            .await
            .unwrap();
        let domain = domain::Domain::new(store.clone(), Arc::new(domain::NoListener));
        let actor = admin_actor(&domain).await;
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
