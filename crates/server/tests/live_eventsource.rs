//! A real EventSource (the Node `eventsource` package, tests/node/) against the SSE endpoint:
//! it replays from `?last_event_id=0`, the server restarts under it, events are committed while
//! no server runs, and the client's own reconnection with its `Last-Event-ID` header must bring
//! exactly the missing events: every id once, in order.
//!
//! Needs `npm` (installs tests/node/node_modules on first run). Without npm the test is
//! skipped with a loud message; CI has npm.

use liveplan_testkit::node::node_dir;
use liveplan_testkit::*;
use serde_json::Value;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

async fn npm_ready() -> bool {
    liveplan_testkit::node::npm_ready(&["eventsource"], "live_eventsource (the real EventSource)")
        .await
}

#[tokio::test]
async fn eventsource_reconnects_with_last_event_id_across_a_restart() {
    if !npm_ready().await {
        return;
    }
    let first = TestServer::start_relaxed().await;
    let project = first.new_project("EventSource").await;
    let (member, token) = first.new_user("es").await;
    first.new_member(project, member, 1).await;
    for i in 0..3 {
        first
            .task(&first.admin, project, &format!("before {i}"))
            .await;
    }
    // 1 member_added (creation), 2 member_added, 3..=5 tasks, 6..=8 offline, 9..=10 after.
    let last = 10;
    let url = first.url(&format!(
        "/api/v1/projects/{project}/events?last_event_id=0"
    ));
    let mut child = Command::new("node")
        .arg("sse-client.mjs")
        .arg(&url)
        .arg(&token)
        .arg(last.to_string())
        .current_dir(node_dir())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ids: Vec<i64> = Vec::new();
    let mut connected = 0;
    let mut next_line = async || -> Value {
        let line = tokio::time::timeout(GUARD, lines.next_line())
            .await
            .expect("the client reports in time")
            .unwrap()
            .expect("the client is running");
        serde_json::from_str(&line).unwrap()
    };
    let take = |line: Value, ids: &mut Vec<i64>, connected: &mut i32| {
        if line["kind"] != "message" {
            return;
        }
        match line["data"]["type"].as_str() {
            Some("connected") => *connected += 1,
            Some(kind) if !kind.starts_with("presence.") => {
                ids.push(line["id"].as_str().unwrap().parse().unwrap());
            }
            _ => {}
        }
    };
    while ids.len() < 5 {
        let line = next_line().await;
        take(line, &mut ids, &mut connected);
    }
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);

    // Restart on the same address, with three events committed while the server is down.
    let addr = first.addr();
    let mut server = first;
    server.stop().await;
    server.offline_tasks(project, "offline", 3).await;
    server.start_on(addr).await;
    // The client reconnects on its own; it has the offline events once it is back.
    while ids.len() < 8 {
        let line = next_line().await;
        take(line, &mut ids, &mut connected);
    }
    for i in 0..2 {
        server
            .task(&server.admin, project, &format!("after {i}"))
            .await;
    }
    while ids.last() != Some(&last) {
        let line = next_line().await;
        take(line, &mut ids, &mut connected);
    }
    assert_eq!(ids, (1..=last).collect::<Vec<_>>());
    assert_eq!(connected, 2, "one connection per server");
    let status = tokio::time::timeout(GUARD, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}
