//! The body Pusher's webhooks carry: `{"time_ms": …, "events": [{"name": …, "channel": …, …}]}`,
//! one object per [`ChannelActivity`] with Pusher's names and fields, and its signature.

use crate::pusher::activity::ChannelActivity;
use crate::pusher::credentials::PusherCredentials;
use crate::pusher::signature::webhook_signature;
use bytes::Bytes;
use serde_json::{Map, Value, json};

/// One POST's body, signed once: every attempt and every URL sends these same bytes.
#[derive(Debug, Clone)]
pub struct SignedBody {
    pub json: Bytes,
    /// `X-Pusher-Signature`: HMAC-SHA256 of `json` with the app's secret, in hex.
    pub signature: String,
}

/// The event object Pusher's docs define for `activity`.
pub fn event_json(activity: &ChannelActivity) -> Value {
    match activity {
        ChannelActivity::Occupied { channel } => {
            json!({ "name": "channel_occupied", "channel": channel })
        }
        ChannelActivity::Vacated { channel } => {
            json!({ "name": "channel_vacated", "channel": channel })
        }
        ChannelActivity::MemberAdded { channel, user_id } => {
            json!({ "name": "member_added", "channel": channel, "user_id": user_id })
        }
        ChannelActivity::MemberRemoved { channel, user_id } => {
            json!({ "name": "member_removed", "channel": channel, "user_id": user_id })
        }
        ChannelActivity::ClientEvent {
            channel,
            event,
            data,
            socket_id,
            user_id,
        } => {
            let mut object = Map::new();
            object.insert("name".into(), "client_event".into());
            object.insert("channel".into(), channel.as_str().into());
            object.insert("event".into(), event.as_str().into());
            // As the client sent it: a string, never parsed (Pusher's format).
            object.insert("data".into(), data.as_str().into());
            object.insert("socket_id".into(), socket_id.as_str().into());
            if let Some(user_id) = user_id {
                object.insert("user_id".into(), user_id.as_str().into());
            }
            Value::Object(object)
        }
        ChannelActivity::CacheMiss { channel } => {
            json!({ "name": "cache_miss", "channel": channel })
        }
    }
}

/// The body of one POST carrying `events`, made at `time_ms` (Unix milliseconds).
pub fn encode(events: &[ChannelActivity], time_ms: i64) -> Vec<u8> {
    let body = json!({
        "time_ms": time_ms,
        "events": events.iter().map(event_json).collect::<Vec<_>>(),
    });
    // A Value of strings and numbers always serializes.
    serde_json::to_vec(&body).unwrap_or_default()
}

/// [`encode`], signed with the app's secret.
pub fn signed(
    events: &[ChannelActivity],
    time_ms: i64,
    credentials: &PusherCredentials,
) -> SignedBody {
    let json = encode(events, time_ms);
    let signature = webhook_signature(credentials, &json);
    SignedBody {
        json: Bytes::from(json),
        signature,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(events: &[ChannelActivity]) -> Value {
        serde_json::from_slice(&encode(events, 1_327_078_148_132)).unwrap()
    }

    #[test]
    fn every_activity_has_pushers_name_and_fields() {
        let body = parsed(&[
            ChannelActivity::Occupied {
                channel: "c".into(),
            },
            ChannelActivity::Vacated {
                channel: "c".into(),
            },
            ChannelActivity::MemberAdded {
                channel: "presence-p".into(),
                user_id: "7".into(),
            },
            ChannelActivity::MemberRemoved {
                channel: "presence-p".into(),
                user_id: "7".into(),
            },
            ChannelActivity::ClientEvent {
                channel: "private-c".into(),
                event: "client-typing".into(),
                data: "{\"a\":1}".into(),
                socket_id: "1.2".into(),
                user_id: None,
            },
            ChannelActivity::ClientEvent {
                channel: "presence-p".into(),
                event: "client-x".into(),
                data: "plain".into(),
                socket_id: "3.4".into(),
                user_id: Some("7".into()),
            },
            ChannelActivity::CacheMiss {
                channel: "cache-c".into(),
            },
        ]);
        assert_eq!(
            body,
            json!({
                "time_ms": 1_327_078_148_132_i64,
                "events": [
                    {"name": "channel_occupied", "channel": "c"},
                    {"name": "channel_vacated", "channel": "c"},
                    {"name": "member_added", "channel": "presence-p", "user_id": "7"},
                    {"name": "member_removed", "channel": "presence-p", "user_id": "7"},
                    {"name": "client_event", "channel": "private-c", "event": "client-typing",
                     "data": "{\"a\":1}", "socket_id": "1.2"},
                    {"name": "client_event", "channel": "presence-p", "event": "client-x",
                     "data": "plain", "socket_id": "3.4", "user_id": "7"},
                    {"name": "cache_miss", "channel": "cache-c"},
                ]
            })
        );
    }

    #[test]
    fn the_signature_is_the_hmac_of_the_exact_bytes() {
        let credentials = PusherCredentials::demo();
        let events = [ChannelActivity::Occupied {
            channel: "c".into(),
        }];
        let body = signed(&events, 5, &credentials);
        assert_eq!(
            &body.json[..],
            br#"{"time_ms":5,"events":[{"name":"channel_occupied","channel":"c"}]}"#
        );
        assert_eq!(body.signature, webhook_signature(&credentials, &body.json));
        assert_eq!(body.signature.len(), 64);
        let other = PusherCredentials {
            secret: "another".into(),
            ..PusherCredentials::demo()
        };
        assert_ne!(body.signature, signed(&events, 5, &other).signature);
    }
}
