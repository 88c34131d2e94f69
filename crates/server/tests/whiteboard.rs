//! Whiteboards (CONTRACT §11) with real `yjs` 13 + `y-websocket` 3 clients (npm,
//! tests/node/whiteboard-driver.cjs): convergence both ways, late joiners, offline edits,
//! concurrent edits to one element, viewers refused and still connected, cursors seen and
//! removed (clean close and a killed client), restart, limits, bad input, REST content,
//! snapshots and restore. Runs on the backend `LIVEPLAN_TEST_DATABASE_URL` picks.
//!
//! Needs `npm` (installs tests/node/node_modules on first run); skipped loudly without it.

use futures::{SinkExt, StreamExt};
use liveplan_testkit::node::NodeDriver;
use liveplan_testkit::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;
use yrs::encoding::write::Write as _;

async fn npm_ready() -> bool {
    liveplan_testkit::node::npm_ready(&["y-websocket", "yjs"], "whiteboard (the real yjs clients)")
        .await
}

/// One Node process holding any number of y-websocket clients.
struct Driver {
    node: NodeDriver,
    seq: u64,
}

impl Driver {
    async fn start() -> Driver {
        Driver {
            node: NodeDriver::start("whiteboard-driver.cjs").await,
            seq: 0,
        }
    }

    /// Sends a command and returns the client's state after it.
    async fn cmd(&mut self, mut command: Value) -> Value {
        self.seq += 1;
        command["seq"] = json!(self.seq);
        self.node.send(command).await;
        let seq = json!(self.seq);
        self.node
            .expect(|value| value["type"] == "state" && value["seq"] == seq)
            .await
    }

    async fn state(&mut self, client: &str) -> Value {
        self.cmd(json!({ "cmd": "look", "client": client })).await
    }

    /// Polls `client`'s state until `wanted` holds (bounded by [`GUARD`]).
    async fn until(&mut self, client: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + GUARD;
        loop {
            let state = self.state(client).await;
            if wanted(&state) {
                return state;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{client} never reached the wanted state; last: {state}"
            );
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }

    /// The first event (seen already or next) for which `wanted` holds.
    async fn next_event(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        self.node.expect(wanted).await
    }

    async fn open(&mut self, server: &TestServer, client: &str, board: &str, token: &str) {
        let ticket = server.ticket(token).await;
        self.open_at(server.addr(), client, board, &ticket).await;
    }

    /// A client of the node at `addr`, with a ticket minted anywhere in its cluster.
    async fn open_at(
        &mut self,
        addr: std::net::SocketAddr,
        client: &str,
        board: &str,
        ticket: &str,
    ) {
        self.cmd(json!({
            "cmd": "open",
            "client": client,
            "url": format!("ws://{addr}/ws/v1/whiteboards"),
            "board": board,
            "ticket": ticket,
        }))
        .await;
        self.until(client, |s| s["synced"] == true).await;
    }
}

struct Board {
    project: Uuid,
    id: String,
    member: String,
    viewer: String,
}

async fn board(server: &TestServer) -> Board {
    let project = server.new_project("whiteboards").await;
    let (member_id, member) = server.new_user("member").await;
    server.new_member(project, member_id, 100).await;
    let (viewer_id, viewer) = server.new_user("viewer").await;
    server.new_member(project, viewer_id, 1).await;
    let created = server
        .create(
            &server.admin,
            &project.to_string(),
            "whiteboards",
            json!({ "name": "board" }),
        )
        .await;
    Board {
        project,
        id: created["id"].as_str().unwrap().to_owned(),
        member,
        viewer,
    }
}

fn has(state: &Value, key: &str) -> bool {
    state["elements"].get(key).is_some()
}

fn field<'a>(state: &'a Value, key: &str, name: &str) -> &'a Value {
    &state["elements"][key][name]
}

async fn start() -> Option<(TestServer, Board, Driver)> {
    if !npm_ready().await {
        return None;
    }
    let server = TestServer::start_relaxed().await;
    let board = board(&server).await;
    let driver = Driver::start().await;
    Some((server, board, driver))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_converge_both_ways_and_late_joiners_get_everything() {
    let Some((server, b, mut d)) = start().await else {
        return;
    };
    d.open(&server, "a", &b.id, &b.member).await;
    d.open(&server, "b", &b.id, &server.admin).await;
    d.cmd(json!({"cmd": "element", "client": "a", "key": "e1", "fields": {"x": 1, "z": "a1"}, "points": [1, 2, 0.5], "text": "hi"}))
        .await;
    let seen = d.until("b", |s| has(s, "e1")).await;
    assert_eq!(field(&seen, "e1", "points"), &json!([1, 2, 0.5]));
    assert_eq!(field(&seen, "e1", "text"), "hi");
    d.cmd(json!({"cmd": "field", "client": "b", "key": "e1", "field": "x", "value": 5}))
        .await;
    d.until("a", |s| field(s, "e1", "x") == 5).await;
    // Concurrent edits to different fields of one element: both kept everywhere.
    d.cmd(json!({"cmd": "field", "client": "a", "key": "e1", "field": "y", "value": 7}))
        .await;
    d.cmd(json!({"cmd": "field", "client": "b", "key": "e1", "field": "w", "value": 9}))
        .await;
    for client in ["a", "b"] {
        d.until(client, |s| {
            field(s, "e1", "y") == 7 && field(s, "e1", "w") == 9
        })
        .await;
    }
    // Offline edits are merged on reconnect (with a fresh ticket: tickets are single-use).
    d.cmd(json!({"cmd": "disconnect", "client": "a"})).await;
    d.cmd(json!({"cmd": "element", "client": "a", "key": "offline", "fields": {"z": "a0"}}))
        .await;
    d.cmd(json!({"cmd": "field", "client": "b", "key": "e1", "field": "h", "value": 3}))
        .await;
    let ticket = server.ticket(&b.member).await;
    d.cmd(json!({"cmd": "connect", "client": "a", "ticket": ticket}))
        .await;
    d.until("a", |s| field(s, "e1", "h") == 3 && has(s, "offline"))
        .await;
    d.until("b", |s| has(s, "offline")).await;
    // A late joiner gets everything.
    d.open(&server, "late", &b.id, &b.member).await;
    let late = d.state("late").await;
    let a = d.state("a").await;
    assert_eq!(late["elements"], a["elements"]);
    assert_eq!(field(&late, "e1", "x"), 5);
    // The REST content holds the same, sorted by z.
    let content = server
        .ok(
            reqwest::Method::GET,
            &b.member,
            &format!(
                "/api/v1/projects/{}/whiteboards/{}/content",
                b.project, b.id
            ),
            Value::Null,
        )
        .await;
    let ids: Vec<&str> = content["elements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["offline", "e1"], "sorted by z: {content}");
    assert_eq!(content["elements"][1]["text"], "hi");
    assert_eq!(content["elements"][1]["points"], json!([1, 2, 0.5]));
    assert!(content["assets"].is_object() && content["meta"].is_object());
    // The edits told the project stream, coalesced (at most one event a second per board).
    let deadline = tokio::time::Instant::now() + GUARD;
    let updated = loop {
        let log = server.log(&b.member, &b.project.to_string(), 0).await;
        let updated: Vec<Value> = log["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event_type"] == "whiteboard_updated")
            .cloned()
            .collect();
        if !updated.is_empty() {
            break updated;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no whiteboard_updated: {log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(updated[0]["payload"], json!({ "id": b.id }));
    assert!(
        updated.len() < 12,
        "{} events for about a dozen edits",
        updated.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_is_refused_and_stays_connected() {
    let Some((server, b, mut d)) = start().await else {
        return;
    };
    d.open(&server, "m", &b.id, &b.member).await;
    d.open(&server, "v", &b.id, &b.viewer).await;
    d.cmd(json!({"cmd": "element", "client": "m", "key": "e1", "fields": {"z": "a"}}))
        .await;
    d.until("v", |s| has(s, "e1")).await;
    d.cmd(json!({"cmd": "element", "client": "v", "key": "forbidden", "fields": {"z": "b"}}))
        .await;
    let warned = d
        .next_event(|e| {
            e["type"] == "warn"
                && e["text"]
                    .as_str()
                    .unwrap_or("")
                    .contains("permission denied")
        })
        .await;
    assert!(
        warned["text"]
            .as_str()
            .unwrap()
            .contains("viewers cannot edit")
    );
    // Still connected and still receiving; the refused edit reached nobody and was not stored.
    d.cmd(json!({"cmd": "element", "client": "m", "key": "e2", "fields": {"z": "c"}}))
        .await;
    let v = d.until("v", |s| has(s, "e2")).await;
    assert_eq!(v["connected"], true);
    d.open(&server, "late", &b.id, &b.member).await;
    let late = d.state("late").await;
    assert!(has(&late, "e2") && !has(&late, "forbidden"), "{late}");
    assert!(!has(&d.state("m").await, "forbidden"));
    assert!(
        !d.node
            .seen
            .iter()
            .any(|e| e["type"] == "close" && e["client"] == "v"),
        "the viewer stayed connected: {:?}",
        d.node.seen
    );
    // Viewers may read the content but not save versions.
    let path = format!("/api/v1/projects/{}/whiteboards/{}", b.project, b.id);
    let (status, _) = server.get(&format!("{path}/content"), &b.viewer).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server
        .post(
            &format!("{path}/snapshots"),
            &b.viewer,
            json!({"name": "v"}),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_are_seen_and_removed_on_clean_close_and_on_a_killed_client() {
    let Some((server, b, mut d)) = start().await else {
        return;
    };
    d.open(&server, "watcher", &b.id, &b.viewer).await;
    d.open(&server, "a", &b.id, &b.member).await;
    d.cmd(json!({"cmd": "awareness", "client": "a", "state": {"user": {"name": "Ann"}, "cursor": {"x": 1, "y": 2}}}))
        .await;
    d.until("watcher", |s| sees_peer(s, "Ann")).await;
    // The viewer's own cursor is relayed too.
    d.cmd(json!({"cmd": "awareness", "client": "watcher", "state": {"user": {"name": "Vic"}}}))
        .await;
    d.until("a", |s| sees_peer(s, "Vic")).await;
    d.cmd(json!({"cmd": "destroy", "client": "a"})).await;
    d.until("watcher", |s| !sees_peer(s, "Ann")).await;
    // A client whose process dies without a close frame.
    let mut other = Driver::start().await;
    other.open(&server, "k", &b.id, &b.member).await;
    other
        .cmd(json!({"cmd": "awareness", "client": "k", "state": {"user": {"name": "Kim"}}}))
        .await;
    d.until("watcher", |s| sees_peer(s, "Kim")).await;
    other.node.kill().await;
    d.until("watcher", |s| !sees_peer(s, "Kim")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_serves_the_same_document() {
    let Some((mut server, b, mut d)) = start().await else {
        return;
    };
    d.open(&server, "a", &b.id, &b.member).await;
    d.open(&server, "b", &b.id, &b.member).await;
    for n in 0..20 {
        d.cmd(json!({"cmd": "element", "client": "a", "key": format!("e{n}"), "fields": {"z": format!("a{n:02}")}}))
            .await;
    }
    // Acknowledged: another client has it, so it was stored.
    d.until("b", |s| has(s, "e19")).await;
    d.cmd(json!({"cmd": "destroy", "client": "a"})).await;
    d.cmd(json!({"cmd": "destroy", "client": "b"})).await;
    server.restart().await;
    d.open(&server, "after", &b.id, &b.member).await;
    let after = d.state("after").await;
    assert_eq!(after["elements"].as_object().unwrap().len(), 20, "{after}");
    // Compaction merges the stored rows into one state; the document stays the same.
    let store = server.state().domain.store.clone();
    let merged = liveplan_server::whiteboard::compaction::compact_some(&*store, 1)
        .await
        .unwrap();
    assert_eq!(merged, 1);
    let board_id = Uuid::parse_str(&b.id).unwrap();
    let rows = store
        .read()
        .await
        .unwrap()
        .read_whiteboard_updates(board_id, 0, 100)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one state row after compaction");
    d.cmd(json!({"cmd": "destroy", "client": "after"})).await;
    d.open(&server, "compacted", &b.id, &b.member).await;
    let compacted = d.state("compacted").await;
    assert_eq!(compacted["elements"], after["elements"]);
}

async fn closes_with(server: &TestServer, b: &Board, frame: Message) -> Option<u16> {
    let mut ws = server.ws_whiteboard(&b.id, &b.member).await;
    ws.send(frame).await.unwrap();
    ws_close_code(&mut ws).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_limits_close_with_documented_codes() {
    if !npm_ready().await {
        return;
    }
    let server = TestServer::start_relaxed().await;
    let b = board(&server).await;
    let bin = |bytes: &[u8]| Message::Binary(bytes.to_vec().into());
    // A truncated varint, a truncated sync message, an unknown type, an undecodable update.
    assert_eq!(closes_with(&server, &b, bin(&[0x80])).await, Some(1002));
    assert_eq!(
        closes_with(&server, &b, bin(&[0, 2, 9, 1])).await,
        Some(1002)
    );
    assert_eq!(closes_with(&server, &b, bin(&[7, 0])).await, Some(1003));
    assert_eq!(
        closes_with(&server, &b, bin(&[0, 2, 4, 0xff, 0xff, 0xff, 0xff])).await,
        Some(1007)
    );
    assert_eq!(
        closes_with(&server, &b, Message::Text("hi".into())).await,
        Some(1003)
    );
    // An update over 1 MiB (a well-formed message holding it).
    let mut big = vec![0u8, 2];
    big.write_buf(vec![0u8; 1024 * 1024 + 10]);
    assert_eq!(closes_with(&server, &b, bin(&big)).await, Some(1009));
    // An awareness state over 4 KiB: [1, len, [1 client, id, clock, json]].
    let json = format!("{{\"name\":\"{}\"}}", "x".repeat(5000));
    let mut inner = vec![1u8, 5, 1];
    inner.write_buf(json.as_bytes());
    let mut frame = vec![1u8];
    frame.write_buf(inner);
    assert_eq!(closes_with(&server, &b, bin(&frame)).await, Some(1009));
    // The document is untouched by all of it.
    let (_, content) = server
        .get(
            &format!(
                "/api/v1/projects/{}/whiteboards/{}/content",
                b.project, b.id
            ),
            &b.member,
        )
        .await;
    assert_eq!(content["elements"], json!([]));
    // A real client whose update is over the limit is closed with 1009.
    let mut d = Driver::start().await;
    d.open(&server, "big", &b.id, &b.member).await;
    d.cmd(json!({"cmd": "big", "client": "big", "size": 1_100_000}))
        .await;
    let closed = d
        .next_event(|e| e["type"] == "close" && e["client"] == "big")
        .await;
    assert_eq!(closed["code"], 1009);
}

/// A document larger than one frame's old write bound (1 MiB), made of updates under the
/// 1 MiB update limit, reaches a late joiner whole: its sync step 2 is one frame of the whole
/// document (before, the server dropped every client joining it, and they retried forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_gets_a_document_larger_than_a_mebibyte() {
    let Some((server, b, mut d)) = start().await else {
        return;
    };
    let filled = |s: &Value| {
        ["f1", "f2", "f3"]
            .iter()
            .all(|k| s["meta"][k].as_str().is_some_and(|t| t.len() == 700_000))
    };
    d.open(&server, "writer", &b.id, &b.member).await;
    d.open(&server, "witness", &b.id, &b.member).await;
    for (key, char) in [("f1", "a"), ("f2", "b"), ("f3", "c")] {
        d.cmd(
            json!({"cmd": "fill", "client": "writer", "key": key, "char": char, "size": 700_000}),
        )
        .await;
    }
    // Relayed means stored: the late joiner's sync step 2 then carries all 2.1 MB at once.
    d.until("witness", filled).await;
    d.open(&server, "late", &b.id, &b.member).await;
    let late = d.state("late").await;
    assert!(
        filled(&late),
        "the late joiner's synced copy holds every fill"
    );
    for (key, char) in [("f1", 'a'), ("f2", 'b'), ("f3", 'c')] {
        let text = late["meta"][key].as_str().unwrap_or_default();
        assert!(text.chars().all(|c| c == char), "{key}");
    }
    assert_eq!(late["connected"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_refuses_with_44xx() {
    let server = TestServer::start_relaxed().await;
    let b = board(&server).await;
    let mut ws = server.ws(&format!("/ws/v1/whiteboards/{}", b.id)).await;
    assert_eq!(ws_close_code(&mut ws).await, Some(4401));
    let mut ws = server
        .ws(&format!("/ws/v1/whiteboards/{}?ticket=nope", b.id))
        .await;
    assert_eq!(ws_close_code(&mut ws).await, Some(4401));
    let ticket = server.ticket(&b.member).await;
    let mut ws = server
        .ws(&format!(
            "/ws/v1/whiteboards/{}?ticket={ticket}",
            Uuid::now_v7()
        ))
        .await;
    assert_eq!(ws_close_code(&mut ws).await, Some(4404));
    // A task is not a whiteboard.
    let task = server.task(&server.admin, b.project, "t").await;
    let ticket = server.ticket(&b.member).await;
    let mut ws = server
        .ws(&format!(
            "/ws/v1/whiteboards/{}?ticket={ticket}",
            task["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(ws_close_code(&mut ws).await, Some(4404));
    let (_, outsider) = server.new_user("outsider").await;
    let ticket = server.ticket(&outsider).await;
    let mut ws = server
        .ws(&format!("/ws/v1/whiteboards/{}?ticket={ticket}", b.id))
        .await;
    assert_eq!(ws_close_code(&mut ws).await, Some(4403));
    // A spent ticket (spent by a socket that has joined: it got its sync step 1).
    let ticket = server.ticket(&b.member).await;
    let mut first = server
        .ws(&format!("/ws/v1/whiteboards/{}?ticket={ticket}", b.id))
        .await;
    let joined = tokio::time::timeout(GUARD, first.next()).await.unwrap();
    assert!(matches!(joined, Some(Ok(Message::Binary(_)))), "{joined:?}");
    let mut again = server
        .ws(&format!("/ws/v1/whiteboards/{}?ticket={ticket}", b.id))
        .await;
    let code = ws_close_code(&mut again).await;
    assert_eq!(code, Some(4401));
    drop(first);
}

/// Far below the 30 s after which a connection reads its access from the store anyway
/// (`ACCESS_EVERY`): a close within it came from the eviction itself. A bound, not a timing.
const EVICTED_WITHIN: Duration = Duration::from_secs(10);

async fn closed_on_eviction(ws: &mut Ws, what: &str) -> Option<u16> {
    tokio::time::timeout(EVICTED_WITHIN, ws_close_code(ws))
        .await
        .unwrap_or_else(|_| panic!("{what}: still open {EVICTED_WITHIN:?} after the change"))
}

/// Sends an update keyed `key` from `editor`: whether the editor got the auth message
/// (permission denied) or `witness` got the update relayed.
async fn edit(editor: &mut Ws, witness: &mut Ws, key: &str) -> bool {
    editor.send(whiteboard_update(key)).await.unwrap();
    let relayed = |message: &Message| matches!(message, Message::Binary(b) if b.starts_with(&[0, 2]) && b.windows(key.len()).any(|w| w == key.as_bytes()));
    loop {
        let (message, from_editor) = tokio::time::timeout(GUARD, async {
            tokio::select! {
                m = editor.next() => (m, true),
                m = witness.next() => (m, false),
            }
        })
        .await
        .expect("an answer in time");
        let message = message.expect("a frame").expect("a frame");
        match &message {
            Message::Binary(b) if from_editor && b.starts_with(&[2, 0]) => return false,
            m if !from_editor && relayed(m) => return true,
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

/// Edits (keys `{prefix}-0`, `-1`, …) until one is relayed (`relayed`) or refused (not): a role
/// change reaches the socket a moment after its PATCH answered. The key of that edit.
async fn edit_until(editor: &mut Ws, witness: &mut Ws, prefix: &str, relayed: bool) -> String {
    let deadline = tokio::time::Instant::now() + EVICTED_WITHIN;
    for attempt in 0.. {
        let key = format!("{prefix}-{attempt}");
        if edit(editor, witness, &key).await == relayed {
            return key;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{prefix}: the role change never reached the socket"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_access_or_the_board_while_connected_closes_with_4403_and_a_demotion_stops_edits() {
    let server = TestServer::start_relaxed().await;
    let b = board(&server).await;
    let members = format!("/api/v1/projects/{}/members", b.project);
    let mut users = Vec::new();
    for name in ["removed", "logged-out", "deactivated", "demoted", "witness"] {
        let (id, token) = server.new_user(name).await;
        let membership = server.new_member(b.project, id, 100).await;
        users.push((id, token, membership));
    }
    let mut sockets = Vec::new();
    for (_, token, _) in &users {
        sockets.push(server.ws_whiteboard(&b.id, token).await);
    }
    let [removed, logged_out, deactivated, demoted, witness] = &mut sockets[..] else {
        unreachable!()
    };

    // Removed from the project.
    let (status, _) = server
        .delete(&format!("{members}/{}", users[0].2), &server.admin)
        .await;
    assert!(status.is_success());
    assert_eq!(closed_on_eviction(removed, "removed").await, Some(4403));

    // The ticket's session logged out.
    let (status, _) = server
        .call(
            reqwest::Method::POST,
            "/api/v1/auth/logout",
            Some(&users[1].1),
            None,
        )
        .await;
    assert!(status.is_success());
    assert_eq!(
        closed_on_eviction(logged_out, "logged out").await,
        Some(4403)
    );

    // The account deactivated.
    let (status, _) = server
        .patch(
            &format!("/api/v1/users/{}", users[2].0),
            &server.admin,
            json!({"is_active": false}),
        )
        .await;
    assert!(status.is_success());
    assert_eq!(
        closed_on_eviction(deactivated, "deactivated").await,
        Some(4403)
    );

    // Demoted to Viewer: still connected, its edits refused and relayed to nobody; promoted
    // again, it edits again.
    let role = |level: i64| json!({ "role": level });
    let (status, body) = server
        .patch(&format!("{members}/{}", users[3].2), &server.admin, role(1))
        .await;
    assert!(status.is_success(), "{body}");
    let refused = edit_until(demoted, witness, "as-viewer", false).await;
    let (status, body) = server
        .patch(
            &format!("{members}/{}", users[3].2),
            &server.admin,
            role(100),
        )
        .await;
    assert!(status.is_success(), "{body}");
    edit_until(demoted, witness, "as-member", true).await;
    // Nothing the Viewer sent was stored.
    let (status, content) = server
        .get(
            &format!(
                "/api/v1/projects/{}/whiteboards/{}/content",
                b.project, b.id
            ),
            &users[4].1,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(content.to_string().contains("as-member-"), "{content}");
    assert!(!content.to_string().contains(&refused), "{content}");

    // The board deleted: its sockets close too.
    let (status, body) = server
        .delete(
            &format!("/api/v1/projects/{}/whiteboards/{}", b.project, b.id),
            &server.admin,
        )
        .await;
    assert!(status.is_success(), "{body}");
    for (socket, what) in [(demoted, "demoted"), (witness, "witness")] {
        assert_eq!(closed_on_eviction(socket, what).await, Some(4403));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_restore_as_a_change_that_reaches_clients_and_late_joiners() {
    let Some((server, b, mut d)) = start().await else {
        return;
    };
    let path = format!("/api/v1/projects/{}/whiteboards/{}", b.project, b.id);
    d.open(&server, "a", &b.id, &b.member).await;
    d.cmd(json!({"cmd": "element", "client": "a", "key": "keep", "fields": {"z": "a", "x": 1}, "text": "v1"}))
        .await;
    d.cmd(json!({"cmd": "meta", "client": "a", "key": "title", "value": "first"}))
        .await;
    // Stored once the server has it: wait until the content shows it.
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let (_, content) = server.get(&format!("{path}/content"), &b.member).await;
        if content["meta"]["title"] == "first" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never stored: {content}"
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let (status, snapshot) = server
        .post(
            &format!("{path}/snapshots"),
            &b.member,
            json!({"name": "v1"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{snapshot}");
    assert_eq!(snapshot["name"], "v1");
    let (status, body) = server
        .post(&format!("{path}/snapshots"), &b.member, json!({"name": ""}))
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    d.cmd(json!({"cmd": "field", "client": "a", "key": "keep", "field": "x", "value": 2}))
        .await;
    d.cmd(json!({"cmd": "element", "client": "a", "key": "later", "fields": {"z": "b"}}))
        .await;
    d.cmd(json!({"cmd": "meta", "client": "a", "key": "title", "value": "second"}))
        .await;
    d.open(&server, "b", &b.id, &b.member).await;
    d.until("b", |s| has(s, "later") && s["meta"]["title"] == "second")
        .await;
    let (_, list) = server.get(&format!("{path}/snapshots"), &b.viewer).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], snapshot["id"]);
    let sid = snapshot["id"].as_str().unwrap();
    let (status, body) = server
        .post(
            &format!("{path}/snapshots/{sid}/restore"),
            &b.viewer,
            json!({}),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = server
        .post(
            &format!("{path}/snapshots/{}/restore", Uuid::now_v7()),
            &b.member,
            json!({}),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, restored) = server
        .post(
            &format!("{path}/snapshots/{sid}/restore"),
            &b.member,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{restored}");
    assert_eq!(restored["meta"]["title"], "first");
    assert_eq!(restored["elements"].as_array().unwrap().len(), 1);
    // Connected clients receive it as a change…
    for client in ["a", "b"] {
        let s = d
            .until(client, |s| {
                !has(s, "later") && s["meta"]["title"] == "first"
            })
            .await;
        assert_eq!(field(&s, "keep", "x"), 1);
        assert_eq!(field(&s, "keep", "text"), "v1");
    }
    // …and so does a later join.
    d.open(&server, "late", &b.id, &b.member).await;
    let late = d.state("late").await;
    assert!(
        !has(&late, "later") && field(&late, "keep", "x") == 1,
        "{late}"
    );
    assert_eq!(late["meta"]["title"], "first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_two_nodes_converge() {
    if !npm_ready().await {
        return;
    }
    let cluster = Cluster::start(2).await;
    let (one, two) = (cluster.node(0), cluster.node(1));
    let b = board(one).await;
    let mut d = Driver::start().await;
    d.open(one, "a", &b.id, &b.member).await;
    d.open(two, "b", &b.id, &b.member).await;
    d.cmd(json!({"cmd": "element", "client": "a", "key": "from-one", "fields": {"z": "a"}}))
        .await;
    d.until("b", |s| has(s, "from-one")).await;
    d.cmd(json!({"cmd": "element", "client": "b", "key": "from-two", "fields": {"z": "b"}}))
        .await;
    d.cmd(json!({"cmd": "field", "client": "b", "key": "from-one", "field": "x", "value": 4}))
        .await;
    d.until("a", |s| {
        has(s, "from-two") && field(s, "from-one", "x") == 4
    })
    .await;
    // Concurrent writers on both nodes: every update reaches both sides.
    for n in 0..10 {
        d.cmd(
            json!({"cmd": "element", "client": "a", "key": format!("a{n}"), "fields": {"z": "c"}}),
        )
        .await;
        d.cmd(
            json!({"cmd": "element", "client": "b", "key": format!("b{n}"), "fields": {"z": "c"}}),
        )
        .await;
    }
    let a = d.until("a", |s| has(s, "b9") && has(s, "a9")).await;
    let b_state = d.until("b", |s| has(s, "a9") && has(s, "b9")).await;
    assert_eq!(a["elements"], b_state["elements"]);
    assert_eq!(a["elements"].as_object().unwrap().len(), 22);
}

/// Cursors cross nodes: a state set on one node reaches the other node's clients, a board
/// opened later on the other node asks for the states already there, and a client that goes
/// away (cleanly, or its process killed) is removed on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_cross_nodes() {
    if !npm_ready().await {
        return;
    }
    let cluster = Cluster::start(2).await;
    let (one, two) = (cluster.node(0), cluster.node(1));
    let b = board(one).await;
    let mut d = Driver::start().await;
    d.open(one, "a", &b.id, &b.member).await;
    d.cmd(json!({"cmd": "awareness", "client": "a", "state": {"user": {"name": "Ann"}, "cursor": {"x": 1, "y": 2}}}))
        .await;
    // The board is not open on node two yet: its first client gets Ann from node one.
    d.open(two, "watcher", &b.id, &b.viewer).await;
    d.until("watcher", |s| sees_peer(s, "Ann")).await;
    // And the other way, live.
    d.cmd(json!({"cmd": "awareness", "client": "watcher", "state": {"user": {"name": "Vic"}}}))
        .await;
    d.until("a", |s| sees_peer(s, "Vic")).await;
    // A cursor that moves on node one moves on node two.
    d.cmd(json!({"cmd": "awareness", "client": "a", "state": {"user": {"name": "Ann"}, "cursor": {"x": 9, "y": 9}}}))
        .await;
    d.until("watcher", |s| {
        s["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["user"]["name"] == "Ann" && p["cursor"]["x"] == 9)
    })
    .await;
    // A clean close on node one removes Ann on node two.
    d.cmd(json!({"cmd": "destroy", "client": "a"})).await;
    d.until("watcher", |s| !sees_peer(s, "Ann")).await;
    // A client whose process dies on node one, without a close frame.
    let mut other = Driver::start().await;
    other.open(one, "k", &b.id, &b.member).await;
    other
        .cmd(json!({"cmd": "awareness", "client": "k", "state": {"user": {"name": "Kim"}}}))
        .await;
    d.until("watcher", |s| sees_peer(s, "Kim")).await;
    other.node.kill().await;
    d.until("watcher", |s| !sees_peer(s, "Kim")).await;
}

/// Whether a client's state shows another client named `name`.
fn sees_peer(state: &Value, name: &str) -> bool {
    state["peers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["user"]["name"] == name)
}

/// A node that dies leaves no cursors behind: its clients' states stop being renewed, and the
/// other nodes remove them after y-protocols' 30 s, so a client that joins later does not see
/// them. (A y-websocket client that stays 30 s times such a state out itself and sends the
/// removal; here only a raw socket, which does not, holds the board open on the survivor, and
/// every real client leaves before its own timeout: only the server can remove the state.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_cursors_expire_on_the_other_nodes() {
    if !npm_ready().await {
        return;
    }
    let cluster = Cluster::start(1).await;
    let survivor = cluster.node(0);
    let b = board(survivor).await;
    let _holder = survivor.ws_whiteboard(&b.id, &b.viewer).await;
    let mut doomed =
        cluster.spawn_binary(std::path::Path::new(env!("CARGO_BIN_EXE_liveplan")), &[]);
    let mut d = Driver::start().await;
    let ticket = survivor.ticket(&b.member).await;
    d.open_at(doomed.addr(), "kim", &b.id, &ticket).await;
    d.cmd(json!({"cmd": "awareness", "client": "kim", "state": {"user": {"name": "Kim"}}}))
        .await;
    d.open(survivor, "before", &b.id, &b.viewer).await;
    d.until("before", |s| sees_peer(s, "Kim")).await;
    d.cmd(json!({"cmd": "destroy", "client": "before"})).await;
    // Killed: no close, no removal sent. Kim's client then stops retrying the dead node.
    doomed.kill();
    let killed = tokio::time::Instant::now();
    d.cmd(json!({"cmd": "destroy", "client": "kim"})).await;
    // Still there within the timeout (a live client renews every 15 s)…
    d.open(survivor, "soon", &b.id, &b.viewer).await;
    assert!(sees_peer(&d.state("soon").await, "Kim"));
    d.cmd(json!({"cmd": "destroy", "client": "soon"})).await;
    // …and gone for a client that joins after it.
    tokio::time::sleep_until(killed + Duration::from_secs(30)).await;
    for attempt in 1.. {
        let late = format!("late{attempt}");
        d.open(survivor, &late, &b.id, &b.viewer).await;
        let seen = sees_peer(&d.state(&late).await, "Kim");
        d.cmd(json!({"cmd": "destroy", "client": late})).await;
        if !seen {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(50),
            "Kim's state was never removed"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_update_survives_a_sigkill() {
    if !npm_ready().await {
        return;
    }
    let cluster = Cluster::start(1).await;
    let survivor = cluster.node(0);
    let b = board(survivor).await;
    let mut doomed =
        cluster.spawn_binary(std::path::Path::new(env!("CARGO_BIN_EXE_liveplan")), &[]);
    let mut d = Driver::start().await;
    let ticket = survivor.ticket(&b.member).await;
    d.open_at(doomed.addr(), "writer", &b.id, &ticket).await;
    let ticket = survivor.ticket(&b.member).await;
    d.open_at(doomed.addr(), "reader", &b.id, &ticket).await;
    d.cmd(json!({"cmd": "element", "client": "writer", "key": "kept", "fields": {"z": "a"}}))
        .await;
    // The other client has it: the update was stored before it was sent. Kill at once.
    d.until("reader", |s| has(s, "kept")).await;
    doomed.kill();
    d.open(survivor, "after", &b.id, &b.member).await;
    d.until("after", |s| has(s, "kept")).await;
}

/// y-websocket closes a connection that received nothing for 30 s. A client with no awareness
/// state of its own sends nothing while idle, so only the server's keepalive holds it open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_client_is_kept_past_35_seconds() {
    let Some((server, b, mut d)) = start().await else {
        return;
    };
    d.open(&server, "idle", &b.id, &b.member).await;
    d.cmd(json!({"cmd": "awareness", "client": "idle", "state": null}))
        .await;
    tokio::time::sleep(Duration::from_secs(36)).await;
    let state = d.state("idle").await;
    assert_eq!(state["connected"], true);
    assert!(
        !d.node.seen
            .iter()
            .any(|e| e["type"] == "close" || e["type"] == "status" && e["status"] == "disconnected"),
        "the idle client was dropped: {:?}",
        d.node.seen
    );
    // And it still receives edits.
    d.open(&server, "writer", &b.id, &b.member).await;
    d.cmd(json!({"cmd": "element", "client": "writer", "key": "e", "fields": {"z": "a"}}))
        .await;
    d.until("idle", |s| has(s, "e")).await;
}
