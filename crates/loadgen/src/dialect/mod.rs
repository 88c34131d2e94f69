//! The wire dialects a subscriber can speak. Each one knows how to open a connection as a given
//! user and how to turn what arrives into [`Delivery`] values; everything else (counting,
//! latency, reporting) is dialect-neutral. The Bryntum WebSocket dialect (CONTRACT §8) fits the
//! same trait: `open` logs in with a ticket and sends `dataset`, and deliveries are its
//! `project_change` revisions, correlated through the task name the publisher writes (Bryntum
//! frames carry no tab id).

pub mod bryntum;
pub mod native_ws;
pub mod pusher;
pub mod sse;

use async_trait::async_trait;
use std::net::IpAddr;

/// The prefix of the `X-Tab-Id` the publisher sends; the rest is its send time in nanoseconds
/// since the load generator started.
pub const TAB_PREFIX: &str = "lg-";

/// Who a subscriber connects as.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub id: String,
    pub token: String,
}

/// What one server message meant to the measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A logged event (it has a seq).
    Event,
    /// `resync_required`: the subscriber lost its place.
    Resync,
    /// Anything else: `connected`, presence, unknown.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub kind: Kind,
    pub seq: Option<i64>,
    /// The publisher's send time, when the event came from one of our writes.
    pub sent_ns: Option<u64>,
}

#[async_trait]
pub trait Dialect: Send + Sync {
    fn name(&self) -> &'static str;
    /// Opens one subscriber to the project as `user`, with its socket bound to `source`.
    async fn open(&self, user: &User, source: IpAddr) -> anyhow::Result<Box<dyn Connection>>;
}

#[async_trait]
pub trait Connection: Send {
    /// The next message from the server; `Ok(None)` when the server ended the stream.
    /// Control traffic (pings, comments) is handled inside and never returned.
    async fn next(&mut self) -> anyhow::Result<Option<Delivery>>;
}

/// The next text frame of a WebSocket the server should keep open while the client waits for
/// an answer (a subscription, a dataset); `waiting_for` names it in the error when the server
/// closes or ends the stream first.
pub async fn next_text(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    waiting_for: &str,
) -> anyhow::Result<tokio_tungstenite::tungstenite::Utf8Bytes> {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text),
            Some(Ok(Message::Close(f))) => anyhow::bail!("closed before {waiting_for}: {f:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => anyhow::bail!("the server ended the stream before {waiting_for}"),
        }
    }
}

/// The string value of the last `"key":"…"` in `json`. A scan instead of a parse: the load
/// generator shares the CPU with the server, and a full JSON parse per delivery would cost it
/// more than the server spends sending. The last occurrence is taken because both dialects put
/// the tab id after the (client-controlled) record data.
pub fn last_string_field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!("\"{key}\":\"");
    let start = json.rfind(&pattern)? + pattern.len();
    let len = json[start..].find('"')?;
    Some(&json[start..start + len])
}

/// The integer value of the last `"key":N` in `json` (`None` for `null` or absent).
pub fn last_int_field(json: &str, key: &str) -> Option<i64> {
    let pattern = format!("\"{key}\":");
    let start = json.rfind(&pattern)? + pattern.len();
    let digits = json[start..]
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(json.len() - start);
    json[start..start + digits].parse().ok()
}

/// The send time carried in a tab id written by our publisher.
pub fn sent_ns_of(tab_id: Option<&str>) -> Option<u64> {
    tab_id?.strip_prefix(TAB_PREFIX)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_from_the_end() {
        let json = r#"{"data":{"name":"x","tab_id":"user-made"},"seq":12,"tab_id":"lg-99"}"#;
        assert_eq!(last_string_field(json, "tab_id"), Some("lg-99"));
        assert_eq!(last_int_field(json, "seq"), Some(12));
        assert_eq!(last_int_field(r#"{"seq":null}"#, "seq"), None);
        assert_eq!(last_int_field(r#"{"seq":7}"#, "seq"), Some(7));
        assert_eq!(last_string_field(json, "missing"), None);
        assert_eq!(last_string_field(r#"{"tab_id":"open"#, "tab_id"), None);
    }

    #[test]
    fn only_our_tab_ids_carry_a_send_time() {
        assert_eq!(sent_ns_of(Some("lg-123")), Some(123));
        assert_eq!(sent_ns_of(Some("lg-")), None);
        assert_eq!(sent_ns_of(Some("tab-123")), None);
        assert_eq!(sent_ns_of(None), None);
    }
}
