//! Live delivery: the hub, fed by the commit listener, and the bookkeeping the transports share
//! (eviction after commits, connection counts, shutdown).
//!
//! The domain calls [`LiveFeed::committed`] after every commit, in commit order. The feed first
//! applies what the commit means for open connections (removals, demotions, deactivations and
//! deletions evict; membership changes update the project-list filters), then publishes the
//! events on the bus, so an evicted connection never sees an event of a project it left.

pub mod projects;
pub mod store_log;

use crate::clock::{Clock, Ticker};
use crate::dialects::native_ws::protocol::NativeWs;
use crate::dialects::sse::protocol::Sse;
use crate::dialects::ws::PingSweep;
use domain::CommitListener;
use futures::FutureExt;
use hub::{Bus, CloseReason, DialectId, EvictScope, Hub, HubConfig, HubError};
use proto::{Event, EventType, Role, StreamKey};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;
use store::Store;
use tokio::sync::Notify;
use uuid::Uuid;

use projects::ProjectSets;
use store_log::StoreLog;

/// The knobs of the live transports (CONTRACT §6, §7). Defaults are the documented values.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Accept `?token=<access token>` on the native WebSocket instead of a ticket
    /// (`--ws-legacy-token-auth`). Off by default: URLs end up in logs, tickets are single use.
    pub ws_legacy_token_auth: bool,
    /// How often the server pings a native WebSocket; two unanswered pings close it.
    pub ws_ping_interval: Duration,
    /// The largest client text frame (CONTRACT §6: 64 KiB); larger closes with 1009.
    pub ws_max_client_frame: usize,
    /// Client frames per second a socket may send on average, and the burst above it;
    /// a socket that sends faster is closed with 1008.
    pub ws_frames_per_second: u32,
    pub ws_frame_burst: u32,
    /// How long one write to a client may take before the connection is considered dead.
    pub send_timeout: Duration,
    /// The `: keepalive` comment interval on SSE streams (`--sse-keepalive-secs`).
    pub sse_keepalive: Duration,
    /// Open SSE streams per user on this node; one more is refused with 429.
    pub sse_max_per_user: usize,
    /// Committed events the bus (in-process, or the local side of the Redis bus) holds for
    /// the hub before it must re-read the log.
    pub bus_capacity: usize,
    pub hub: HubConfig,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            ws_legacy_token_auth: false,
            ws_ping_interval: Duration::from_secs(30),
            ws_max_client_frame: 64 * 1024,
            ws_frames_per_second: 20,
            ws_frame_burst: 100,
            send_timeout: Duration::from_secs(30),
            sse_keepalive: Duration::from_secs(30),
            sse_max_per_user: 16,
            bus_capacity: 1024,
            hub: HubConfig::default(),
        }
    }
}

/// Counts open live connections so shutdown can wait for their close frames to go out.
#[derive(Default)]
struct Connections {
    open: AtomicUsize,
    changed: Notify,
}

/// Held by every open live connection (WebSocket task or SSE body).
pub struct ConnectionGuard {
    feed: Arc<LiveFeed>,
}

impl ConnectionGuard {
    pub fn feed(&self) -> &Arc<LiveFeed> {
        &self.feed
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.feed.connections.open.fetch_sub(1, Ordering::AcqRel);
        self.feed.connections.changed.notify_waiters();
    }
}

/// One of a user's SSE streams, counted against [`LiveConfig::sse_max_per_user`].
pub struct SseSlot {
    feed: Arc<LiveFeed>,
    user: Uuid,
}

impl Drop for SseSlot {
    fn drop(&mut self) {
        let mut counts = self.feed.sse_counts();
        if let Some(count) = counts.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.user);
            }
        }
    }
}

pub struct LiveFeed {
    hub: Hub,
    bus: Arc<dyn Bus>,
    /// This node's id in the cluster ([`crate::AppState::node_id`]).
    pub node_id: Uuid,
    /// The native WebSocket dialect (CONTRACT §6).
    pub ws: DialectId,
    /// The Server-Sent Events dialect (CONTRACT §7).
    pub sse: DialectId,
    /// The Bryntum Gantt dialect (CONTRACT §8), `crate::dialects::bryntum::changes`.
    pub bryntum: DialectId,
    pub config: LiveConfig,
    pub project_sets: Arc<ProjectSets>,
    shutting_down: AtomicBool,
    connections: Connections,
    sse_per_user: Mutex<HashMap<Uuid, usize>>,
    /// The node's one ping schedule for every WebSocket dialect; its task also closes
    /// connections whose session expired.
    pub pings: PingSweep,
    /// The clock of the sweep, the hub's expiry checks and the SSE keepalive.
    pub clock: Clock,
}

impl LiveFeed {
    /// Starts the hub over the store's event log and `bus` (in-process on a single node, Redis
    /// in a cluster: [`crate::cluster::bus`]); transports never see which.
    pub async fn start(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        node_id: Uuid,
        config: LiveConfig,
        clock: Clock,
        bryntum: impl hub::Dialect,
    ) -> Result<Arc<LiveFeed>, HubError> {
        let log = Arc::new(StoreLog::new(store));
        let mut hub_config = config.hub.clone();
        hub_config.clock = clock.for_hub();
        let mut builder = Hub::builder(log, bus.clone()).config(hub_config);
        let ws = builder.dialect(NativeWs);
        let sse = builder.dialect(Sse);
        let bryntum = builder.dialect(bryntum);
        let hub = builder.start().await?;
        let pings = PingSweep::new(config.ws_ping_interval);
        let ticks = clock.ticker(pings.period());
        let feed = Arc::new(LiveFeed {
            hub,
            bus,
            node_id,
            ws,
            sse,
            bryntum,
            config,
            project_sets: Arc::default(),
            shutting_down: AtomicBool::new(false),
            connections: Connections::default(),
            sse_per_user: Mutex::new(HashMap::new()),
            pings,
            clock,
        });
        tokio::spawn(sweep(Arc::downgrade(&feed), ticks));
        Ok(feed)
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    fn sse_counts(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, usize>> {
        self.sse_per_user
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a live connection; `None` once shutdown began (refuse it with 1001 / 503).
    pub fn connection(self: &Arc<Self>) -> Option<ConnectionGuard> {
        self.connections.open.fetch_add(1, Ordering::AcqRel);
        let guard = ConnectionGuard { feed: self.clone() };
        // Checked after counting, so `shutdown` either sees this connection or it sees the flag.
        (!self.shutting_down.load(Ordering::Acquire)).then_some(guard)
    }

    /// Takes one of the user's SSE slots, `None` when all are in use.
    pub fn sse_slot(self: &Arc<Self>, user: Uuid) -> Option<SseSlot> {
        let mut counts = self.sse_counts();
        let count = counts.entry(user).or_default();
        if *count >= self.config.sse_max_per_user {
            return None;
        }
        *count += 1;
        Some(SseSlot {
            feed: self.clone(),
            user,
        })
    }

    pub fn open_connections(&self) -> usize {
        self.connections.open.load(Ordering::Acquire)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Server shutdown: every live connection closes (WebSocket 1001, SSE streams end).
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.hub.evict(EvictScope::All, CloseReason::Shutdown);
    }

    /// Waits until every live connection is gone, at most `limit`.
    pub async fn drained(&self, limit: Duration) {
        let wait = async {
            loop {
                let changed = self.connections.changed.notified();
                if self.open_connections() == 0 {
                    return;
                }
                changed.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
    }

    /// A session ended (logout): its live connections close (4003).
    pub fn session_ended(&self, session_id: Uuid) {
        self.hub
            .evict(EvictScope::Session(session_id), CloseReason::LoggedOut);
    }

    /// Every session of a user ended (deactivation, password change): all their live
    /// connections close (4003).
    pub fn user_sessions_ended(&self, user_id: Uuid) {
        self.hub
            .evict(EvictScope::User(user_id), CloseReason::LoggedOut);
    }

    /// What one committed event means for open connections.
    fn apply_access_change(&self, event: &Event) {
        let project = event.project_id.or(match event.stream {
            StreamKey::Project(id) => Some(id),
            _ => None,
        });
        let user = uuid_field(&event.payload, "user_id");
        match (event.event_type, project, user) {
            (EventType::MemberAdded, Some(project), Some(user)) => {
                self.project_sets.membership_changed(user, project, true);
            }
            (EventType::MemberRemoved, Some(project), Some(user)) => {
                self.project_sets.membership_changed(user, project, false);
                self.hub.evict(
                    EvictScope::UserInProject {
                        user_id: user,
                        project_id: project,
                    },
                    CloseReason::AccessRevoked,
                );
            }
            (EventType::MemberRoleChanged, Some(project), Some(user)) => {
                let role = event.payload.get("role").and_then(Value::as_i64);
                if role.is_none_or(|r| r < Role::Member.level()) {
                    // A Viewer keeps SSE (any role may read it) but not the native socket.
                    self.hub.evict_dialect(
                        EvictScope::UserInProject {
                            user_id: user,
                            project_id: project,
                        },
                        self.ws,
                        CloseReason::AccessRevoked,
                    );
                }
            }
            (EventType::ProjectDeleted, Some(project), _) => {
                self.hub
                    .evict(EvictScope::Project(project), CloseReason::AccessRevoked);
            }
            (EventType::UserUpdated, _, _) => {
                let inactive = event.data.get("is_active").and_then(Value::as_bool) == Some(false);
                if let (true, Some(user)) = (inactive, uuid_field(&event.payload, "id")) {
                    self.hub
                        .evict(EvictScope::User(user), CloseReason::AccessRevoked);
                }
            }
            (EventType::DatabaseWiped, _, _) => {
                // An import replaced the accounts too: no session's access, and no position on
                // any stream, is what it was. Clients reconnect (those whose account went are
                // refused) and are told to resync.
                self.hub.evict(EvictScope::All, CloseReason::AccessRevoked);
            }
            (EventType::DatabaseProjectsWiped, _, _) => {
                // Every project's history was replaced: no client position on a project
                // stream means anything now. Clients reconnect and are told to resync.
                self.hub
                    .evict(EvictScope::AllProjects, CloseReason::AccessRevoked);
            }
            _ => {}
        }
    }

    fn publish(&self, event: Event) {
        let bus = self.bus.clone();
        let mut publish = Box::pin(async move { bus.publish(Arc::new(event)).await });
        // Both buses are ready at once (the Redis bus queues for its sending task), which
        // keeps commit order on the bus. A bus that had to wait would finish on a task; the hub
        // orders by seq and reads gaps from the log, so a late or reordered publish loses nothing.
        match (&mut publish).now_or_never() {
            Some(Ok(())) => {}
            Some(Err(err)) => {
                tracing::warn!(error = %err, "bus publish failed; the hub will read the log")
            }
            None => {
                tokio::spawn(async move {
                    if let Err(err) = publish.await {
                        tracing::warn!(error = %err, "bus publish failed; the hub will read the log");
                    }
                });
            }
        }
    }
}

/// One task for the whole node instead of a timer per connection: every `period` it pings the
/// WebSockets of the next slot ([`PingSweep`]; those with a hub subscription through the hub,
/// which wakes their tasks) and closes connections whose session expired. A late tick sweeps
/// the slots it missed too (at most one round), so every socket is still pinged once per
/// interval. Ends when the feed is dropped.
async fn sweep(feed: Weak<LiveFeed>, mut ticks: Ticker) {
    loop {
        let periods = ticks.tick().await;
        let Some(feed) = feed.upgrade() else {
            return;
        };
        let now = feed.clock.wall();
        for _ in 0..periods.min(feed.pings.slots()) {
            feed.pings.advance(|slot| {
                feed.hub.sweep(Some(slot), now);
            });
        }
    }
}

fn uuid_field(value: &Value, name: &str) -> Option<Uuid> {
    value
        .get(name)
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
}

impl CommitListener for LiveFeed {
    fn committed(&self, events: &[Event]) {
        for event in events {
            self.apply_access_change(event);
        }
        for event in events {
            self.publish(event.clone());
        }
    }
}
