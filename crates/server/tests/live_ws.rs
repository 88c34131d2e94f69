//! The native WebSocket (CONTRACT §6) over real sockets: refusals and their close codes, tickets,
//! the envelope, replay and resync, presence, and bad client frames.

use futures::SinkExt;
use liveplan_testkit::*;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

async fn latest(server: &TestServer, project: Uuid) -> i64 {
    server.log_seqs(project).await.last().copied().unwrap_or(0)
}

#[tokio::test]
async fn refusals_are_close_codes_after_the_upgrade() {
    let server = TestServer::start_relaxed().await;
    let project = server.new_project("Refusals").await;
    let (member, member_token) = server.new_user("member").await;
    server.new_member(project, member, 100).await;
    let (viewer, viewer_token) = server.new_user("viewer").await;
    server.new_member(project, viewer, 1).await;
    let (_, outsider_token) = server.new_user("outsider").await;
    let base = format!("/ws/v1/projects/{project}/");

    // 4001: no ticket, an unknown (forged) one, and the legacy token without its flag.
    let mut ws = server.ws(&base).await;
    assert_eq!(ws_close_code(&mut ws).await, Some(4001));
    let forged = "A".repeat(43);
    let mut ws = server.ws(&format!("{base}?ticket={forged}")).await;
    assert_eq!(ws_close_code(&mut ws).await, Some(4001));
    let mut ws = server.ws(&format!("{base}?token={member_token}")).await;
    assert_eq!(ws_close_code(&mut ws).await, Some(4001));

    // A ticket works once: the second use is spent.
    let ticket = server.ticket(&member_token).await;
    let mut first = server.ws(&format!("{base}?ticket={ticket}")).await;
    let join = ws_json(&mut first).await;
    assert_eq!(join["event_type"], "presence_join");
    let mut again = server.ws(&format!("{base}?ticket={ticket}")).await;
    assert_eq!(ws_close_code(&mut again).await, Some(4001));

    // An expired ticket (stored with a lifetime already over).
    let sid = server.state().tokens.verify(&member_token).unwrap().sid;
    let (secret, hash) = liveplan_server::auth::tickets::mint();
    server
        .state()
        .domain
        .store_ticket(member, sid, hash, chrono::Duration::seconds(-1))
        .await
        .unwrap();
    let mut ws = server.ws(&format!("{base}?ticket={secret}")).await;
    assert_eq!(ws_close_code(&mut ws).await, Some(4001));

    // A ticket whose session logged out before it was used.
    let (_, short_lived) = server.new_user("short").await;
    let orphan = server.ticket(&short_lived).await;
    server
        .ok(Method::POST, &short_lived, "/api/v1/auth/logout", json!({}))
        .await;
    let mut ws = server.ws(&format!("{base}?ticket={orphan}")).await;
    assert_eq!(ws_close_code(&mut ws).await, Some(4001));

    // 4003: a Viewer, an outsider, a project that does not exist, an id that cannot exist.
    for token in [&viewer_token, &outsider_token] {
        let mut ws = server.ws_project(token, project, None).await;
        assert_eq!(ws_close_code(&mut ws).await, Some(4003));
    }
    let mut ws = server.ws_project(&member_token, Uuid::now_v7(), None).await;
    assert_eq!(ws_close_code(&mut ws).await, Some(4003));
    let ticket = server.ticket(&member_token).await;
    let mut ws = server
        .ws(&format!("/ws/v1/projects/not-an-id?ticket={ticket}"))
        .await;
    assert_eq!(ws_close_code(&mut ws).await, Some(4003));

    // 4404: unknown WebSocket paths, also under a valid prefix; without the slash works too.
    for path in ["/ws/v2/nothing", "/ws", &format!("{base}extra")] {
        let mut ws = server.ws(path).await;
        assert_eq!(ws_close_code(&mut ws).await, Some(4404), "{path}");
    }
    let ticket = server.ticket(&member_token).await;
    let mut ws = server
        .ws(&format!(
            "/ws/v1/projects/{project}?ticket={ticket}&since=0"
        ))
        .await;
    let frame = ws_event(&mut ws).await;
    assert_eq!(
        (frame["seq"].as_i64(), &frame["replayed"]),
        (Some(1), &json!(true))
    );

    // A plain GET is a JSON error, not a hang.
    let (status, body) = server
        .call(Method::GET, &base, Some(&member_token), None)
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["code"].is_string());
}

#[tokio::test]
async fn legacy_token_auth_only_with_its_flag() {
    let server = TestServer::start_relaxed_with(|c| c.live.ws_legacy_token_auth = true).await;
    let project = server.new_project("Legacy").await;
    let (member, token) = server.new_user("legacy").await;
    server.new_member(project, member, 100).await;
    let mut ws = server
        .ws(&format!("/ws/v1/projects/{project}/?token={token}"))
        .await;
    assert_eq!(ws_json(&mut ws).await["event_type"], "presence_join");
    let mut ws = server
        .ws(&format!(
            "/ws/v1/projects/{project}/?token=forged.jwt.value"
        ))
        .await;
    assert_eq!(ws_close_code(&mut ws).await, Some(4001));
}

#[tokio::test]
async fn one_ticket_raced_by_two_sockets_admits_exactly_one() {
    let server = TestServer::start_relaxed().await;
    let project = server.new_project("Race").await;
    let (member, token) = server.new_user("racer").await;
    server.new_member(project, member, 100).await;
    for _ in 0..8 {
        let ticket = server.ticket(&token).await;
        let path = format!("/ws/v1/projects/{project}/?ticket={ticket}");
        let attempt = |path: String| {
            let addr = server.addr();
            async move {
                let mut ws = ws_connect(addr, &path).await;
                let outcome = ws_next(&mut ws).await;
                (outcome, ws)
            }
        };
        let ((a, _wa), (b, _wb)) = tokio::join!(attempt(path.clone()), attempt(path));
        let admitted = [&a, &b]
            .iter()
            .filter(|o| matches!(o, WsNext::Json(v) if v["event_type"] == "presence_join"))
            .count();
        let refused = [&a, &b]
            .iter()
            .filter(|o| **o == &WsNext::Closed(Some(4001)))
            .count();
        assert_eq!((admitted, refused), (1, 1), "{a:?} / {b:?}");
    }
}

#[tokio::test]
async fn envelope_replay_live_and_resync() {
    let server = TestServer::start_relaxed().await;
    let project = server.new_project("Envelope").await;
    let (member, token) = server.new_user("env").await;
    server.new_member(project, member, 100).await;
    for i in 0..3 {
        server.task(&token, project, &format!("t{i}")).await;
    }
    let log = server.log_seqs(project).await;
    assert_eq!(log, vec![1, 2, 3, 4, 5]);

    // since=1: seqs 2..=5 replayed, in order, then live.
    let mut ws = server.ws_project(&token, project, Some(1)).await;
    for seq in 2..=5 {
        let frame = ws_event(&mut ws).await;
        assert_eq!(frame["protocol_version"], 1);
        assert_eq!(frame["seq"], seq);
        assert_eq!(frame["replayed"], true, "{frame}");
    }
    let created = server
        .http
        .post(server.url(&format!("/api/v1/projects/{project}/tasks")))
        .bearer_auth(&token)
        .header("X-Tab-Id", "tab-7")
        .json(&json!({"name": "live"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let frame = ws_event(&mut ws).await;
    assert_eq!(frame["event_type"], "task_created");
    assert_eq!(frame["seq"], 6);
    assert_eq!(frame["tab_id"], "tab-7");
    assert!(frame.get("replayed").is_none(), "{frame}");
    assert!(frame["payload"]["id"].is_string());

    // Garbage, negative and future positions are answered with resync_required, then live;
    // so is a blank `since=` (the client meant a position; none at all is live from now).
    for since in ["abc", "-3", "999", "1e3", "", "%20"] {
        let ticket = server.ticket(&token).await;
        let mut ws = server
            .ws(&format!(
                "/ws/v1/projects/{project}/?ticket={ticket}&since={since}"
            ))
            .await;
        let frame = ws_event(&mut ws).await;
        assert_eq!(
            frame,
            json!({"protocol_version": 1, "event_type": "resync_required", "payload": {"latest_seq": 6}, "seq": null}),
            "since={since}"
        );
    }
    // since at the head: the next write arrives, whether it committed before the server
    // subscribed (then it is a replayed answer to since) or after (live).
    let mut ws = server.ws_project(&token, project, Some(6)).await;
    server.task(&token, project, "next").await;
    let frame = ws_event(&mut ws).await;
    assert_eq!(frame["seq"], 7);
}

async fn roster(server: &TestServer, token: &str, project: Uuid) -> Vec<serde_json::Value> {
    let (status, body) = server
        .call(
            Method::GET,
            &format!("/api/v1/projects/{project}/presence/"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body.as_array().unwrap().clone()
}

/// Waits for the roster to show `user` with `connections` (0: absent). The roster changes
/// inside the server without a client-visible event, so this polls, bounded by the guard.
async fn roster_shows(
    server: &TestServer,
    token: &str,
    project: Uuid,
    user: Uuid,
    connections: u64,
) {
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let entries = roster(server, token, project).await;
        let count = entries
            .iter()
            .find(|e| e["user_id"] == json!(user))
            .map_or(0, |e| e["connections"].as_u64().unwrap());
        if count == connections {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "roster {entries:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn presence_counts_tabs_and_does_not_flap() {
    let server = TestServer::start_relaxed().await;
    let project = server.new_project("Presence").await;
    let (watcher, watcher_token) = server.new_user("Watcher").await;
    server.new_member(project, watcher, 100).await;
    let (ada, ada_token) = server.new_user("Ada").await;
    server.new_member(project, ada, 100).await;
    let (_, outsider) = server.new_user("Outsider").await;

    let head = latest(&server, project).await;
    let mut observer = server.ws_project(&watcher_token, project, Some(head)).await;
    let own = ws_json(&mut observer).await;
    assert_eq!(own["event_type"], "presence_join");
    assert_eq!(own["payload"]["user_id"], json!(watcher));

    let mut tab1 = server.ws_project(&ada_token, project, Some(head)).await;
    let mut tab2 = server.ws_project(&ada_token, project, Some(head)).await;
    // Both tabs are subscribed once each has seen a write made after it connected.
    server.task(&watcher_token, project, "sync").await;
    for tab in [&mut tab1, &mut tab2] {
        assert_eq!(ws_event(tab).await["event_type"], "task_created");
    }
    roster_shows(&server, &watcher_token, project, ada, 2).await;
    let entries = roster(&server, &ada_token, project).await;
    let entry = entries.iter().find(|e| e["user_id"] == json!(ada)).unwrap();
    assert_eq!(entry["display_name"], "Ada");
    // The roster is for members only; without the slash it answers too.
    let (status, _) = server
        .call(
            Method::GET,
            &format!("/api/v1/projects/{project}/presence"),
            Some(&outsider),
            None,
        )
        .await;
    assert_eq!(status, 404);

    tab1.close(None).await.unwrap();
    roster_shows(&server, &watcher_token, project, ada, 1).await;
    tab2.close(None).await.unwrap();
    roster_shows(&server, &watcher_token, project, ada, 0).await;
    server.task(&watcher_token, project, "end").await;

    // The observer saw exactly one join and one leave for Ada, whatever the tabs did.
    let mut seen = Vec::new();
    loop {
        let frame = ws_json(&mut observer).await;
        let kind = frame["event_type"].as_str().unwrap().to_owned();
        if kind.starts_with("presence_") {
            assert_eq!(frame["seq"], serde_json::Value::Null);
            assert_eq!(frame["payload"]["user_id"], json!(ada));
            assert_eq!(frame["payload"]["display_name"], "Ada");
            seen.push(kind);
        } else if kind == "task_created" && seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen, vec!["presence_join", "presence_leave"]);
}

#[tokio::test]
async fn bad_client_frames() {
    let server = TestServer::start_relaxed_with(|c| {
        c.live.ws_frames_per_second = 1;
        c.live.ws_frame_burst = 10;
    })
    .await;
    let project = server.new_project("Frames").await;
    let (member, token) = server.new_user("framer").await;
    server.new_member(project, member, 100).await;
    let head = latest(&server, project).await;

    // Non-JSON and non-object text: an error frame, and the socket stays open.
    let mut ws = server.ws_project(&token, project, Some(head)).await;
    assert_eq!(ws_json(&mut ws).await["event_type"], "presence_join");
    for bad in ["not json", "[1,2]", "42"] {
        ws_send(&mut ws, Message::text(bad)).await;
        let reply = ws_json(&mut ws).await;
        assert_eq!(reply["event_type"], "error", "{bad}");
        assert_eq!(reply["payload"]["code"], "invalid_frame");
    }
    ws_send(&mut ws, Message::text(r#"{"type":"ping"}"#)).await;
    assert_eq!(ws_json(&mut ws).await["event_type"], "pong");

    // Larger than 64 KiB: 1009.
    let mut ws = server.ws_project(&token, project, Some(head)).await;
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(64 * 1024));
    ws_send(&mut ws, Message::text(big)).await;
    assert_eq!(ws_close_code(&mut ws).await, Some(1009));

    // Exactly 64 KiB is fine.
    let mut ws = server.ws_project(&token, project, Some(head)).await;
    let pad = 64 * 1024 - r#"{"pad":""}"#.len();
    ws_send(
        &mut ws,
        Message::text(format!("{{\"pad\":\"{}\"}}", "x".repeat(pad))),
    )
    .await;
    ws_send(&mut ws, Message::text(r#"{"type":"ping"}"#)).await;
    loop {
        let frame = ws_json(&mut ws).await;
        if frame["event_type"] == "pong" {
            break;
        }
    }

    // Binary: 1003.
    let mut ws = server.ws_project(&token, project, Some(head)).await;
    ws_send(&mut ws, Message::binary(vec![1u8, 2, 3])).await;
    assert_eq!(ws_close_code(&mut ws).await, Some(1003));

    // Flooding (here 1 frame/s, bursts of 10): 1008.
    let mut ws = server.ws_project(&token, project, Some(head)).await;
    for _ in 0..50 {
        if ws.send(Message::text("{}")).await.is_err() {
            break;
        }
    }
    assert_eq!(ws_close_code(&mut ws).await, Some(1008));
}

/// A raw client that never answers pings: the server pings, and after two unanswered pings
/// closes with 1008. The server's clock is a manual one (liveplan-testkit's "Time"): each ping
/// interval passes when the test moves the clock by it. The interval is longer than the read
/// guard, so pings that came in real time would fail the test.
#[tokio::test]
async fn two_missed_pongs_close_the_socket() {
    let ping_interval = 2 * GUARD;
    let server = TestServer::start_relaxed_with(|c| {
        c.live.ws_ping_interval = ping_interval;
        c.clock = Clock::manual();
    })
    .await;
    let project = server.new_project("Pings").await;
    let (member, token) = server.new_user("silent").await;
    server.new_member(project, member, 100).await;
    let ticket = server.ticket(&token).await;
    let path = format!("/ws/v1/projects/{project}/?ticket={ticket}");
    let mut tcp = raw_upgrade(server.addr(), &path).await;
    let (pings, close_code) = pings_until_close(&server, &mut tcp, ping_interval).await;
    assert_eq!(close_code, 1008);
    assert_eq!(pings, 2);
}

/// More than 1000 missing events cannot be replayed: one resync_required, then live, on both
/// the native socket and SSE. A client ping is answered, and a client close is answered with a
/// clean close.
#[tokio::test]
async fn too_far_behind_resyncs_and_control_frames_are_answered() {
    let server = TestServer::start_relaxed().await;
    let project = server.new_project("Far").await;
    let (member, token) = server.new_user("far").await;
    server.new_member(project, member, 100).await;
    let state = server.state().clone();
    let actor = admin_actor(&state.domain).await;
    let tasks = domain::collections::by_name("tasks").unwrap();
    for i in 0..1001 {
        state
            .domain
            .create_record(&actor, project, tasks, &json!({"name": format!("t{i}")}))
            .await
            .unwrap();
    }
    let latest = 2 + 1001;
    let mut ws = server.ws_project(&token, project, Some(1)).await;
    let frame = ws_event(&mut ws).await;
    assert_eq!(frame["event_type"], "resync_required");
    assert_eq!(frame["payload"]["latest_seq"], latest);
    // Exactly 1000 behind still replays.
    let mut replay = server
        .ws_project(&token, project, Some(latest - 1000))
        .await;
    let frame = ws_event(&mut replay).await;
    assert_eq!(
        (frame["seq"].as_i64(), &frame["replayed"]),
        (Some(latest - 999), &json!(true))
    );
    let mut sse = server
        .sse(
            &token,
            &format!("/api/v1/projects/{project}/events"),
            Some(1),
        )
        .await;
    sse.data().await.unwrap();
    assert_eq!(
        sse.event().await.unwrap().json(),
        json!({"type": "resync_required", "data": {"latest_seq": latest}})
    );
    server.task(&token, project, "live").await;
    let frame = ws_event(&mut ws).await;
    assert_eq!(frame["seq"], latest + 1);
    assert_eq!(
        sse.event().await.unwrap().id,
        Some((latest + 1).to_string())
    );

    // Control frames: a ping gets its pong without waiting for an event; a close its answer.
    ws_send(&mut ws, Message::Ping(b"hi".to_vec().into())).await;
    loop {
        let message = tokio::time::timeout(GUARD, futures::StreamExt::next(&mut ws))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Pong(payload) = message {
            assert_eq!(&payload[..], b"hi");
            break;
        }
    }
    ws.close(None).await.unwrap();
    let reply = tokio::time::timeout(GUARD, futures::StreamExt::next(&mut ws))
        .await
        .unwrap();
    assert!(
        matches!(reply, Some(Ok(Message::Close(_)))),
        "a clean close answer, not a dropped connection: {reply:?}"
    );
}

/// Sends a raw HTTP/1.1 request and returns the response head and whatever body followed.
async fn raw_request(server: &TestServer, request: String) -> String {
    let mut tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // Until the head (and a short body, if any) arrived; a 101 keeps the socket open.
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n")
        || (!got.starts_with(b"HTTP/1.1 101") && !String::from_utf8_lossy(&got).ends_with('}'))
    {
        match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// The native endpoint answers the WebSocket handshake itself: the RFC 6455 accept key for a
/// good request, a JSON 400 (and no upgrade) for each way a handshake can be wrong.
#[tokio::test]
async fn the_handshake_is_checked_and_answered_by_the_rfc() {
    let server = TestServer::start_relaxed().await;
    let project = server.new_project("Handshake").await;
    let path = format!("/ws/v1/projects/{project}/");
    let request = |method: &str, headers: &[&str]| {
        let mut text = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        for header in headers {
            text.push_str(header);
            text.push_str("\r\n");
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        text
    };
    // RFC 6455 §1.3's example key and its accept value.
    let good = [
        "Connection: keep-alive, Upgrade",
        "Upgrade: websocket",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    ];
    let answer = raw_request(&server, request("GET", &good)).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{answer}"
    );
    let bad: [(&str, Vec<&str>); 5] = [
        ("POST", good.to_vec()),
        ("GET", vec![good[0], good[1], good[2]]),
        (
            "GET",
            vec![good[0], good[1], "Sec-WebSocket-Version: 8", good[3]],
        ),
        (
            "GET",
            vec!["Connection: keep-alive", good[1], good[2], good[3]],
        ),
        ("GET", vec![good[0], "Upgrade: h2c", good[2], good[3]]),
    ];
    for (method, headers) in bad {
        let answer = raw_request(&server, request(method, &headers)).await;
        assert!(
            answer.starts_with("HTTP/1.1 4"),
            "{method} {headers:?}: {answer}"
        );
        assert!(!answer.starts_with("HTTP/1.1 101"));
        if method == "GET" {
            assert!(answer.starts_with("HTTP/1.1 400"), "{headers:?}: {answer}");
            assert!(
                answer.contains("\"invalid_request\""),
                "{headers:?}: {answer}"
            );
        }
    }
}
