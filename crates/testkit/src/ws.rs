//! A native WebSocket client (tokio-tungstenite) with bounded waits.

use crate::GUARD;
use crate::server::TestServer;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

impl TestServer {
    pub async fn ws(&self, path: &str) -> Ws {
        ws_connect(self.addr(), path).await
    }

    /// A raw y-websocket socket on whiteboard `board` (CONTRACT §11) for the user of `token`,
    /// past its join: the sync step 1 the server sends first is read and checked.
    pub async fn ws_whiteboard(&self, board: &str, token: &str) -> Ws {
        let ticket = self.ticket(token).await;
        let mut ws = self
            .ws(&format!("/ws/v1/whiteboards/{board}?ticket={ticket}"))
            .await;
        let first = tokio::time::timeout(GUARD, ws.next())
            .await
            .expect("the join in time")
            .expect("a frame")
            .expect("a frame");
        assert!(
            matches!(&first, Message::Binary(b) if b.starts_with(&[0, 0])),
            "the join starts with sync step 1: {first:?}"
        );
        ws
    }

    /// A native socket on `project` for the user of `token`, optionally resuming after `since`.
    pub async fn ws_project(&self, token: &str, project: Uuid, since: Option<i64>) -> Ws {
        let ticket = self.ticket(token).await;
        let mut path = format!("/ws/v1/projects/{project}/?ticket={ticket}");
        if let Some(since) = since {
            path.push_str(&format!("&since={since}"));
        }
        self.ws(&path).await
    }
}

pub async fn ws_connect(addr: SocketAddr, path: &str) -> Ws {
    let url = format!("ws://{addr}{path}");
    let (ws, _) = tokio::time::timeout(GUARD, tokio_tungstenite::connect_async(url))
        .await
        .expect("upgrade in time")
        .expect("upgrade accepted");
    ws
}

/// What a socket yields next, ignoring pings: a JSON frame or the close code.
#[derive(Debug, PartialEq)]
pub enum WsNext {
    Json(Value),
    Closed(Option<u16>),
}

pub async fn ws_next(ws: &mut Ws) -> WsNext {
    loop {
        let message = tokio::time::timeout(GUARD, ws.next())
            .await
            .expect("a frame in time");
        match message {
            None | Some(Err(_)) => return WsNext::Closed(None),
            Some(Ok(Message::Text(text))) => {
                return WsNext::Json(serde_json::from_str(&text).expect("JSON frame"));
            }
            Some(Ok(Message::Close(frame))) => {
                return WsNext::Closed(frame.map(|f| u16::from(f.code)));
            }
            Some(Ok(_)) => {}
        }
    }
}

/// The next JSON frame; fails on a close.
pub async fn ws_json(ws: &mut Ws) -> Value {
    match ws_next(ws).await {
        WsNext::Json(value) => value,
        other => panic!("expected a frame, got {other:?}"),
    }
}

/// The next frame that is not presence.
pub async fn ws_event(ws: &mut Ws) -> Value {
    loop {
        let frame = ws_json(ws).await;
        let kind = frame["event_type"].as_str().unwrap_or_default();
        if !kind.starts_with("presence_") {
            return frame;
        }
    }
}

/// Reads until the close frame and returns its code, skipping other frames.
pub async fn ws_close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        if let WsNext::Closed(code) = ws_next(ws).await {
            return code;
        }
    }
}

pub async fn ws_send(ws: &mut Ws, message: Message) {
    ws.send(message).await.expect("send");
}

pub fn code(c: CloseCode) -> u16 {
    u16::from(c)
}

/// How long a silent client waits for the server's next frame before it moves the clock again.
const SILENT_STEP: Duration = Duration::from_millis(100);

/// Opens a WebSocket on `path` over a bare TCP stream, for a client that reads frames itself
/// (a WebSocket library answers pings on its own).
pub async fn raw_upgrade(addr: SocketAddr, path: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    // Read the response head byte by byte so no frame bytes are swallowed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tokio::time::timeout(GUARD, tcp.read_exact(&mut byte))
            .await
            .expect("the upgrade answer in time")
            .unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    tcp
}

/// One server frame read off the wire (servers do not mask): its opcode and payload.
pub async fn read_raw_frame(tcp: &mut TcpStream) -> (u8, Vec<u8>) {
    let read = async {
        let mut header = [0u8; 2];
        tcp.read_exact(&mut header).await?;
        let mut len = u64::from(header[1] & 0x7f);
        if len == 126 {
            let mut ext = [0u8; 2];
            tcp.read_exact(&mut ext).await?;
            len = u64::from(u16::from_be_bytes(ext));
        } else if len == 127 {
            let mut ext = [0u8; 8];
            tcp.read_exact(&mut ext).await?;
            len = u64::from_be_bytes(ext);
        }
        let mut payload = vec![0u8; usize::try_from(len).expect("a frame that fits")];
        tcp.read_exact(&mut payload).await?;
        Ok::<_, std::io::Error>((header[0] & 0x0f, payload))
    };
    tokio::time::timeout(GUARD, read)
        .await
        .expect("a frame in time")
        .expect("the socket is open")
}

/// A client that never answers pings. The server's clock must be a manual one: the test moves
/// it by `interval` whenever no frame is waiting, so pings come when the test says (moving it
/// more often than the server answers only brings them sooner: the server still closes after
/// two unanswered pings). Reads frames until the server closes; returns how many pings came
/// before, and the close code.
pub async fn pings_until_close(
    server: &TestServer,
    tcp: &mut TcpStream,
    interval: Duration,
) -> (usize, u16) {
    let mut pings = 0;
    let steps = GUARD.as_millis() / SILENT_STEP.as_millis();
    for _ in 0..steps {
        let mut byte = [0u8; 1];
        // `peek` takes nothing, so giving up on it never cuts a frame.
        match tokio::time::timeout(SILENT_STEP, tcp.peek(&mut byte)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => panic!("the connection ended without a close frame ({pings} pings)"),
            Err(_) => {
                server.advance(interval);
                continue;
            }
        }
        match read_raw_frame(tcp).await {
            (0x9, _) => pings += 1,
            (0x8, payload) => {
                assert!(payload.len() >= 2, "a close frame with a code");
                return (pings, u16::from_be_bytes([payload[0], payload[1]]));
            }
            _ => {}
        }
    }
    panic!("no close within {GUARD:?} ({pings} pings)");
}

/// A y-protocols update message (sync, update) for a raw whiteboard socket, carrying one new
/// entry of the document's `elements` map (`key` → `key`, so the content shows it too).
pub fn whiteboard_update(key: &str) -> Message {
    use yrs::{Map, ReadTxn, Transact};
    let doc = yrs::Doc::new();
    let elements = doc.get_or_insert_map("elements");
    elements.insert(&mut doc.transact_mut(), key, key);
    let update = doc
        .transact()
        .encode_state_as_update_v1(&yrs::StateVector::default());
    let mut frame = vec![0u8, 2];
    yrs::encoding::write::Write::write_buf(&mut frame, update);
    Message::Binary(frame.into())
}
