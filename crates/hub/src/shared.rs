//! What the hub's tasks and the subscriptions' handles share: the immutable context, each
//! stream's state and fan-out, and the node's registry of streams ([`Inner`]). A leaf below
//! [`crate::hub`] and [`crate::subscription`], so neither needs the other.
//!
//! Lock order: see [`crate::hub`].

use bytes::Bytes;
use chrono::{DateTime, Utc};
use proto::{Event, StreamKey};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{Notify, mpsc};
use tokio::task::AbortHandle;

use crate::bus::Bus;
use crate::dialect::Dialect;
use crate::lock;
use crate::log::LogReader;
use crate::presence::Presence;
use crate::subscriber::{CloseReason, Offered, QueueLimits, SubShared};

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
    /// What session expiries are compared with; the server passes its own clock so that a
    /// test can move it.
    pub clock: WallClock,
}

/// The time of day the hub compares session expiries with ([`HubConfig::clock`]).
#[derive(Clone)]
pub struct WallClock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl WallClock {
    /// The system's clock.
    pub fn system() -> Self {
        Self::new(Utc::now)
    }

    pub fn new(now: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }

    /// [`WallClock::now`] in Unix microseconds, as expiries are held.
    pub(crate) fn now_micros(&self) -> i64 {
        self.now().timestamp_micros()
    }
}

impl Default for WallClock {
    fn default() -> Self {
        Self::system()
    }
}

impl std::fmt::Debug for WallClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WallClock")
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            max_replay: 1000,
            page_size: 256,
            stream_buffer: 1024,
            queue: QueueLimits::default(),
            clock: WallClock::system(),
        }
    }
}

/// What every pump and subscriber reads: immutable after start.
pub(crate) struct Ctx {
    pub(crate) log: Arc<dyn LogReader>,
    pub(crate) dialects: Vec<Arc<dyn Dialect>>,
    pub(crate) config: HubConfig,
    pub(crate) watcher: crate::watch::Watcher,
    pub(crate) stats: Arc<crate::stats::HubStats>,
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
    pub(crate) async fn deliver(&self, ctx: &Arc<Ctx>, event: &Event) {
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
        let now = ctx.config.clock.now_micros();
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
    pub(crate) fn jump_to(&self, ctx: &Ctx, head: i64) {
        let mut state = lock(&self.state);
        state.head = state.head.max(head);
        for sub in state.subs.iter() {
            if sub.nudge(state.head) {
                ctx.stats.dialect(sub.dialect).add_catch_ups(1);
            }
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
    // Counted here and added once per dialect at the end: one shared atomic per subscriber
    // would make the fan-out's threads contend for it.
    let mut counts = [OfferCounts::default(); COUNTED_DIALECTS];
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
        let outcome = sub.offer(event.seq, frame);
        match counts.get_mut(sub.dialect) {
            Some(count) => count.add(outcome),
            None => {
                let mut one = OfferCounts::default();
                one.add(outcome);
                one.flush(ctx.stats.dialect(sub.dialect));
            }
        }
    }
    for (dialect, count) in counts.iter().enumerate().take(ctx.dialects.len()) {
        count.flush(ctx.stats.dialect(dialect));
    }
}

/// Dialects whose fan-out counts are gathered on the stack; any beyond count one by one.
const COUNTED_DIALECTS: usize = 8;

#[derive(Clone, Copy, Default)]
struct OfferCounts {
    delivered: u64,
    overflowed: u64,
    behind: u64,
}

impl OfferCounts {
    fn add(&mut self, outcome: Offered) {
        match outcome {
            Offered::Delivered => self.delivered += 1,
            Offered::Overflowed => {
                self.overflowed += 1;
                self.behind += 1;
            }
            Offered::Behind => self.behind += 1,
            Offered::Nothing => {}
        }
    }

    fn flush(&self, stats: &crate::stats::DialectStats) {
        stats.add_deliveries(self.delivered);
        stats.add_overflows(self.overflowed);
        stats.add_catch_ups(self.behind);
    }
}

pub(crate) struct StreamEntry {
    pub(crate) shared: Arc<StreamShared>,
    pub(crate) tx: mpsc::Sender<Arc<Event>>,
    pub(crate) poke: Arc<Notify>,
}

pub(crate) struct Inner {
    pub(crate) ctx: Arc<Ctx>,
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) streams: Mutex<HashMap<StreamKey, StreamEntry>>,
    pub(crate) presence: Arc<Presence>,
    pub(crate) tasks: Mutex<Vec<AbortHandle>>,
}

impl Inner {
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
