//! The Pusher Channels protocol (protocol 7), for a server such as soketi side by side with
//! liveplan: subscribers open `/app/{key}` and subscribe to one public channel; changes are
//! events triggered through the HTTP API, `POST /apps/{id}/events`, signed with the app's
//! secret (HMAC-SHA256 over method, path and sorted query, the body bound by its MD5). The
//! event's data is the publisher's stamp (`lg-<send time>`), as the tab id is on liveplan.

use super::{Connection, Delivery, Dialect, Kind, User, last_string_field, sent_ns_of};
use crate::dialect::native_ws::connect_from;
use anyhow::{Context, bail};
use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use md5::Digest;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The channel and event name of every change.
pub const CHANNEL: &str = "liveplan-loadgen";
pub const EVENT: &str = "lg-change";
/// How long the connection and subscription handshakes may take.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// An app of the server: `--pusher-app id:key:secret`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub id: String,
    pub key: String,
    pub secret: String,
}

impl App {
    pub fn parse(text: &str) -> anyhow::Result<App> {
        let mut parts = text.splitn(3, ':');
        let (Some(id), Some(key), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
            bail!("--pusher-app must be id:key:secret");
        };
        let plain = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !(plain(id) && plain(key) && plain(secret)) {
            bail!("--pusher-app parts must be 1..=128 of [A-Za-z0-9_-]");
        }
        Ok(App {
            id: id.to_owned(),
            key: key.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// The path, query and body of a signed `POST /apps/{id}/events` carrying `data` on
    /// [`CHANNEL`], at `timestamp` (Unix seconds).
    pub fn signed_event(&self, data: &str, timestamp: u64) -> (String, String) {
        let body =
            serde_json::json!({ "name": EVENT, "channels": [CHANNEL], "data": data }).to_string();
        let path = format!("/apps/{}/events", self.id);
        let query = self.signed_query("POST", &path, &body, timestamp);
        (format!("{path}?{query}"), body)
    }

    /// `auth_key`, `auth_timestamp`, `auth_version`, `body_md5` (sorted, as signed) and
    /// `auth_signature` = hex HMAC-SHA256(secret, "METHOD\npath\nquery").
    pub fn signed_query(&self, method: &str, path: &str, body: &str, timestamp: u64) -> String {
        let body_md5 = hex::encode(md5::Md5::digest(body.as_bytes()));
        let query = format!(
            "auth_key={}&auth_timestamp={timestamp}&auth_version=1.0&body_md5={body_md5}",
            self.key
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(self.secret.as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(format!("{method}\n{path}\n{query}").as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        format!("{query}&auth_signature={signature}")
    }
}

pub struct Pusher {
    /// `ws://host:port`.
    pub ws_base: String,
    pub addr: SocketAddr,
    pub app_key: String,
}

#[async_trait]
impl Dialect for Pusher {
    fn name(&self) -> &'static str {
        "pusher"
    }

    /// Anyone may subscribe to a public channel: `user` is not needed.
    async fn open(&self, _user: &User, source: IpAddr) -> anyhow::Result<Box<dyn Connection>> {
        let stream = connect_from(source, self.addr).await?;
        let url = format!(
            "{}/app/{}?protocol=7&client=liveplan-loadgen&version=1.0",
            self.ws_base, self.app_key
        );
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let (mut socket, _) =
            tokio_tungstenite::client_async_with_config(url, stream, Some(config))
                .await
                .context("WebSocket handshake")?;
        tokio::time::timeout(HANDSHAKE, subscribe(&mut socket))
            .await
            .context("no pusher subscription within 10 s")??;
        Ok(Box::new(PusherConnection { socket }))
    }
}

/// Waits for `pusher:connection_established`, subscribes to [`CHANNEL`] and waits for the
/// server to confirm it.
async fn subscribe(socket: &mut WebSocketStream<TcpStream>) -> anyhow::Result<()> {
    let mut subscribed = false;
    loop {
        let text = super::next_text(socket, "the subscription").await?;
        match event_of(text.as_str()) {
            Some("pusher:connection_established") if !subscribed => {
                let subscribe = serde_json::json!({
                    "event": "pusher:subscribe",
                    "data": { "channel": CHANNEL },
                });
                socket
                    .send(Message::text(subscribe.to_string()))
                    .await
                    .context("subscribing")?;
                subscribed = true;
            }
            Some("pusher_internal:subscription_succeeded") => return Ok(()),
            Some("pusher:error") => bail!("refused: {}", text.as_str()),
            _ => {}
        }
    }
}

/// The `event` of a Pusher frame: the first one, where the protocol puts it.
fn event_of(text: &str) -> Option<&str> {
    let start = text.find("\"event\":\"")? + "\"event\":\"".len();
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

/// What a Pusher frame means to the measurement (a Pusher event carries no seq).
pub fn classify(text: &str) -> Delivery {
    let ours = event_of(text) == Some(EVENT);
    Delivery {
        kind: if ours { Kind::Event } else { Kind::Other },
        seq: None,
        sent_ns: ours
            .then(|| sent_ns_of(last_string_field(text, "data")))
            .flatten(),
    }
}

struct PusherConnection {
    socket: WebSocketStream<TcpStream>,
}

#[async_trait]
impl Connection for PusherConnection {
    async fn next(&mut self) -> anyhow::Result<Option<Delivery>> {
        loop {
            match self.socket.next().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(Message::Text(text))) => {
                    // The server's liveness check: unanswered, it closes the socket.
                    if event_of(text.as_str()) == Some("pusher:ping") {
                        let pong = r#"{"event":"pusher:pong","data":{}}"#;
                        self.socket.send(Message::text(pong)).await?;
                        continue;
                    }
                    return Ok(Some(classify(text.as_str())));
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
    fn apps_parse_and_refuse_odd_shapes() {
        let app = App::parse("app-1:key_1:s3cret:with:colons").err();
        assert!(app.is_some(), "colons are not in [A-Za-z0-9_-]");
        assert_eq!(
            App::parse("1:k:s").unwrap(),
            App {
                id: "1".into(),
                key: "k".into(),
                secret: "s".into()
            }
        );
        assert!(App::parse("1:k").is_err());
        assert!(App::parse("1::s").is_err());
        assert!(App::parse("1:k:s s").is_err());
        assert!(App::parse(&format!("1:k:{}", "s".repeat(129))).is_err());
    }

    /// The worked example of Pusher's HTTP API documentation ("Generating authentication
    /// signatures").
    #[test]
    fn signatures_match_pushers_worked_example() {
        let app = App {
            id: "3".into(),
            key: "278d425bdf160c739803".into(),
            secret: "7ad3773142a6692b25b8".into(),
        };
        let body = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        let query = app.signed_query("POST", "/apps/3/events", body, 1353088179);
        assert_eq!(
            query,
            "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0\
             &body_md5=ec365a775a4cd0599faeb73354201b6f\
             &auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
        let (path, body) = app.signed_event("lg-42", 1);
        assert!(path.starts_with("/apps/3/events?auth_key=278d425bdf160c739803&"));
        assert_eq!(
            body,
            r#"{"name":"lg-change","channels":["liveplan-loadgen"],"data":"lg-42"}"#
        );
    }

    #[test]
    fn frames_are_classified() {
        let ours = r#"{"event":"lg-change","channel":"liveplan-loadgen","data":"lg-5000"}"#;
        assert_eq!(
            classify(ours),
            Delivery {
                kind: Kind::Event,
                seq: None,
                sent_ns: Some(5000)
            }
        );
        let other = r#"{"event":"pusher:ping","data":"{}"}"#;
        assert_eq!(classify(other).kind, Kind::Other);
        let foreign = r#"{"event":"lg-change","channel":"liveplan-loadgen","data":"hello"}"#;
        assert_eq!(classify(foreign).sent_ns, None);
    }
}
