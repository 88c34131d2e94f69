//! The native WebSocket's wire (CONTRACT §6), pure: what a client frame asks for, the frames
//! the server answers with, the resume position, and the close texts.
//!
//! The event frames themselves are encoded by [`NativeWs`], which stays in the hub crate: the
//! hub encodes each event once per dialect and shares those bytes with every subscriber (and
//! its direct writes), so the encoder must be a `hub::Dialect` the hub can call. It is
//! re-exported here so that everything this dialect puts on the wire is found from one place.

use crate::dialects::position;
use serde_json::{Value, json};
use std::collections::HashMap;

pub use hub::NativeWs;

/// Frames above the contract's 64 KiB are read whole up to this size so they can be refused
/// with a proper 1009; beyond it the WebSocket library drops the connection unread.
pub const READ_LIMIT: usize = 256 * 1024;

/// The query of the upgrade request: `ticket`, `since`, and (legacy) `token`.
pub type Params = HashMap<String, String>;

pub const UNKNOWN_PATH: &str = "no such WebSocket endpoint";
pub const NO_TICKET: &str = "missing, unknown, expired or spent ticket";
pub const NOT_A_MEMBER: &str = "not a member (role Member or higher) of this project";
pub const NO_SUCH_PROJECT: &str = "no such project";
pub const SHUTTING_DOWN: &str = "the server is shutting down";
pub const SERVER_ERROR: &str = "server error";
pub const LIVE_UNAVAILABLE: &str = "live delivery unavailable";
pub const PONG_TIMEOUT: &str = "pong timeout";
pub const TOO_MANY_FRAMES: &str = "too many frames; at most 20 a second, bursts of 100";
pub const BINARY_REFUSED: &str = "binary frames are not accepted";
pub const TOO_BIG: &str = "client frames are at most 64 KiB";

/// The payload of the server's WebSocket pings.
pub const PING_PAYLOAD: &[u8] = b"liveplan";

/// What a client text frame asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientText {
    /// `{"type": "ping"}`: answered with [`pong`].
    Ping,
    /// Another JSON object: reserved for later client messages, ignored.
    Reserved,
    /// Not a JSON object: answered with [`invalid_frame`].
    Invalid,
}

pub fn parse_client_text(text: &str) -> ClientText {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => {
            if object.get("type").and_then(Value::as_str) == Some("ping") {
                ClientText::Ping
            } else {
                ClientText::Reserved
            }
        }
        _ => ClientText::Invalid,
    }
}

/// The answer to a client's `{"type": "ping"}`.
pub fn pong() -> String {
    json!({"protocol_version": 1, "event_type": "pong", "payload": {}, "seq": null}).to_string()
}

/// The answer to a client text frame that is not a JSON object.
pub fn invalid_frame() -> String {
    json!({
        "protocol_version": 1,
        "event_type": "error",
        "payload": {"code": "invalid_frame", "message": "client frames must be JSON objects"},
        "seq": null,
    })
    .to_string()
}

/// `?since=N`: where the client resumes.
pub fn since(params: &Params) -> Option<i64> {
    position::parse_param(params.get("since").map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_texts() {
        assert_eq!(parse_client_text(r#"{"type":"ping"}"#), ClientText::Ping);
        assert_eq!(
            parse_client_text(r#"{"type":"pong"}"#),
            ClientText::Reserved
        );
        assert_eq!(parse_client_text("{}"), ClientText::Reserved);
        assert_eq!(parse_client_text("[]"), ClientText::Invalid);
        assert_eq!(parse_client_text("ping"), ClientText::Invalid);
        assert_eq!(parse_client_text(""), ClientText::Invalid);
    }

    #[test]
    fn answers_are_the_contracts_frames() {
        let pong: Value = serde_json::from_str(&pong()).unwrap();
        assert_eq!(
            pong,
            json!({"protocol_version": 1, "event_type": "pong", "payload": {}, "seq": null})
        );
        let invalid: Value = serde_json::from_str(&invalid_frame()).unwrap();
        assert_eq!(invalid["event_type"], "error");
        assert_eq!(invalid["payload"]["code"], "invalid_frame");
    }

    #[test]
    fn since_is_a_position() {
        let mut params = Params::new();
        assert_eq!(since(&params), None);
        params.insert("since".into(), "12".into());
        assert_eq!(since(&params), Some(12));
        params.insert("since".into(), "x".into());
        assert_eq!(since(&params), Some(i64::MAX));
        params.insert("since".into(), "".into());
        assert_eq!(
            since(&params),
            Some(i64::MAX),
            "since= blank is no readable position"
        );
    }
}
