//! The SSE front (transport/sse_front.rs) over raw TCP: a fresh connection whose first request
//! is an SSE GET is served without hyper; its framing, errors, limits and slot release; and the
//! same request after a REST call on a keep-alive connection, which hyper still serves.

use liveplan_testkit::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

struct Raw {
    reader: BufReader<TcpStream>,
}

struct Head {
    status_line: String,
    headers: HashMap<String, String>,
}

impl Raw {
    async fn connect(server: &TestServer) -> Raw {
        let tcp = TcpStream::connect(server.addr()).await.unwrap();
        Raw {
            reader: BufReader::new(tcp),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).await.unwrap();
    }

    async fn get(&mut self, path: &str, token: Option<&str>) {
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{auth}\r\n");
        self.send(request.as_bytes()).await;
    }

    async fn line(&mut self) -> String {
        let mut line = Vec::new();
        loop {
            let byte = timeout(WAIT, self.reader.read_u8())
                .await
                .expect("byte in time")
                .expect("byte");
            line.push(byte);
            if line.ends_with(b"\r\n") {
                line.truncate(line.len() - 2);
                return String::from_utf8(line).unwrap();
            }
        }
    }

    async fn head(&mut self) -> Head {
        let status_line = self.line().await;
        let mut headers = HashMap::new();
        loop {
            let line = self.line().await;
            if line.is_empty() {
                return Head {
                    status_line,
                    headers,
                };
            }
            let (name, value) = line.split_once(':').unwrap();
            headers.insert(name.to_ascii_lowercase(), value.trim().to_owned());
        }
    }

    /// One chunk's data; empty for the terminating chunk.
    async fn chunk(&mut self) -> Vec<u8> {
        let size = usize::from_str_radix(&self.line().await, 16).expect("chunk size");
        let mut data = vec![0u8; size];
        timeout(WAIT, self.reader.read_exact(&mut data))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(self.line().await, "", "chunk ends with CRLF");
        data
    }

    async fn body(&mut self, length: usize) -> Vec<u8> {
        let mut data = vec![0u8; length];
        timeout(WAIT, self.reader.read_exact(&mut data))
            .await
            .unwrap()
            .unwrap();
        data
    }

    /// The data lines of SSE messages until one whose JSON `type` is not a keepalive.
    async fn message(&mut self, pending: &mut String) -> Value {
        loop {
            if let Some(end) = pending.find("\n\n") {
                let message: String = pending.drain(..end + 2).collect();
                let data: Vec<&str> = message
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect();
                if !data.is_empty() {
                    return serde_json::from_str(&data.join("\n")).unwrap();
                }
                continue;
            }
            let chunk = self.chunk().await;
            assert!(!chunk.is_empty(), "stream ended early");
            pending.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Reads until EOF (or reset); true if it came in time.
    async fn closed(&mut self) -> bool {
        let mut sink = [0u8; 1024];
        timeout(WAIT, async {
            loop {
                match self.reader.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    }
}

#[tokio::test]
async fn front_streams_with_chunked_framing() {
    let server = TestServer::start_relaxed().await;
    let project = server.new_project("Front").await;
    let (member, token) = server.new_user("fronted").await;
    server.new_member(project, member, 1).await;

    let mut raw = Raw::connect(&server).await;
    raw.get(&format!("/api/v1/projects/{project}/events"), Some(&token))
        .await;
    let head = raw.head().await;
    assert_eq!(head.status_line, "HTTP/1.1 200 OK");
    let h = &head.headers;
    assert_eq!(h["content-type"], "text/event-stream");
    assert_eq!(h["cache-control"], "no-cache, no-transform");
    assert_eq!(h["x-accel-buffering"], "no");
    assert_eq!(h["transfer-encoding"], "chunked");
    assert_eq!(h["connection"], "close");
    assert!(h.contains_key("date"));
    assert!(!h.contains_key("content-length"));

    let mut pending = String::new();
    let connected = raw.message(&mut pending).await;
    assert_eq!(
        connected,
        json!({"type": "connected", "userId": member.to_string()})
    );
    // The stream is a live connection to the project: its user is present (CONTRACT §6).
    let joined = raw.message(&mut pending).await;
    assert_eq!(joined["type"], "presence.join", "{joined}");
    assert_eq!(joined["data"]["user_id"], member.to_string());
    server
        .http
        .post(server.url(&format!("/api/v1/projects/{project}/tasks")))
        .bearer_auth(&server.admin)
        .json(&json!({"name": "Raw slab"}))
        .send()
        .await
        .unwrap();
    let event = raw.message(&mut pending).await;
    assert_eq!(event["type"], "ticket.created", "{event}");
    assert_eq!(event["data"]["name"], "Raw slab", "{event}");
}

#[tokio::test]
async fn front_refusals_match_hyper() {
    let server = TestServer::start_relaxed().await;
    for token in [None, Some("not-a-token")] {
        // Through the front.
        let mut raw = Raw::connect(&server).await;
        raw.get("/api/v1/users/events", token).await;
        let head = raw.head().await;
        assert_eq!(head.status_line, "HTTP/1.1 401 Unauthorized");
        assert_eq!(head.headers["content-type"], "application/json");
        let length: usize = head.headers["content-length"].parse().unwrap();
        let front: Value = serde_json::from_slice(&raw.body(length).await).unwrap();
        assert!(raw.closed().await);
        // Through hyper: a keep-alive connection whose first request was something else.
        let mut raw = Raw::connect(&server).await;
        raw.get("/api/v1/nothing-here", None).await;
        let first = raw.head().await;
        let length: usize = first.headers["content-length"].parse().unwrap_or(0);
        raw.body(length).await;
        raw.get("/api/v1/users/events", token).await;
        let head = raw.head().await;
        assert_eq!(head.status_line, "HTTP/1.1 401 Unauthorized");
        let length: usize = head.headers["content-length"].parse().unwrap();
        let hyper: Value = serde_json::from_slice(&raw.body(length).await).unwrap();
        assert_eq!(front, hyper);
        assert_eq!(front["error"]["code"], "not_authenticated");
    }
}

#[tokio::test]
async fn front_rejects_garbage_and_oversized_heads() {
    let server = TestServer::start_relaxed().await;
    // A header line httparse rejects.
    let mut raw = Raw::connect(&server).await;
    raw.send(b"GET /api/users/events HTTP/1.1\r\nbad header\r\n\r\n")
        .await;
    assert_eq!(raw.head().await.status_line, "HTTP/1.1 400 Bad Request");
    assert!(raw.closed().await);
    // A head over 16 KiB.
    let mut raw = Raw::connect(&server).await;
    raw.send(b"GET /api/users/events HTTP/1.1\r\n").await;
    let filler = format!("x-filler: {}\r\n", "a".repeat(1000));
    for _ in 0..20 {
        raw.send(filler.as_bytes()).await;
    }
    assert_eq!(
        raw.head().await.status_line,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    assert!(raw.closed().await);
    // A GET with a body is refused rather than left unread.
    let mut raw = Raw::connect(&server).await;
    raw.send(b"GET /api/users/events HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc")
        .await;
    assert_eq!(raw.head().await.status_line, "HTTP/1.1 400 Bad Request");
    // The server still serves.
    let mut sse = server
        .sse(&server.admin, "/api/v1/users/events", None)
        .await;
    assert_eq!(sse.next().await.unwrap().json()["type"], "connected");
}

#[tokio::test]
async fn front_disconnect_releases_the_slot() {
    let server = TestServer::start_relaxed_with(|c| c.live.sse_max_per_user = 2).await;
    let (_, token) = server.new_user("slotted").await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut raw = Raw::connect(&server).await;
        raw.get("/api/v1/users/events", Some(&token)).await;
        assert_eq!(raw.head().await.status_line, "HTTP/1.1 200 OK");
        open.push(raw);
    }
    let mut third = Raw::connect(&server).await;
    third.get("/api/v1/users/events", Some(&token)).await;
    assert_eq!(
        third.head().await.status_line,
        "HTTP/1.1 429 Too Many Requests"
    );
    drop(open.pop());
    // The server notices the close asynchronously; retry for a while.
    let mut accepted = false;
    for _ in 0..50 {
        let mut raw = Raw::connect(&server).await;
        raw.get("/api/v1/users/events", Some(&token)).await;
        if raw.head().await.status_line == "HTTP/1.1 200 OK" {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(accepted, "a closed stream's slot is released");
}

#[tokio::test]
async fn keep_alive_sse_after_rest_goes_through_hyper() {
    let server = TestServer::start_relaxed().await;
    let (member, token) = server.new_user("kept").await;
    let mut raw = Raw::connect(&server).await;
    raw.get("/api/v1/nothing-here", Some(&token)).await;
    let first = raw.head().await;
    let length: usize = first.headers["content-length"].parse().unwrap_or(0);
    raw.body(length).await;
    raw.get("/api/v1/users/events", Some(&token)).await;
    let head = raw.head().await;
    assert_eq!(head.status_line, "HTTP/1.1 200 OK");
    assert_eq!(head.headers["content-type"], "text/event-stream");
    // hyper keeps the connection; the front always says close.
    assert!(!head.headers.contains_key("connection"));
    let mut pending = String::new();
    assert_eq!(
        raw.message(&mut pending).await,
        json!({"type": "connected", "userId": member.to_string()})
    );
}

#[tokio::test]
async fn front_serves_a_request_line_longer_than_the_first_peek() {
    let server = TestServer::start_relaxed().await;
    let mut raw = Raw::connect(&server).await;
    // Over 256 bytes: the peek buffer grows (up to 2 KiB) before deciding.
    let path = format!("/api/v1/users/events?pad={}", "p".repeat(700));
    raw.get(&path, Some(&server.admin)).await;
    let head = raw.head().await;
    assert_eq!(head.status_line, "HTTP/1.1 200 OK");
    assert_eq!(head.headers["connection"], "close", "served by the front");
    let mut pending = String::new();
    assert_eq!(raw.message(&mut pending).await["type"], "connected");
}

/// Commits `count` task creations straight through the domain (fast enough to outrun a client),
/// each with a description of `size` bytes.
async fn commit_tasks(server: &TestServer, project: uuid::Uuid, count: usize, size: usize) {
    let state = server.state().clone();
    let actor = admin_actor(&state.domain).await;
    let tasks = domain::collections::by_name("tasks").unwrap();
    let description = "d".repeat(size);
    for i in 0..count {
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
    }
}

/// Splits complete SSE messages off `pending`: each one's `id:` (if any) and its JSON data.
fn take_messages(pending: &mut String) -> Vec<(Option<i64>, Value)> {
    let mut out = Vec::new();
    while let Some(end) = pending.find("\n\n") {
        let message: String = pending.drain(..end + 2).collect();
        let mut id = None;
        let mut data = None;
        for line in message.lines() {
            if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.parse::<i64>().expect("numeric id"));
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str::<Value>(v).expect("JSON data"));
            } else {
                assert!(
                    line.is_empty() || line.starts_with(':'),
                    "unexpected SSE line {line:?}"
                );
            }
        }
        if let Some(data) = data {
            out.push((id, data));
        }
    }
    out
}

/// The fan-out writes idle front streams itself (transport/direct.rs, framed as chunks). A
/// client with a small receive buffer stops reading while large events are committed, so the
/// kernel takes frames in part (their rest kept in the backlog) and the queue overflows into
/// catch-up; when it reads again, every chunk is well formed and the ids run from the first
/// to the last without a gap or a repeat (or a resync_required says where to resume), and live
/// events follow in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn front_direct_writes_keep_chunks_whole_for_a_stalled_reader() {
    let server = TestServer::start_relaxed().await;
    let project = server.new_project("Stalled").await;
    let (member, token) = server.new_user("stalled").await;
    server.new_member(project, member, 1).await;
    let head_seq = server.log_seqs(project).await.last().copied().unwrap_or(0);

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(server.addr()).await.unwrap();
    let mut raw = Raw {
        reader: BufReader::with_capacity(512, tcp),
    };
    raw.get(&format!("/api/v1/projects/{project}/events"), Some(&token))
        .await;
    assert_eq!(raw.head().await.headers["connection"], "close");
    let mut pending = String::new();
    assert_eq!(raw.message(&mut pending).await["type"], "connected");

    // Not reading: ~3 MB of events against a few KB of socket buffers.
    const STALLED: usize = 700;
    commit_tasks(&server, project, STALLED, 4000).await;
    let last = head_seq + STALLED as i64;

    let mut expected = head_seq + 1;
    let mut resynced = false;
    while expected <= last && !resynced {
        let chunk = raw.chunk().await;
        assert!(!chunk.is_empty(), "stream ended early");
        pending.push_str(std::str::from_utf8(&chunk).expect("UTF-8 chunk"));
        for (id, data) in take_messages(&mut pending) {
            if is_presence(&data) {
                continue;
            }
            if data["type"] == "resync_required" {
                resynced = true;
                break;
            }
            assert_eq!(id, Some(expected), "in order, no gap, no repeat: {data}");
            assert_eq!(data["type"], "ticket.created", "{data}");
            expected += 1;
        }
    }
    if resynced {
        // The client resumes where it was told; this stream ends.
        assert!(raw.closed().await, "a resync ends the stream");
        return;
    }

    // Caught up: live again, through direct writes while the client keeps reading.
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < 200 {
            let chunk = raw.chunk().await;
            assert!(!chunk.is_empty(), "stream ended early");
            pending.push_str(std::str::from_utf8(&chunk).unwrap());
            got.extend(take_messages(&mut pending).into_iter().map(|(id, _)| id));
        }
        got
    });
    commit_tasks(&server, project, 200, 100).await;
    let got = timeout(GUARD, reader).await.expect("live events").unwrap();
    let want: Vec<Option<i64>> = (last + 1..=last + 200).map(Some).collect();
    assert_eq!(got, want);
}

/// An HTTP/1.0 client gets the stream raw, delimited by the close; the fan-out's direct writes
/// use the same raw framing.
#[tokio::test]
async fn front_streams_raw_to_http10() {
    let server = TestServer::start_relaxed().await;
    let project = server.new_project("Old").await;
    let (member, token) = server.new_user("old").await;
    server.new_member(project, member, 1).await;
    let mut raw = Raw::connect(&server).await;
    let request = format!(
        "GET /api/v1/projects/{project}/events HTTP/1.0\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    raw.send(request.as_bytes()).await;
    let head = raw.head().await;
    assert_eq!(head.status_line, "HTTP/1.0 200 OK");
    assert!(!head.headers.contains_key("transfer-encoding"));
    assert!(!head.headers.contains_key("content-length"));

    let reader = tokio::spawn(async move {
        let mut pending = String::new();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.len() < 21 {
            let n = timeout(WAIT, raw.reader.read(&mut buf))
                .await
                .expect("bytes in time")
                .unwrap();
            assert!(n > 0, "stream ended early");
            pending.push_str(std::str::from_utf8(&buf[..n]).unwrap());
            got.extend(
                take_messages(&mut pending)
                    .into_iter()
                    .filter(|(_, data)| !is_presence(data)),
            );
        }
        got
    });
    // Give the stream time to go idle, so the fan-out writes these itself.
    tokio::time::sleep(Duration::from_millis(200)).await;
    commit_tasks(&server, project, 20, 10).await;
    let got = timeout(GUARD, reader).await.expect("events").unwrap();
    assert_eq!(got[0].1["type"], "connected");
    let ids: Vec<Option<i64>> = got[1..].iter().map(|(id, _)| *id).collect();
    let first = ids[0].expect("an id");
    let want: Vec<Option<i64>> = (first..first + 20).map(Some).collect();
    assert_eq!(ids, want);
}

/// A client that stays connected but stops reading is given up once one of the front's writes
/// has waited two keepalive periods: its per-user slot is free again, and its socket is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn front_gives_up_a_client_that_stops_reading() {
    let server = TestServer::start_relaxed_with(|c| {
        c.live.sse_keepalive = Duration::from_millis(200);
        c.live.sse_max_per_user = 1;
    })
    .await;
    let project = server.new_project("Stopped").await;
    let (member, token) = server.new_user("stopped").await;
    server.new_member(project, member, 1).await;
    let path = format!("/api/v1/projects/{project}/events");

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(server.addr()).await.unwrap();
    let mut stalled = Raw {
        reader: BufReader::with_capacity(512, tcp),
    };
    stalled.get(&path, Some(&token)).await;
    assert_eq!(stalled.head().await.status_line, "HTTP/1.1 200 OK");
    let mut other = Raw::connect(&server).await;
    other.get(&path, Some(&token)).await;
    assert_eq!(
        other.head().await.status_line,
        "HTTP/1.1 429 Too Many Requests",
        "the open stream holds the user's only slot"
    );

    // More than the kernel buffers on both sides (the send buffer grows to 4 MiB at most).
    commit_tasks(&server, project, 2_000, 4_000).await;

    // Released once a write has waited 400 ms without going out.
    let mut freed = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut retry = Raw::connect(&server).await;
        retry.get(&path, Some(&token)).await;
        if retry.head().await.status_line == "HTTP/1.1 200 OK" {
            freed = true;
            break;
        }
    }
    assert!(freed, "the stalled stream's slot is released");
    assert!(
        stalled.closed().await,
        "the stalled stream's socket is closed"
    );
}

/// A `presence.join`/`presence.leave` message (the stream's own user's among them).
fn is_presence(data: &Value) -> bool {
    data["type"]
        .as_str()
        .is_some_and(|kind| kind.starts_with("presence."))
}
