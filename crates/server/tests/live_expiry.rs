//! A login session that reaches its expiry ends its live connections like a logout: the native
//! WebSocket closes with 4003, the SSE stream ends, the Bryntum socket closes with 4003, and none
//! of them gets an event committed after the expiry, idle or busy.

use base64::Engine;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use liveplan_testkit::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// Long enough for the setup below to finish well inside it on a loaded machine.
const SESSION_TTL: Duration = Duration::from_secs(5);

/// The session's expiry as the token states it (whole seconds, rounded down): the session
/// ends at or after it and strictly before one second later.
fn token_expiry(token: &str) -> DateTime<Utc> {
    let claims = token.split('.').nth(1).expect("a JWT");
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .expect("base64url claims");
    let claims: Value = serde_json::from_slice(&claims).expect("JSON claims");
    DateTime::from_timestamp(claims["exp"].as_i64().expect("exp"), 0).expect("a time")
}

/// Every string under an `id` key, anywhere in `value`.
fn ids(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, inner) in object {
                match (key.as_str(), inner) {
                    ("id", Value::String(id)) => out.push(id.clone()),
                    _ => ids(inner, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| ids(item, out)),
        _ => {}
    }
}

/// When each task the writer made was created, by id.
type Created = Arc<Mutex<HashMap<String, DateTime<Utc>>>>;

/// Commits a task every 50 ms as the administrator (logging in again whenever that session
/// expires too) until told to stop; remembers when each task was created.
fn spawn_writer(
    server: &TestServer,
    project: Uuid,
    stop: Arc<AtomicBool>,
) -> (tokio::task::JoinHandle<()>, Created) {
    let created: Created = Arc::default();
    let http = server.http.clone();
    let base = server.url("");
    let record = created.clone();
    let handle = tokio::spawn(async move {
        let login = || async {
            let body: Value = http
                .post(format!("{base}/api/v1/auth/login"))
                .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body["access_token"].as_str().unwrap().to_owned()
        };
        let mut token = login().await;
        let mut n = 0;
        while !stop.load(Ordering::Acquire) {
            n += 1;
            let response = http
                .post(format!("{base}/api/v1/projects/{project}/tasks"))
                .bearer_auth(&token)
                .json(&json!({"name": format!("w{n}")}))
                .send()
                .await
                .unwrap();
            if response.status() == 401 {
                token = login().await;
                continue;
            }
            assert!(response.status().is_success(), "{}", response.status());
            let task: Value = response.json().await.unwrap();
            let at = DateTime::parse_from_rfc3339(task["created_at"].as_str().unwrap())
                .unwrap()
                .with_timezone(&Utc);
            record
                .lock()
                .unwrap()
                .insert(task["id"].as_str().unwrap().to_owned(), at);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    (handle, created)
}

/// The three live connections a session holds: the native WebSocket, an SSE stream and a
/// Bryntum socket, each on `project` and past its greeting.
struct Connections {
    ws: Ws,
    sse: SseReader,
    bryntum: liveplan_testkit::bryntum::Client,
}

async fn open_connections(server: &TestServer, token: &str, project: Uuid) -> Connections {
    // The socket is admitted after its upgrade: without `since`, an event committed before its
    // subscription would be missed (the SSE stream's `connected` and Bryntum's dataset come
    // after theirs).
    let head = server.log_seqs(project).await.last().copied().unwrap_or(0);
    let ws = server.ws_project(token, project, Some(head)).await;
    let mut sse = server
        .sse(token, &format!("/api/v1/projects/{project}/events"), None)
        .await;
    assert_eq!(sse.data().await.unwrap().json()["type"], "connected");
    let mut bryntum = liveplan_testkit::bryntum::Client::connect(&server.url("")).await;
    let ticket = server.ticket(token).await;
    bryntum
        .send(json!({"command": "login", "data": {"ticket": ticket}}))
        .await;
    let answer = bryntum.recv_command("login").await;
    assert!(answer.get("error").is_none(), "{answer}");
    bryntum.dataset(json!(project.to_string())).await;
    Connections { ws, sse, bryntum }
}

/// What each connection saw until it ended: the ids of the tasks created, and the close codes
/// of the two WebSockets.
struct Seen {
    ws: (Vec<String>, Option<u16>),
    sse: Vec<String>,
    bryntum: (Vec<String>, Option<u16>),
}

/// Reads the three connections to their ends, at once.
async fn read_to_end(connections: &mut Connections) -> Seen {
    let Connections { ws, sse, bryntum } = connections;
    let ws_reader = async {
        let mut seen = Vec::new();
        loop {
            match ws_next(ws).await {
                WsNext::Json(frame) => {
                    if frame["event_type"] == "task_created" {
                        seen.push(frame["payload"]["id"].as_str().unwrap().to_owned());
                    }
                }
                WsNext::Closed(code) => return (seen, code),
            }
        }
    };
    let sse_reader = async {
        let mut seen = Vec::new();
        while let Some(message) = sse.data().await {
            let message = message.json();
            if message["type"] == "ticket.created" {
                seen.push(message["data"]["id"].as_str().unwrap().to_owned());
            }
        }
        seen
    };
    let bryntum_reader = async {
        let mut seen = Vec::new();
        loop {
            let message = tokio::time::timeout(GUARD, bryntum.ws.next())
                .await
                .expect("a Bryntum message in time");
            match message {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(text.as_str()).unwrap();
                    if value["command"] == "project_change" {
                        ids(&value["data"], &mut seen);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    return (seen, frame.map(|f| u16::from(f.code)));
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return (seen, None),
            }
        }
    };
    let (ws, sse, bryntum) = tokio::join!(ws_reader, sse_reader, bryntum_reader);
    Seen { ws, sse, bryntum }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_ends_its_connections_on_every_transport() {
    let server = TestServer::start_relaxed_with(|c| c.session_ttl = SESSION_TTL).await;
    let project = server.new_project("Expiry").await;
    let (member, token) = server.new_user("expiring").await;
    server.new_member(project, member, 100).await;
    let expiry = token_expiry(&token);
    let mut connections = open_connections(&server, &token, project).await;

    // Events flow to all three until the session expires, and keep being committed after.
    let stop = Arc::new(AtomicBool::new(false));
    let (writer, created) = spawn_writer(&server, project, stop.clone());

    let Seen {
        ws: (ws_seen, ws_code),
        sse: sse_seen,
        bryntum: (bryntum_seen, bryntum_code),
    } = read_to_end(&mut connections).await;
    // The session ended before `expiry + 1 s`; let the writer get past that before it stops,
    // so the checks below cover events committed after the session had certainly expired.
    let limit = expiry + chrono::Duration::seconds(1);
    tokio::time::timeout(GUARD, async {
        while !created.lock().unwrap().values().any(|at| *at > limit) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the writer commits after the expiry");
    stop.store(true, Ordering::Release);
    writer.await.unwrap();

    assert_eq!(ws_code, Some(4003));
    assert_eq!(bryntum_code, Some(4003));
    let created = created.lock().unwrap().clone();
    for (transport, seen) in [
        ("native WebSocket", &ws_seen),
        ("SSE", &sse_seen),
        ("Bryntum", &bryntum_seen),
    ] {
        assert!(
            !seen.is_empty(),
            "{transport} got no event before the expiry"
        );
        for id in seen.iter().filter(|id| created.contains_key(*id)) {
            assert!(
                created[id] < limit,
                "{transport} got task {id} created at {} after the session expired ({expiry} + <1 s)",
                created[id]
            );
        }
    }

    // The expired session cannot open anything again.
    let (status, _) = server
        .call(
            reqwest::Method::POST,
            "/api/v1/ws/ticket/",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 401);
}

/// The real session length (12 h, CONTRACT §3) on the server's manual clock (liveplan-testkit's
/// "Time"): moving the clock past the expiry closes the idle native WebSocket and Bryntum socket
/// with 4003 and ends the idle SSE stream (the node's sweep; the test above covers the checks on
/// delivery). Nothing else moves the clock, so were the sweep on the system's clock they would
/// stay open and the read guard would fail the test.
#[tokio::test]
async fn twelve_hours_on_the_servers_clock_end_a_session_everywhere() {
    let server = TestServer::start_relaxed_with(|c| c.clock = Clock::manual()).await;
    let ttl = server.state().config.session_ttl;
    assert_eq!(ttl, Duration::from_secs(12 * 3600));
    let project = server.new_project("Twelve hours").await;
    let (member, token) = server.new_user("day-shift").await;
    server.new_member(project, member, 100).await;
    let mut connections = open_connections(&server, &token, project).await;
    let before = server.task(&server.admin, project, "before").await;

    // The clock started before the login; a minute more covers the setup in between.
    server.advance(ttl + Duration::from_secs(60));
    let seen = read_to_end(&mut connections).await;
    assert_eq!(seen.ws.1, Some(4003));
    assert_eq!(seen.bryntum.1, Some(4003));
    let before = before["id"].as_str().unwrap();
    for (transport, seen) in [
        ("native WebSocket", &seen.ws.0),
        ("SSE", &seen.sse),
        ("Bryntum", &seen.bryntum.0),
    ] {
        assert_eq!(seen, &[before], "{transport}");
    }
}
