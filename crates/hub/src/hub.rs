//! The hub: one dispatcher task reads the bus and routes events to one pump task per stream that
//! has subscribers; the pump puts the stream in seq order (filling gaps from the log), encodes
//! each event once per dialect and offers the frames to every subscriber's bounded queue.
//!
//! Lock order, everywhere: `streams` → a stream's `state` → a subscriber's `state`; `roster` is
//! taken alone. No lock is held across an `.await`.

use chrono::{DateTime, Utc};
use futures::StreamExt;
use proto::{Event, StreamKey};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::{Notify, mpsc};
use uuid::Uuid;

use crate::bus::{Bus, BusError, BusFeed, BusMessage};
use crate::dialect::{Dialect, DialectId};
use crate::lock;
use crate::log::{LogError, LogReader};
use crate::presence::{Presence, PresenceEntry};
use crate::shared::{Ctx, HubConfig, Inner, StreamEntry, StreamShared, StreamState};
use crate::subscriber::{CloseReason, Delivery, SubShared, SubscribeRequest};
use crate::subscription::Subscription;
use crate::watch::{
    EventWatcher, NoWatcher, NodePresence, PresenceChange, PresenceRelay, Relay, Watcher,
};

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("dialect {0:?} is not registered with this hub")]
    UnknownDialect(DialectId),
}

/// Which subscriptions [`Hub::evict`] closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictScope {
    /// Every subscription of the user, on every stream (deactivation).
    User(Uuid),
    /// The user's subscriptions to one project's stream (removal, demotion). Streams shared by
    /// several projects (`system`) keep running: their filter must stop passing that project.
    UserInProject { user_id: Uuid, project_id: Uuid },
    /// Every subscription opened with this login session (logout).
    Session(Uuid),
    /// Every subscription to one project's stream, whoever holds it (the project was deleted).
    Project(Uuid),
    /// Every subscription to any project's stream (the projects were wiped or replaced).
    AllProjects,
    /// Everything (shutdown).
    All,
}

impl EvictScope {
    /// Whether the scope takes in a connection of `user` to `stream`, opened with the login
    /// session `session`: for the hub's subscriptions and for connections kept elsewhere
    /// (whiteboard sockets) alike.
    pub fn covers(&self, stream: StreamKey, user: Uuid, session: Option<Uuid>) -> bool {
        match *self {
            EvictScope::User(evicted) => user == evicted,
            EvictScope::UserInProject {
                user_id,
                project_id,
            } => user == user_id && stream == StreamKey::Project(project_id),
            EvictScope::Session(evicted) => session == Some(evicted),
            EvictScope::Project(project) => stream == StreamKey::Project(project),
            EvictScope::AllProjects => matches!(stream, StreamKey::Project(_)),
            EvictScope::All => true,
        }
    }

    fn matches(&self, stream: StreamKey, sub: &SubShared) -> bool {
        self.covers(stream, sub.user_id, sub.session_id)
    }
}

/// Registers dialects and starts a [`Hub`].
pub struct HubBuilder {
    log: Arc<dyn LogReader>,
    bus: Arc<dyn Bus>,
    dialects: Vec<Arc<dyn Dialect>>,
    config: HubConfig,
    watcher: Watcher,
    relay: Relay,
}

impl HubBuilder {
    /// What sees events before subscribers do (the server's access effects).
    pub fn watcher(mut self, watcher: Arc<dyn EventWatcher>) -> Self {
        self.watcher = watcher;
        self
    }

    /// What decides which presence changes are announced ([`NodePresence`] by default).
    pub fn presence_relay(mut self, relay: Arc<dyn PresenceRelay>) -> Self {
        self.relay = relay;
        self
    }

    /// Registers a dialect; subscribers name it by the returned id.
    pub fn dialect(&mut self, dialect: impl Dialect) -> DialectId {
        self.dialects.push(Arc::new(dialect));
        DialectId(self.dialects.len() - 1)
    }

    pub fn config(mut self, config: HubConfig) -> Self {
        self.config = config;
        self
    }

    /// Subscribes to the bus and spawns the hub's tasks on the current tokio runtime.
    pub async fn start(self) -> Result<Hub, HubError> {
        let feed = self.bus.subscribe().await?;
        let (presence_tx, presence_rx) = mpsc::unbounded_channel();
        let stats = Arc::new(crate::stats::HubStats::new(self.dialects.len()));
        let inner = Arc::new(Inner {
            ctx: Arc::new(Ctx {
                log: self.log,
                stats,
                dialects: self.dialects,
                config: self.config,
                watcher: self.watcher,
            }),
            bus: self.bus.clone(),
            streams: Mutex::new(HashMap::new()),
            presence: Arc::new(Presence::new(presence_tx)),
            tasks: Mutex::new(Vec::new()),
        });
        let dispatcher = tokio::spawn(dispatch(Arc::downgrade(&inner), feed));
        let announcer = tokio::spawn(announce(self.bus, self.relay, presence_rx));
        lock(&inner.tasks).extend([dispatcher.abort_handle(), announcer.abort_handle()]);
        Ok(Hub { inner })
    }
}

/// The delivery core. Cheap to clone; the tasks stop when the last clone and the last
/// subscription are dropped.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    pub fn builder(log: Arc<dyn LogReader>, bus: Arc<dyn Bus>) -> HubBuilder {
        HubBuilder {
            log,
            bus,
            dialects: Vec::new(),
            config: HubConfig::default(),
            watcher: Arc::new(NoWatcher),
            relay: Arc::new(NodePresence),
        }
    }

    /// Publishes an event on the hub's bus: after its commit, or at once if ephemeral.
    pub async fn publish(&self, event: Event) -> Result<(), BusError> {
        self.inner.bus.publish(Arc::new(event)).await
    }

    /// What the hub counted since it started (deliveries, catch-ups, resyncs, overflows per
    /// dialect; bus messages and gaps filled from the log).
    pub fn stats(&self) -> &Arc<crate::stats::HubStats> {
        &self.inner.ctx.stats
    }

    /// The dialect registered under `id`.
    pub fn dialect(&self, id: DialectId) -> Option<&Arc<dyn Dialect>> {
        self.inner.ctx.dialects.get(id.0)
    }

    /// Opens a subscription. With `since = Some(n)` the subscriber first gets every logged event
    /// after `n` (marked replayed), then live events, with no gap and no duplicate; or one
    /// [`Delivery::ResyncRequired`] followed by live events when that cannot be done: more than
    /// `max_replay` events missing, the log no longer holding `n + 1`, or `n` beyond the log's
    /// latest seq (the client's state is from another history, e.g. before a wipe or restore,
    /// so replaying nothing would leave it silently wrong). A negative `n` counts as 0.
    pub async fn subscribe(&self, req: SubscribeRequest) -> Result<Subscription, HubError> {
        let ctx = &self.inner.ctx;
        if req.dialect.0 >= ctx.dialects.len() {
            return Err(HubError::UnknownDialect(req.dialect));
        }
        let key = req.stream;
        // Read before registering: a client's `since` was committed before it connected, so a
        // bound read now can only be newer than anything a legitimate client has seen.
        let bounds = match req.since {
            Some(_) => Some((
                ctx.log.latest_seq(key).await?,
                ctx.log.oldest_seq(key).await?,
            )),
            None => None,
        };
        let limits = req.limits.unwrap_or(ctx.config.queue);
        let (stream, shared, initial, replaying) = loop {
            let stream = self.stream(key).await?;
            let streams = lock(&self.inner.streams);
            if !streams
                .get(&key)
                .is_some_and(|e| Arc::ptr_eq(&e.shared, &stream))
            {
                // The last subscriber left and took the stream down in between; start it again.
                continue;
            }
            let mut state = lock(&stream.state);
            let head = state.head;
            let start = match (req.since, bounds) {
                (Some(since), Some((latest, oldest))) => {
                    start_position(since.max(0), head, latest, oldest, ctx.config.max_replay)
                }
                _ => Start::Live(head),
            };
            let (last, live, initial, replaying) = match start {
                Start::Live(last) => (last, true, None, false),
                Start::Replay(since) => (since, false, None, true),
                Start::Resync => {
                    ctx.stats.dialect(req.dialect.0).resynced();
                    (
                        head,
                        true,
                        Some(Delivery::ResyncRequired { latest_seq: head }),
                        false,
                    )
                }
            };
            let shared = Arc::new(SubShared::new(&req, limits, last, live));
            shared.index.store(state.subs.len(), Ordering::Relaxed);
            Arc::make_mut(&mut state.subs).push(shared.clone());
            drop(state);
            drop(streams);
            break (stream, shared, initial, replaying);
        };
        // Joined after registering, so the new connection sees its own join like everyone else.
        let presence = match (key, &req.presence) {
            (StreamKey::Project(project), Some(name)) => {
                Some(self.inner.presence.join(project, req.user_id, name))
            }
            _ => None,
        };
        Ok(Subscription {
            hub: self.inner.clone(),
            stream,
            shared,
            pending: Default::default(),
            initial,
            replaying,
            log_retry: None,
            _presence: presence,
        })
    }

    /// The running stream for `key`, started if needed.
    async fn stream(&self, key: StreamKey) -> Result<Arc<StreamShared>, HubError> {
        if let Some(entry) = lock(&self.inner.streams).get(&key) {
            return Ok(entry.shared.clone());
        }
        let latest = self.inner.ctx.log.latest_seq(key).await?;
        let mut streams = lock(&self.inner.streams);
        if let Some(entry) = streams.get(&key) {
            return Ok(entry.shared.clone());
        }
        let shared = Arc::new(StreamShared {
            key,
            state: Mutex::new(StreamState {
                head: latest,
                subs: Arc::default(),
            }),
        });
        let (tx, rx) = mpsc::channel(self.inner.ctx.config.stream_buffer.max(1));
        let poke = Arc::new(Notify::new());
        // The dispatcher dropped this stream's events until the entry below existed; one log
        // read at start picks up anything committed since `latest` was read.
        poke.notify_one();
        tokio::spawn(pump(
            self.inner.ctx.clone(),
            shared.clone(),
            rx,
            poke.clone(),
        ));
        streams.insert(
            key,
            StreamEntry {
                shared: shared.clone(),
                tx,
                poke,
            },
        );
        Ok(shared)
    }

    /// Closes every matching subscription with `reason`; returns how many. Their transports
    /// see [`Delivery::Closed`] next, before any frame still queued.
    pub fn evict(&self, scope: EvictScope, reason: CloseReason) -> usize {
        self.evict_where(scope, None, reason)
    }

    /// Like [`Hub::evict`], limited to the subscriptions of one dialect: a demotion to Viewer
    /// ends native WS connections (Member and up) but not SSE streams (any role).
    pub fn evict_dialect(
        &self,
        scope: EvictScope,
        dialect: DialectId,
        reason: CloseReason,
    ) -> usize {
        self.evict_where(scope, Some(dialect), reason)
    }

    fn evict_where(
        &self,
        scope: EvictScope,
        dialect: Option<DialectId>,
        reason: CloseReason,
    ) -> usize {
        let mut closed = 0;
        {
            let streams = lock(&self.inner.streams);
            for entry in streams.values() {
                let state = lock(&entry.shared.state);
                for sub in state.subs.iter() {
                    if scope.matches(entry.shared.key, sub)
                        && dialect.is_none_or(|d| d.0 == sub.dialect)
                        && sub.close(reason)
                    {
                        closed += 1;
                    }
                }
            }
        }
        // Outside the locks: the watcher may do anything that does not block.
        self.inner.ctx.watcher.on_evicted(scope);
        closed
    }

    /// The node's periodic sweep, one pass over every subscriber: subscriptions whose
    /// session expired by `now` are closed ([`CloseReason::SessionExpired`]), and those in
    /// `heartbeat_slot` (see [`SubscribeRequest::heartbeat_slot`]) get a
    /// [`Delivery::Heartbeat`]; an idle one also gives back its queue's buffer. Returns how
    /// many subscriptions expired.
    pub fn sweep(&self, heartbeat_slot: Option<u32>, now: DateTime<Utc>) -> usize {
        let now = now.timestamp_micros();
        let streams = lock(&self.inner.streams);
        let mut expired = 0;
        for entry in streams.values() {
            let state = lock(&entry.shared.state);
            for sub in state.subs.iter() {
                if sub.expired(now) {
                    if sub.close(CloseReason::SessionExpired) {
                        expired += 1;
                    }
                } else if heartbeat_slot.is_some() && sub.heartbeat_slot == heartbeat_slot {
                    sub.heartbeat();
                }
            }
        }
        expired
    }

    /// Who is connected to a project on this node, sorted by display name.
    pub fn presence(&self, project_id: Uuid) -> Vec<PresenceEntry> {
        self.inner.presence.roster(project_id)
    }

    /// Every project's roster on this node.
    pub fn presence_all(&self) -> HashMap<Uuid, Vec<PresenceEntry>> {
        self.inner.presence.all()
    }

    /// Who holds the open subscriptions of this node, one line per distinct stream, user,
    /// session and dialect (for re-checking access after the node may have missed events).
    pub fn holders(&self) -> Vec<Holder> {
        let streams = lock(&self.inner.streams);
        let mut holders = std::collections::HashSet::new();
        for entry in streams.values() {
            let state = lock(&entry.shared.state);
            for sub in state.subs.iter() {
                holders.insert(Holder {
                    stream: entry.shared.key,
                    user_id: sub.user_id,
                    session_id: sub.session_id,
                    dialect: DialectId(sub.dialect),
                });
            }
        }
        holders.into_iter().collect()
    }

    /// Open subscriptions of one user on this node, closed ones not yet dropped included (for
    /// a per-user connection cap).
    pub fn user_subscriptions(&self, user_id: Uuid) -> usize {
        let streams = lock(&self.inner.streams);
        streams
            .values()
            .map(|e| {
                let state = lock(&e.shared.state);
                state.subs.iter().filter(|s| s.user_id == user_id).count()
            })
            .sum()
    }

    /// Open subscriptions on this node, per stream and in all (for metrics and caps).
    pub fn subscriber_count(&self, stream: Option<StreamKey>) -> usize {
        let streams = lock(&self.inner.streams);
        match stream {
            Some(key) => streams
                .get(&key)
                .map_or(0, |e| lock(&e.shared.state).subs.len()),
            None => streams
                .values()
                .map(|e| lock(&e.shared.state).subs.len())
                .sum(),
        }
    }
}

/// One kind of open subscription on a node ([`Hub::holders`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Holder {
    pub stream: StreamKey,
    pub user_id: Uuid,
    pub session_id: Option<Uuid>,
    pub dialect: DialectId,
}

#[derive(Debug, PartialEq, Eq)]
enum Start {
    Live(i64),
    Replay(i64),
    Resync,
}

fn start_position(
    since: i64,
    head: i64,
    latest: i64,
    oldest: Option<i64>,
    max_replay: i64,
) -> Start {
    let top = latest.max(head);
    if since > top || top - since > max_replay {
        return Start::Resync;
    }
    // Judged against `latest`, which was read with `oldest`: `head` may be newer (the stream
    // started after the bounds were read, with events committed in between), and events
    // committed after that read are in the log whatever `oldest` said then.
    if since < latest && oldest.is_none_or(|o| o > since + 1) {
        return Start::Resync;
    }
    if since >= head {
        // Nothing to replay from here; the pump delivers up to `latest` and the subscriber
        // drops whatever it already has.
        Start::Live(since)
    } else {
        Start::Replay(since)
    }
}

async fn dispatch(hub: Weak<Inner>, mut feed: BusFeed) {
    while let Some(message) = feed.next().await {
        let Some(hub) = hub.upgrade() else {
            return;
        };
        match message {
            BusMessage::Event(event) => {
                hub.ctx.stats.bus_event();
                // Before routing, so an eviction the event causes happens before anyone is
                // offered it or anything after it.
                hub.ctx.watcher.on_bus_event(&event);
                let streams = lock(&hub.streams);
                if let Some(entry) = streams.get(&event.stream)
                    && let Err(mpsc::error::TrySendError::Full(_)) = entry.tx.try_send(event)
                {
                    // Never wait on a pump: the event is in the log and the poke re-reads it.
                    entry.poke.notify_one();
                }
            }
            BusMessage::Lagged => {
                hub.ctx.stats.bus_lag();
                hub.ctx.watcher.on_bus_lagged();
                for entry in lock(&hub.streams).values() {
                    entry.poke.notify_one();
                }
            }
        }
    }
}

/// Presence changes the relay takes at once: a burst of connections costs one relay call.
const PRESENCE_BATCH: usize = 256;

async fn announce(
    bus: Arc<dyn Bus>,
    relay: Relay,
    mut rx: mpsc::UnboundedReceiver<PresenceChange>,
) {
    while let Some(first) = rx.recv().await {
        let mut changes = vec![first];
        while changes.len() < PRESENCE_BATCH {
            match rx.try_recv() {
                Ok(change) => changes.push(change),
                Err(_) => break,
            }
        }
        for event in relay.relay(changes).await {
            if let Err(err) = bus.publish(Arc::new(event)).await {
                tracing::warn!(
                    error = &err as &dyn std::error::Error,
                    "presence publish failed"
                );
            }
        }
    }
}

/// Puts one stream in order. Runs until the stream's entry (and so `rx`'s sender) is dropped.
async fn pump(
    ctx: Arc<Ctx>,
    stream: Arc<StreamShared>,
    mut rx: mpsc::Receiver<Arc<Event>>,
    poke: Arc<Notify>,
) {
    loop {
        tokio::select! {
            biased;
            event = rx.recv() => match event {
                Some(event) => on_event(&ctx, &stream, &event).await,
                None => return,
            },
            () = poke.notified() => fill(&ctx, &stream, None).await,
        }
    }
}

async fn on_event(ctx: &Arc<Ctx>, stream: &StreamShared, event: &Event) {
    let Some(seq) = event.seq else {
        stream.deliver(ctx, event).await;
        return;
    };
    if seq <= stream.head() {
        return;
    }
    if seq > stream.head() + 1 {
        fill(ctx, stream, Some(seq - 1)).await;
        if seq > stream.head() + 1 {
            stream.jump_to(ctx, seq - 1);
        }
    }
    stream.deliver(ctx, event).await;
}

/// Delivers logged events after the head up to `target` (the log's latest when `None`). A gap
/// the log cannot fill (error, pruned) is jumped over for subscribers to resolve one by one
/// (most will be told to resync).
async fn fill(ctx: &Arc<Ctx>, stream: &StreamShared, target: Option<i64>) {
    let key = stream.key;
    let target = match target {
        Some(target) => target,
        None => match ctx.log.latest_seq(key).await {
            Ok(latest) => latest,
            Err(err) => {
                tracing::warn!(stream = %key, error = &err as &dyn std::error::Error, "gap check failed");
                return;
            }
        },
    };
    // However far behind the pump is, it reads the whole way: live subscribers that keep up
    // must get everything, and each one that cannot is judged on its own lag.
    loop {
        let head = stream.head();
        if head >= target {
            return;
        }
        let page = match ctx.log.read_after(key, head, ctx.config.page_size).await {
            Ok(page) => page,
            Err(err) => {
                tracing::warn!(stream = %key, error = &err as &dyn std::error::Error, "gap fill failed");
                stream.jump_to(ctx, target);
                return;
            }
        };
        if page.first().and_then(|e| e.seq) != Some(head + 1) {
            tracing::warn!(stream = %key, head, "log does not hold the gap");
            stream.jump_to(ctx, target);
            return;
        }
        for event in &page {
            if event.seq == Some(stream.head() + 1) {
                ctx.watcher.on_filled_event(event);
                ctx.stats.filled(1);
            }
            stream.deliver(ctx, event).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Start, start_position};

    #[test]
    fn a_client_at_the_logs_head_replays_what_was_committed_after_the_bounds_were_read() {
        // The bounds saw an empty log (latest 0, no oldest); the stream started after event 1
        // was committed (head 1). Nothing the client holds is missing: replay, never resync.
        assert_eq!(start_position(0, 1, 0, None, 1000), Start::Replay(0));
        assert_eq!(start_position(7, 9, 7, Some(1), 1000), Start::Replay(7));
    }

    #[test]
    fn history_the_log_no_longer_holds_means_resync() {
        assert_eq!(start_position(5, 10, 10, None, 1000), Start::Resync);
        assert_eq!(start_position(5, 10, 10, Some(8), 1000), Start::Resync);
        assert_eq!(start_position(5, 10, 10, Some(6), 1000), Start::Replay(5));
    }

    #[test]
    fn a_since_beyond_the_log_or_too_far_behind_means_resync() {
        assert_eq!(start_position(11, 10, 10, Some(1), 1000), Start::Resync);
        assert_eq!(start_position(5, 1006, 1006, Some(1), 1000), Start::Resync);
        assert_eq!(
            start_position(5, 1005, 1005, Some(1), 1000),
            Start::Replay(5)
        );
    }

    #[test]
    fn a_client_level_with_the_stream_goes_live() {
        assert_eq!(start_position(10, 10, 10, Some(1), 1000), Start::Live(10));
        // The stream's head behind the log's latest: the pump delivers the rest.
        assert_eq!(start_position(10, 8, 10, Some(1), 1000), Start::Live(10));
    }
}
