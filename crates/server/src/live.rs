//! Live delivery: the hub, fed by the commit listener, and the bookkeeping the transports share
//! (eviction after commits, connection counts, shutdown).
//!
//! The domain calls [`LiveFeed::committed`] after every commit, in commit order, and the feed
//! publishes the events on the bus. Every node's hub applies what an event means for its open
//! connections ([`access`]: removals, demotions, deactivations and deletions evict; membership
//! changes update the project-list filters) before it routes the event to anyone, so an
//! evicted connection never sees an event of a project it left, whichever node committed it.
//! In a cluster ([`crate::cluster`]) presence, SSE slots and logouts are shared too
//! ([`cluster`]).

pub mod access;
mod cluster;
pub mod pings;
pub mod projects;
pub mod store_log;

use crate::clock::{Clock, Ticker};
use crate::cluster::{Cluster, ControlMessage};
use domain::CommitListener;
use futures::FutureExt;
use hub::{
    Bus, CloseReason, DialectId, EvictScope, Hub, HubConfig, HubError, NativeWs, PresenceEntry, Sse,
};
use proto::Event;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;
use store::Store;
use tokio::sync::Notify;
use uuid::Uuid;

use pings::PingSweep;
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
    /// Open SSE streams per user (on all nodes of a cluster); one more is refused with 429.
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
    /// The `liveplan_connections` gauge of its dialect, once counted.
    counted: Option<prometheus_client::metrics::gauge::Gauge>,
}

impl ConnectionGuard {
    pub fn feed(&self) -> &Arc<LiveFeed> {
        &self.feed
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if let Some(gauge) = &self.counted {
            gauge.dec();
        }
        self.feed.connections.open.fetch_sub(1, Ordering::AcqRel);
        self.feed.connections.changed.notify_waiters();
    }
}

/// One of a user's SSE streams, counted against [`LiveConfig::sse_max_per_user`].
pub struct SseSlot {
    feed: Arc<LiveFeed>,
    user: Uuid,
    /// Also counted by the cluster (which gives it back when this node dies).
    in_cluster: bool,
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
        drop(counts);
        if let (true, Some(cluster)) = (self.in_cluster, self.feed.cluster.clone()) {
            let user = self.user;
            // Lost if the state is unreachable; the node's next heartbeat republishes its
            // counts anyway.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    cluster
                        .ask("SSE slot", cluster.state().release_sse(user))
                        .await;
                });
            }
        }
    }
}

/// What a node's Bryntum sockets do with an echo ([`LiveFeed::bryntum_echo`]).
type EchoHandler = Box<dyn Fn(Uuid, &serde_json::Value) + Send + Sync>;

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
    /// The Pusher Channels dialect (CONTRACT §10), `hub::Pusher`.
    pub pusher: DialectId,
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
    store: Arc<dyn Store>,
    /// The other nodes' shared state; `None` for a node alone.
    cluster: Option<Arc<Cluster>>,
    /// Wakes the heal task ([`access::heal`]).
    heal: Arc<Notify>,
    bryntum_echo: OnceLock<EchoHandler>,
    /// The app's metrics, for the connection gauges ([`LiveFeed::connection_as`]).
    metrics: OnceLock<Arc<crate::metrics::Metrics>>,
    /// Connections the hub does not hold (whiteboards), told of every eviction
    /// ([`access::AccessListener`]).
    access_listeners: Mutex<Vec<Weak<dyn access::AccessListener>>>,
}

impl LiveFeed {
    /// Starts the hub over the store's event log and `bus` (in-process on a single node, Redis
    /// in a cluster: [`crate::cluster::bus`]); transports never see which. In a cluster,
    /// `cluster` is the state the nodes share besides the bus (presence, limits, control
    /// messages); `None` for a node alone.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        node_id: Uuid,
        config: LiveConfig,
        clock: Clock,
        bryntum: impl hub::Dialect,
        cluster: Option<Arc<Cluster>>,
    ) -> Result<Arc<LiveFeed>, HubError> {
        let log = Arc::new(StoreLog::new(store.clone()));
        let mut hub_config = config.hub.clone();
        hub_config.clock = clock.for_hub();
        let watcher = Arc::new(access::AccessWatcher::default());
        let mut builder = Hub::builder(log, bus.clone())
            .config(hub_config)
            .watcher(watcher.clone());
        if let Some(cluster) = &cluster {
            builder = builder.presence_relay(Arc::new(cluster::ClusterPresence {
                cluster: cluster.clone(),
            }));
        }
        let ws = builder.dialect(NativeWs);
        let sse = builder.dialect(Sse);
        let bryntum = builder.dialect(bryntum);
        let pusher = builder.dialect(hub::Pusher);
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
            pusher,
            config,
            project_sets: Arc::default(),
            shutting_down: AtomicBool::new(false),
            connections: Connections::default(),
            sse_per_user: Mutex::new(HashMap::new()),
            pings,
            clock,
            store,
            cluster: cluster.clone(),
            heal: Arc::new(Notify::new()),
            bryntum_echo: OnceLock::new(),
            metrics: OnceLock::new(),
            access_listeners: Mutex::default(),
        });
        watcher.attach(Arc::downgrade(&feed));
        tokio::spawn(sweep(Arc::downgrade(&feed), ticks));
        cluster::spawn_healer(Arc::downgrade(&feed), feed.heal.clone());
        if let Some(cluster) = &cluster {
            cluster::start(&feed, cluster).await;
        }
        Ok(feed)
    }

    /// Counts this feed's connections in `metrics`, and lets the scrape read the hub's counters.
    pub fn attach_metrics(&self, metrics: &Arc<crate::metrics::Metrics>) {
        let _ = self.metrics.set(metrics.clone());
        let mut names = vec!["other"; 8];
        for (id, name) in [
            (self.ws, "native_ws"),
            (self.sse, "sse"),
            (self.bryntum, "bryntum"),
            (self.pusher, "pusher"),
        ] {
            if let Some(slot) = names.get_mut(id.index()) {
                *slot = name;
            }
        }
        metrics.attach_hub(self.hub.stats().clone(), names);
    }

    /// The node's cluster, `None` when it is alone.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// Who is connected to a project: on every node of the cluster (this node's own counts
    /// plus what the others published), else on this node.
    pub async fn roster(&self, project_id: Uuid) -> Vec<PresenceEntry> {
        let mut entries = self.hub.presence(project_id);
        let Some(cluster) = &self.cluster else {
            return entries;
        };
        let elsewhere = cluster
            .ask("roster", cluster.state().roster_elsewhere(project_id))
            .await
            .unwrap_or_default();
        for other in elsewhere {
            match entries.iter_mut().find(|e| e.user_id == other.user_id) {
                Some(entry) => entry.connections += other.connections,
                None => entries.push(other),
            }
        }
        entries.sort_by(|a, b| {
            a.display_name
                .cmp(&b.display_name)
                .then(a.user_id.cmp(&b.user_id))
        });
        entries
    }

    /// Sets what this node does with a Bryntum echo (the Bryntum dialect's node state).
    pub fn on_bryntum_echo(
        &self,
        handler: impl Fn(Uuid, &serde_json::Value) + Send + Sync + 'static,
    ) {
        let _ = self.bryntum_echo.set(Box::new(handler));
    }

    /// The echo of a Bryntum revision that wrote nothing (no event carries it): to this node's
    /// sockets of the project at once, and to the other nodes'.
    pub fn bryntum_echo(&self, project_id: Uuid, revision: serde_json::Value) {
        self.bryntum_echo_here(project_id, &revision);
        self.tell_others(ControlMessage::BryntumEcho {
            project_id,
            revision,
        });
    }

    fn bryntum_echo_here(&self, project_id: Uuid, revision: &serde_json::Value) {
        if let Some(handler) = self.bryntum_echo.get() {
            handler(project_id, revision);
        }
    }

    /// Sends a control message to the other nodes, if any, without waiting.
    fn tell_others(&self, message: ControlMessage) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        tokio::spawn(async move {
            cluster
                .ask("control message", cluster.state().broadcast(&message))
                .await;
        });
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    pub(crate) fn sse_counts(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, usize>> {
        self.sse_per_user
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a live connection; `None` once shutdown began (refuse it with 1001 / 503).
    pub fn connection(self: &Arc<Self>) -> Option<ConnectionGuard> {
        self.connection_as(crate::metrics::ConnDialect::Other)
    }

    /// [`LiveFeed::connection`], counted under `dialect` in `liveplan_connections`.
    pub fn connection_as(
        self: &Arc<Self>,
        dialect: crate::metrics::ConnDialect,
    ) -> Option<ConnectionGuard> {
        self.connections.open.fetch_add(1, Ordering::AcqRel);
        let counted = self.metrics.get().map(|m| m.connections(dialect));
        if let Some(gauge) = &counted {
            gauge.inc();
        }
        let guard = ConnectionGuard {
            feed: self.clone(),
            counted,
        };
        // Checked after counting, so `shutdown` either sees this connection or it sees the flag.
        (!self.shutting_down.load(Ordering::Acquire)).then_some(guard)
    }

    /// Takes one of the user's SSE slots, `None` when all are in use: on this node, and in a
    /// cluster on all live nodes. While the cluster state is unreachable only this node's
    /// streams count (TRANSPORTS.md, "Many nodes").
    pub async fn sse_slot(self: &Arc<Self>, user: Uuid) -> Option<SseSlot> {
        let max = self.config.sse_max_per_user;
        if self.sse_counts().get(&user).copied().unwrap_or(0) >= max {
            return None;
        }
        let mut in_cluster = false;
        if let Some(cluster) = &self.cluster {
            match cluster
                .ask("SSE slot", cluster.state().acquire_sse(user, max))
                .await
            {
                Some(false) => return None,
                Some(true) => in_cluster = true,
                None => {}
            }
        }
        let slot = SseSlot {
            feed: self.clone(),
            user,
            in_cluster,
        };
        let mut counts = self.sse_counts();
        let count = counts.entry(user).or_default();
        *count += 1;
        if *count > max {
            // Another stream of the user took the last local slot meanwhile.
            drop(counts);
            drop(slot);
            return None;
        }
        Some(slot)
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

    /// A session ended (logout): its live connections close (4003), on every node.
    pub fn session_ended(&self, session_id: Uuid) {
        self.hub
            .evict(EvictScope::Session(session_id), CloseReason::LoggedOut);
        self.tell_others(ControlMessage::SessionEnded { session_id });
    }

    /// Every session of a user ended (deactivation, password change): all their live
    /// connections close (4003), on every node.
    pub fn user_sessions_ended(&self, user_id: Uuid) {
        self.hub
            .evict(EvictScope::User(user_id), CloseReason::LoggedOut);
        self.tell_others(ControlMessage::UserSessionsEnded { user_id });
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

impl CommitListener for LiveFeed {
    fn committed(&self, events: &[Event]) {
        // Access effects are applied by every node's hub as the events arrive ([`access`]).
        for event in events {
            self.publish(event.clone());
        }
    }
}
