//! The native WebSocket (CONTRACT §6): mint a ticket with the user's Bearer token, upgrade
//! `/ws/v1/projects/{id}/?ticket=…`, read JSON text frames.

use super::{
    Connection, Delivery, Dialect, Kind, User, last_int_field, last_string_field, sent_ns_of,
};
use anyhow::{Context, bail};
use async_trait::async_trait;
use futures::StreamExt;
use std::net::{IpAddr, SocketAddr};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub struct NativeWs {
    pub base: String,
    pub addr: SocketAddr,
    pub project_id: String,
    /// For minting tickets; not bound to a source address (a handful of pooled connections).
    pub http: reqwest::Client,
}

/// Opens a TCP connection to `addr` from `source` (port chosen by the kernel), so connections
/// can be spread over 127.0.0.x (or `--source-base` + i) and each source address brings its own
/// ephemeral port range.
pub async fn connect_from(source: IpAddr, addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket
        .bind(SocketAddr::new(source, 0))
        .with_context(|| format!("binding to {source}"))?;
    let stream = socket.connect(addr).await.context("connecting")?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Ticket requests in flight at once. Each concurrent request needs a keep-alive connection of
/// its own, and the server holds each one's HTTP buffers (~23 KiB) for as long as it stays
/// open: with one per connection being opened (128), they added ~150 B to every idle socket's
/// share of server RSS at 19,000. Minting is a short store write that the server serialises
/// anyway, so a few in flight open sockets as fast.
static TICKETS_IN_FLIGHT: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

impl NativeWs {
    pub async fn ticket(&self, user: &User) -> anyhow::Result<String> {
        let _slot = TICKETS_IN_FLIGHT
            .acquire()
            .await
            .context("ticket limiter closed")?;
        let response = self
            .http
            .post(format!("{}/api/v1/ws/ticket/", self.base))
            .bearer_auth(&user.token)
            .send()
            .await
            .context("minting a ticket")?;
        let status = response.status();
        if !status.is_success() {
            bail!(
                "ticket: {status}: {}",
                response.text().await.unwrap_or_default()
            );
        }
        let body: serde_json::Value = response.json().await?;
        body["ticket"]
            .as_str()
            .map(str::to_owned)
            .context("ticket missing from the answer")
    }
}

#[async_trait]
impl Dialect for NativeWs {
    fn name(&self) -> &'static str {
        "ws"
    }

    async fn open(&self, user: &User, source: IpAddr) -> anyhow::Result<Box<dyn Connection>> {
        let ticket = self.ticket(user).await?;
        let stream = connect_from(source, self.addr).await?;
        let ws_base = self.base.replacen("http://", "ws://", 1);
        let url = format!(
            "{ws_base}/ws/v1/projects/{}/?ticket={ticket}",
            self.project_id
        );
        // The default 128 KiB read buffer is allocated eagerly; frames here are a few hundred
        // bytes, and 20,000 connections × 128 KiB would make the load generator's own memory
        // the limit.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let (socket, _response) =
            tokio_tungstenite::client_async_with_config(url, stream, Some(config))
                .await
                .context("WebSocket handshake")?;
        Ok(Box::new(WsConnection { socket }))
    }
}

struct WsConnection {
    socket: WebSocketStream<TcpStream>,
}

/// What a native WebSocket text frame means to the measurement.
pub fn classify(text: &str) -> Delivery {
    let seq = last_int_field(text, "seq");
    let kind = if seq.is_some() {
        Kind::Event
    } else if last_string_field(text, "event_type") == Some("resync_required") {
        Kind::Resync
    } else {
        Kind::Other
    };
    Delivery {
        kind,
        seq,
        sent_ns: sent_ns_of(last_string_field(text, "tab_id")),
    }
}

#[async_trait]
impl Connection for WsConnection {
    async fn next(&mut self) -> anyhow::Result<Option<Delivery>> {
        loop {
            // tungstenite answers pings itself while we keep reading.
            match self.socket.next().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(Message::Text(text))) => return Ok(Some(classify(text.as_str()))),
                Some(Ok(Message::Close(Some(f)))) => {
                    bail!("closed by the server: {} {}", u16::from(f.code), f.reason)
                }
                Some(Ok(Message::Close(None))) => return Ok(None),
                Some(Ok(_)) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_classified() {
        let live = r#"{"protocol_version":1,"event_type":"task_updated","payload":{"id":"a","changed_fields":["name"],"version":3},"seq":41,"tab_id":"lg-5000"}"#;
        assert_eq!(
            classify(live),
            Delivery {
                kind: Kind::Event,
                seq: Some(41),
                sent_ns: Some(5000)
            }
        );
        let presence = r#"{"protocol_version":1,"event_type":"presence_join","payload":{"user_id":"u"},"seq":null}"#;
        assert_eq!(classify(presence).kind, Kind::Other);
        let resync = r#"{"protocol_version":1,"event_type":"resync_required","payload":{"latest_seq":9},"seq":null}"#;
        assert_eq!(classify(resync).kind, Kind::Resync);
        let foreign = r#"{"event_type":"task_created","payload":{},"seq":2,"tab_id":"browser-1"}"#;
        assert_eq!(classify(foreign).sent_ns, None);
    }
}
