//! The Bryntum Gantt WebSocket protocol at `GET /ws/v1/bryntum` (CONTRACT §8): the protocol of
//! Bryntum's gantt-websocket-server, backed by liveplan's store and log. Choices the contract
//! leaves open are in `crates/server/BRYNTUM.md`.
//!
//! - [`protocol`]: message parsing (v2, v1 flat form, camelCase aliases) and spelling. Pure.
//! - [`mapping`]: liveplan records ↔ Bryntum store records. Pure.
//! - [`phantoms`]: real ids for phantom records and rewriting every reference to them. Pure.
//! - [`session`]: one client's rules (commands, project names, revisions, datasets). Pure.
//! - [`changes`]: the hub dialect: each committed event encoded once into the shared body of
//!   its `project_change` frame.
//! - `commands`: each command's calls into the domain (`domain::bryntum`); `socket`: the
//!   connection's loop.
//!
//! A Bryntum socket is served like a native one (`net::ws_upgrade`, pinged by the node's
//! sweep through its hub subscription, written to directly by the fan-out while idle); it holds
//! one hub subscription at a time: its project's once it loaded a dataset, else its login's
//! (for logout and deactivation), else an anonymous one for the pings.

pub mod changes;
mod commands;
pub mod mapping;
pub mod phantoms;
pub mod protocol;
pub mod session;
mod socket;

pub use socket::upgrade;

use crate::app::AppState;
use bytes::Bytes;
use changes::{ProjectChanges, ProjectUnits};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What every Bryntum socket of this node shares: the roster of logged-in sockets, each
/// project's units (for the dialect) and writing lock, and the demo projects it watches. The
/// rest (phantom ids, autosave grants, demo snapshots, echoes) is stored by the domain, so
/// every node answers the same.
#[derive(Default)]
pub struct BryntumNode {
    units: Arc<ProjectUnits>,
    /// One revision at a time per project from this node, so a resent phantom finds the
    /// first one's id stored instead of racing it.
    writing: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
    next_client: AtomicU64,
    roster: Mutex<Vec<RosterEntry>>,
    /// Demo mode: the projects this node resets when idle.
    idle_resets: Mutex<HashSet<Uuid>>,
    /// The `project_change` head of each project label, shared by every socket that names its
    /// project alike instead of a copy per socket (at most [`SHARED_HEADS`]).
    heads: Mutex<HashMap<String, Bytes>>,
}

/// Labels whose heads the node keeps; past it the cache starts over (labels are what clients
/// send, so their number must not grow the node without bound).
const SHARED_HEADS: usize = 4096;

/// A logged-in socket, as the others see it.
struct RosterEntry {
    id: u64,
    /// Shared with the socket's `Login`.
    name: Arc<str>,
    /// The project whose dataset it loaded.
    project: Option<Uuid>,
    mailbox: Arc<Mailbox>,
}

/// What other sockets of the node tell one socket outside the hub: `join`/`users`, and the
/// echo of a revision that wrote nothing liveplan keeps (view state only).
pub enum Note {
    /// A whole message, the same bytes for every socket told.
    Text(Bytes),
    /// The body of a `project_change` for the sockets of `project`.
    Change { project: Uuid, body: Bytes },
}

/// Notes waiting for a socket. A `VecDeque` and a `Notify` hold no allocation while empty,
/// unlike a channel, which matters for thousands of idle sockets.
#[derive(Default)]
pub struct Mailbox {
    notes: Mutex<VecDeque<Note>>,
    pub ready: Notify,
}

/// Notes a socket may have waiting; more are dropped (`users` is state, the next repairs it).
const MAILBOX_LIMIT: usize = 64;

impl Mailbox {
    fn post(&self, note: Note) {
        let mut notes = lock(&self.notes);
        if notes.len() < MAILBOX_LIMIT {
            notes.push_back(note);
            drop(notes);
            self.ready.notify_one();
        }
    }

    pub fn take(&self) -> Option<Note> {
        let mut notes = lock(&self.notes);
        let note = notes.pop_front();
        if notes.is_empty() {
            // An idle socket should not keep the capacity of its largest burst.
            *notes = VecDeque::new();
        }
        note
    }
}

impl BryntumNode {
    /// The hub dialect of Bryntum sockets, sharing this node's project units.
    pub fn dialect(&self) -> ProjectChanges {
        ProjectChanges::new(self.units.clone())
    }

    pub fn units(&self) -> &ProjectUnits {
        &self.units
    }

    pub fn writing(&self, project_id: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.writing).entry(project_id).or_default().clone()
    }

    fn user_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for entry in lock(&self.roster).iter() {
            if !names.iter().any(|n| **n == *entry.name) {
                names.push(entry.name.to_string());
            }
        }
        names
    }

    /// Adds a logged-in socket; `true` when its name was already listed.
    fn join(&self, id: u64, name: Arc<str>, mailbox: Arc<Mailbox>) -> bool {
        let mut roster = lock(&self.roster);
        let already = roster.iter().any(|e| e.name == name);
        roster.push(RosterEntry {
            id,
            name,
            project: None,
            mailbox,
        });
        already
    }

    /// Removes a socket; `true` when its name is still listed (another socket of the user).
    fn leave(&self, id: u64, name: &str) -> bool {
        let mut roster = lock(&self.roster);
        roster.retain(|e| e.id != id);
        roster.iter().any(|e| *e.name == *name)
    }

    /// The `project_change` head for `label`, shared ([`BryntumNode::heads`]).
    fn change_head(&self, label: &serde_json::Value) -> Bytes {
        let key = label.to_string();
        let mut heads = lock(&self.heads);
        if let Some(head) = heads.get(&key) {
            return head.clone();
        }
        if heads.len() >= SHARED_HEADS {
            heads.clear();
        }
        let head = protocol::change_head(label);
        heads.insert(key, head.clone());
        head
    }

    fn set_project(&self, id: u64, project: Option<Uuid>) {
        if let Some(entry) = lock(&self.roster).iter_mut().find(|e| e.id == id) {
            entry.project = project;
        }
    }

    /// How many sockets of this node have the project's dataset.
    fn sockets_on(&self, project_id: Uuid) -> usize {
        lock(&self.roster)
            .iter()
            .filter(|e| e.project == Some(project_id))
            .count()
    }

    /// Tells `text` to every logged-in socket except `except`.
    fn tell_logged_in(&self, except: Option<u64>, text: &str) {
        let text = Bytes::from(text.to_owned());
        for entry in lock(&self.roster).iter() {
            if Some(entry.id) != except {
                entry.mailbox.post(Note::Text(text.clone()));
            }
        }
    }

    /// The echo of a revision no event carries (view state only), from this node or another:
    /// the project's units follow its `project` changes, and its sockets get it.
    pub fn echo(&self, project_id: Uuid, revision: &serde_json::Value) {
        self.units.follow_echo(project_id, revision);
        self.tell_project(project_id, protocol::change_body(revision));
    }

    /// Gives every socket of `project_id` the body of a `project_change`.
    fn tell_project(&self, project_id: Uuid, body: Bytes) {
        for entry in lock(&self.roster).iter() {
            if entry.project == Some(project_id) {
                entry.mailbox.post(Note::Change {
                    project: project_id,
                    body: body.clone(),
                });
            }
        }
    }

    /// Demo mode: `true` the first time this node is asked to watch the project.
    fn watch_idle(&self, project_id: Uuid) -> bool {
        lock(&self.idle_resets).insert(project_id)
    }
}

/// Demo mode: after `--reset-delay` without a Bryntum socket on the project, its demo data
/// comes back, so a public demo does not drift forever.
fn spawn_idle_reset(state: AppState, project_id: Uuid) {
    let delay = state.config.bryntum_reset_delay;
    let clock = state.config.clock.clone();
    tokio::spawn(async move {
        let mut idle_since: Option<Instant> = None;
        loop {
            clock
                .sleep(
                    delay
                        .min(Duration::from_secs(5))
                        .max(Duration::from_millis(50)),
                )
                .await;
            if state.bryntum.sockets_on(project_id) > 0 {
                idle_since = None;
                continue;
            }
            let since = *idle_since.get_or_insert_with(|| clock.now());
            if clock.now() - since < delay {
                continue;
            }
            idle_since = None;
            // Only a project that drifted from its demo data is reset: a reset rewrites every
            // record, which other transports would see as a burst of events.
            match state.domain.demo_drifted(project_id).await {
                Ok(Some(true)) => {}
                Ok(Some(false)) => continue,
                Ok(None) | Err(_) => return,
            }
            let Ok(Some(owner)) = state.domain.project_owner(project_id).await else {
                return;
            };
            if let Err(e) = commands::reset_project(&state, project_id, owner, "server").await {
                tracing::warn!(project = %project_id, error = %e, "idle reset failed");
            }
        }
    });
}
