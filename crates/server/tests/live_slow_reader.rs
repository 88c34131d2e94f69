//! One slow reader must not hold back the others, and the server's memory stays bounded while
//! it does not read. In its own test binary because it measures the process's RSS, which tests
//! running beside it in one process would disturb.

use liveplan_testkit::follow::*;
use liveplan_testkit::*;
use serde_json::json;
use std::sync::Arc;
use tokio::sync::watch;

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
    // The slow readers read nothing for the whole burst, which takes over a minute on
    // PostgreSQL: longer than two pings (30 s each) or one blocked write (30 s), after either
    // of which the server rightly drops a reader (tested in live_ws and live_sse). Here they
    // must stay, so both bounds are far away.
    let server = Arc::new(
        TestServer::start_relaxed_with(|c| {
            c.live.ws_ping_interval = std::time::Duration::from_secs(600);
            c.live.send_timeout = std::time::Duration::from_secs(600);
        })
        .await,
    );
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

    let state = server.state().clone();
    let actor = admin_actor(&state.domain).await;
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
            let now = rss_bytes();
            if i % 1000 == 0 {
                println!(
                    "after {i} events: RSS +{} MiB",
                    now.saturating_sub(baseline) >> 20
                );
            }
            peak = peak.max(now);
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
