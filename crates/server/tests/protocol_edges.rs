//! WebSocket protocol edges (issue 20, defect 6) over raw frames: a Close is answered with a
//! Close; broken framing is closed with 1002 and text that is not UTF-8 with 1007, not
//! dropped; a non-upgrade request to a socket path gets a JSON error.

use liveplan_testkit::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const BOUND: Duration = Duration::from_secs(15);

/// A client frame: `first` is the FIN/RSV/opcode byte; masked unless `unmasked`.
fn frame(first: u8, payload: &[u8], unmasked: bool) -> Vec<u8> {
    assert!(payload.len() < 126);
    let key = [0x11u8, 0x22, 0x33, 0x44];
    let mut out = vec![first];
    if unmasked {
        out.push(payload.len() as u8);
        out.extend_from_slice(payload);
    } else {
        out.push(0x80 | payload.len() as u8);
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    }
    out
}

/// The next server frame (opcode, payload); `None` once the connection is closed.
async fn next_frame(tcp: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let read = async {
        let mut header = [0u8; 2];
        tcp.read_exact(&mut header).await.ok()?;
        let mut len = u64::from(header[1] & 0x7f);
        if len == 126 {
            let mut ext = [0u8; 2];
            tcp.read_exact(&mut ext).await.ok()?;
            len = u64::from(u16::from_be_bytes(ext));
        } else if len == 127 {
            let mut ext = [0u8; 8];
            tcp.read_exact(&mut ext).await.ok()?;
            len = u64::from_be_bytes(ext);
        }
        let mut payload = vec![0u8; usize::try_from(len).ok()?];
        tcp.read_exact(&mut payload).await.ok()?;
        Some((header[0] & 0x0f, payload))
    };
    timeout(BOUND, read)
        .await
        .expect("a frame or the close in time")
}

/// Reads past data frames and pings to the server's Close; its code, or `None` if the
/// connection ended without one.
async fn close_code(tcp: &mut TcpStream) -> Option<u16> {
    for _ in 0..100 {
        let (opcode, payload) = next_frame(tcp).await?;
        if opcode == 8 {
            return payload
                .get(..2)
                .map(|code| u16::from_be_bytes([code[0], code[1]]));
        }
    }
    panic!("no close after 100 frames");
}

#[tokio::test]
async fn a_bryntum_close_is_answered_with_a_close() {
    let server = TestServer::start_relaxed().await;
    let mut tcp = raw_upgrade(server.addr(), "/ws/v1/bryntum").await;
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    tcp.write_all(&frame(0x88, &payload, false)).await.unwrap();
    assert_eq!(close_code(&mut tcp).await, Some(1000));
}

async fn native_socket(server: &TestServer) -> TcpStream {
    let project = server.new_project("edges").await;
    let ticket = server.ticket(&server.admin).await;
    raw_upgrade(
        server.addr(),
        &format!("/ws/v1/projects/{project}/?ticket={ticket}"),
    )
    .await
}

#[tokio::test]
async fn broken_frames_close_with_1002_and_bad_text_with_1007() {
    let server = TestServer::start_relaxed().await;
    let cases: [(&str, Vec<u8>, u16); 6] = [
        (
            "invalid UTF-8",
            frame(0x81, &[0xff, 0xfe, 0xfd], false),
            1007,
        ),
        ("unmasked", frame(0x81, b"{}", true), 1002),
        ("RSV1", frame(0xC1, b"{}", false), 1002),
        ("reserved data opcode", frame(0x83, b"{}", false), 1002),
        ("fragmented ping", frame(0x09, b"hi", false), 1002),
        ("stray continuation", frame(0x80, b"{}", false), 1002),
    ];
    for (what, bytes, expected) in cases {
        let mut tcp = native_socket(&server).await;
        tcp.write_all(&bytes).await.unwrap();
        assert_eq!(close_code(&mut tcp).await, Some(expected), "{what}");
    }
    // The same on the Bryntum socket.
    let mut tcp = raw_upgrade(server.addr(), "/ws/v1/bryntum").await;
    tcp.write_all(&frame(0xC1, b"{}", false)).await.unwrap();
    assert_eq!(close_code(&mut tcp).await, Some(1002), "RSV1 on Bryntum");
    let mut tcp = raw_upgrade(server.addr(), "/ws/v1/bryntum").await;
    tcp.write_all(&frame(0x81, &[0xc3, 0x28], false))
        .await
        .unwrap();
    assert_eq!(
        close_code(&mut tcp).await,
        Some(1007),
        "bad UTF-8 on Bryntum"
    );
}

/// One message in many fragments is as many frames against the rate limit; here it never
/// ends (empty continuations), so without the count nothing would ever be refused.
#[tokio::test]
async fn continuation_fragments_count_against_the_frame_limit() {
    let server = TestServer::start_relaxed().await;
    let burst = server.state().config.live.ws_frame_burst as usize;
    let mut tcp = native_socket(&server).await;
    let mut bytes = frame(0x01, b"{", false);
    for _ in 0..burst * 2 {
        bytes.extend(frame(0x00, b"", false));
    }
    tcp.write_all(&bytes).await.unwrap();
    assert_eq!(close_code(&mut tcp).await, Some(1008));

    // A message in a few fragments, well within the allowance, is still read (and answered
    // as any text the socket does not understand would be: not by a close for fragments).
    let mut tcp = native_socket(&server).await;
    let mut bytes = frame(0x01, b"{\"type\"", false);
    bytes.extend(frame(0x00, b":\"pi", false));
    bytes.extend(frame(0x80, b"ng\"}", false));
    tcp.write_all(&bytes).await.unwrap();
    tcp.write_all(&frame(0x88, &1000u16.to_be_bytes(), false))
        .await
        .unwrap();
    assert_eq!(close_code(&mut tcp).await, Some(1000));
}

#[tokio::test]
async fn a_plain_request_to_a_socket_path_gets_a_json_error() {
    let server = TestServer::start_relaxed().await;
    for path in ["/ws/v1/bryntum", "/ws/v1/bryntum/"] {
        let response = timeout(BOUND, server.http.get(server.url(path)).send())
            .await
            .expect("answer in time")
            .unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.text().await.unwrap();
        assert!((400..500).contains(&status), "{path}: {status} {body}");
        assert!(
            content_type.starts_with("application/json"),
            "{path}: {content_type} {body}"
        );
        let json: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
        assert!(json["error"]["code"].is_string(), "{path}: {json}");
    }
}
