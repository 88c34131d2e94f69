//! Log retention (CONTRACT §12): `--log-max-events-per-stream` and `--log-retention-days`,
//! enforced at start and in the background, with a manual clock so nothing waits days. A
//! client resuming from before the retained log is told `resync_required` on every dialect
//! (native WebSocket, SSE, `/log`'s `first_seq`); one at or after it resumes; seqs never go
//! backwards; a Bryntum socket, which starts from a dataset, is never sent into a resync loop
//! by a log that holds nothing.

use liveplan_server::retention::{PASS_EVERY, RetentionConfig};
use liveplan_testkit::*;
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

fn limits(max_age_days: Option<u64>, max_events: Option<u64>) -> RetentionConfig {
    RetentionConfig {
        max_age: max_age_days.map(|d| Duration::from_secs(d * 24 * 3600)),
        max_events_per_stream: max_events,
    }
}

async fn log(server: &TestServer, project: Uuid, since: i64) -> Value {
    server.log(&server.admin, &project.to_string(), since).await
}

fn seqs(log: &Value) -> Vec<i64> {
    log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect()
}

/// Moves the manual clock a pass at a time until the project's log starts at `first_seq`
/// (bounded); returns the log from 0.
async fn prune_until(server: &TestServer, project: Uuid, first_seq: i64, advance: bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        if advance {
            server.advance(PASS_EVERY);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = log(server, project, 0).await;
        if last["first_seq"] == first_seq {
            return last;
        }
    }
    panic!("the log never started at {first_seq}: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_over_its_count_is_pruned_and_old_positions_resync_everywhere() {
    let server = TestServer::start_relaxed_with(|c| {
        c.clock = Clock::manual();
        c.retention = limits(None, Some(5));
    })
    .await;
    let project = server.new_project("Kept short").await;
    server.admin_tasks(project, "task", 12).await;
    let latest = log(&server, project, 0).await["latest_seq"]
        .as_i64()
        .unwrap();
    assert!(latest >= 12);

    let kept = prune_until(&server, project, latest - 4, true).await;
    assert_eq!(seqs(&kept), (latest - 4..=latest).collect::<Vec<_>>());
    assert_eq!(kept["latest_seq"], latest, "the counter does not move");
    assert_eq!(kept["resync_required"], true, "{kept}");
    // /log: a position just before the kept run resumes, one further back does not.
    let edge = log(&server, project, latest - 5).await;
    assert_eq!(edge["resync_required"], false, "{edge}");
    assert_eq!(seqs(&edge).len(), 5);
    assert_eq!(
        log(&server, project, latest - 6).await["resync_required"],
        true
    );

    // The native socket: from before the log, one resync_required; from its edge, a replay.
    let mut ws = server
        .ws_project(&server.admin, project, Some(latest - 6))
        .await;
    let frame = ws_event(&mut ws).await;
    assert_eq!(frame["event_type"], "resync_required", "{frame}");
    assert_eq!(frame["payload"]["latest_seq"], latest);
    let mut replay = server
        .ws_project(&server.admin, project, Some(latest - 5))
        .await;
    for seq in latest - 4..=latest {
        let frame = ws_event(&mut replay).await;
        assert_eq!(
            (frame["seq"].as_i64(), &frame["replayed"]),
            (Some(seq), &json!(true))
        );
    }

    // SSE: Last-Event-ID from before the log.
    let mut sse = server
        .sse(
            &server.admin,
            &format!("/api/v1/projects/{project}/events"),
            Some(1),
        )
        .await;
    assert_eq!(sse.data().await.unwrap().json()["type"], "connected");
    assert_eq!(
        sse.event().await.unwrap().json(),
        json!({"type": "resync_required", "data": {"latest_seq": latest}})
    );

    // Bryntum starts from a dataset: whole, whatever the log holds, and then live.
    let mut bryntum = bryntum::Client::connect(&server.base).await;
    bryntum.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let dataset = bryntum.dataset(json!(project.to_string())).await;
    assert_eq!(bryntum::flatten_tasks(&dataset["tasksData"]).len(), 12);

    // Seqs go on from the counter, and every live client gets the new event.
    server.task(&server.admin, project, "after").await;
    for socket in [&mut ws, &mut replay] {
        let frame = ws_event(socket).await;
        assert_eq!(
            (frame["event_type"].as_str(), frame["seq"].as_i64()),
            (Some("task_created"), Some(latest + 1))
        );
    }
    let message = sse.event().await.unwrap();
    assert_eq!(message.id, Some((latest + 1).to_string()));
    let change = bryntum.recv_command("project_change").await;
    assert!(change.to_string().contains("after"), "{change}");

    // The new event put the stream one over: the next pass takes the oldest.
    let kept = prune_until(&server, project, latest - 3, true).await;
    assert_eq!(seqs(&kept), (latest - 3..=latest + 1).collect::<Vec<_>>());
    let metrics = server.state().metrics.render();
    for dialect in ["native_ws", "sse"] {
        assert!(
            metrics.contains(&format!(
                r#"liveplan_resyncs_total{{dialect="{dialect}"}} 1"#
            )),
            "{dialect}: {metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_older_than_the_retention_go_and_seqs_go_on() {
    // The defaults: 30 days, a million events.
    let server = TestServer::start_relaxed_with(|c| c.clock = Clock::manual()).await;
    assert_eq!(
        server.state().config.retention,
        limits(Some(30), Some(1_000_000))
    );
    let project = server.new_project("Old news").await;
    server.admin_tasks(project, "task", 3).await;
    let latest = log(&server, project, 0).await["latest_seq"]
        .as_i64()
        .unwrap();

    // 29 days on, nothing is old enough.
    server.advance(Duration::from_secs(29 * 24 * 3600));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(log(&server, project, 0).await["first_seq"], 1);

    // 31 days on, every event is: the log is empty and says so.
    server.advance(Duration::from_secs(2 * 24 * 3600));
    let empty = prune_until(&server, project, latest + 1, true).await;
    assert!(seqs(&empty).is_empty());
    assert_eq!(empty["latest_seq"], latest);
    assert_eq!(empty["resync_required"], true);
    // A reader already at the head is not behind.
    assert_eq!(
        log(&server, project, latest).await["resync_required"],
        false
    );

    // The next event takes the next seq, never an old one.
    server.task(&server.admin, project, "fresh").await;
    let after = log(&server, project, latest).await;
    assert_eq!(seqs(&after), [latest + 1]);
    assert_eq!(after["resync_required"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_from_the_start() {
    let mut server = TestServer::start_relaxed_with(|c| c.retention = limits(None, None)).await;
    let project = server.new_project("Restarted").await;
    server.admin_tasks(project, "task", 10).await;
    let latest = log(&server, project, 0).await["latest_seq"]
        .as_i64()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        log(&server, project, 0).await["first_seq"],
        1,
        "no limits, nothing goes"
    );

    // On the real clock: the pass at start does it, with no tick needed.
    server
        .restart_with(|c| c.retention = limits(None, Some(3)))
        .await;
    let kept = prune_until(&server, project, latest - 2, false).await;
    assert_eq!(seqs(&kept), (latest - 2..=latest).collect::<Vec<_>>());

    // A native socket at the head goes live, no resync, even as the log is cut behind it.
    let mut ws = server
        .ws_project(&server.admin, project, Some(latest))
        .await;
    server.task(&server.admin, project, "live").await;
    let frame = ws_event(&mut ws).await;
    assert_eq!(
        (frame["event_type"].as_str(), frame["seq"].as_i64()),
        (Some("task_created"), Some(latest + 1))
    );
}
