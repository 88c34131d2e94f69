//! The hub: one dispatcher task reads the bus and routes events to one pump task per stream that
//! has subscribers; the pump puts the stream in seq order (filling gaps from the log), encodes
//! each event once per dialect and offers the frames to every subscriber's bounded queue.
//!
//! Lock order, everywhere: `streams` → a stream's `state` → a subscriber's `state`; `roster` is
//! taken alone. No lock is held across an `.await`.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use proto::{Event, StreamKey};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use tokio::sync::{Notify, mpsc};
use tokio::task::AbortHandle;
use uuid::Uuid;

use crate::bus::{Bus, BusError, BusFeed, BusMessage};
use crate::dialect::{Dialect, DialectId};
use crate::lock;
use crate::log::{LogError, LogReader};
use crate::presence::{self, PresenceEntry, Roster};
use crate::subscription::{
    CloseReason, Delivery, QueueLimits, SubShared, SubscribeRequest, Subscription,
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

#[derive(Debug, Clone)]
pub struct HubConfig {
    /// A client more than this many events behind is told to resync instead of being replayed
    /// (CONTRACT §6: 1000).
    pub max_replay: i64,
    /// Events per log read during gap fill and catch-up.
    pub page_size: usize,
    /// Bus events waiting for one stream's pump; beyond it they are dropped and re-read from
    /// the log, so a stalled log read cannot grow memory.
    pub stream_buffer: usize,
    /// The default per-subscriber queue bounds.
    pub queue: QueueLimits,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            max_replay: 1000,
            page_size: 256,
            stream_buffer: 1024,
            queue: QueueLimits::default(),
        }
    }
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
    fn matches(&self, stream: StreamKey, sub: &SubShared) -> bool {
        match *self {
            EvictScope::User(user) => sub.user_id == user,
            EvictScope::UserInProject {
                user_id,
                project_id,
            } => sub.user_id == user_id && stream == StreamKey::Project(project_id),
            EvictScope::Session(session) => sub.session_id == Some(session),
            EvictScope::Project(project) => stream == StreamKey::Project(project),
            EvictScope::AllProjects => matches!(stream, StreamKey::Project(_)),
            EvictScope::All => true,
        }
    }
}

/// What every pump and subscriber reads: immutable after start.
pub(crate) struct Ctx {
    pub(crate) log: Arc<dyn LogReader>,
    pub(crate) dialects: Vec<Arc<dyn Dialect>>,
    pub(crate) config: HubConfig,
}

pub(crate) struct StreamState {
    /// The last seq the pump delivered; everything up to it is in the log.
    pub(crate) head: i64,
    /// Copied on write: a fan-out takes the list (one reference count) and offers outside the
    /// lock, since offers may write to sockets; a change during a fan-out copies it.
    pub(crate) subs: Arc<Vec<Arc<SubShared>>>,
}

pub(crate) struct StreamShared {
    pub(crate) key: StreamKey,
    pub(crate) state: Mutex<StreamState>,
}

impl StreamShared {
    pub(crate) fn head(&self) -> i64 {
        lock(&self.state).head
    }

    /// Delivers the event that follows `head` to every subscriber, encoding it at most once per
    /// dialect. Anything else is ignored: ordering is the caller's job.
    ///
    /// The offers run outside the stream lock (they may write to sockets, see
    /// [`crate::DirectWrite`], and a lock held across thousands of writes would stall every
    /// subscribe and unsubscribe). That is safe because only this stream's pump calls it, one
    /// event at a time; a subscriber that joins meanwhile starts after `head`, one that goes
    /// live from catch-up has read up to `head` from the log (the offer is then a duplicate and
    /// ignored), and one dropped meanwhile is detached and skipped.
    ///
    /// Beyond [`FANOUT_CHUNK`] subscribers the offers are split between tasks, so that the
    /// runtime's worker threads share the writes of one event; all of them end before this
    /// returns, so no subscriber sees the next event first.
    async fn deliver(&self, ctx: &Arc<Ctx>, event: &Event) {
        let subs = {
            let mut state = lock(&self.state);
            if let Some(seq) = event.seq {
                if seq != state.head + 1 {
                    return;
                }
                state.head = seq;
            }
            state.subs.clone()
        };
        let frames: Arc<[OnceLock<Option<Bytes>>]> =
            (0..ctx.dialects.len()).map(|_| OnceLock::new()).collect();
        // Read once per event, not per subscriber. The pump runs after the commit, so an event
        // committed after a session expired is always seen here at or after the expiry.
        let now = Utc::now().timestamp_micros();
        if subs.len() <= FANOUT_CHUNK {
            offer_each(ctx, event, &subs, &frames, now);
            return;
        }
        let shared_event = Arc::new(event.clone());
        let helpers: Vec<_> = (FANOUT_CHUNK..subs.len())
            .step_by(FANOUT_CHUNK)
            .map(|from| {
                let (ctx, event, subs, frames) = (
                    ctx.clone(),
                    shared_event.clone(),
                    subs.clone(),
                    frames.clone(),
                );
                tokio::spawn(async move {
                    let to = (from + FANOUT_CHUNK).min(subs.len());
                    offer_each(&ctx, &event, &subs[from..to], &frames, now);
                })
            })
            .collect();
        offer_each(ctx, event, &subs[..FANOUT_CHUNK], &frames, now);
        for helper in helpers {
            if let Err(err) = helper.await {
                tracing::error!(error = %err, "a fan-out task failed");
            }
        }
    }

    /// Moves the head past events the hub will not deliver itself; live subscribers behind it
    /// catch up on their own (or are told to resync).
    fn jump_to(&self, head: i64) {
        let mut state = lock(&self.state);
        state.head = state.head.max(head);
        for sub in state.subs.iter() {
            sub.nudge(state.head);
        }
    }
}

/// Subscribers one fan-out task serves; see [`StreamShared::deliver`].
const FANOUT_CHUNK: usize = 256;

/// Offers an event to some of a stream's subscribers; `frames` holds its encoding per dialect,
/// made by whichever task needs it first.
fn offer_each(
    ctx: &Ctx,
    event: &Event,
    subs: &[Arc<SubShared>],
    frames: &[OnceLock<Option<Bytes>>],
    now: i64,
) {
    for sub in subs {
        if sub.expired(now) {
            sub.close(CloseReason::SessionExpired);
            continue;
        }
        let frame = if sub.passes(event) {
            frames[sub.dialect]
                .get_or_init(|| ctx.dialects[sub.dialect].encode(event, false))
                .as_ref()
        } else {
            None
        };
        sub.offer(event.seq, frame);
    }
}

struct StreamEntry {
    shared: Arc<StreamShared>,
    tx: mpsc::Sender<Arc<Event>>,
    poke: Arc<Notify>,
}

pub(crate) struct Inner {
    pub(crate) ctx: Arc<Ctx>,
    bus: Arc<dyn Bus>,
    streams: Mutex<HashMap<StreamKey, StreamEntry>>,
    pub(crate) roster: Mutex<Roster>,
    presence_tx: mpsc::UnboundedSender<Arc<Event>>,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Inner {
    /// Queues a presence event for publication on the bus, so other nodes' hubs see it too.
    /// Unbounded because it holds at most one join and one leave per connection change.
    pub(crate) fn announce(&self, event: Event) {
        let _ = self.presence_tx.send(Arc::new(event));
    }

    pub(crate) fn unsubscribe(&self, stream: &Arc<StreamShared>, sub: &Arc<SubShared>) {
        let mut streams = lock(&self.streams);
        let mut state = lock(&stream.state);
        let i = sub.index.load(Ordering::Relaxed);
        if state.subs.get(i).is_some_and(|s| Arc::ptr_eq(s, sub)) {
            let subs = Arc::make_mut(&mut state.subs);
            subs.swap_remove(i);
            if let Some(moved) = subs.get(i) {
                moved.index.store(i, Ordering::Relaxed);
            }
        }
        // A fan-out that took the list before the removal may still reach it.
        sub.detach();
        if state.subs.is_empty()
            && streams
                .get(&stream.key)
                .is_some_and(|e| Arc::ptr_eq(&e.shared, stream))
        {
            // Dropping the entry drops the pump's sender, which ends the pump.
            streams.remove(&stream.key);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

/// Registers dialects and starts a [`Hub`].
pub struct HubBuilder {
    log: Arc<dyn LogReader>,
    bus: Arc<dyn Bus>,
    dialects: Vec<Arc<dyn Dialect>>,
    config: HubConfig,
}

impl HubBuilder {
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
        let inner = Arc::new(Inner {
            ctx: Arc::new(Ctx {
                log: self.log,
                dialects: self.dialects,
                config: self.config,
            }),
            bus: self.bus.clone(),
            streams: Mutex::new(HashMap::new()),
            roster: Mutex::new(Roster::default()),
            presence_tx,
            tasks: Mutex::new(Vec::new()),
        });
        let dispatcher = tokio::spawn(dispatch(Arc::downgrade(&inner), feed));
        let announcer = tokio::spawn(announce(self.bus, presence_rx));
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
        }
    }

    /// Publishes an event on the hub's bus: after its commit, or at once if ephemeral.
    pub async fn publish(&self, event: Event) -> Result<(), BusError> {
        self.inner.bus.publish(Arc::new(event)).await
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
                Start::Resync => (
                    head,
                    true,
                    Some(Delivery::ResyncRequired { latest_seq: head }),
                    false,
                ),
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
                Some(presence::join(&self.inner, project, req.user_id, name))
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
        let streams = lock(&self.inner.streams);
        let mut closed = 0;
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
        lock(&self.inner.roster).roster(project_id)
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
    if since < top && oldest.is_none_or(|o| o > since + 1) {
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
        let streams = lock(&hub.streams);
        match message {
            BusMessage::Event(event) => {
                if let Some(entry) = streams.get(&event.stream)
                    && let Err(mpsc::error::TrySendError::Full(_)) = entry.tx.try_send(event)
                {
                    // Never wait on a pump: the event is in the log and the poke re-reads it.
                    entry.poke.notify_one();
                }
            }
            BusMessage::Lagged => {
                for entry in streams.values() {
                    entry.poke.notify_one();
                }
            }
        }
    }
}

async fn announce(bus: Arc<dyn Bus>, mut rx: mpsc::UnboundedReceiver<Arc<Event>>) {
    while let Some(event) = rx.recv().await {
        if let Err(err) = bus.publish(event).await {
            tracing::warn!(
                error = &err as &dyn std::error::Error,
                "presence publish failed"
            );
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
            stream.jump_to(seq - 1);
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
                stream.jump_to(target);
                return;
            }
        };
        if page.first().and_then(|e| e.seq) != Some(head + 1) {
            tracing::warn!(stream = %key, head, "log does not hold the gap");
            stream.jump_to(target);
            return;
        }
        for event in &page {
            stream.deliver(ctx, event).await;
        }
    }
}
