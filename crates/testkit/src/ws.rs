//! A native WebSocket client (tokio-tungstenite) with bounded waits.

use crate::GUARD;
use crate::server::TestServer;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use std::net::SocketAddr;
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
