//! Presence: who has a connection open on a project, counted per user so that several tabs do
//! not flap. Counts are tied to [`PresenceGuard`]s owned by subscriptions, so a connection that
//! vanishes without a goodbye still decrements when its task drops the subscription.
//!
//! Every count change leaves by the outbox as a [`PresenceChange`]; the hub's
//! [`crate::PresenceRelay`] decides which become `presence_join`/`presence_leave` events (alone:
//! the node's first and last connection; in a cluster: the first and last anywhere).

use chrono::Utc;
use proto::{Event, EventType, StreamKey};
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::lock;
use crate::watch::PresenceChange;

/// One line of a project's presence roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresenceEntry {
    pub user_id: Uuid,
    pub display_name: String,
    pub connections: usize,
}

/// A node's presence: the roster, and the queue its joins and leaves leave by (the hub
/// publishes them on the bus, so other nodes' hubs see them too).
pub(crate) struct Presence {
    roster: Mutex<Roster>,
    outbox: mpsc::UnboundedSender<PresenceChange>,
}

impl Presence {
    pub(crate) fn new(outbox: mpsc::UnboundedSender<PresenceChange>) -> Presence {
        Presence {
            roster: Mutex::new(Roster::default()),
            outbox,
        }
    }

    /// Unbounded because it holds one change per connection opened or closed.
    fn announce(&self, change: PresenceChange) {
        let _ = self.outbox.send(change);
    }

    /// Every project's roster on this node (what a node tells the cluster it has).
    pub(crate) fn all(&self) -> HashMap<Uuid, Vec<PresenceEntry>> {
        let roster = lock(&self.roster);
        roster
            .projects
            .keys()
            .map(|project| (*project, roster.roster(*project)))
            .collect()
    }

    /// Who is connected to a project, sorted by display name.
    pub(crate) fn roster(&self, project: Uuid) -> Vec<PresenceEntry> {
        lock(&self.roster).roster(project)
    }

    /// Counts a connection of `user_id` to `project` until the returned guard drops.
    pub(crate) fn join(
        self: &Arc<Self>,
        project: Uuid,
        user_id: Uuid,
        name: &str,
    ) -> PresenceGuard {
        // Queued while the roster is locked, so changes leave in the order the counts changed.
        let mut roster = lock(&self.roster);
        let entry = roster.join(project, user_id, name);
        self.announce(PresenceChange {
            project_id: project,
            user_id,
            display_name: entry.display_name,
            connections: entry.connections,
            joined: true,
        });
        PresenceGuard {
            presence: Arc::downgrade(self),
            project,
            user_id,
        }
    }
}

#[derive(Default)]
struct Roster {
    projects: HashMap<Uuid, HashMap<Uuid, PresenceEntry>>,
}

impl Roster {
    /// Counts a connection; returns the user's entry after it.
    fn join(&mut self, project: Uuid, user_id: Uuid, display_name: &str) -> PresenceEntry {
        let users = self.projects.entry(project).or_default();
        let entry = users.entry(user_id).or_insert_with(|| PresenceEntry {
            user_id,
            display_name: display_name.to_owned(),
            connections: 0,
        });
        entry.connections += 1;
        entry.clone()
    }

    /// Uncounts a connection; returns the user's entry after it (0 connections: gone).
    fn leave(&mut self, project: Uuid, user_id: Uuid) -> Option<PresenceEntry> {
        let users = self.projects.get_mut(&project)?;
        let entry = users.get_mut(&user_id)?;
        entry.connections -= 1;
        let after = entry.clone();
        if after.connections == 0 {
            users.remove(&user_id);
            if users.is_empty() {
                self.projects.remove(&project);
            }
        }
        Some(after)
    }

    fn roster(&self, project: Uuid) -> Vec<PresenceEntry> {
        let mut entries: Vec<PresenceEntry> = self
            .projects
            .get(&project)
            .map(|users| users.values().cloned().collect())
            .unwrap_or_default();
        entries.sort_by(|a, b| {
            a.display_name
                .cmp(&b.display_name)
                .then(a.user_id.cmp(&b.user_id))
        });
        entries
    }
}

/// A `presence_join` / `presence_leave` event (ephemeral: no seq).
pub fn presence_event(
    event_type: EventType,
    project: Uuid,
    user_id: Uuid,
    display_name: &str,
) -> Event {
    let body = json!({"user_id": user_id, "display_name": display_name});
    Event {
        stream: StreamKey::Project(project),
        seq: None,
        event_type,
        payload: body.clone(),
        data: body,
        actor_id: Some(user_id),
        tab_id: None,
        ts: Utc::now(),
        project_id: Some(project),
        echo: None,
    }
}

/// Holds one connection's place in a project's presence; dropping it is the leave.
pub(crate) struct PresenceGuard {
    presence: Weak<Presence>,
    project: Uuid,
    user_id: Uuid,
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        let Some(presence) = self.presence.upgrade() else {
            return;
        };
        // Queued while the roster is locked so that changes leave in the order the counts
        // changed.
        let mut roster = lock(&presence.roster);
        if let Some(after) = roster.leave(self.project, self.user_id) {
            presence.announce(PresenceChange {
                project_id: self.project,
                user_id: self.user_id,
                display_name: after.display_name,
                connections: after.connections,
                joined: false,
            });
        }
    }
}
