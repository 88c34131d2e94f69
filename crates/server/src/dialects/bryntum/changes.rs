//! Bryntum as a hub dialect: each committed event of a project becomes the shared body of one
//! `project_change` frame ([`protocol::change_body`]), encoded once by the hub for every
//! Bryntum socket of the node, which the hub hands to each socket's queue or writes straight
//! to an idle socket behind that socket's own head ([`protocol::change_head`]).
//!
//! - The first event of a Bryntum revision carries the revision's echo (`Event::echo`, the
//!   revision as the client sent it, with real ids, filled by the domain in the revision's
//!   transaction and stored with the event): every socket, on every node, gets it as
//!   `server-<seq of that event>`. The revision's later events carry a tab id starting with
//!   [`TOKEN_PREFIX`] and no echo, and encode to nothing. A demo reset's first event carries a
//!   [`reset_echo`].
//! - Events of any other writer (REST, …) become revisions with `client: null`, in Bryntum
//!   field names, converted with the project's units ([`ProjectUnits`]).
//! - Scheduler outputs, members and collections Bryntum has no store for encode to nothing.
//!
//! What the socket task must do itself (send a fresh dataset and `reset`, or leave the
//! project) comes as a *control frame*: one starting with a 0 byte, which no JSON starts with.
//! The direct writer refuses those ([`is_control`]), so they always reach the task.

use super::mapping::{self, BryntumStore, Units};
use super::protocol;
use bytes::Bytes;
use hub::Dialect;
use proto::{Event, EventType, StreamKey};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use uuid::Uuid;

/// Tab ids of Bryntum revisions start with this; the rest is random.
pub const TOKEN_PREFIX: &str = "bryntum-rev:";

const CONTROL: u8 = 0;
const CONTROL_RESET: &[u8] = b"\0reset:";
const CONTROL_GONE: &[u8] = b"\0gone";
const CONTROL_RESYNC: &[u8] = b"\0resync";

/// Whether a frame of this dialect is for the socket's task, not for the client.
pub fn is_control(frame: &[u8]) -> bool {
    frame.first() == Some(&CONTROL)
}

/// What a control frame asks of a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// The project was reset by `user_name`: a fresh dataset, then `reset {userName}`.
    Reset { user_name: String },
    /// The project was deleted.
    Gone,
    /// The socket's position cannot be continued: a fresh dataset.
    Resync,
}

impl Control {
    pub fn parse(frame: &[u8]) -> Option<Control> {
        if let Some(name) = frame.strip_prefix(CONTROL_RESET) {
            return Some(Control::Reset {
                user_name: String::from_utf8_lossy(name).into_owned(),
            });
        }
        match frame {
            CONTROL_GONE => Some(Control::Gone),
            CONTROL_RESYNC => Some(Control::Resync),
            _ => None,
        }
    }
}

/// The echo a demo reset's first event carries: who reset the project.
pub fn reset_echo(user_name: &str) -> Value {
    json!({ "reset": { "userName": user_name } })
}

/// How each project converts units (its Bryntum `project` object), for other writers'
/// changes; kept by the sockets of this node when they load a project or change its object.
#[derive(Default)]
pub struct ProjectUnits {
    units: Mutex<HashMap<Uuid, Units>>,
}

impl ProjectUnits {
    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Units>> {
        // Each step leaves the map whole, so a panic elsewhere cannot leave it torn.
        self.units.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set(&self, project_id: Uuid, units: Units) {
        self.lock().insert(project_id, units);
    }

    fn get(&self, project_id: Uuid) -> Units {
        self.lock().get(&project_id).copied().unwrap_or_default()
    }

    /// A revision's `project` changes, from whichever node wrote it: the units move with them,
    /// so this node's sockets convert other writers' changes as the writer's node does.
    pub fn follow_echo(&self, project_id: Uuid, revision: &Value) {
        if let Some(Value::Object(update)) = revision.pointer("/changes/project") {
            let mut units = self.lock();
            let current = units.get(&project_id).copied().unwrap_or_default();
            units.insert(project_id, current.updated(update));
        }
    }
}

/// The hub dialect of Bryntum sockets.
pub struct ProjectChanges {
    units: Arc<ProjectUnits>,
}

impl ProjectChanges {
    pub fn new(units: Arc<ProjectUnits>) -> Self {
        Self { units }
    }
}

impl Dialect for ProjectChanges {
    fn encode(&self, event: &Event, _replayed: bool) -> Option<Bytes> {
        // Presence and other unsequenced events are not Bryntum's.
        let seq = event.seq?;
        let StreamKey::Project(project_id) = event.stream else {
            return None;
        };
        if let Some(echo) = &event.echo {
            if let Some(user_name) = echo.pointer("/reset/userName") {
                let mut frame = CONTROL_RESET.to_vec();
                frame.extend_from_slice(user_name.as_str().unwrap_or_default().as_bytes());
                return Some(Bytes::from(frame));
            }
            self.units.follow_echo(project_id, echo);
            let mut revision = echo.clone();
            if let Some(object) = revision.as_object_mut() {
                object.insert("revision".into(), json!(format!("server-{seq}")));
            }
            return Some(protocol::change_body(&revision));
        }
        // A later event of a Bryntum revision: its first event carried the whole revision.
        if event
            .tab_id
            .as_deref()
            .is_some_and(|t| t.starts_with(TOKEN_PREFIX))
        {
            return None;
        }
        if event.event_type == EventType::ProjectDeleted {
            return Some(Bytes::from_static(CONTROL_GONE));
        }
        let changes = event_changes(event, &self.units.get(project_id))?;
        Some(protocol::change_body(&json!({
            "revision": format!("server-{seq}"),
            "localRevision": null,
            "client": null,
            "changes": changes,
        })))
    }

    fn resync_required(&self, _latest_seq: i64) -> Bytes {
        Bytes::from_static(CONTROL_RESYNC)
    }
}

/// A change made by another writer, as Bryntum `changes`; `None` for events Bryntum clients
/// do not get (scheduler outputs, members, collections Bryntum has no store for).
pub fn event_changes(event: &Event, units: &Units) -> Option<Value> {
    let name = event.event_type.as_str();
    let (collection, action) = name.rsplit_once('_')?;
    let store = match collection {
        "task" => BryntumStore::Tasks,
        "dependency" => BryntumStore::Dependencies,
        "resource" => BryntumStore::Resources,
        "assignment" => BryntumStore::Assignments,
        "calendar" => BryntumStore::Calendars,
        "version" => BryntumStore::Versions,
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

    fn body(frame: Bytes) -> Value {
        let mut text = protocol::change_head(&json!(1)).to_vec();
        text.extend_from_slice(&frame);
        serde_json::from_slice::<Value>(&text).unwrap()["data"]["revisions"][0].clone()
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
        let dialect = ProjectChanges::new(Arc::default());
        let revision = body(dialect.encode(&deleted, false).unwrap());
        assert_eq!(revision["revision"], "server-7");
        assert_eq!(revision["client"], Value::Null);
        let mut presence = event(EventType::PresenceJoin, json!({}));
        presence.seq = None;
        assert!(dialect.encode(&presence, false).is_none());
    }

    #[test]
    fn a_revision_is_echoed_at_its_first_event_only() {
        let dialect = ProjectChanges::new(Arc::default());
        let token = format!("{TOKEN_PREFIX}abc");
        let mut first = event(EventType::TaskCreated, json!({"id": "t"}));
        first.tab_id = Some(token.clone());
        first.seq = Some(10);
        first.echo = Some(
            json!({"revision": null, "localRevision": "l-1", "client": "client-1", "changes": {}}),
        );
        let mut second = first.clone();
        second.seq = Some(11);
        second.echo = None;
        let echo = body(dialect.encode(&first, false).unwrap());
        assert_eq!(echo["revision"], "server-10");
        assert_eq!(echo["localRevision"], "l-1");
        assert_eq!(echo["client"], "client-1");
        assert!(dialect.encode(&second, false).is_none());
        // A catch-up read (or another node) encodes the same events again: the same answers.
        assert_eq!(body(dialect.encode(&first, true).unwrap()), echo);
        assert!(dialect.encode(&second, true).is_none());
    }

    #[test]
    fn resets_deletions_and_resyncs_are_control_frames() {
        let dialect = ProjectChanges::new(Arc::default());
        let mut reset = event(EventType::TaskCreated, json!({"id": "t"}));
        reset.tab_id = Some(format!("{TOKEN_PREFIX}r"));
        reset.echo = Some(reset_echo("ada"));
        let frame = dialect.encode(&reset, false).unwrap();
        assert!(is_control(&frame));
        assert_eq!(
            Control::parse(&frame),
            Some(Control::Reset {
                user_name: "ada".into()
            })
        );
        let gone = dialect
            .encode(&event(EventType::ProjectDeleted, json!({})), false)
            .unwrap();
        assert_eq!(Control::parse(&gone), Some(Control::Gone));
        assert_eq!(
            Control::parse(&dialect.resync_required(3)),
            Some(Control::Resync)
        );
        assert!(!is_control(&protocol::change_body(&json!({}))));
    }
}
