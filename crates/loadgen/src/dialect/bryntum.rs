//! The Bryntum Gantt WebSocket (CONTRACT §8): upgrade `/ws/v1/bryntum`, log in with a ticket,
//! load the project's `dataset` (which subscribes the socket), then read `project_change`
//! messages. Bryntum frames carry no tab id, so the send time comes from the task name the
//! publisher writes (`lg <ns>`), and the position from the revision id (`server-<seq>`).

use super::native_ws::{NativeWs, connect_from};
use super::{Connection, Delivery, Dialect, Kind, User, last_string_field};
use anyhow::{Context, bail};
use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use std::net::IpAddr;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub struct Bryntum {
    /// Mints the tickets; the same server and project.
    pub tickets: NativeWs,
}

#[async_trait]
impl Dialect for Bryntum {
    fn name(&self) -> &'static str {
        "bryntum"
    }

    async fn open(&self, user: &User, source: IpAddr) -> anyhow::Result<Box<dyn Connection>> {
        let ticket = self.tickets.ticket(user).await?;
        let stream = connect_from(source, self.tickets.addr).await?;
        let url = format!(
            "{}/ws/v1/bryntum",
            self.tickets.base.replacen("http://", "ws://", 1)
        );
        // Datasets are larger than native frames; a 16 KiB buffer grows when one needs it.
        let config = WebSocketConfig::default()
            .read_buffer_size(16 * 1024)
            .write_buffer_size(0);
        let (mut socket, _) =
            tokio_tungstenite::client_async_with_config(url, stream, Some(config))
                .await
                .context("WebSocket handshake")?;
        let login = json!({"command": "login", "data": {"ticket": ticket}});
        socket.send(Message::text(login.to_string())).await?;
        let dataset = json!({"command": "dataset", "data": {"project": self.tickets.project_id}});
        socket.send(Message::text(dataset.to_string())).await?;
        Ok(Box::new(BryntumConnection { socket }))
    }
}

struct BryntumConnection {
    socket: WebSocketStream<TcpStream>,
}

/// What a Bryntum message means to the measurement.
pub fn classify(text: &str) -> Delivery {
    let command = last_string_field(text, "command");
    if command != Some("project_change") || text.contains(r#""error":"#) {
        // login, users, join, dataset, errors: not deliveries.
        return Delivery {
            kind: Kind::Other,
            seq: None,
            sent_ns: None,
        };
    }
    let seq = last_string_field(text, "revision")
        .and_then(|r| r.strip_prefix("server-"))
        .and_then(|n| n.parse().ok());
    let sent_ns = last_string_field(text, "name")
        .and_then(|n| n.strip_prefix("lg "))
        .and_then(|n| n.parse().ok());
    Delivery {
        kind: Kind::Event,
        seq,
        sent_ns,
    }
}

#[async_trait]
impl Connection for BryntumConnection {
    async fn next(&mut self) -> anyhow::Result<Option<Delivery>> {
        loop {
            match self.socket.next().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(Message::Text(text))) => {
                    let text = text.as_str();
                    if text.starts_with(r#"{"command":"login","error""#)
                        || text.starts_with(r#"{"command":"dataset","error""#)
                    {
                        bail!("refused: {text}");
                    }
                    return Ok(Some(classify(text)));
                }
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
    fn revisions_are_classified() {
        let change = r#"{"command":"project_change","data":{"revisions":[{"revision":"server-41","localRevision":null,"client":null,"changes":{"tasks":{"updated":[{"id":"t","name":"lg 5000","parentId":null}]}}}],"project":"p"}}"#;
        assert_eq!(
            classify(change),
            Delivery {
                kind: Kind::Event,
                seq: Some(41),
                sent_ns: Some(5000)
            }
        );
        let users = r#"{"command":"users","data":{"users":["a"]}}"#;
        assert_eq!(classify(users).kind, Kind::Other);
        let foreign = r#"{"command":"project_change","data":{"revisions":[{"revision":"server-3","changes":{"tasks":{"updated":[{"id":"t","name":"typed by a user"}]}}}],"project":"p"}}"#;
        assert_eq!(classify(foreign).sent_ns, None);
    }
}
