//! One SSE stream's state, without I/O: which events it carries ([`project_list_filter`],
//! [`user_filter`]), its first message, and the body chunk each batch of hub deliveries makes.
//! The socket (`socket.rs`) waits for deliveries and keepalive ticks and writes.

use super::protocol::{KEEPALIVE, Sse};
use crate::live::projects::ProjectSet;
use bytes::{Bytes, BytesMut};
use hub::{Delivery, Dialect, EventFilter};
use proto::{Event, EventType};
use serde_json::Value;
use std::sync::Arc;
use uuid::Uuid;

/// The most bytes of ready frames joined into one body chunk.
pub const MAX_CHUNK: usize = 64 * 1024;

pub struct SseSession {
    /// The `connected` message, until it is sent.
    greeting: Option<Bytes>,
}

impl SseSession {
    pub fn new(user_id: Uuid) -> Self {
        Self {
            greeting: Some(Sse::connected(user_id)),
        }
    }

    /// The first message of the stream, once.
    pub fn greeting(&mut self) -> Option<Bytes> {
        self.greeting.take()
    }

    /// The keepalive tick found the stream silent for a period.
    pub fn on_keepalive_tick(&self) -> Bytes {
        Bytes::from_static(KEEPALIVE)
    }

    /// The chunk for `first` and whatever else `more` has ready: several messages joined into
    /// one write (a copy, cheaper than a write each). `None` when the stream is over.
    pub fn on_deliveries(
        &self,
        first: Delivery,
        mut more: impl FnMut() -> Option<Delivery>,
    ) -> Option<Bytes> {
        let frame = |delivery: Delivery| match delivery {
            Delivery::Frame(frame) => Some(frame),
            Delivery::ResyncRequired { latest_seq } => Some(Sse.resync_required(latest_seq)),
            Delivery::Closed(_) => None,
            // SSE subscriptions ask for no heartbeat; were one to come, it is a keepalive.
            Delivery::Heartbeat => Some(Bytes::from_static(KEEPALIVE)),
        };
        let first = frame(first)?;
        if first.len() >= MAX_CHUNK {
            return Some(first);
        }
        let mut chunk: Option<BytesMut> = None;
        while chunk.as_ref().map_or(first.len(), |c| c.len()) < MAX_CHUNK {
            let Some(delivery) = more() else {
                break;
            };
            // An ending stream still sends what came before; the next poll sees Closed again.
            let Some(next) = frame(delivery) else {
                break;
            };
            chunk
                .get_or_insert_with(|| BytesMut::from(&first[..]))
                .extend_from_slice(&next);
        }
        Some(chunk.map_or(first, BytesMut::freeze))
    }
}

/// The project-list stream: project lifecycle events of the user's projects, and the database
/// events (which concern every project).
pub fn project_list_filter(set: Arc<ProjectSet>) -> EventFilter {
    Arc::new(move |event: &Event| match event.event_type {
        EventType::ProjectCreated | EventType::ProjectUpdated | EventType::ProjectDeleted => {
            event.project_id.is_some_and(|p| set.contains(p))
        }
        EventType::DatabaseWiped | EventType::DatabaseProjectsWiped => true,
        _ => false,
    })
}

/// The user stream: `user.updated` of the user themself; system administrators, who manage
/// users, get every user's.
pub fn user_filter(user_id: Uuid, is_admin: bool) -> EventFilter {
    Arc::new(move |event: &Event| {
        event.event_type == EventType::UserUpdated
            && (is_admin
                || event
                    .payload
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(|s| Uuid::parse_str(s).ok())
                    == Some(user_id))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub::CloseReason;
    use std::collections::VecDeque;

    fn frame(text: &'static str) -> Delivery {
        Delivery::Frame(Bytes::from_static(text.as_bytes()))
    }

    #[test]
    fn the_greeting_comes_once() {
        let user = Uuid::new_v4();
        let mut session = SseSession::new(user);
        assert_eq!(session.greeting(), Some(Sse::connected(user)));
        assert_eq!(session.greeting(), None);
    }

    #[test]
    fn ready_deliveries_join_into_one_chunk() {
        let session = SseSession::new(Uuid::nil());
        let mut ready = VecDeque::from([Delivery::ResyncRequired { latest_seq: 3 }, frame("b\n")]);
        let chunk = session.on_deliveries(frame("a\n"), || ready.pop_front());
        let mut expected = b"a\n".to_vec();
        expected.extend_from_slice(&Sse.resync_required(3));
        expected.extend_from_slice(b"b\n");
        assert_eq!(chunk, Some(Bytes::from(expected)));
    }

    #[test]
    fn a_close_ends_the_stream_after_what_came_before() {
        let session = SseSession::new(Uuid::nil());
        let mut ready = VecDeque::from([frame("b\n"), Delivery::Closed(CloseReason::LoggedOut)]);
        let chunk = session.on_deliveries(frame("a\n"), || ready.pop_front());
        assert_eq!(chunk, Some(Bytes::from_static(b"a\nb\n")));
        let over = session.on_deliveries(Delivery::Closed(CloseReason::LoggedOut), || None);
        assert_eq!(over, None);
    }

    #[test]
    fn a_large_frame_goes_alone() {
        let session = SseSession::new(Uuid::nil());
        let big = Bytes::from(vec![b'x'; MAX_CHUNK]);
        let mut asked = false;
        let chunk = session.on_deliveries(Delivery::Frame(big.clone()), || {
            asked = true;
            None
        });
        assert_eq!(chunk, Some(big));
        assert!(!asked);
    }

    #[test]
    fn keepalives() {
        let session = SseSession::new(Uuid::nil());
        assert_eq!(session.on_keepalive_tick(), Bytes::from_static(KEEPALIVE));
        let chunk = session.on_deliveries(Delivery::Heartbeat, || None);
        assert_eq!(chunk, Some(Bytes::from_static(KEEPALIVE)));
    }

    fn event(event_type: EventType, project_id: Option<Uuid>, payload: Value) -> Event {
        Event {
            stream: proto::StreamKey::System,
            seq: Some(1),
            event_type,
            payload,
            data: Value::Null,
            actor_id: None,
            tab_id: None,
            ts: chrono::Utc::now(),
            project_id,
            echo: None,
        }
    }

    #[test]
    fn the_user_stream_carries_the_users_own_updates_or_all_for_an_admin() {
        let me = Uuid::new_v4();
        let other = Uuid::new_v4();
        let mine = event(EventType::UserUpdated, None, serde_json::json!({"id": me}));
        let theirs = event(
            EventType::UserUpdated,
            None,
            serde_json::json!({"id": other}),
        );
        let project = event(EventType::ProjectCreated, Some(me), Value::Null);
        let filter = user_filter(me, false);
        assert!(filter(&mine));
        assert!(!filter(&theirs));
        assert!(!filter(&project));
        let admin = user_filter(me, true);
        assert!(admin(&theirs));
        assert!(!admin(&project));
    }

    #[test]
    fn the_project_list_stream_carries_the_users_projects_and_wipes() {
        let set = Arc::new(ProjectSet::default());
        let member_of = Uuid::new_v4();
        set.load([member_of]);
        let filter = project_list_filter(set);
        assert!(filter(&event(
            EventType::ProjectUpdated,
            Some(member_of),
            Value::Null
        )));
        assert!(!filter(&event(
            EventType::ProjectUpdated,
            Some(Uuid::new_v4()),
            Value::Null
        )));
        assert!(!filter(&event(
            EventType::ProjectUpdated,
            None,
            Value::Null
        )));
        assert!(filter(&event(EventType::DatabaseWiped, None, Value::Null)));
        assert!(!filter(&event(
            EventType::UserUpdated,
            Some(member_of),
            Value::Null
        )));
    }
}
