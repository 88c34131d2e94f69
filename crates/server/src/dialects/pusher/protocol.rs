//! The Pusher Channels wire (protocol 7, CONTRACT §10), pure: what a client frame asks for and
//! the frames the server answers with. Every frame is a JSON text object `{event, channel?,
//! data}` whose `data` is a JSON string (pusher-js parses it), except `pusher:error` and
//! `pusher:subscription_error`, whose `data` is an object as Pusher sends it.

use serde_json::{Map, Value, json};

/// The protocol version served; any other closes with [`CLOSE_UNSUPPORTED_PROTOCOL`].
pub const PROTOCOL: u32 = 7;
/// Seconds of silence after which a client pings (`activity_timeout`).
pub const ACTIVITY_TIMEOUT: u32 = 120;
/// The largest `data` of a client event (and of a published event), in bytes.
pub const MAX_DATA: usize = 10 * 1024;
/// The largest client frame read whole; beyond it the socket closes with 1009.
pub const READ_LIMIT: usize = 64 * 1024;
/// Channels one socket may be subscribed to at once.
pub const MAX_CHANNELS_PER_SOCKET: usize = 100;
/// Client events a socket may send per second (a breach gets `pusher:error` 4301).
pub const CLIENT_EVENTS_PER_SECOND: u32 = 10;
/// Frames of any kind a socket may send per second on average (bursts of [`FRAME_BURST`])
/// before it is closed with 4301's neighbour 4302.
pub const FRAMES_PER_SECOND: u32 = 50;
pub const FRAME_BURST: u32 = 200;

/// Close codes (Pusher's: 4000–4099 do not reconnect, 4100–4199 reconnect later, 4200–4299
/// reconnect at once).
pub const CLOSE_UNKNOWN_APP: u16 = 4001;
pub const CLOSE_UNSUPPORTED_PROTOCOL: u16 = 4007;
pub const CLOSE_UNAUTHORIZED: u16 = 4009;
pub const CLOSE_OVER_CAPACITY: u16 = 4100;
pub const CLOSE_RECONNECT: u16 = 4200;
pub const CLOSE_PONG_TIMEOUT: u16 = 4201;

/// `pusher:error` codes on a socket that stays open.
pub const ERROR_BAD_REQUEST: u16 = 4300;
pub const ERROR_RATE_LIMIT: u16 = 4301;

/// A client frame, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Ping,
    Pong,
    Subscribe {
        channel: String,
        auth: Option<String>,
        channel_data: Option<String>,
    },
    Unsubscribe {
        channel: String,
    },
    Signin {
        auth: String,
        user_data: String,
    },
    /// `client-*` on a channel; `data` as the client sent it, made a JSON string.
    ClientEvent {
        event: String,
        channel: String,
        data: String,
    },
    /// `pusher:resume`: `(channel, serial, stream_id)` per channel.
    Resume {
        positions: Vec<(String, i64, String)>,
    },
}

/// Why a client frame is refused (`pusher:error` 4300 with this text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadFrame {
    #[error("frames must be JSON objects with a string event")]
    NotAnEvent,
    #[error("unknown event")]
    UnknownEvent,
    #[error("the event's data is missing or malformed")]
    BadData,
    #[error("event data is at most 10 KB")]
    DataTooBig,
}

fn data_object(frame: &Map<String, Value>) -> Option<Map<String, Value>> {
    match frame.get("data")? {
        Value::Object(object) => Some(object.clone()),
        // Some clients send `data` as a JSON string of the object.
        Value::String(text) => match serde_json::from_str(text) {
            Ok(Value::Object(object)) => Some(object),
            _ => None,
        },
        _ => None,
    }
}

fn string_field(object: &Map<String, Value>, name: &str) -> Option<String> {
    object.get(name).and_then(Value::as_str).map(str::to_owned)
}

pub fn parse(text: &str) -> Result<ClientMessage, BadFrame> {
    let Ok(Value::Object(frame)) = serde_json::from_str::<Value>(text) else {
        return Err(BadFrame::NotAnEvent);
    };
    let event = frame
        .get("event")
        .and_then(Value::as_str)
        .ok_or(BadFrame::NotAnEvent)?;
    match event {
        "pusher:ping" => Ok(ClientMessage::Ping),
        "pusher:pong" => Ok(ClientMessage::Pong),
        "pusher:subscribe" => {
            let data = data_object(&frame).ok_or(BadFrame::BadData)?;
            let channel = string_field(&data, "channel").ok_or(BadFrame::BadData)?;
            let channel_data = match data.get("channel_data") {
                None | Some(Value::Null) => None,
                Some(Value::String(text)) => Some(text.clone()),
                Some(_) => return Err(BadFrame::BadData),
            };
            if channel_data.as_ref().is_some_and(|d| d.len() > MAX_DATA) {
                return Err(BadFrame::DataTooBig);
            }
            Ok(ClientMessage::Subscribe {
                channel,
                auth: string_field(&data, "auth"),
                channel_data,
            })
        }
        "pusher:unsubscribe" => {
            let data = data_object(&frame).ok_or(BadFrame::BadData)?;
            let channel = string_field(&data, "channel").ok_or(BadFrame::BadData)?;
            Ok(ClientMessage::Unsubscribe { channel })
        }
        "pusher:signin" => {
            let data = data_object(&frame).ok_or(BadFrame::BadData)?;
            let auth = string_field(&data, "auth").ok_or(BadFrame::BadData)?;
            let user_data = string_field(&data, "user_data").ok_or(BadFrame::BadData)?;
            if user_data.len() > MAX_DATA {
                return Err(BadFrame::DataTooBig);
            }
            Ok(ClientMessage::Signin { auth, user_data })
        }
        "pusher:resume" => {
            let data = data_object(&frame).ok_or(BadFrame::BadData)?;
            let Some(Value::Object(positions)) = data.get("channel_positions") else {
                return Err(BadFrame::BadData);
            };
            let mut parsed = Vec::new();
            for (channel, position) in positions.iter().take(MAX_CHANNELS_PER_SOCKET) {
                let serial = position.get("serial").and_then(Value::as_i64);
                let stream = position.get("stream_id").and_then(Value::as_str);
                let (Some(serial), Some(stream)) = (serial, stream) else {
                    return Err(BadFrame::BadData);
                };
                parsed.push((channel.clone(), serial, stream.to_owned()));
            }
            Ok(ClientMessage::Resume { positions: parsed })
        }
        client if client.starts_with("client-") => {
            let channel = string_field(&frame, "channel").ok_or(BadFrame::BadData)?;
            let data = match frame.get("data") {
                Some(Value::String(text)) => text.clone(),
                Some(other) => other.to_string(),
                None => "{}".to_owned(),
            };
            if data.len() > MAX_DATA {
                return Err(BadFrame::DataTooBig);
            }
            Ok(ClientMessage::ClientEvent {
                event: client.to_owned(),
                channel,
                data,
            })
        }
        _ => Err(BadFrame::UnknownEvent),
    }
}

/// `{event, channel?, data}` with `data` a JSON string.
pub fn frame(event: &str, channel: Option<&str>, data: &str) -> String {
    let mut object = Map::new();
    object.insert("event".to_owned(), Value::from(event));
    if let Some(channel) = channel {
        object.insert("channel".to_owned(), Value::from(channel));
    }
    object.insert("data".to_owned(), Value::from(data));
    Value::Object(object).to_string()
}

/// An app channel's event as subscribers get it: with its serial and stream.
pub fn event_frame(event: &str, channel: &str, data: &str, serial: i64, stream_id: &str) -> String {
    json!({
        "event": event,
        "channel": channel,
        "data": data,
        "serial": serial,
        "stream_id": stream_id,
    })
    .to_string()
}

/// A client event relayed to the channel's other sockets (`user_id` on presence channels).
pub fn client_event_frame(event: &str, channel: &str, data: &str, user_id: Option<&str>) -> String {
    let mut object = json!({"event": event, "channel": channel, "data": data});
    if let Some(user_id) = user_id {
        object["user_id"] = Value::from(user_id);
    }
    object.to_string()
}

pub fn connection_established(socket_id: &str) -> String {
    frame(
        "pusher:connection_established",
        None,
        &json!({"socket_id": socket_id, "activity_timeout": ACTIVITY_TIMEOUT}).to_string(),
    )
}

pub fn ping() -> String {
    frame("pusher:ping", None, "{}")
}

pub fn pong() -> String {
    frame("pusher:pong", None, "{}")
}

pub fn error(code: u16, message: &str) -> String {
    json!({"event": "pusher:error", "data": {"code": code, "message": message}}).to_string()
}

pub fn subscription_succeeded(channel: &str, presence: Option<&Value>) -> String {
    let data = match presence {
        Some(presence) => json!({ "presence": presence }).to_string(),
        None => "{}".to_owned(),
    };
    frame(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        &data,
    )
}

/// `pusher:subscription_error` (`status` 400 bad request, 401 bad signature, 403 forbidden).
pub fn subscription_error(channel: &str, kind: &str, error: &str, status: u16) -> String {
    json!({
        "event": "pusher:subscription_error",
        "channel": channel,
        "data": {"type": kind, "error": error, "status": status},
    })
    .to_string()
}

pub fn member_added(channel: &str, user_id: &str, user_info: &Value) -> String {
    frame(
        "pusher_internal:member_added",
        Some(channel),
        &json!({"user_id": user_id, "user_info": user_info}).to_string(),
    )
}

pub fn member_removed(channel: &str, user_id: &str) -> String {
    frame(
        "pusher_internal:member_removed",
        Some(channel),
        &json!({ "user_id": user_id }).to_string(),
    )
}

pub fn cache_miss(channel: &str) -> String {
    frame("pusher:cache_miss", Some(channel), "{}")
}

pub fn signin_success(user_data: &str) -> String {
    frame(
        "pusher:signin_success",
        None,
        &json!({ "user_data": user_data }).to_string(),
    )
}

pub fn resume_success(recovered: &[(String, usize)], failed: &[(String, &str, &str)]) -> String {
    let recovered: Vec<Value> = recovered
        .iter()
        .map(|(channel, replayed)| json!({"channel": channel, "replayed": replayed}))
        .collect();
    let failed: Vec<Value> = failed
        .iter()
        .map(|(channel, code, reason)| json!({"channel": channel, "code": code, "reason": reason}))
        .collect();
    frame(
        "pusher:resume_success",
        None,
        &json!({"recovered": recovered, "failed": failed}).to_string(),
    )
}

/// The `protocol` of the upgrade's query: `Ok` for 7.
pub fn protocol_supported(query: Option<&str>) -> bool {
    query.and_then(|q| q.trim().parse::<u32>().ok()) == Some(PROTOCOL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse() {
        assert_eq!(
            parse(r#"{"event":"pusher:ping","data":{}}"#),
            Ok(ClientMessage::Ping)
        );
        assert_eq!(
            parse(r#"{"event":"pusher:subscribe","data":{"channel":"a","auth":"k:s"}}"#),
            Ok(ClientMessage::Subscribe {
                channel: "a".into(),
                auth: Some("k:s".into()),
                channel_data: None
            })
        );
        assert_eq!(
            parse(r#"{"event":"client-x","channel":"private-a","data":{"x":1}}"#),
            Ok(ClientMessage::ClientEvent {
                event: "client-x".into(),
                channel: "private-a".into(),
                data: r#"{"x":1}"#.into()
            })
        );
        assert_eq!(parse("nope"), Err(BadFrame::NotAnEvent));
        assert_eq!(parse("[]"), Err(BadFrame::NotAnEvent));
        assert_eq!(
            parse(r#"{"event":"pusher:what"}"#),
            Err(BadFrame::UnknownEvent)
        );
        assert_eq!(
            parse(r#"{"event":"pusher:subscribe","data":{}}"#),
            Err(BadFrame::BadData)
        );
        let big = format!(
            r#"{{"event":"client-x","channel":"private-a","data":"{}"}}"#,
            "x".repeat(MAX_DATA + 1)
        );
        assert_eq!(parse(&big), Err(BadFrame::DataTooBig));
        assert_eq!(
            parse(
                r#"{"event":"pusher:resume","data":{"channel_positions":{"a":{"serial":3,"stream_id":"s"}}}}"#
            ),
            Ok(ClientMessage::Resume {
                positions: vec![("a".into(), 3, "s".into())]
            })
        );
    }

    #[test]
    fn server_frames_carry_string_data() {
        let established: Value = serde_json::from_str(&connection_established("1.2")).unwrap();
        let data: Value = serde_json::from_str(established["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["socket_id"], "1.2");
        assert_eq!(data["activity_timeout"], 120);
        assert!(protocol_supported(Some("7")));
        assert!(!protocol_supported(Some("6")));
        assert!(!protocol_supported(None));
    }
}
