//! One ping schedule for every WebSocket of the node, whatever its dialect: the node's sweep
//! (one task, run by [`LiveFeed`](crate::live::LiveFeed)) cues the pings, so no socket needs a
//! timer of its own. Here, not in `dialects`, because `live` runs it and dialects use `live`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// The node's sweep runs at least this often, so an idle connection whose session expired is
/// closed within about this long (connections that receive events are closed at once).
const SWEEP_AT_LEAST_EVERY: Duration = Duration::from_secs(1);
/// The fewest sweeps per ping interval: each WebSocket is pinged by one of them, so pings are
/// spread over the interval instead of all going out at once.
const MIN_PING_SLOTS: u32 = 30;

/// One ping schedule for every WebSocket of the node, whatever its dialect, instead of a
/// timer per socket (which would cost every idle socket memory).
///
/// The ping interval is cut into slots; each sweep (one task for the node, run by `live`)
/// [`advance`](PingSweep::advance)s to the next slot and pings the sockets in it. A socket
/// joins in one of two ways:
/// - with a hub subscription of its own: it puts
///   [`slot_for_new_socket`](PingSweep::slot_for_new_socket) in its
///   `SubscribeRequest::heartbeat_slot`, and the hub delivers `Delivery::Heartbeat` when the
///   sweep reaches it (the native WebSocket);
/// - without one: it holds the [`PingTicks`] of [`join`](PingSweep::join) and awaits
///   [`PingTicks::tick`].
pub struct PingSweep {
    slots: u32,
    period: Duration,
    /// The slot the next sweep pings, `0..slots`.
    next_slot: AtomicU32,
    /// Per slot, the tick count of the sockets that joined without a hub subscription.
    ticks: Box<[watch::Sender<u64>]>,
}

impl PingSweep {
    pub fn new(ping_interval: Duration) -> Self {
        let (slots, period) = sweep_schedule(ping_interval);
        Self {
            slots,
            period,
            next_slot: AtomicU32::new(0),
            ticks: (0..slots).map(|_| watch::channel(0).0).collect(),
        }
    }

    /// How many slots one round of the sweep has.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// How often the sweep runs: `slots × period` is the ping interval.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The slot for a socket opening now: the slot swept last, so its first ping comes one
    /// ping interval (less at most one sweep period) from now.
    pub fn slot_for_new_socket(&self) -> u32 {
        match self.next_slot.load(Ordering::Relaxed) {
            0 => self.slots - 1,
            next => next - 1,
        }
    }

    /// Joins a socket that has no hub subscription of its own.
    pub fn join(&self) -> PingTicks {
        let slot = self.slot_for_new_socket() as usize;
        let mut ticks = self.ticks[slot].subscribe();
        ticks.mark_unchanged();
        PingTicks(ticks)
    }

    /// One sweep: pings the joined sockets of the next slot and hands that slot to
    /// `sweep_hub` (the hub's sweep of the subscriptions in it). The slot moves on only
    /// afterwards, so a socket opening meanwhile takes the slot before, not the one being
    /// swept, and is not pinged at once.
    pub fn advance(&self, sweep_hub: impl FnOnce(u32)) -> u32 {
        let slot = self.next_slot.load(Ordering::Relaxed);
        self.ticks[slot as usize].send_modify(|count| *count = count.wrapping_add(1));
        sweep_hub(slot);
        self.next_slot
            .store((slot + 1) % self.slots, Ordering::Relaxed);
        slot
    }
}

/// A socket's place in the [`PingSweep`], for a socket without a hub subscription.
pub struct PingTicks(watch::Receiver<u64>);

impl PingTicks {
    /// Resolves when the sweep reaches this socket's slot (once per ping interval); never
    /// when the sweep is gone. Cancel-safe.
    pub async fn tick(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// How the ping interval is cut into sweep slots: `(slots, period)`, with `slots × period` the
/// ping interval and `period` at most [`SWEEP_AT_LEAST_EVERY`].
fn sweep_schedule(ping_interval: Duration) -> (u32, Duration) {
    let needed = ping_interval
        .as_nanos()
        .div_ceil(SWEEP_AT_LEAST_EVERY.as_nanos());
    let slots = u32::try_from(needed)
        .unwrap_or(u32::MAX)
        .max(MIN_PING_SLOTS);
    let period = (ping_interval / slots).max(Duration::from_millis(1));
    (slots, period)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn the_schedule_spreads_pings_over_the_interval() {
        assert_eq!(
            sweep_schedule(Duration::from_secs(30)),
            (30, Duration::from_secs(1))
        );
        assert_eq!(
            sweep_schedule(Duration::from_secs(90)),
            (90, Duration::from_secs(1))
        );
        let (slots, period) = sweep_schedule(Duration::from_millis(300));
        assert_eq!(slots, MIN_PING_SLOTS);
        assert_eq!(period, Duration::from_millis(10));
    }

    #[test]
    fn a_new_socket_takes_the_slot_swept_last() {
        let sweep = PingSweep::new(Duration::from_secs(30));
        assert_eq!(sweep.slot_for_new_socket(), 29);
        assert_eq!(sweep.advance(|_| {}), 0);
        assert_eq!(sweep.slot_for_new_socket(), 0);
        assert_eq!(sweep.advance(|_| {}), 1);
        assert_eq!(sweep.slot_for_new_socket(), 1);
    }

    #[test]
    fn a_joined_socket_ticks_once_per_round_in_its_slot() {
        let sweep = PingSweep::new(Duration::from_secs(30));
        let mut ticks = sweep.join();
        // Its slot (29) is swept last in the round: nothing before it.
        for _ in 0..29 {
            sweep.advance(|_| {});
            assert!(ticks.tick().now_or_never().is_none());
        }
        assert_eq!(sweep.advance(|_| {}), 29);
        assert!(ticks.tick().now_or_never().is_some());
        assert!(ticks.tick().now_or_never().is_none());
    }

    #[test]
    fn a_gone_sweep_never_ticks() {
        let sweep = PingSweep::new(Duration::from_secs(30));
        let mut ticks = sweep.join();
        drop(sweep);
        assert!(ticks.tick().now_or_never().is_none());
    }
}
