//! What committed events mean for open connections, on every node: removals, demotions,
//! deactivations, deletions and wipes evict; membership changes update the project-list
//! filters. The hub calls [`AccessWatcher`] with every event its bus brings (from this node or
//! another) before routing it, and with every event it reads from the log to fill a gap, so an
//! evicted connection never sees an event of a project it left, whichever node committed it.
//!
//! A node may miss events and control messages (a Redis restart, a lagging bus). It then
//! [`heal`]s: re-checks every open connection's session, account and role against the store
//! and evicts those that lost access.

use super::LiveFeed;
use hub::{CloseReason, EventWatcher, EvictScope, Holder};
use proto::{Event, EventType, Role, StreamKey};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{OnceLock, PoisonError, Weak};
use uuid::Uuid;

/// The hub's [`EventWatcher`]: applies access effects to the feed's hub.
#[derive(Default)]
pub struct AccessWatcher {
    feed: OnceLock<Weak<LiveFeed>>,
}

impl AccessWatcher {
    /// Set once the feed exists (the hub is built first; it has no subscriber until then).
    pub fn attach(&self, feed: Weak<LiveFeed>) {
        let _ = self.feed.set(feed);
    }

    fn feed(&self) -> Option<std::sync::Arc<LiveFeed>> {
        self.feed.get().and_then(Weak::upgrade)
    }
}

impl EventWatcher for AccessWatcher {
    fn on_bus_event(&self, event: &Event) {
        if let Some(feed) = self.feed() {
            feed.apply_access_change(event, true);
        }
    }

    fn on_filled_event(&self, event: &Event) {
        // The dispatcher may have applied it already, and membership changes read late could
        // undo newer ones: only the evictions are repeated (they are idempotent).
        if let Some(feed) = self.feed() {
            feed.apply_access_change(event, false);
        }
    }

    fn on_bus_lagged(&self) {
        if let Some(feed) = self.feed() {
            feed.heal_soon();
            // The heal sees only the hub's subscriptions; the others look for themselves.
            feed.tell_access_listeners(EvictScope::All);
        }
    }

    fn on_evicted(&self, scope: EvictScope) {
        if let Some(feed) = self.feed() {
            feed.tell_access_listeners(scope);
        }
    }
}

/// Connections that are not the hub's subscriptions (a whiteboard's socket) but must lose
/// access with them: told of every eviction the hub makes, on every node, whatever caused it
/// (an event, a logout, a heal, another node's message), and of every lost bus message.
pub trait AccessListener: Send + Sync {
    /// The connections in `scope` may have lost access (or changed role): they re-check now.
    fn recheck(&self, scope: EvictScope);
}

fn uuid_field(value: &Value, name: &str) -> Option<Uuid> {
    value
        .get(name)
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
}

impl LiveFeed {
    /// What one committed event means for open connections; `memberships`: also update the
    /// project-list filters.
    pub(super) fn apply_access_change(&self, event: &Event, memberships: bool) {
        let project = event.project_id.or(match event.stream {
            StreamKey::Project(id) => Some(id),
            _ => None,
        });
        let user = uuid_field(&event.payload, "user_id");
        let hub = self.hub();
        match (event.event_type, project, user) {
            (EventType::MemberAdded, Some(project), Some(user)) if memberships => {
                self.project_sets.membership_changed(user, project, true);
            }
            (EventType::MemberRemoved, Some(project), Some(user)) => {
                if memberships {
                    self.project_sets.membership_changed(user, project, false);
                }
                hub.evict(
                    EvictScope::UserInProject {
                        user_id: user,
                        project_id: project,
                    },
                    CloseReason::AccessRevoked,
                );
            }
            (EventType::MemberRoleChanged, Some(project), Some(user)) => {
                let role = event.payload.get("role").and_then(Value::as_i64);
                let scope = EvictScope::UserInProject {
                    user_id: user,
                    project_id: project,
                };
                if role.is_none_or(|r| r < Role::Member.level()) {
                    // A Viewer keeps SSE (any role may read it) but not the native socket.
                    hub.evict_dialect(scope, self.ws, CloseReason::AccessRevoked);
                } else {
                    // Nothing of the hub's closes on a promotion, but a whiteboard's Viewer
                    // may edit from now on.
                    self.tell_access_listeners(scope);
                }
            }
            (EventType::WhiteboardDeleted, Some(project), _) => {
                // No subscription of the hub is about one board; its open sockets (not the
                // hub's) find out that their board is gone.
                self.tell_access_listeners(EvictScope::Project(project));
            }
            (EventType::ProjectDeleted, Some(project), _) => {
                hub.evict(EvictScope::Project(project), CloseReason::AccessRevoked);
            }
            (EventType::UserUpdated, _, _) => {
                let inactive = event.data.get("is_active").and_then(Value::as_bool) == Some(false);
                if let (true, Some(user)) = (inactive, uuid_field(&event.payload, "id")) {
                    hub.evict(EvictScope::User(user), CloseReason::AccessRevoked);
                }
            }
            (EventType::DatabaseWiped, _, _) => {
                // An import replaced the accounts too: no session's access, and no position on
                // any stream, is what it was. Clients reconnect (those whose account went are
                // refused) and are told to resync.
                hub.evict(EvictScope::All, CloseReason::AccessRevoked);
            }
            (EventType::DatabaseProjectsWiped, _, _) => {
                // Every project's history was replaced: no client position on a project
                // stream means anything now. Clients reconnect and are told to resync.
                hub.evict(EvictScope::AllProjects, CloseReason::AccessRevoked);
            }
            _ => {}
        }
    }

    /// Registers `listener` for as long as it lives.
    pub fn listen_for_access(&self, listener: Weak<dyn AccessListener>) {
        let mut listeners = self
            .access_listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        listeners.retain(|l| l.strong_count() > 0);
        listeners.push(listener);
    }

    fn tell_access_listeners(&self, scope: EvictScope) {
        let listeners: Vec<_> = self
            .access_listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for listener in listeners {
            listener.recheck(scope);
        }
    }

    /// Asks the heal task to run (coalesced: one run covers every request made before it
    /// starts).
    pub fn heal_soon(&self) {
        self.heal.notify_one();
    }
}

/// What one heal decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Healed {
    pub sessions: usize,
    pub users: usize,
    pub projects: usize,
}

/// Re-checks every open connection of the node against the store and evicts those that lost
/// access while the node could not hear of it. A store error leaves the connections as they are
/// (the next heal, or the events themselves, will tell); it never evicts on doubt.
pub async fn heal(feed: &LiveFeed) -> Result<Healed, store::StoreError> {
    let holders = feed.hub().holders();
    let mut healed = Healed::default();
    if holders.is_empty() {
        return Ok(healed);
    }
    let mut ops = feed.store.read().await?;
    let mut sessions: HashSet<Uuid> = HashSet::new();
    let mut users: HashSet<Uuid> = HashSet::new();
    let mut projects: HashMap<(Uuid, Uuid), Vec<Holder>> = HashMap::new();
    for holder in &holders {
        // The nil user holds the anchors of sockets that named no user (Pusher sockets before
        // any sign-in): no account to re-check, and no access to lose.
        if holder.user_id.is_nil() {
            continue;
        }
        match holder.session_id {
            Some(session) => sessions.insert(session),
            None => users.insert(holder.user_id),
        };
        if let StreamKey::Project(project) = holder.stream {
            projects
                .entry((holder.user_id, project))
                .or_default()
                .push(*holder);
        }
    }
    let now = store::now();
    for session in sessions {
        let live = match ops.get_session_with_user(session).await? {
            Some((row, Some(user))) => {
                row.revoked_at.is_none() && row.expires_at > now && user.is_active
            }
            _ => false,
        };
        if !live
            && feed
                .hub()
                .evict(EvictScope::Session(session), CloseReason::LoggedOut)
                > 0
        {
            healed.sessions += 1;
        }
    }
    for user in users {
        let active = ops.get_user(user).await?.is_some_and(|u| u.is_active);
        if !active
            && feed
                .hub()
                .evict(EvictScope::User(user), CloseReason::AccessRevoked)
                > 0
        {
            healed.users += 1;
        }
    }
    for ((user, project), held) in projects {
        let role = match ops.get_project_with_membership(project, user).await? {
            Some((_, Some(membership))) => Role::from_level(membership.role),
            _ => None,
        };
        let scope = EvictScope::UserInProject {
            user_id: user,
            project_id: project,
        };
        let closed = match role {
            None => feed.hub().evict(scope, CloseReason::AccessRevoked),
            Some(role) if role < Role::Member && held.iter().any(|h| h.dialect == feed.ws) => feed
                .hub()
                .evict_dialect(scope, feed.ws, CloseReason::AccessRevoked),
            Some(_) => 0,
        };
        if closed > 0 {
            healed.projects += 1;
        }
    }
    // Project-list filters: a membership lost meanwhile must stop passing its project. Only
    // removals are applied (a missed addition costs events, never a leak).
    for user in feed.project_sets.users() {
        let kept: HashSet<Uuid> = ops
            .list_memberships_of_user(user)
            .await?
            .iter()
            .map(|m| m.project_id)
            .collect();
        feed.project_sets.retain_only(user, &kept);
    }
    if healed != Healed::default() {
        tracing::info!(?healed, "healed connections that lost access while unheard");
    }
    Ok(healed)
}
