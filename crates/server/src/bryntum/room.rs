//! A project's Bryntum subscribers and their feed.
//!
//! Every committed event of the project reaches the room through one hub subscription (one per
//! project, not per socket), in commit order. The room reads the events from the log and turns
//! them into `project_change` messages, encoded once and shared by every socket of the room:
//!
//! - events of a Bryntum revision carry a one-off tab id; the socket that made the revision
//!   left the echo (the revision as the client sent it, with real ids) under that id before
//!   committing, and the room sends it at the revision's first event, so every socket sees
//!   Bryntum revisions and other writes in the same commit order;
//! - events of any other writer (REST, …) become revisions with `client: null`, in Bryntum
//!   field names;
//! - scheduler outputs (`cpm_complete`, `task_dates_updated`) are never sent.

use super::mapping::{self, Store, Units};
use super::phantoms::PhantomMap;
use crate::app::AppState;
use bytes::Bytes;
use hub::{Delivery, SubscribeRequest};
use proto::{Event, EventType, StreamKey};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::broadcast;
use uuid::Uuid;

/// Tab ids of Bryntum revisions start with this; the rest is random.
pub const TOKEN_PREFIX: &str = "bryntum-rev:";

/// Messages a room holds for its slowest socket before that socket is resynced.
const ROOM_BUFFER: usize = 1024;

/// What a room tells its sockets.
pub enum RoomMessage {
    /// A `project_change`; `seq` is the event it starts at (`None` when it wrote nothing).
    Change {
        seq: Option<i64>,
        frame: SharedFrame,
    },
    /// The project was reset: send a fresh dataset, then `reset {userName}`.
    Reset { seq: i64, user_name: String },
    /// The room's feed could not be continued: send every socket a fresh dataset.
    Resync,
    /// The project is gone (deleted) or the server is stopping.
    Closed(hub::CloseReason),
}

/// A `project_change` whose bytes are made once per project label a socket uses (the uuid, or
/// the number a client chose), not once per socket.
pub struct SharedFrame {
    revisions: String,
    by_label: Mutex<HashMap<String, Bytes>>,
}

impl SharedFrame {
    pub fn new(revisions: &Value) -> SharedFrame {
        SharedFrame {
            revisions: revisions.to_string(),
            by_label: Mutex::new(HashMap::new()),
        }
    }

    pub fn frame(&self, label: &Value) -> Bytes {
        let label = label.to_string();
        let mut cache = self.by_label.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .entry(label)
            .or_insert_with_key(|label| {
                Bytes::from(format!(
                    r#"{{"command":"project_change","data":{{"revisions":{},"project":{}}}}}"#,
                    self.revisions, label
                ))
            })
            .clone()
    }
}

/// A revision waiting for its events: what to send when the first one arrives.
pub enum Pending {
    Echo(Value),
    Reset(String),
}

pub struct Room {
    pub project_id: Uuid,
    sender: broadcast::Sender<Arc<RoomMessage>>,
    pending: Mutex<HashMap<String, Pending>>,
    pub phantoms: Mutex<PhantomMap>,
    /// How the project converts units (its Bryntum `project` object), for other writers' changes.
    pub units: Mutex<Units>,
    /// One revision at a time per project, so phantoms and echoes stay in step.
    pub writing: tokio::sync::Mutex<()>,
    task: tokio::task::AbortHandle,
}

impl Drop for Room {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Room {
    /// Opens the room's feed: subscribes to the project's stream, then notes where the log is,
    /// so every event after that point is read exactly once.
    pub async fn open(
        state: &AppState,
        project_id: Uuid,
        units: Units,
    ) -> Result<Arc<Room>, String> {
        let stream = StreamKey::Project(project_id);
        let hub = state.live.hub().clone();
        let subscription = hub
            .subscribe(SubscribeRequest::new(stream, state.live.ws, Uuid::nil()))
            .await
            .map_err(|e| e.to_string())?;
        let cursor = {
            let mut ops = state.domain.store.read().await.map_err(|e| e.to_string())?;
            ops.latest_seq(stream).await.map_err(|e| e.to_string())?
        };
        let (sender, _) = broadcast::channel(ROOM_BUFFER);
        let room = Arc::new_cyclic(|weak: &std::sync::Weak<Room>| {
            let task = tokio::spawn(feed(state.clone(), weak.clone(), subscription, cursor));
            Room {
                project_id,
                sender,
                pending: Mutex::new(HashMap::new()),
                phantoms: Mutex::new(PhantomMap::default()),
                units: Mutex::new(units),
                writing: tokio::sync::Mutex::new(()),
                task: task.abort_handle(),
            }
        });
        Ok(room)
    }

    /// How many sockets listen to the room.
    pub fn receivers(&self) -> usize {
        self.sender.receiver_count()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<RoomMessage>> {
        self.sender.subscribe()
    }

    pub fn send(&self, message: RoomMessage) {
        // No receiver means no socket left; nothing to do.
        let _ = self.sender.send(Arc::new(message));
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Leaves what to send for the events tagged `token` (before their commit).
    pub fn expect(&self, token: &str, what: Pending) {
        self.pending().insert(token.to_owned(), what);
    }

    /// Takes back what was left for `token` (the commit failed or wrote nothing).
    pub fn forget(&self, token: &str) -> Option<Pending> {
        self.pending().remove(token)
    }

    fn take(&self, token: &str) -> Option<Pending> {
        self.pending().remove(token)
    }
}

/// How many events one log read returns.
const READ_PAGE: u32 = 500;

async fn feed(
    state: AppState,
    room: std::sync::Weak<Room>,
    mut subscription: hub::Subscription,
    mut cursor: i64,
) {
    let stream = subscription.stream();
    loop {
        let target = match subscription.recv().await {
            Delivery::Frame(frame) => {
                #[derive(serde::Deserialize)]
                struct Seq {
                    seq: Option<i64>,
                }
                match serde_json::from_slice::<Seq>(&frame) {
                    Ok(Seq { seq: Some(seq) }) => seq,
                    _ => continue,
                }
            }
            Delivery::ResyncRequired { latest_seq } => latest_seq,
            // The room's subscription asks for none.
            Delivery::Heartbeat => continue,
            Delivery::Closed(reason) => {
                if let Some(room) = room.upgrade() {
                    room.send(RoomMessage::Closed(reason));
                }
                return;
            }
        };
        let Some(room) = room.upgrade() else {
            return;
        };
        while cursor < target {
            let events = match state.domain.store.read().await {
                Ok(mut ops) => ops.read_events(stream, cursor, READ_PAGE).await,
                Err(e) => Err(e),
            };
            let events = match events {
                Ok(events) if !events.is_empty() => events,
                Ok(_) | Err(_) => {
                    // The log cannot give what the hub announced: every socket refetches.
                    tracing::warn!(project = %room.project_id, "bryntum feed lost its place");
                    room.send(RoomMessage::Resync);
                    cursor = target;
                    break;
                }
            };
            for event in &events {
                cursor = cursor.max(event.seq.unwrap_or(cursor));
                deliver(&room, event);
            }
        }
    }
}

/// What one committed event means for the room's sockets.
fn deliver(room: &Room, event: &Event) {
    let seq = event.seq.unwrap_or_default();
    if let Some(token) = event
        .tab_id
        .as_deref()
        .filter(|t| t.starts_with(TOKEN_PREFIX))
    {
        match room.take(token) {
            Some(Pending::Echo(mut revision)) => {
                if let Some(object) = revision.as_object_mut() {
                    object.insert("revision".into(), json!(format!("server-{seq}")));
                }
                room.send(RoomMessage::Change {
                    seq: Some(seq),
                    frame: SharedFrame::new(&json!([revision])),
                });
            }
            Some(Pending::Reset(user_name)) => room.send(RoomMessage::Reset { seq, user_name }),
            // A later event of a revision already sent.
            None => {}
        }
        return;
    }
    if event.event_type == EventType::ProjectDeleted {
        room.send(RoomMessage::Closed(hub::CloseReason::AccessRevoked));
        return;
    }
    let units = *room.units.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(changes) = event_changes(event, &units) {
        let revision = json!({
            "revision": format!("server-{seq}"),
            "localRevision": null,
            "client": null,
            "changes": changes,
        });
        room.send(RoomMessage::Change {
            seq: Some(seq),
            frame: SharedFrame::new(&json!([revision])),
        });
    }
}

/// A change made by another transport, as Bryntum `changes`; `None` for events Bryntum clients
/// do not get (scheduler outputs, members, collections Bryntum has no store for).
pub fn event_changes(event: &Event, units: &Units) -> Option<Value> {
    let name = event.event_type.as_str();
    let (collection, action) = name.rsplit_once('_')?;
    let store = match collection {
        "task" => Store::Tasks,
        "dependency" => Store::Dependencies,
        "resource" => Store::Resources,
        "assignment" => Store::Assignments,
        "calendar" => Store::Calendars,
        "version" => Store::Versions,
        _ => return None,
    };
    let id = event.data.get("id")?.as_str()?.to_owned();
    let (key, record) = match action {
        "created" | "updated" => {
            let body = event.data.as_object()?;
            let record = mapping::to_bryntum(store, &id, body, units);
            (
                if action == "created" {
                    "added"
                } else {
                    "updated"
                },
                Value::Object(record),
            )
        }
        "deleted" => ("removed", json!({ "id": id })),
        _ => return None,
    };
    Some(json!({ store.key(): { key: [record] } }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn event(event_type: EventType, data: Value) -> Event {
        Event {
            stream: StreamKey::Project(Uuid::nil()),
            seq: Some(7),
            event_type,
            payload: json!({}),
            data,
            actor_id: None,
            tab_id: None,
            ts: Utc::now(),
            project_id: None,
            echo: None,
        }
    }

    #[test]
    fn other_writers_changes_in_bryntum_names() {
        let created = event(
            EventType::DependencyCreated,
            json!({"id": "d", "predecessor_id": "a", "successor_id": "b", "type": "SS", "lag": 1, "version": 1}),
        );
        let changes = event_changes(&created, &Units::default()).unwrap();
        let added = &changes["dependencies"]["added"][0];
        assert_eq!(added["from"], json!("a"));
        assert_eq!(added["type"], json!(0));
        assert!(added.get("version").is_none());
        let deleted = event(EventType::TaskDeleted, json!({"id": "t"}));
        assert_eq!(
            event_changes(&deleted, &Units::default()).unwrap(),
            json!({"tasks": {"removed": [{"id": "t"}]}})
        );
        for skipped in [
            EventType::CpmComplete,
            EventType::TaskDatesUpdated,
            EventType::MemberAdded,
            EventType::RiskCreated,
        ] {
            assert!(
                event_changes(&event(skipped, json!({"id": "x"})), &Units::default()).is_none()
            );
        }
    }

    #[test]
    fn frames_are_made_once_per_label() {
        let frame = SharedFrame::new(&json!([{"revision": "server-1"}]));
        let a = frame.frame(&json!(1));
        let b = frame.frame(&json!(1));
        assert_eq!(a.as_ptr(), b.as_ptr());
        assert_eq!(
            std::str::from_utf8(&a).unwrap(),
            r#"{"command":"project_change","data":{"revisions":[{"revision":"server-1"}],"project":1}}"#
        );
    }
}
