//! What a webhook receives for one event: the JSON body (the same bytes at every attempt) and
//! the headers that name and sign it.

use crate::pusher::signature::hmac_hex;
use proto::Event;
use serde_json::json;
use store::format_ts;
use uuid::Uuid;

/// `{id, event, project_id, seq, payload, data, actor_id, timestamp}`: `id` is the delivery id,
/// `event` the dotted name, `timestamp` the commit time.
pub fn body(delivery_id: Uuid, project_id: Uuid, event: &Event) -> Vec<u8> {
    json!({
        "id": delivery_id,
        "event": event.event_type.dotted(),
        "project_id": project_id,
        "seq": event.seq,
        "payload": event.payload,
        "data": event.data,
        "actor_id": event.actor_id,
        "timestamp": format_ts(event.ts),
    })
    .to_string()
    .into_bytes()
}

/// `X-Liveplan-Signature`: `t=UNIX,v1=HEX`, HEX the HMAC-SHA256 of `t.body` under the
/// webhook's secret (lower-case hex). A receiver recomputes it and should refuse an old `t`.
pub fn signature(secret: &str, unix_time: i64, body: &[u8]) -> String {
    let mut signed = format!("{unix_time}.").into_bytes();
    signed.extend_from_slice(body);
    format!("t={unix_time},v1={}", hmac_hex(secret, &signed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{EventType, StreamKey};

    #[test]
    fn the_body_names_the_event_dotted_and_the_signature_covers_time_and_body() {
        let project = Uuid::now_v7();
        let delivery = Uuid::now_v7();
        let event = Event {
            stream: StreamKey::Project(project),
            seq: Some(7),
            event_type: EventType::TaskCommentCreated,
            payload: json!({ "id": "x" }),
            data: json!({ "id": "x", "body": "hi" }),
            actor_id: None,
            tab_id: Some("tab".into()),
            ts: chrono::Utc::now(),
            project_id: Some(project),
            echo: None,
        };
        let bytes = body(delivery, project, &event);
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["event"], "task_comment.created");
        assert_eq!(value["seq"], 7);
        assert_eq!(value["id"], json!(delivery));
        assert_eq!(value["actor_id"], json!(null));
        assert!(value.get("tab_id").is_none());
        let signed = signature("secret", 1_700_000_000, &bytes);
        let mut message = b"1700000000.".to_vec();
        message.extend_from_slice(&bytes);
        assert_eq!(
            signed,
            format!("t=1700000000,v1={}", hmac_hex("secret", &message))
        );
        assert_ne!(signed, signature("other", 1_700_000_000, &bytes));
    }
}
