//! What travels on the channel. One Redis message is one of:
//!
//! - `E` + the sending node's id (32 hex digits) + the event as JSON (`proto::Event`'s serde form);
//! - `L` + the sending node's id: "I could not publish something; read the log" (an event over
//!   the size limit, or a publish that failed or was dropped while Redis was away).
//!
//! The node id lets a node skip its own messages: it already handed them to its hub directly.
//! JSON rather than a binary form: the event's payload and data are JSON values already, and one
//! encoding per event is far below the cost of a commit.

use proto::Event;
use uuid::Uuid;

const EVENT: u8 = b'E';
const LAG: u8 = b'L';
const ID_LEN: usize = 32;

/// A decoded channel message.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    Event { origin: Uuid, event: Box<Event> },
    Lag { origin: Uuid },
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("message of {size} bytes is over the limit of {limit}")]
    Oversized { size: usize, limit: usize },
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// The message for `event`, or `None` when it would be over `limit` bytes (send
/// [`encode_lag`] instead: the receivers read the event from the log).
pub fn encode_event(origin: Uuid, event: &Event, limit: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    out.push(EVENT);
    out.extend_from_slice(origin.simple().to_string().as_bytes());
    // Serializing an `Event` cannot fail: every field is a plain value or JSON already.
    serde_json::to_writer(&mut out, event).ok()?;
    (out.len() <= limit).then_some(out)
}

pub fn encode_lag(origin: Uuid) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + ID_LEN);
    out.push(LAG);
    out.extend_from_slice(origin.simple().to_string().as_bytes());
    out
}

pub fn decode(bytes: &[u8], limit: usize) -> Result<Decoded, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::Oversized {
            size: bytes.len(),
            limit,
        });
    }
    let Some((&kind, rest)) = bytes.split_first() else {
        return Err(DecodeError::Malformed("empty".into()));
    };
    if rest.len() < ID_LEN {
        return Err(DecodeError::Malformed("no node id".into()));
    }
    let (id, body) = rest.split_at(ID_LEN);
    let origin = std::str::from_utf8(id)
        .ok()
        .and_then(|id| Uuid::try_parse(id).ok())
        .ok_or_else(|| DecodeError::Malformed("bad node id".into()))?;
    match kind {
        EVENT => serde_json::from_slice(body)
            .map(|event| Decoded::Event {
                origin,
                event: Box::new(event),
            })
            .map_err(|e| DecodeError::Malformed(format!("event: {e}"))),
        LAG if body.is_empty() => Ok(Decoded::Lag { origin }),
        _ => Err(DecodeError::Malformed("unknown kind".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{EventType, StreamKey};

    fn event() -> Event {
        let mut event =
            hub::testing::event(StreamKey::Project(Uuid::now_v7()), EventType::TaskCreated);
        event.seq = Some(7);
        event.echo = Some(serde_json::json!({"revision": "r1"}));
        event
    }

    #[test]
    fn an_event_round_trips() {
        let node = Uuid::now_v7();
        let event = event();
        let bytes = encode_event(node, &event, 1 << 20).unwrap();
        assert_eq!(
            decode(&bytes, 1 << 20).unwrap(),
            Decoded::Event {
                origin: node,
                event: Box::new(event)
            }
        );
    }

    #[test]
    fn a_lag_hint_round_trips() {
        let node = Uuid::now_v7();
        assert_eq!(
            decode(&encode_lag(node), 64).unwrap(),
            Decoded::Lag { origin: node }
        );
    }

    #[test]
    fn an_event_over_the_limit_is_not_encoded() {
        let mut event = event();
        event.data = serde_json::json!({"text": "x".repeat(2000)});
        assert_eq!(encode_event(Uuid::now_v7(), &event, 1000), None);
    }

    #[test]
    fn oversized_and_malformed_messages_are_errors() {
        let node = Uuid::now_v7();
        let bytes = encode_event(node, &event(), 1 << 20).unwrap();
        assert!(matches!(
            decode(&bytes, 10),
            Err(DecodeError::Oversized { .. })
        ));
        for bad in [
            &b""[..],
            b"E",
            b"Eshort",
            b"X0123456789abcdef0123456789abcdef",
            b"Ezzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz{}",
            b"L0123456789abcdef0123456789abcdefextra",
        ] {
            assert!(
                matches!(decode(bad, 1 << 20), Err(DecodeError::Malformed(_))),
                "{bad:?}"
            );
        }
        let mut truncated = bytes.clone();
        truncated.truncate(bytes.len() - 3);
        assert!(matches!(
            decode(&truncated, 1 << 20),
            Err(DecodeError::Malformed(_))
        ));
    }
}
