//! One subscriber: its bounded queue (shared with the stream's pump) and the reader-side handle a
//! transport polls. Catch-up from the log runs on the reader's task, never on the publisher's.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use proto::{Event, StreamKey};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::dialect::DialectId;
use crate::hub::{Inner, StreamShared};
use crate::lock;
use crate::presence::PresenceGuard;

/// Decides whether a subscriber may see an event (e.g. the `system` stream limited to the
/// user's projects). It runs on the publishing path under the stream's lock: keep it cheap and
/// never call into the hub from it.
pub type EventFilter = Arc<dyn Fn(&Event) -> bool + Send + Sync>;

/// What a [`DirectWrite`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectOutcome {
    /// All of it went out.
    Sent,
    /// Part of it went out and the writer holds the rest: the frame counts as delivered, and
    /// the reader is woken (with an empty [`Delivery::Frame`]) to flush the writer once the
    /// socket can take more.
    Started,
    /// Nothing went out (the socket would block, or is broken): the frame is queued as usual.
    Refused,
}

/// A transport's way to write a frame straight from the fan-out to an idle client's socket,
/// without waking the connection's task (one task wake-up and scheduler round trip per
/// delivery, otherwise). The hub calls it only while the subscriber's reader is parked in
/// [`Subscription::recv`] with nothing queued or in hand, under the subscriber's lock, so frames
/// stay in seq order with those the reader writes itself. It must not block and must not call
/// into the hub.
pub trait DirectWrite: Send + Sync + 'static {
    fn try_write(&self, frame: &Bytes) -> DirectOutcome;
}

/// The bounds of one subscriber's queue of encoded frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    pub max_events: usize,
    pub max_bytes: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            max_events: 512,
            max_bytes: 1 << 20,
        }
    }
}

/// What a transport asks for when a client connects.
#[derive(Clone)]
pub struct SubscribeRequest {
    pub stream: StreamKey,
    /// The last seq the client has (`since`, `Last-Event-ID`); `None` starts live at the head.
    pub since: Option<i64>,
    pub dialect: DialectId,
    pub filter: Option<EventFilter>,
    pub user_id: Uuid,
    /// The login session the connection authenticated with, so logout can close it.
    pub session_id: Option<Uuid>,
    /// `Some(display_name)` counts this connection in the presence of its project stream.
    pub presence: Option<String>,
    /// `None` takes the hub's default.
    pub limits: Option<QueueLimits>,
    /// When the login session behind the connection expires. From then on the subscription is
    /// closed with [`CloseReason::SessionExpired`]: at the first event the hub handles at or
    /// after that time, at the first log read of a catch-up, or at the next [`Hub::sweep`]
    /// (for a connection that receives nothing), whichever comes first.
    ///
    /// [`Hub::sweep`]: crate::Hub::sweep
    pub expires_at: Option<DateTime<Utc>>,
    /// `Some(slot)`: every [`Hub::sweep`] of that slot makes [`Subscription::recv`] return one
    /// [`Delivery::Heartbeat`], the transport's cue to ping (or keep alive) the client. One
    /// sweep for every connection of a node replaces a timer per connection.
    ///
    /// [`Hub::sweep`]: crate::Hub::sweep
    pub heartbeat_slot: Option<u32>,
    /// Lets the fan-out write frames to the client's socket itself while the reader is idle
    /// (see [`DirectWrite`]).
    pub direct: Option<Arc<dyn DirectWrite>>,
}

impl SubscribeRequest {
    /// A live subscription without filter, presence, session or replay.
    pub fn new(stream: StreamKey, dialect: DialectId, user_id: Uuid) -> Self {
        Self {
            stream,
            since: None,
            dialect,
            filter: None,
            user_id,
            session_id: None,
            presence: None,
            limits: None,
            expires_at: None,
            heartbeat_slot: None,
            direct: None,
        }
    }
}

/// Why the hub ended a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Removal from the project, demotion below the needed role, or deactivation.
    AccessRevoked,
    /// The session the connection authenticated with was logged out.
    LoggedOut,
    /// The log could not be read to catch the subscriber up; it should reconnect with `since`.
    LogUnavailable,
    /// The server is going away; reconnect elsewhere with `since`.
    Shutdown,
    /// The login session the connection authenticated with reached its expiry.
    SessionExpired,
}

impl CloseReason {
    /// The WebSocket close code of CONTRACT §6 (SSE simply ends the stream).
    pub fn ws_close_code(self) -> u16 {
        match self {
            CloseReason::AccessRevoked | CloseReason::LoggedOut | CloseReason::SessionExpired => {
                4003
            }
            CloseReason::LogUnavailable => 1011,
            CloseReason::Shutdown => 1001,
        }
    }
}

/// One item for the transport to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// An encoded frame of the subscription's dialect, shared with every other subscriber.
    /// Empty only after a [`DirectOutcome::Started`]: nothing to send, but flush the
    /// transport's [`DirectWrite`].
    Frame(Bytes),
    /// The client's position cannot be resumed: send the dialect's resync frame
    /// ([`Subscription::resync_frame`]); live events after `latest_seq` follow.
    ResyncRequired { latest_seq: i64 },
    /// The subscription is over: close the socket (see [`CloseReason::ws_close_code`]) or end the
    /// SSE stream. Every later call returns it again.
    Closed(CloseReason),
    /// The subscription's heartbeat slot was swept (see [`SubscribeRequest::heartbeat_slot`]):
    /// time to ping the client. Only [`Subscription::recv`] returns it, never
    /// [`Subscription::try_recv`], so it never lands in the middle of a batch.
    Heartbeat,
}

/// A snapshot of a subscriber's queue, for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    pub queued_events: usize,
    pub queued_bytes: usize,
    pub peak_events: usize,
    pub peak_bytes: usize,
    /// False while the subscriber is catching up from the log.
    pub live: bool,
    /// How many times the queue overflowed and the subscriber was moved to catch-up.
    pub overflows: u64,
    /// How many times the subscriber left live delivery to read the log itself (overflows,
    /// gaps the hub could not fill for everyone). Replay of `since` is not counted.
    pub catch_ups: u64,
}

pub(crate) struct SubState {
    queue: VecDeque<Bytes>,
    bytes: usize,
    /// The highest seq the subscriber has been given or skipped (by filter or dialect). While
    /// live, the pump only appends `last + 1`; anything else moves the subscriber to catch-up.
    pub(crate) last: i64,
    pub(crate) live: bool,
    closed: Option<CloseReason>,
    /// A sweep of the subscription's heartbeat slot that `recv` has not reported yet.
    heartbeat: bool,
    /// The reader waits in `recv` and holds no frame it has not written: only then may the
    /// fan-out write to the socket directly without overtaking it.
    reader_parked: bool,
    /// The `Subscription` is gone; a fan-out still holding this subscriber skips it.
    detached: bool,
    peak_events: usize,
    peak_bytes: usize,
    overflows: u64,
    catch_ups: u64,
}

pub(crate) struct SubShared {
    /// Position in the stream's subscriber vector, kept for O(1) removal.
    pub(crate) index: AtomicUsize,
    pub(crate) dialect: usize,
    pub(crate) filter: Option<EventFilter>,
    pub(crate) limits: QueueLimits,
    pub(crate) user_id: Uuid,
    pub(crate) session_id: Option<Uuid>,
    /// The session's expiry in Unix microseconds, `i64::MAX` without one: compared for every
    /// subscriber on every event, so a plain integer.
    pub(crate) expires_at: i64,
    pub(crate) heartbeat_slot: Option<u32>,
    direct: Option<Arc<dyn DirectWrite>>,
    pub(crate) state: Mutex<SubState>,
    notify: Notify,
}

impl SubShared {
    pub(crate) fn new(req: &SubscribeRequest, limits: QueueLimits, last: i64, live: bool) -> Self {
        Self {
            index: AtomicUsize::new(usize::MAX),
            dialect: req.dialect.0,
            filter: req.filter.clone(),
            limits,
            user_id: req.user_id,
            session_id: req.session_id,
            expires_at: req.expires_at.map_or(i64::MAX, |at| at.timestamp_micros()),
            heartbeat_slot: req.heartbeat_slot,
            direct: req.direct.clone(),
            state: Mutex::new(SubState {
                queue: VecDeque::new(),
                bytes: 0,
                last,
                live,
                closed: None,
                heartbeat: false,
                reader_parked: false,
                detached: false,
                peak_events: 0,
                peak_bytes: 0,
                overflows: 0,
                catch_ups: 0,
            }),
            notify: Notify::new(),
        }
    }

    /// True when the subscription's session has expired by `now` (Unix microseconds).
    pub(crate) fn expired(&self, now: i64) -> bool {
        self.expires_at <= now
    }

    /// A sweep of this subscriber's slot: the reader is told to ping its client. An empty
    /// queue also gives its buffer back: the connection is idle, and it should not keep the
    /// capacity of its largest burst until the next one.
    pub(crate) fn heartbeat(&self) {
        let mut s = lock(&self.state);
        if s.closed.is_some() {
            return;
        }
        if s.queue.is_empty() && s.queue.capacity() > 0 {
            s.queue = VecDeque::new();
        }
        s.heartbeat = true;
        self.notify.notify_one();
    }

    pub(crate) fn passes(&self, event: &Event) -> bool {
        self.filter.as_ref().is_none_or(|f| f(event))
    }

    /// Offers the next event from the pump. `frame` is `None` when the subscriber does not get
    /// this event (filter, dialect) but must still count it as seen. Never blocks on the reader.
    ///
    /// `frame` is borrowed: every subscriber of a fan-out shares one `Bytes`, and a clone per
    /// subscriber would make the fan-out's threads contend for its reference count; only a
    /// frame that is queued is cloned.
    pub(crate) fn offer(&self, seq: Option<i64>, frame: Option<&Bytes>) {
        let mut s = lock(&self.state);
        if s.closed.is_some() || s.detached || !s.live {
            return;
        }
        if let Some(seq) = seq {
            if seq <= s.last {
                return;
            }
            if seq > s.last + 1 {
                // The pump skipped ahead (log gap it could not fill); the reader finds out why.
                s.live = false;
                s.catch_ups += 1;
                self.notify.notify_one();
                return;
            }
        }
        let Some(frame) = frame else {
            if let Some(seq) = seq {
                s.last = seq;
            }
            return;
        };
        if s.reader_parked
            && s.queue.is_empty()
            && let Some(direct) = &self.direct
        {
            let outcome = direct.try_write(frame);
            if outcome != DirectOutcome::Refused {
                if let Some(seq) = seq {
                    s.last = seq;
                }
                if outcome == DirectOutcome::Started {
                    // The empty frame writes nothing; the reader's flush sends the rest, and
                    // frames queued behind it follow in order.
                    s.queue.push_back(Bytes::new());
                    self.notify.notify_one();
                }
                return;
            }
        }
        // An empty queue always takes one frame, so one oversized event cannot wedge a reader.
        let full = s.queue.len() >= self.limits.max_events
            || (!s.queue.is_empty() && s.bytes + frame.len() > self.limits.max_bytes);
        if full {
            // Ephemeral events are simply lost here; logged ones are re-read from the log.
            if seq.is_some() {
                s.live = false;
                s.overflows += 1;
                s.catch_ups += 1;
                self.notify.notify_one();
            }
            return;
        }
        s.bytes += frame.len();
        s.queue.push_back(frame.clone());
        if let Some(seq) = seq {
            s.last = seq;
        }
        s.peak_events = s.peak_events.max(s.queue.len());
        s.peak_bytes = s.peak_bytes.max(s.bytes);
        self.notify.notify_one();
    }

    /// Moves a live subscriber that is behind `head` to catch-up (the pump jumped over a gap).
    pub(crate) fn nudge(&self, head: i64) {
        let mut s = lock(&self.state);
        if s.live && s.last < head {
            s.live = false;
            s.catch_ups += 1;
            self.notify.notify_one();
        }
    }

    /// The subscription was dropped: nothing more is offered to it.
    pub(crate) fn detach(&self) {
        let mut s = lock(&self.state);
        s.detached = true;
        s.queue.clear();
        s.bytes = 0;
    }

    pub(crate) fn close(&self, reason: CloseReason) -> bool {
        let mut s = lock(&self.state);
        if s.closed.is_some() {
            return false;
        }
        s.closed = Some(reason);
        // Nothing more reaches a client whose access is gone, not even what was queued.
        s.queue.clear();
        s.bytes = 0;
        self.notify.notify_one();
        true
    }
}

/// A transport's handle on one subscription. Dropping it unsubscribes and releases presence.
pub struct Subscription {
    pub(crate) hub: Arc<Inner>,
    pub(crate) stream: Arc<StreamShared>,
    pub(crate) shared: Arc<SubShared>,
    /// Frames read from the log by catch-up, older than anything in the shared queue.
    pub(crate) pending: VecDeque<Bytes>,
    /// A resync decided at subscribe time, delivered first.
    pub(crate) initial: Option<Delivery>,
    /// True while answering the client's `since`: those frames are marked replayed.
    pub(crate) replaying: bool,
    pub(crate) _presence: Option<PresenceGuard>,
}

enum Next {
    Ready(Delivery),
    CatchUp { after: i64 },
    Wait,
}

impl Subscription {
    /// The next delivery, waiting for one if needed. Cancel-safe: it can sit in a `select!`
    /// beside the socket's reads and timers without losing anything.
    pub async fn recv(&mut self) -> Delivery {
        loop {
            match self.next_ready(true) {
                Next::Ready(delivery) => return delivery,
                Next::CatchUp { after } => {
                    // Boxed: catching up is rare, and inline its state (a log read) would be
                    // part of every waiting subscriber's future, i.e. of every idle connection.
                    if let Some(delivery) = Box::pin(self.catch_up(after)).await {
                        return delivery;
                    }
                }
                Next::Wait => self.shared.notify.notified().await,
            }
        }
    }

    /// A delivery that is ready now, without waiting or reading the log, so a transport can
    /// batch several frames into one write. `None` means call [`Subscription::recv`].
    pub fn try_recv(&mut self) -> Option<Delivery> {
        match self.next_ready(false) {
            Next::Ready(delivery) => Some(delivery),
            Next::CatchUp { .. } | Next::Wait => None,
        }
    }

    /// `waiting`: called from `recv`, which handles heartbeats and parks when nothing is ready.
    fn next_ready(&mut self, waiting: bool) -> Next {
        let mut s = lock(&self.shared.state);
        // Whatever this returns, the caller holds it until written: until it parks again, the
        // fan-out must queue rather than write past it.
        s.reader_parked = false;
        if let Some(reason) = s.closed {
            return Next::Ready(Delivery::Closed(reason));
        }
        // Before queued frames: a busy connection is pinged on time like an idle one.
        if waiting && s.heartbeat {
            s.heartbeat = false;
            return Next::Ready(Delivery::Heartbeat);
        }
        if let Some(delivery) = self.initial.take() {
            return Next::Ready(delivery);
        }
        if let Some(frame) = self.pending.pop_front() {
            return Next::Ready(Delivery::Frame(frame));
        }
        if let Some(frame) = s.queue.pop_front() {
            s.bytes -= frame.len();
            return Next::Ready(Delivery::Frame(frame));
        }
        if s.live {
            // `try_recv` is called with frames of a batch in hand; only `recv` parks.
            s.reader_parked = waiting;
            Next::Wait
        } else {
            Next::CatchUp { after: s.last }
        }
    }

    /// Reads one page of the log after `after` into `pending`, or decides that the client must
    /// resync. Returns `None` when the caller should just look at the queues again.
    async fn catch_up(&mut self, after: i64) -> Option<Delivery> {
        let ctx = &self.hub.ctx;
        let key = self.stream.key;
        // A log read may hold events committed after the session expired; none may go out.
        if self.shared.expired(Utc::now().timestamp_micros()) {
            self.shared.close(CloseReason::SessionExpired);
            return Some(Delivery::Closed(CloseReason::SessionExpired));
        }
        let head = self.stream.head();
        if head - after > ctx.config.max_replay {
            return Some(self.resync());
        }
        let page = match ctx.log.read_after(key, after, ctx.config.page_size).await {
            Ok(page) => page,
            Err(err) => {
                tracing::warn!(stream = %key, error = &err as &dyn std::error::Error, "catch-up read failed");
                self.shared.close(CloseReason::LogUnavailable);
                return Some(Delivery::Closed(CloseReason::LogUnavailable));
            }
        };
        let reaches_back = page.first().and_then(|e| e.seq) == Some(after + 1);
        if !reaches_back && (head > after || !page.is_empty()) {
            return Some(self.resync());
        }
        let dialect = &ctx.dialects[self.shared.dialect];
        let mut last = after;
        for event in &page {
            match event.seq {
                Some(seq) if seq == last + 1 => last = seq,
                // A log with a hole: stop here, the next read starts at the hole and resyncs.
                _ => break,
            }
            if self.shared.passes(event)
                && let Some(frame) = dialect.encode(event, self.replaying)
            {
                self.pending.push_back(frame);
            }
        }
        // Going live is decided under the stream lock so the pump cannot deliver an event in
        // between that this reader would then never see.
        let stream = lock(&self.stream.state);
        let mut s = lock(&self.shared.state);
        s.last = s.last.max(last);
        if s.last >= stream.head {
            s.live = true;
            self.replaying = false;
        }
        None
    }

    fn resync(&mut self) -> Delivery {
        self.pending.clear();
        self.replaying = false;
        let stream = lock(&self.stream.state);
        let mut s = lock(&self.shared.state);
        s.last = s.last.max(stream.head);
        s.live = true;
        Delivery::ResyncRequired { latest_seq: s.last }
    }

    /// The deliveries as a `Stream` (e.g. for an SSE response body), ending after `Closed`.
    pub fn into_stream(self) -> impl futures::Stream<Item = Delivery> + Send + 'static {
        futures::stream::unfold(Some(self), |sub| async move {
            let mut sub = sub?;
            let delivery = sub.recv().await;
            let next = (!matches!(delivery, Delivery::Closed(_))).then_some(sub);
            Some((delivery, next))
        })
    }

    /// The resync frame of this subscription's dialect.
    pub fn resync_frame(&self, latest_seq: i64) -> Bytes {
        self.hub.ctx.dialects[self.shared.dialect].resync_required(latest_seq)
    }

    pub fn stream(&self) -> StreamKey {
        self.stream.key
    }

    pub fn stats(&self) -> QueueStats {
        let s = lock(&self.shared.state);
        QueueStats {
            queued_events: s.queue.len(),
            queued_bytes: s.bytes,
            peak_events: s.peak_events,
            peak_bytes: s.peak_bytes,
            live: s.live,
            overflows: s.overflows,
            catch_ups: s.catch_ups,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(&self.stream, &self.shared);
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("stream", &self.stream.key)
            .field("user_id", &self.shared.user_id)
            .field("index", &self.shared.index.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
