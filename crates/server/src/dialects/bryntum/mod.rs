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
//!
//! The dialect imports nothing of the app: the server hands it a [`BryntumNode`] (the domain,
//! the live feed, the login limits and the demo settings beside what its sockets share) and
//! routes `GET /ws/v1/bryntum` with it as the state ([`router`]).

pub mod changes;
mod commands;
mod datasets;
pub mod mapping;
pub mod phantoms;
pub mod protocol;
pub mod session;
mod socket;

pub use socket::upgrade;

use crate::auth::limits::Limiters;
use crate::clock::Clock;
use crate::live::LiveFeed;
use bytes::Bytes;
use changes::{ProjectChanges, ProjectUnits};
use datasets::Datasets;
use domain::Domain;
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

/// The Bryntum dialect's settings from the server's configuration.
#[derive(Clone)]
pub struct BryntumSettings {
    /// `--demo`: datasets are remembered as demo data and `reset` is allowed.
    pub demo: bool,
    /// Demo mode: a project without Bryntum sockets for this long gets its demo data back.
    pub reset_delay: Duration,
    /// What the idle reset reads the time from.
    pub clock: Clock,
}

/// What a Bryntum socket reaches of its node: the domain, the live feed, the login limits and
/// the settings, and what every Bryntum socket of the node shares: the roster of logged-in
/// sockets, each project's units (for the dialect), writing lock and last encoded dataset, and
/// the demo projects it watches. The rest (phantom ids, autosave grants, demo snapshots,
/// echoes) is stored by the domain, so every node answers the same.
pub struct BryntumNode {
    pub domain: Domain,
    pub live: Arc<LiveFeed>,
    pub limiters: Arc<Limiters>,
    /// The app's decoy hash (password logins of unknown names take as long as others).
    pub decoy_hash: Arc<String>,
    pub settings: BryntumSettings,
    units: Arc<ProjectUnits>,
    datasets: Datasets,
    /// One revision at a time per project from this node, so a resent phantom finds the
    /// first one's id stored instead of racing it.
    writing: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
    next_client: AtomicU64,
    /// The logged-in sockets, by their mailboxes (which hold how the others see them).
    roster: Mutex<Vec<Arc<Mailbox>>>,
    /// Demo mode: the projects this node resets when idle.
    idle_resets: Mutex<HashSet<Uuid>>,
    /// Each project label with its frame heads, shared by every socket that names its project
    /// alike instead of a copy per socket (at most [`SHARED_LABELS`]).
    labels: Mutex<HashMap<String, Arc<Label>>>,
}

/// Labels the node keeps; past it the cache starts over (labels are what clients send, so
/// their number must not grow the node without bound).
const SHARED_LABELS: usize = 4096;

/// How a socket names its loaded project: the label it sent, echoed in every answer, and the
/// heads of its `project_change` and `dataset` frames. One per label for the node's sockets:
/// thousands of idle sockets on one project each hold a pointer, not a string and a head of
/// their own.
pub struct Label {
    pub value: serde_json::Value,
    pub change_head: Bytes,
    pub dataset_head: Bytes,
}

/// What other sockets of the node tell one socket outside the hub: `join`/`users`, and the
/// echo of a revision that wrote nothing liveplan keeps (view state only).
pub enum Note {
    /// A whole message, the same bytes for every socket told.
    Text(Bytes),
    /// The body of a `project_change` for the sockets of `project`.
    Change { project: Uuid, body: Bytes },
}

/// Notes waiting for a socket, and, while it is logged in, how the node's other sockets see
/// it: the roster holds the mailboxes themselves (one pointer per socket, not a copy of its name,
/// project and mailbox in a vector that doubles). A `VecDeque` and a `Notify` hold no
/// allocation while empty, unlike a channel, which matters for thousands of idle sockets.
#[derive(Default)]
pub struct Mailbox {
    inbox: Mutex<Inbox>,
    pub ready: Notify,
}

#[derive(Default)]
struct Inbox {
    notes: VecDeque<Note>,
    /// The login's name while the socket is on the roster (shared with its `Login`).
    name: Option<Arc<str>>,
    /// The project whose dataset it loaded.
    project: Option<Uuid>,
}

/// Notes a socket may have waiting; more are dropped (`users` is state, the next repairs it).
const MAILBOX_LIMIT: usize = 64;

impl Mailbox {
    fn post(&self, note: Note) {
        self.post_if(|_| true, note);
    }

    /// Posts `note` if the socket's roster state passes `wanted`, under one lock.
    fn post_if(&self, wanted: impl FnOnce(&Inbox) -> bool, note: Note) {
        let mut inbox = lock(&self.inbox);
        if wanted(&inbox) && inbox.notes.len() < MAILBOX_LIMIT {
            inbox.notes.push_back(note);
            drop(inbox);
            self.ready.notify_one();
        }
    }

    pub fn take(&self) -> Option<Note> {
        let mut inbox = lock(&self.inbox);
        let note = inbox.notes.pop_front();
        if inbox.notes.is_empty() {
            // An idle socket should not keep the capacity of its largest burst.
            inbox.notes = VecDeque::new();
        }
        note
    }

    fn name(&self) -> Option<Arc<str>> {
        lock(&self.inbox).name.clone()
    }

    fn project(&self) -> Option<Uuid> {
        lock(&self.inbox).project
    }
}

/// The hub dialect of the Bryntum sockets, and the project units it shares with the node's
/// [`BryntumNode`] (made after the hub, which needs the dialect first).
pub fn hub_dialect() -> (ProjectChanges, Arc<ProjectUnits>) {
    let units = Arc::new(ProjectUnits::default());
    (ProjectChanges::new(units.clone()), units)
}

/// `GET /ws/v1/bryntum`, served with the node as its state.
pub fn router<S: Clone + Send + Sync + 'static>(node: Arc<BryntumNode>) -> axum::Router<S> {
    axum::Router::new()
        .route("/ws/v1/bryntum", axum::routing::any(upgrade))
        .with_state(node)
}

impl BryntumNode {
    pub fn new(
        domain: Domain,
        live: Arc<LiveFeed>,
        limiters: Arc<Limiters>,
        decoy_hash: Arc<String>,
        settings: BryntumSettings,
        units: Arc<ProjectUnits>,
    ) -> BryntumNode {
        BryntumNode {
            domain,
            live,
            limiters,
            decoy_hash,
            settings,
            units,
            datasets: Datasets::default(),
            writing: Mutex::default(),
            next_client: AtomicU64::new(0),
            roster: Mutex::default(),
            idle_resets: Mutex::default(),
            labels: Mutex::default(),
        }
    }

    pub fn units(&self) -> &ProjectUnits {
        &self.units
    }

    pub fn writing(&self, project_id: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.writing).entry(project_id).or_default().clone()
    }

    fn user_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for name in lock(&self.roster).iter().filter_map(|m| m.name()) {
            if !names.iter().any(|n| **n == *name) {
                names.push(name.to_string());
            }
        }
        names
    }

    /// Adds a logged-in socket (by its mailbox, which must not be listed yet); `true` when its
    /// name was already listed.
    fn join(&self, name: Arc<str>, mailbox: &Arc<Mailbox>) -> bool {
        let mut roster = lock(&self.roster);
        let already = roster.iter().any(|m| m.name().is_some_and(|n| n == name));
        {
            let mut inbox = lock(&mailbox.inbox);
            inbox.name = Some(name);
            inbox.project = None;
        }
        roster.push(mailbox.clone());
        already
    }

    /// Removes a socket; `true` when its name is still listed (another socket of the user).
    fn leave(&self, mailbox: &Arc<Mailbox>, name: &str) -> bool {
        let mut roster = lock(&self.roster);
        roster.retain(|m| !Arc::ptr_eq(m, mailbox));
        {
            let mut inbox = lock(&mailbox.inbox);
            inbox.name = None;
            inbox.project = None;
        }
        roster.iter().any(|m| m.name().is_some_and(|n| *n == *name))
    }

    /// The node's [`Label`] for `label` ([`BryntumNode::labels`]).
    fn shared_label(&self, label: serde_json::Value) -> Arc<Label> {
        let key = label.to_string();
        let mut labels = lock(&self.labels);
        if let Some(shared) = labels.get(&key) {
            return shared.clone();
        }
        if labels.len() >= SHARED_LABELS {
            labels.clear();
        }
        let shared = Arc::new(Label {
            change_head: protocol::change_head(&label),
            dataset_head: protocol::dataset_head(&label),
            value: label,
        });
        labels.insert(key, shared.clone());
        shared
    }

    /// Records the project a logged-in socket loaded (or none).
    fn set_project(&self, mailbox: &Mailbox, project: Option<Uuid>) {
        let mut inbox = lock(&mailbox.inbox);
        if inbox.name.is_some() {
            inbox.project = project;
        }
    }

    /// How many sockets of this node have the project's dataset.
    fn sockets_on(&self, project_id: Uuid) -> usize {
        lock(&self.roster)
            .iter()
            .filter(|m| m.project() == Some(project_id))
            .count()
    }

    /// Tells `text` to every logged-in socket except `except`.
    fn tell_logged_in(&self, except: Option<&Arc<Mailbox>>, text: &str) {
        let text = Bytes::from(text.to_owned());
        for mailbox in lock(&self.roster).iter() {
            if !except.is_some_and(|e| Arc::ptr_eq(e, mailbox)) {
                mailbox.post(Note::Text(text.clone()));
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
        for mailbox in lock(&self.roster).iter() {
            mailbox.post_if(
                |inbox| inbox.project == Some(project_id),
                Note::Change {
                    project: project_id,
                    body: body.clone(),
                },
            );
        }
    }

    /// Demo mode: `true` the first time this node is asked to watch the project.
    fn watch_idle(&self, project_id: Uuid) -> bool {
        lock(&self.idle_resets).insert(project_id)
    }
}

/// Demo mode: after `--reset-delay` without a Bryntum socket on the project, its demo data
/// comes back, so a public demo does not drift forever.
fn spawn_idle_reset(state: Arc<BryntumNode>, project_id: Uuid) {
    let delay = state.settings.reset_delay;
    let clock = state.settings.clock.clone();
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
            if state.sockets_on(project_id) > 0 {
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
