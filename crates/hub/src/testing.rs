//! Helpers for tests of the hub and of its transports.

use chrono::Utc;
use proto::{Event, EventType, StreamKey};
use serde_json::json;

/// An event ready to append to a log: the seq is allocated by the log.
pub fn event(stream: StreamKey, event_type: EventType) -> Event {
    let id = uuid::Uuid::now_v7();
    Event {
        stream,
        seq: None,
        event_type,
        payload: json!({"id": id}),
        data: json!({"id": id}),
        actor_id: None,
        tab_id: None,
        ts: Utc::now(),
        project_id: match stream {
            StreamKey::Project(id) => Some(id),
            _ => None,
        },
        echo: None,
    }
}
