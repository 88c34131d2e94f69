//! PostgreSQL going away under a running node (CONTRACT §9, "Faults"): while the database is
//! unreachable writes and reads answer 503 `store_unavailable`, live connections (native
//! WebSocket, SSE, Bryntum) stay open, nothing half-done is ever visible, and once it is back
//! the node carries on without a restart, its open sockets getting the next events in order.
//!
//! PostgreSQL-specific, whatever `LIVEPLAN_TEST_DATABASE_URL` says: each test starts a private
//! PostgreSQL of its own (`initdb`/`pg_ctl` in a temporary directory, on a free port; see
//! `testkit::private_postgres`) and crashes it (`pg_ctl stop -m immediate`). Skipped, with the
//! reason printed, only where no `initdb` is installed; `scripts/test.sh` installs it. The
//! whiteboards are here too: an update that cannot be stored reaches no other client.

use futures::{SinkExt, StreamExt};
use liveplan_testkit::private_postgres::PrivatePostgres;
use liveplan_testkit::{GUARD, TestServer, assert_error, whiteboard_update};
use proto::StreamKey;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use store::Page;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// Attempts at a write once the database is back, a pause apart: the node must recover within
/// them (it needs one; the pool tests its connections before lending them).
const RECOVERY_ATTEMPTS: usize = 20;
const RECOVERY_PAUSE: Duration = Duration::from_millis(500);
/// Concurrent writers while the database is crashed, and the writes each makes at most.
const WRITERS: usize = 8;
const WRITES_EACH: usize = 400;
/// Writes that must have succeeded before the crash, so it lands among writes in flight.
const WRITES_BEFORE_CRASH: usize = 40;

/// A private PostgreSQL, or `None` (with the reason printed) where none can be made.
fn private_postgres() -> Option<PrivatePostgres> {
    match PrivatePostgres::binaries() {
        Ok(_) => Some(tokio::task::block_in_place(PrivatePostgres::start)),
        Err(why) => {
            println!("skipped: {why}");
            None
        }
    }
}

/// A server on `postgres`, with keepalives frequent enough to show they go on in an outage.
async fn server_on(postgres: &PrivatePostgres) -> TestServer {
    TestServer::start_with_database_url(&postgres.url(), |c| {
        c.live.ws_ping_interval = Duration::from_secs(1);
        c.live.sse_keepalive = Duration::from_secs(1);
    })
    .await
}

/// What a live subscriber got: an event's seq and type, a frame without a seq (presence, the
/// SSE `connected`) by its type, or the end of its connection.
#[derive(Debug, PartialEq)]
enum Got {
    Event(i64, String),
    Other(String),
    Ended(String),
}

/// Reads a native WebSocket until it ends, keeping it answered (pongs) all along; reports
/// every JSON frame.
fn follow_ws(
    mut ws: liveplan_testkit::Ws,
) -> (mpsc::UnboundedReceiver<Got>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let got = match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text).expect("a JSON frame");
                    let kind = frame["event_type"].as_str().unwrap_or_default().to_owned();
                    match frame["seq"].as_i64() {
                        Some(seq) => Got::Event(seq, kind),
                        None => Got::Other(kind),
                    }
                }
                Some(Ok(Message::Close(frame))) => Got::Ended(format!("closed: {frame:?}")),
                None => Got::Ended("the stream ended".into()),
                Some(Err(e)) => Got::Ended(format!("error: {e}")),
                Some(Ok(_)) => continue,
            };
            let ended = matches!(got, Got::Ended(_));
            if tx.send(got).is_err() || ended {
                return;
            }
        }
    });
    (rx, task)
}

/// Reads a Bryntum socket until it ends, keeping it answered; reports every text message
/// whole, as `Other`.
fn follow_bryntum(
    client: liveplan_testkit::bryntum::Client,
) -> (mpsc::UnboundedReceiver<Got>, tokio::task::JoinHandle<()>) {
    let mut ws = client.ws;
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let got = match ws.next().await {
                Some(Ok(Message::Text(text))) => Got::Other(text.as_str().to_owned()),
                Some(Ok(Message::Close(frame))) => Got::Ended(format!("closed: {frame:?}")),
                None => Got::Ended("the stream ended".into()),
                Some(Err(e)) => Got::Ended(format!("error: {e}")),
                Some(Ok(_)) => continue,
            };
            let ended = matches!(got, Got::Ended(_));
            if tx.send(got).is_err() || ended {
                return;
            }
        }
    });
    (rx, task)
}

/// Waits for the Bryntum `project_change` that adds the task named `name`, past other messages
/// (at most a few dozen).
async fn bryntum_change_adding(rx: &mut mpsc::UnboundedReceiver<Got>, name: &str) {
    let needle = format!("\"name\":\"{name}\"");
    for _ in 0..50 {
        match next_got(rx).await {
            Got::Other(text) if text.contains("project_change") && text.contains(&needle) => {
                return;
            }
            Got::Ended(how) => panic!("the Bryntum socket ended: {how}"),
            _ => {}
        }
    }
    panic!("no project_change adding {name}");
}

/// Reads an SSE response until it ends; reports every message with data (those with an id are
/// logged events).
fn follow_sse(
    mut response: reqwest::Response,
) -> (mpsc::UnboundedReceiver<Got>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut buffer = String::new();
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(bytes)) => bytes,
                Ok(None) => {
                    let _ = tx.send(Got::Ended("the stream ended".into()));
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Got::Ended(format!("error: {e}")));
                    return;
                }
            };
            buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
                };
                let Some(data) = field("data:") else {
                    continue;
                };
                let data: Value = serde_json::from_str(&data).expect("JSON data");
                let kind = data["type"].as_str().unwrap_or_default().to_owned();
                let got = match field("id:") {
                    Some(id) => Got::Event(id.parse().expect("a numeric id"), kind),
                    None => Got::Other(kind),
                };
                if tx.send(got).is_err() {
                    return;
                }
            }
        }
    });
    (rx, task)
}

async fn next_got(rx: &mut mpsc::UnboundedReceiver<Got>) -> Got {
    tokio::time::timeout(GUARD, rx.recv())
        .await
        .expect("the subscriber hears something in time")
        .expect("its reader is running")
}

/// The next event or end, past frames without a seq.
async fn next_event(rx: &mut mpsc::UnboundedReceiver<Got>) -> Got {
    loop {
        match next_got(rx).await {
            Got::Other(_) => {}
            got => return got,
        }
    }
}

/// The first event or end that arrived so far, past frames without a seq, without waiting.
fn heard_event(rx: &mut mpsc::UnboundedReceiver<Got>) -> Option<Got> {
    while let Ok(got) = rx.try_recv() {
        if !matches!(got, Got::Other(_)) {
            return Some(got);
        }
    }
    None
}

/// Asserts a 503 `store_unavailable` whose message names nothing of the database.
fn assert_store_unavailable(status: StatusCode, body: &Value) {
    assert_error(
        status,
        body,
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
    );
    let message = body["error"]["message"].as_str().unwrap().to_lowercase();
    for leak in [
        "select",
        "insert",
        "update ",
        "sqlx",
        "postgres",
        "127.0.0.1",
        "connection",
    ] {
        assert!(
            !message.contains(leak),
            "the message leaks {leak:?}: {message}"
        );
    }
}

/// Creates a task named `name`; the status and body.
async fn post_task(server: &TestServer, project: Uuid, name: &str) -> (StatusCode, Value) {
    server
        .post(
            &format!("/api/v1/projects/{project}/tasks"),
            &server.admin,
            json!({ "name": name }),
        )
        .await
}

/// Writes until one succeeds, at most [`RECOVERY_ATTEMPTS`] times; each failure must be the
/// outage's 503. Returns the attempts it took.
async fn write_until_recovered(server: &TestServer, project: Uuid, name: &str) -> usize {
    for attempt in 1..=RECOVERY_ATTEMPTS {
        let (status, body) = post_task(server, project, name).await;
        if status.is_success() {
            return attempt;
        }
        assert_store_unavailable(status, &body);
        tokio::time::sleep(RECOVERY_PAUSE).await;
    }
    panic!("no write succeeded in {RECOVERY_ATTEMPTS} attempts after the database came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_answers_503_keeps_live_connections_and_recovers_without_restart() {
    let Some(mut postgres) = private_postgres() else {
        return;
    };
    let server = server_on(&postgres).await;
    let project = server.new_project("Outage").await;
    let ws = server.ws_project(&server.admin, project, None).await;
    let (mut ws_got, ws_task) = follow_ws(ws);
    // Subscribed once the socket hears its own join (before the stream opens: the stream is a
    // connection of the same user, and whichever subscribes first makes the join).
    assert_eq!(
        next_got(&mut ws_got).await,
        Got::Other("presence_join".into())
    );
    let sse = server
        .http
        .get(server.url(&format!("/api/v1/projects/{project}/events")))
        .bearer_auth(&server.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    let (mut sse_got, sse_task) = follow_sse(sse);
    let mut bryntum = liveplan_testkit::bryntum::Client::connect(&server.base).await;
    bryntum
        .login(
            liveplan_testkit::ADMIN_EMAIL,
            liveplan_testkit::ADMIN_PASSWORD,
        )
        .await;
    bryntum.dataset(json!(project.to_string())).await;
    let (mut bryntum_got, bryntum_task) = follow_bryntum(bryntum);
    // The stream is subscribed once it sent its `connected`.
    assert_eq!(next_got(&mut sse_got).await, Got::Other("connected".into()));
    // Both are live: the project's first event after `member_added` (seq 1) is seq 2.
    let (status, before) = post_task(&server, project, "before").await;
    assert_eq!(status, StatusCode::CREATED, "{before}");
    assert_eq!(
        next_event(&mut ws_got).await,
        Got::Event(2, "task_created".into())
    );
    assert!(matches!(next_event(&mut sse_got).await, Got::Event(2, _)));
    bryntum_change_adding(&mut bryntum_got, "before").await;

    tokio::task::block_in_place(|| postgres.kill());

    // Writes and reads answer 503 store_unavailable, health too.
    let (status, body) = post_task(&server, project, "during").await;
    assert_store_unavailable(status, &body);
    let task_id = before["id"].as_str().unwrap();
    let (status, body) = server
        .patch(
            &format!("/api/v1/projects/{project}/tasks/{task_id}"),
            &server.admin,
            json!({ "name": "renamed during" }),
        )
        .await;
    assert_store_unavailable(status, &body);
    let (status, body) = server
        .get(&format!("/api/v1/projects/{project}/tasks"), &server.admin)
        .await;
    assert_store_unavailable(status, &body);
    let (status, body) = server
        .call(reqwest::Method::GET, "/healthz", None, None)
        .await;
    assert_store_unavailable(status, &body);
    let response = server
        .http
        .get(server.url(&format!("/api/v1/projects/{project}")))
        .bearer_auth(&server.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "5");

    // The live connections are still open and heard nothing: nothing was committed.
    assert_eq!(heard_event(&mut ws_got), None, "the WebSocket");
    assert_eq!(heard_event(&mut sse_got), None, "the SSE stream");
    while let Ok(got) = bryntum_got.try_recv() {
        assert!(
            matches!(&got, Got::Other(text) if !text.contains("project_change")),
            "the Bryntum socket: {got:?}"
        );
    }
    assert!(!ws_task.is_finished() && !sse_task.is_finished() && !bryntum_task.is_finished());

    tokio::task::block_in_place(|| postgres.start_again());

    // The same node writes again, and both connections get the next events, in seq order.
    let attempts = write_until_recovered(&server, project, "after").await;
    println!("recovered after {attempts} attempt(s)");
    let (status, body) = post_task(&server, project, "after again").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for got in [&mut ws_got, &mut sse_got] {
        for seq in [3, 4] {
            match next_event(got).await {
                Got::Event(s, _) => assert_eq!(s, seq),
                ended => panic!("the connection ended: {ended:?}"),
            }
        }
    }
    bryntum_change_adding(&mut bryntum_got, "after").await;
    bryntum_change_adding(&mut bryntum_got, "after again").await;
    let (status, _) = server
        .call(reqwest::Method::GET, "/healthz", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);

    // What the outage refused is not there: exactly the tasks that were answered 2xx.
    let names = task_names(&server, project).await;
    assert_eq!(
        names.keys().cloned().collect::<BTreeSet<_>>(),
        ["after", "after again", "before"].map(String::from).into(),
    );
    let log = project_log(&server, project).await;
    assert_eq!(
        log.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    ws_task.abort();
    sse_task.abort();
    bryntum_task.abort();
}

/// The project's tasks, by name (each name once), through the `Store` API.
async fn task_names(server: &TestServer, project: Uuid) -> BTreeMap<String, Uuid> {
    let mut ops = server.state().domain.store.snapshot().await.unwrap();
    let rows = ops.list_records(project, "tasks", Page::ALL).await.unwrap();
    let mut names = BTreeMap::new();
    for row in rows {
        let name = row.body["name"].as_str().unwrap().to_owned();
        assert!(names.insert(name.clone(), row.id).is_none(), "{name} twice");
    }
    names
}

/// The project's whole log: each event's seq and, for a created task, its name.
async fn project_log(server: &TestServer, project: Uuid) -> Vec<(i64, Option<String>)> {
    let mut ops = server.state().domain.store.snapshot().await.unwrap();
    let stream = StreamKey::Project(project);
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = ops.read_events(stream, after, 1000).await.unwrap();
        let Some(last) = page.last().and_then(|e| e.seq) else {
            break;
        };
        after = last;
        events.extend(page.into_iter().map(|e| {
            let name = (e.event_type.as_str() == "task_created")
                .then(|| e.data["name"].as_str().unwrap().to_owned());
            (e.seq.unwrap(), name)
        }));
    }
    assert_eq!(
        ops.latest_seq(stream).await.unwrap(),
        after,
        "the log's head"
    );
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_among_concurrent_writes_leaves_nothing_half_done() {
    let Some(mut postgres) = private_postgres() else {
        return;
    };
    let server = Arc::new(server_on(&postgres).await);
    let project = server.new_project("Crash").await;

    // Writers create tasks one after another until one is refused; the database crashes
    // once enough have gone through, with the others' writes in flight.
    let succeeded = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let (server, succeeded) = (server.clone(), succeeded.clone());
        writers.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for i in 0..WRITES_EACH {
                let name = format!("w{writer}-{i}");
                let (status, body) = post_task(&server, project, &name).await;
                let refused = !status.is_success();
                if refused {
                    assert_store_unavailable(status, &body);
                } else {
                    succeeded.fetch_add(1, Ordering::SeqCst);
                }
                answers.push((name, status.is_success()));
                if refused {
                    break;
                }
            }
            answers
        }));
    }
    let waited = tokio::time::timeout(GUARD, async {
        while succeeded.load(Ordering::SeqCst) < WRITES_BEFORE_CRASH {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the writers got going");
    tokio::task::block_in_place(|| postgres.kill());
    let mut answers = Vec::new();
    for writer in writers {
        let done = tokio::time::timeout(GUARD * 2, writer).await;
        answers.extend(
            done.expect("every writer ends")
                .expect("no writer panicked"),
        );
    }
    let refused: Vec<&String> = answers
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        refused.len(),
        WRITERS,
        "each writer ends on the outage: {refused:?}"
    );

    tokio::task::block_in_place(|| postgres.start_again());
    write_until_recovered(&server, project, "after").await;

    // Every write answered 2xx is there with its event; the log is gap-free; every task has
    // exactly one event and every event its task, so nothing is half-done.
    let names = task_names(&server, project).await;
    let log = project_log(&server, project).await;
    let seqs: Vec<i64> = log.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "gap-free seqs"
    );
    let logged: Vec<&String> = log.iter().filter_map(|(_, name)| name.as_ref()).collect();
    let logged_set: BTreeSet<&String> = logged.iter().copied().collect();
    assert_eq!(logged.len(), logged_set.len(), "one event per task");
    assert_eq!(
        logged_set,
        names.keys().collect::<BTreeSet<_>>(),
        "tasks and their events"
    );
    for (name, ok) in &answers {
        if *ok {
            assert!(
                names.contains_key(name),
                "{name} was acknowledged but is missing"
            );
        }
    }
    // A write refused mid-flight is absent, unless its COMMIT reached the disk and only the
    // answer was lost with the connection: then it is there whole (checked above), never in
    // part. Counted, for the record.
    let committed_anyway = refused.iter().filter(|n| names.contains_key(**n)).count();
    println!(
        "{} writes acknowledged, {} refused, {committed_anyway} of them committed before the crash cut the answer",
        answers.len() - refused.len(),
        refused.len()
    );
}

/// A real crash of PostgreSQL under a node in the fast durability (`synchronous_commit=off`,
/// so the crash may lose the last commits): recovery empties the unlogged sentinel, the
/// node's first new connection finds it gone and moves every stream's seqs on by
/// `LOST_TAIL_SKIP`, and the live subscriber, whose last seq may be one the crash lost, is told
/// to resync instead of being handed a new event under a seq it already holds. All while the
/// node runs: no restart of liveplan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_crash_in_fast_mode_skips_every_stream_ahead_while_the_node_runs() {
    let Some(mut postgres) = private_postgres() else {
        return;
    };
    let server = TestServer::start_with_database_url(&postgres.url(), |c| {
        c.durability = store::Durability::Fast;
        c.live.ws_ping_interval = Duration::from_secs(1);
    })
    .await;
    let project = server.new_project("Fast crash").await;
    // Commits made with synchronous_commit=off reach the disk within a few WAL writer rounds;
    // a crash right away would take the project too. A checkpoint writes them out now.
    postgres.checkpoint().await;
    let ws = server.ws_project(&server.admin, project, None).await;
    let (mut ws_got, ws_task) = follow_ws(ws);
    assert_eq!(
        next_got(&mut ws_got).await,
        Got::Other("presence_join".into())
    );
    let (status, body) = post_task(&server, project, "before").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        next_event(&mut ws_got).await,
        Got::Event(2, "task_created".into())
    );

    tokio::task::block_in_place(|| {
        postgres.kill();
        postgres.start_again();
    });
    write_until_recovered(&server, project, "after").await;

    let latest = {
        let mut read = server.state().domain.store.read().await.unwrap();
        read.latest_seq(StreamKey::Project(project)).await.unwrap()
    };
    assert!(
        latest > store::LOST_TAIL_SKIP,
        "the project's seqs skipped ahead: latest {latest}"
    );
    // Frames without a seq are read past; the first one that matters is the resync.
    let resync = loop {
        match next_got(&mut ws_got).await {
            Got::Other(kind) if kind == "resync_required" => break kind,
            Got::Other(kind) if kind.starts_with("presence") => {}
            other => panic!("expected resync_required, got {other:?}"),
        }
    };
    assert_eq!(resync, "resync_required");
    ws_task.abort();
}

/// Reads a whiteboard socket until it closes: its close code, after checking that no
/// document update came before it.
async fn whiteboard_closes_unrelayed(ws: &mut liveplan_testkit::Ws, who: &str) -> Option<u16> {
    loop {
        let message = tokio::time::timeout(GUARD, ws.next())
            .await
            .unwrap_or_else(|_| panic!("{who}: no close in time"));
        match message {
            None | Some(Err(_)) => return None,
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(Message::Binary(b))) => {
                assert!(
                    !b.starts_with(&[0, 2]),
                    "{who} got an update relayed: {b:?}"
                );
            }
            Some(Ok(_)) => {}
        }
    }
}

/// Whiteboards with the database gone (CONTRACT §11, "stored durably before it is sent to
/// anyone"): updates of two boards handed to the node's writer (`whiteboard::writer`, which
/// stores many boards' updates in one transaction) while no transaction can be made all fail.
/// Every client of both boards is closed (1011), and the other clients never receive the
/// update that was not stored; once the database is back, the same board takes edits again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whiteboard_updates_that_cannot_be_stored_reach_nobody() {
    let Some(mut postgres) = private_postgres() else {
        return;
    };
    let server = server_on(&postgres).await;
    let project = server.new_project("whiteboards").await;
    let (member_id, member) = server.new_user("member").await;
    server.new_member(project, member_id, 100).await;
    let mut boards = Vec::new();
    for name in ["one", "two"] {
        let created = server
            .create(
                &server.admin,
                &project.to_string(),
                "whiteboards",
                json!({ "name": name }),
            )
            .await;
        boards.push(created["id"].as_str().unwrap().to_owned());
    }
    let mut writers = Vec::new();
    let mut watchers = Vec::new();
    for board in &boards {
        writers.push(server.ws_whiteboard(board, &member).await);
        watchers.push(server.ws_whiteboard(board, &member).await);
    }

    tokio::task::block_in_place(|| postgres.kill());
    for (i, writer) in writers.iter_mut().enumerate() {
        writer
            .send(whiteboard_update(&format!("lost-{i}")))
            .await
            .unwrap();
    }
    for (i, watcher) in watchers.iter_mut().enumerate() {
        let code = whiteboard_closes_unrelayed(watcher, &format!("watcher {i}")).await;
        assert_eq!(code, Some(1011), "watcher {i}");
    }
    for (i, writer) in writers.iter_mut().enumerate() {
        let code = whiteboard_closes_unrelayed(writer, &format!("writer {i}")).await;
        assert_eq!(code, Some(1011), "writer {i}");
    }

    tokio::task::block_in_place(|| postgres.start_again());
    // Once the node writes again, the board loads again from the store and relays an update
    // once it is stored.
    write_until_recovered(&server, project, "back").await;
    let mut writer = server.ws_whiteboard(&boards[0], &member).await;
    let mut watcher = server.ws_whiteboard(&boards[0], &member).await;
    writer.send(whiteboard_update("kept")).await.unwrap();
    loop {
        let message = tokio::time::timeout(GUARD, watcher.next())
            .await
            .expect("the update relayed in time")
            .expect("a frame")
            .expect("a frame");
        if matches!(&message, Message::Binary(b) if b.starts_with(&[0, 2])) {
            break;
        }
    }
}
