//! One subscriber as the stream's pump sees it: what was asked for, its bounded queue, and the
//! offers, nudges and closes the pump and the hub make. The reader's side is
//! [`crate::Subscription`].

use bytes::Bytes;
use chrono::{DateTime, Utc};
use proto::{Event, StreamKey};
use std::collections::VecDeque;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::dialect::DialectId;
use crate::lock;

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

/// What [`SubShared::offer`] did, for the hub's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offered {
    /// The frame was queued or written.
    Delivered,
    /// The queue was full: the subscriber moved to catch-up.
    Overflowed,
    /// The event is not the next one: the subscriber moved to catch-up.
    Behind,
    /// Nothing to count (filtered, already seen, closed, catching up, an ephemeral frame lost).
    Nothing,
}

pub(crate) struct SubState {
    pub(crate) queue: VecDeque<Bytes>,
    pub(crate) bytes: usize,
    /// The highest seq the subscriber has been given or skipped (by filter or dialect). While
    /// live, the pump only appends `last + 1`; anything else moves the subscriber to catch-up.
    pub(crate) last: i64,
    pub(crate) live: bool,
    pub(crate) closed: Option<CloseReason>,
    /// A sweep of the subscription's heartbeat slot that `recv` has not reported yet.
    pub(crate) heartbeat: bool,
    /// The reader waits in `recv` and holds no frame it has not written: only then may the
    /// fan-out write to the socket directly without overtaking it.
    pub(crate) reader_parked: bool,
    /// The `Subscription` is gone; a fan-out still holding this subscriber skips it.
    pub(crate) detached: bool,
    pub(crate) peak_events: usize,
    pub(crate) peak_bytes: usize,
    pub(crate) overflows: u64,
    pub(crate) catch_ups: u64,
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
    pub(crate) notify: Notify,
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
    pub(crate) fn offer(&self, seq: Option<i64>, frame: Option<&Bytes>) -> Offered {
        let mut s = lock(&self.state);
        if s.closed.is_some() || s.detached || !s.live {
            return Offered::Nothing;
        }
        if let Some(seq) = seq {
            if seq <= s.last {
                return Offered::Nothing;
            }
            if seq > s.last + 1 {
                // The pump skipped ahead (log gap it could not fill); the reader finds out why.
                s.live = false;
                s.catch_ups += 1;
                self.notify.notify_one();
                return Offered::Behind;
            }
        }
        let Some(frame) = frame else {
            if let Some(seq) = seq {
                s.last = seq;
            }
            return Offered::Nothing;
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
                return Offered::Delivered;
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
                return Offered::Overflowed;
            }
            return Offered::Nothing;
        }
        s.bytes += frame.len();
        s.queue.push_back(frame.clone());
        if let Some(seq) = seq {
            s.last = seq;
        }
        s.peak_events = s.peak_events.max(s.queue.len());
        s.peak_bytes = s.peak_bytes.max(s.bytes);
        self.notify.notify_one();
        Offered::Delivered
    }

    /// Moves a live subscriber that is behind `head` to catch-up (the pump jumped over a gap);
    /// true when it did.
    pub(crate) fn nudge(&self, head: i64) -> bool {
        let mut s = lock(&self.state);
        if s.live && s.last < head {
            s.live = false;
            s.catch_ups += 1;
            self.notify.notify_one();
            return true;
        }
        false
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
