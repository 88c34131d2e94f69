//! The reader-side handle a transport polls for one subscription. Catch-up from the log runs on
//! the reader's task, never on the publisher's.

use bytes::Bytes;
use proto::StreamKey;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

use crate::lock;
use crate::presence::PresenceGuard;
use crate::shared::{Inner, StreamShared};
use crate::subscriber::{CloseReason, Delivery, QueueStats, SubShared};

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
    /// Set while the log cannot be read: when to try again and the pause after that. Boxed:
    /// every idle connection holds a subscription, and this is for rare ones only.
    pub(crate) log_retry: Option<Box<(Instant, Duration)>>,
    pub(crate) _presence: Option<PresenceGuard>,
}

/// The first pause before reading an unreadable log again, and the longest.
const FIRST_LOG_RETRY: Duration = Duration::from_millis(100);
const MAX_LOG_RETRY: Duration = Duration::from_secs(5);

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
                    if let Some(&(at, _)) = self.log_retry.as_deref()
                        && at > Instant::now()
                    {
                        // Boxed like the read: only a subscriber behind an unreadable log waits
                        // here. A heartbeat or a close wakes it and comes out first.
                        Box::pin(self.pause_until(at)).await;
                        continue;
                    }
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
        if self.shared.expired(ctx.config.clock.now_micros()) {
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
                // The connection stays: the events are in the log, only the log is out of
                // reach for now (a database restarting). Read again after a pause that grows
                // up to a bound; heartbeats, closes and expiry go on meanwhile.
                let pause = self
                    .log_retry
                    .as_deref()
                    .map_or(FIRST_LOG_RETRY, |(_, pause)| {
                        (*pause * 2).min(MAX_LOG_RETRY)
                    });
                tracing::warn!(stream = %key, error = &err as &dyn std::error::Error, retry_in = ?pause, "catch-up read failed");
                self.log_retry = Some(Box::new((Instant::now() + pause, pause)));
                return None;
            }
        };
        self.log_retry = None;
        let reaches_back = page.first().and_then(|e| e.seq) == Some(after + 1);
        if !reaches_back && (head > after || !page.is_empty()) {
            return Some(self.resync());
        }
        let dialect = &ctx.dialects[self.shared.dialect];
        let before = self.pending.len();
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
        ctx.stats
            .dialect(self.shared.dialect)
            .add_deliveries((self.pending.len() - before) as u64);
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

    /// Waits until `at`, or until something for the subscriber (a heartbeat, a close, a
    /// frame) wakes it sooner.
    async fn pause_until(&self, at: Instant) {
        tokio::select! {
            () = tokio::time::sleep_until(at) => {}
            () = self.shared.notify.notified() => {}
        }
    }

    fn resync(&mut self) -> Delivery {
        self.hub.ctx.stats.dialect(self.shared.dialect).resynced();
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
