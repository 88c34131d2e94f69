//! Slow and greedy clients over raw TCP (issue 20, defect 2): a slow head, a silent connection,
//! an idle keep-alive connection and a stalled or trickled body are closed after their
//! deadlines; a declared `Content-Length` over the route's limit is refused before the body;
//! the connection cap answers 503; live WebSocket and SSE streams outlive every deadline.
//!
//! The deadlines are shortened (`NetLimits`); every wait is bounded by `BOUND`, generous
//! against them, and nothing asserts how soon something happened.

use liveplan_server::app::Config;
use liveplan_testkit::*;
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

const HEAD: Duration = Duration::from_secs(1);
const BODY: Duration = Duration::from_secs(1);
/// How long any close or answer may take before the test fails.
const BOUND: Duration = Duration::from_secs(15);

fn short_deadlines(config: &mut Config) {
    config.net.head_timeout = HEAD;
    config.net.body_timeout = BODY;
    // High, so that a trickle earns almost no extra time.
    config.net.body_min_rate = 1024 * 1024;
}

async fn server() -> TestServer {
    TestServer::start_relaxed_with(short_deadlines).await
}

async fn connect(server: &TestServer) -> TcpStream {
    timeout(BOUND, TcpStream::connect(server.addr()))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// Everything the server sends until it closes; `None` if it is still open after `BOUND`.
async fn until_closed(tcp: &mut TcpStream) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + BOUND;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// The status and JSON body of the one response in `bytes` (which must hold all of it).
fn response(bytes: &[u8]) -> (u16, String, Value) {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let body = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, head.to_ascii_lowercase(), body)
}

#[tokio::test]
async fn a_slow_head_is_closed() {
    let server = server().await;
    // A complete request line, then a header line every 300 ms (slowloris).
    let mut tcp = connect(&server).await;
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")
        .await
        .unwrap();
    let (mut reader, mut writer) = tcp.into_split();
    let closed = tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        match timeout(BOUND, reader.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => true,
            Ok(Ok(_)) => panic!("no answer is due to an incomplete head"),
            Err(_) => false,
        }
    });
    let mut lines = 0;
    while !closed.is_finished() && lines < 50 {
        if writer.write_all(b"X-Slow: 1\r\n").await.is_err() {
            break;
        }
        lines += 1;
        sleep(Duration::from_millis(300)).await;
    }
    assert!(closed.await.unwrap(), "a slow head was not closed");
    assert!(lines < 50, "the server read {lines} header lines");

    // The request line itself trickled: the SSE front's peek gives up on it as well.
    let mut tcp = connect(&server).await;
    let (mut reader, mut writer) = tcp.split();
    let trickle = async {
        for byte in b"GET /api/v1/users/events HTTP/1.1\r\n".repeat(10) {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            sleep(Duration::from_millis(200)).await;
        }
    };
    let mut buf = [0u8; 256];
    let read = timeout(BOUND, reader.read(&mut buf));
    tokio::select! {
        () = trickle => panic!("a trickled request line was read to its end"),
        read = read => assert!(matches!(read, Ok(Ok(0) | Err(_))), "closed without an answer: {read:?}"),
    }
}

#[tokio::test]
async fn silent_connections_are_closed() {
    let server = server().await;
    let mut silent = Vec::new();
    for _ in 0..10 {
        silent.push(connect(&server).await);
    }
    for tcp in &mut silent {
        let got = until_closed(tcp)
            .await
            .expect("a silent connection was closed");
        assert!(got.is_empty(), "nothing is answered to a silent connection");
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = server().await;
    let mut tcp = connect(&server).await;
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    // The response first (the connection stays open for the next request), then the close.
    let got = until_closed(&mut tcp)
        .await
        .expect("the idle connection was closed");
    let (status, head, body) = response(&got);
    assert_eq!(status, 200, "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    assert_eq!(body["status"], "ok");
}

/// A login whose body declares 100 bytes and sends one, then nothing.
#[tokio::test]
async fn a_stalled_body_gets_408_and_is_closed() {
    let server = server().await;
    let mut tcp = connect(&server).await;
    tcp.write_all(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    let got = until_closed(&mut tcp)
        .await
        .expect("a stalled body was closed");
    let (status, head, body) = response(&got);
    assert_eq!(status, 408, "{head}");
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
    assert!(head.contains("connection: close"), "{head}");
}

/// A byte every 100 ms never stalls, but it is far under the minimum rate: the deadline is
/// for the whole body, not for each read.
#[tokio::test]
async fn a_trickled_body_gets_408() {
    let server = server().await;
    let mut tcp = connect(&server).await;
    tcp.write_all(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
    )
    .await
    .unwrap();
    let (mut reader, mut writer) = tcp.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..150 {
            if writer.write_all(b" ").await.is_err() {
                return;
            }
            sleep(Duration::from_millis(100)).await;
        }
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + BOUND;
    loop {
        match tokio::time::timeout_at(deadline, reader.read(&mut buf)).await {
            Err(_) => panic!("a trickled body was not refused"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    trickle.abort();
    let (status, head, body) = response(&got);
    assert_eq!(status, 408, "{head}");
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
}

#[tokio::test]
async fn a_declared_length_over_the_limit_gets_413_before_the_body() {
    let server = server().await;
    let project = server.new_project("big").await;
    // Over the default limit (1 MiB), on a route that keeps it; no byte of the body is sent.
    let mut tcp = connect(&server).await;
    tcp.write_all(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n",
    )
    .await
    .unwrap();
    let got = until_closed(&mut tcp).await.expect("answered and closed");
    let (status, head, body) = response(&got);
    assert_eq!(status, 413, "{head}");
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    assert!(head.contains("connection: close"), "{head}");

    // A record create allows more (uploads): the same length is waited for, not refused, and
    // then times out; over that route's own limit it is refused at once.
    let auth = format!("Authorization: Bearer {}\r\n", server.admin);
    let path = format!("/api/v1/projects/{project}/tasks");
    for (length, expected, code) in [
        (2_000_000u64, 408, "request_timeout"),
        (100_000_000u64, 413, "payload_too_large"),
    ] {
        let mut tcp = connect(&server).await;
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\n{auth}Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let got = until_closed(&mut tcp).await.expect("answered and closed");
        let (status, head, body) = response(&got);
        assert_eq!(status, expected, "{length}: {head}");
        assert_eq!(body["error"]["code"], code, "{body}");
    }
    // Nothing was created by any of it.
    let (status, tasks) = server
        .get(&format!("/api/v1/projects/{project}/tasks"), &server.admin)
        .await;
    assert_eq!(status, 200);
    assert_eq!(tasks.as_array().map(Vec::len), Some(0), "{tasks}");
}

/// An SSE stream read over raw TCP until `needle` shows up in it.
async fn stream_shows(tcp: &mut TcpStream, needle: &str) -> bool {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + BOUND;
    loop {
        if String::from_utf8_lossy(&got).contains(needle) {
            return true;
        }
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return false,
        }
    }
}

#[tokio::test]
async fn live_websocket_and_sse_streams_outlive_the_deadlines() {
    let server = server().await;
    let project = server.new_project("live").await;
    let mut ws = server.ws_project(&server.admin, project, None).await;
    let sse_request = format!(
        "GET /api/v1/projects/{project}/events HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\n\r\n",
        server.admin
    );
    // On a fresh connection: the SSE front serves it.
    let mut front = connect(&server).await;
    front.write_all(sse_request.as_bytes()).await.unwrap();
    // After a REST call on the same connection: hyper serves it.
    let mut kept = connect(&server).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    assert!(stream_shows(&mut kept, "\"ok\"").await, "healthz answered");
    kept.write_all(sse_request.as_bytes()).await.unwrap();
    assert!(stream_shows(&mut front, "200 OK").await, "front stream");
    assert!(stream_shows(&mut kept, "200 OK").await, "hyper stream");

    // Past every deadline (head, idle, body) several times over.
    sleep(HEAD * 3 + BODY * 2).await;
    let task = server.task(&server.admin, project, "late").await;
    let id = task["id"].as_str().expect("task id");
    let event = ws_event(&mut ws).await;
    assert_eq!(event["event_type"], "task_created", "{event}");
    assert_eq!(event["payload"]["id"], id, "{event}");
    assert!(stream_shows(&mut front, id).await, "the front's stream");
    assert!(stream_shows(&mut kept, id).await, "hyper's stream");
}

#[tokio::test]
async fn connections_over_the_cap_get_503() {
    // The default head deadline, so that held connections stay while the cap is reached.
    let server = TestServer::start_relaxed_with(|config| config.net.max_connections = 3).await;
    let mut held = Vec::new();
    let mut refusal = None;
    for _ in 0..10 {
        let mut tcp = connect(&server).await;
        let mut buf = [0u8; 1024];
        // Long enough that a loaded machine's late 503 is not taken for a held connection.
        match timeout(Duration::from_secs(3), tcp.read(&mut buf)).await {
            // Nothing said: accepted, and held silent.
            Err(_) => held.push(tcp),
            Ok(Ok(n)) if n > 0 => {
                let mut got = buf[..n].to_vec();
                got.extend(until_closed(&mut tcp).await.expect("closed after the 503"));
                refusal = Some(got);
                break;
            }
            Ok(other) => panic!("closed without an answer: {other:?}"),
        }
    }
    let refusal = refusal.expect("the cap was reached");
    assert!(held.len() <= 3, "{} connections accepted", held.len());
    let (status, head, body) = response(&refusal);
    assert_eq!(status, 503, "{head}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(head.contains("retry-after: 1"), "{head}");

    // Once connections close, new ones are served again.
    drop(held);
    let mut served = false;
    for _ in 0..50 {
        let mut tcp = connect(&server).await;
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let got = until_closed(&mut tcp).await.expect("answered and closed");
        if response(&got).0 == 200 {
            served = true;
            break;
        }
        sleep(Duration::from_millis(200)).await;
    }
    assert!(served, "a connection was served after the others closed");
}
