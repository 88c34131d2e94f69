//! Bryntum as a hub dialect: each committed event of a project becomes the shared body of one
//! `project_change` frame ([`protocol::change_body`]), encoded once by the hub for every
//! Bryntum socket of the node, which the hub hands to each socket's queue or writes straight
//! to an idle socket behind that socket's own head ([`protocol::change_head`]).
//!
//! - Events of a Bryntum revision carry a tab id starting with [`TOKEN_PREFIX`]. The socket
//!   that made the revision registers what its first event stands for before committing
//!   ([`Revisions::expect`]): the revision as the client sent it (with real ids), which every
//!   socket gets as the echo `server-<seq of the first event>`, or a demo reset. The later events
//!   of the revision encode to nothing. An event whose token this node does not know (the
//!   revision was made on another node, or so long ago its entry is gone) is sent like any
//!   other writer's change rather than dropped.
//! - Events of any other writer (REST, …) become revisions with `client: null`, in Bryntum
//!   field names, converted with the project's units ([`Revisions::set_units`]).
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
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use uuid::Uuid;

/// Tab ids of Bryntum revisions start with this; the rest is random.
pub const TOKEN_PREFIX: &str = "bryntum-rev:";

/// How many registered revisions the node keeps. An entry must outlive its events' fan-out and
/// any catch-up read of them (a socket replaying from the log after an overflow), so entries
/// are not dropped at their first use; the oldest go once there are more than this.
const REMEMBERED_REVISIONS: usize = 4096;

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

/// What the first event of a tagged revision stands for.
#[derive(Debug, Clone)]
pub enum Pending {
    /// The revision as its client sent it, with real ids; `revision` is filled in per event.
    Echo(Value),
    /// A demo reset made by this user name.
    Reset(String),
}

struct Tagged {
    what: Pending,
    /// The seq of the revision's first event, set when the first of them is encoded (the hub
    /// encodes a stream's events in seq order).
    first_seq: Option<i64>,
}

#[derive(Default)]
struct Registry {
    tagged: HashMap<String, Tagged>,
    order: VecDeque<String>,
    units: HashMap<Uuid, Units>,
}

/// The node's Bryntum revisions awaiting their events, and each project's units; shared by the
/// sockets (which register) and the hub's encoder (which reads).
#[derive(Default)]
pub struct Revisions {
    registry: Mutex<Registry>,
}

impl Revisions {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        // Every step leaves the registry whole, so a panic elsewhere cannot leave it torn.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers what the events tagged `token` stand for (before their commit).
    pub fn expect(&self, token: &str, what: Pending) {
        let mut registry = self.lock();
        registry.tagged.insert(
            token.to_owned(),
            Tagged {
                what,
                first_seq: None,
            },
        );
        registry.order.push_back(token.to_owned());
        while registry.order.len() > REMEMBERED_REVISIONS {
            if let Some(old) = registry.order.pop_front() {
                registry.tagged.remove(&old);
            }
        }
    }

    /// Takes back what was registered for `token` (the commit failed or wrote nothing).
    pub fn forget(&self, token: &str) -> Option<Pending> {
        let mut registry = self.lock();
        registry.order.retain(|t| t != token);
        registry.tagged.remove(token).map(|tagged| tagged.what)
    }

    /// How the project converts units (its Bryntum `project` object), for other writers'
    /// changes.
    pub fn set_units(&self, project_id: Uuid, units: Units) {
        self.lock().units.insert(project_id, units);
    }

    fn units(&self, project_id: Uuid) -> Units {
        self.lock()
            .units
            .get(&project_id)
            .copied()
            .unwrap_or_default()
    }

    /// What the tagged event at `seq` means: `Some(Some(_))` the first event of a known
    /// revision, `Some(None)` a later one, `None` an unknown token.
    fn tagged(&self, token: &str, seq: i64) -> Option<Option<Pending>> {
        let mut registry = self.lock();
        let tagged = registry.tagged.get_mut(token)?;
        let first = *tagged.first_seq.get_or_insert(seq);
        Some((first == seq).then(|| tagged.what.clone()))
    }
}

/// The hub dialect of Bryntum sockets.
pub struct ProjectChanges {
    revisions: Arc<Revisions>,
}

impl ProjectChanges {
    pub fn new(revisions: Arc<Revisions>) -> Self {
        Self { revisions }
    }
}

impl Dialect for ProjectChanges {
    fn encode(&self, event: &Event, _replayed: bool) -> Option<Bytes> {
        // Presence and other unsequenced events are not Bryntum's.
        let seq = event.seq?;
        let StreamKey::Project(project_id) = event.stream else {
            return None;
        };
        if let Some(token) = event
            .tab_id
            .as_deref()
            .filter(|t| t.starts_with(TOKEN_PREFIX))
            && let Some(first) = self.revisions.tagged(token, seq)
        {
            return match first? {
                Pending::Echo(mut revision) => {
                    if let Some(object) = revision.as_object_mut() {
                        object.insert("revision".into(), json!(format!("server-{seq}")));
                    }
                    Some(protocol::change_body(&revision))
                }
                Pending::Reset(user_name) => {
                    let mut frame = CONTROL_RESET.to_vec();
                    frame.extend_from_slice(user_name.as_bytes());
                    Some(Bytes::from(frame))
                }
            };
        }
        if event.event_type == EventType::ProjectDeleted {
            return Some(Bytes::from_static(CONTROL_GONE));
        }
        let changes = event_changes(event, &self.revisions.units(project_id))?;
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
        let revisions = Arc::new(Revisions::default());
        let dialect = ProjectChanges::new(revisions.clone());
        let token = format!("{TOKEN_PREFIX}abc");
        revisions.expect(
            &token,
            Pending::Echo(json!({"revision": null, "localRevision": "l-1", "client": "client-1", "changes": {}})),
        );
        let mut first = event(EventType::TaskCreated, json!({"id": "t"}));
        first.tab_id = Some(token.clone());
        first.seq = Some(10);
        let mut second = first.clone();
        second.seq = Some(11);
        let echo = body(dialect.encode(&first, false).unwrap());
        assert_eq!(echo["revision"], "server-10");
        assert_eq!(echo["localRevision"], "l-1");
        assert!(dialect.encode(&second, false).is_none());
        // A catch-up read encodes the same events again: the same answers.
        assert_eq!(body(dialect.encode(&first, true).unwrap()), echo);
        assert!(dialect.encode(&second, true).is_none());
        // A token this node never registered is another writer's change, not dropped.
        let mut foreign = first.clone();
        foreign.tab_id = Some(format!("{TOKEN_PREFIX}elsewhere"));
        assert_eq!(
            body(dialect.encode(&foreign, false).unwrap())["client"],
            Value::Null
        );
    }

    #[test]
    fn resets_deletions_and_resyncs_are_control_frames() {
        let revisions = Arc::new(Revisions::default());
        let dialect = ProjectChanges::new(revisions.clone());
        revisions.expect("bryntum-rev:r", Pending::Reset("ada".into()));
        let mut reset = event(EventType::TaskCreated, json!({"id": "t"}));
        reset.tab_id = Some("bryntum-rev:r".into());
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
