//! The throttle of `whiteboard_updated` (CONTRACT §11: at most one a second per board, from
//! one node), node-wide: the node's changed boards are announced together, in rounds at least
//! [`EVENT_EVERY`] apart. A change after a quiet second starts a round at once; the changes made
//! during a round's second wait for the next round, when the second is over.
//!
//! Rounds rather than a second per board: at a thousand busy boards, a board's own second made
//! nearly every update carry an event of its own in its own transaction, so each event
//! rewrote the log's last page and the stream's counter, and woke the commit's listener, once
//! per transaction; an event cost as much as the update it announced (BENCHMARKS.md,
//! "Events in rounds"). In a round they fill the log's pages one after another. A board may
//! wait up to a second for its event when other boards started the round; one board alone is
//! announced as before.
//!
//! The node's writer owns it and asks it once per transaction, so a round rides with whatever
//! the writer stores next, at most [`MAX_PER_TRANSACTION`] events at a time (a round of a
//! thousand boards in one transaction would hold the writer for milliseconds); the writer
//! sleeps until [`Throttle::next_due`] only while nothing else comes in. The next round's
//! second begins when the last event of this one went out, so no board is announced twice
//! within a second.

use std::collections::HashSet;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// At most one `whiteboard_updated` per board per this long.
pub const EVENT_EVERY: Duration = Duration::from_secs(1);
/// Events written in one transaction at most; the rest of a round go with the next ones.
pub const MAX_PER_TRANSACTION: usize = 200;

/// The boards changed since the last round, and the round under way.
pub struct Throttle {
    /// Changed since the last round began: they wait for the next.
    changed: HashSet<Uuid>,
    /// The round under way: announced over the next transactions, sorted, taken from the front.
    round: Vec<Uuid>,
    /// When the next round may begin.
    next_round: Instant,
}

impl Throttle {
    pub fn new(now: Instant) -> Throttle {
        Throttle {
            changed: HashSet::new(),
            round: Vec::new(),
            next_round: now,
        }
    }

    /// The boards whose `whiteboard_updated` goes with a transaction made at `now` that
    /// stores changes of `changed`: sorted, without duplicates, at most
    /// [`MAX_PER_TRANSACTION`].
    pub fn announce(&mut self, changed: impl IntoIterator<Item = Uuid>, now: Instant) -> Vec<Uuid> {
        self.changed.extend(changed);
        if self.round.is_empty() && now >= self.next_round && !self.changed.is_empty() {
            self.round = self.changed.drain().collect();
            self.round.sort_unstable();
        }
        if self.round.is_empty() {
            return Vec::new();
        }
        let take = self.round.len().min(MAX_PER_TRANSACTION);
        let announced: Vec<Uuid> = self.round.drain(..take).collect();
        if self.round.is_empty() {
            self.next_round = now + EVENT_EVERY;
        }
        announced
    }

    /// When the next event is due (`None`: no change waits). While a round is under way,
    /// `next_round` is still when it began: due already.
    pub fn next_due(&self) -> Option<Instant> {
        (!self.round.is_empty() || !self.changed.is_empty()).then_some(self.next_round)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_first_change_is_announced_at_once_and_the_seconds_rest_once_when_it_is_over() {
        let start = Instant::now();
        let mut throttle = Throttle::new(start);
        let board = Uuid::new_v4();
        assert_eq!(throttle.announce([board], start), vec![board]);
        assert_eq!(throttle.next_due(), None);
        assert!(throttle.announce([board], start + ms(300)).is_empty());
        assert!(throttle.announce([board], start + ms(600)).is_empty());
        assert_eq!(throttle.next_due(), Some(start + EVENT_EVERY), "one wait");
        assert!(throttle.announce([], start + ms(999)).is_empty());
        assert_eq!(throttle.announce([], start + ms(1002)), vec![board]);
        assert_eq!(throttle.next_due(), None);
        // Its next second began with that event: a change now waits for its end.
        assert!(throttle.announce([board], start + ms(1500)).is_empty());
        assert_eq!(throttle.next_due(), Some(start + ms(2002)));
    }

    #[test]
    fn a_change_after_a_quiet_second_is_announced_at_once() {
        let start = Instant::now();
        let mut throttle = Throttle::new(start);
        let board = Uuid::new_v4();
        assert_eq!(throttle.announce([board], start), vec![board]);
        assert_eq!(throttle.announce([board], start + ms(1000)), vec![board]);
        assert_eq!(throttle.announce([board], start + ms(2500)), vec![board]);
        assert_eq!(throttle.next_due(), None);
    }

    #[test]
    fn boards_are_throttled_apart_and_due_ones_ride_with_any_transaction() {
        let start = Instant::now();
        let mut throttle = Throttle::new(start);
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        // A board changed twice in one transaction is one change.
        let mut expected = vec![a, b];
        expected.sort_unstable();
        assert_eq!(throttle.announce([a, b, a], start), expected);
        assert_eq!(throttle.next_due(), None);
        assert!(throttle.announce([b], start + ms(100)).is_empty());
        assert!(throttle.announce([a], start + ms(200)).is_empty());
        // c's transaction, after the second: a and b go with it, each once.
        let mut expected = vec![a, b, c];
        expected.sort_unstable();
        assert_eq!(throttle.announce([c], start + ms(1100)), expected);
        assert_eq!(throttle.next_due(), None);
    }

    #[test]
    fn a_change_during_another_boards_round_waits_for_the_next_round() {
        let start = Instant::now();
        let mut throttle = Throttle::new(start);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(throttle.announce([a], start), vec![a]);
        assert!(throttle.announce([b], start + ms(400)).is_empty());
        assert_eq!(throttle.next_due(), Some(start + EVENT_EVERY));
        assert_eq!(throttle.announce([], start + ms(1000)), vec![b]);
    }

    #[test]
    fn a_large_round_goes_over_several_transactions_and_the_next_waits_a_second_after_its_last() {
        let start = Instant::now();
        let mut throttle = Throttle::new(start);
        let mut boards: Vec<Uuid> = (0..MAX_PER_TRANSACTION * 2 + 10)
            .map(|_| Uuid::new_v4())
            .collect();
        let first = throttle.announce(boards.iter().copied(), start);
        assert_eq!(first.len(), MAX_PER_TRANSACTION);
        assert!(first.is_sorted(), "sorted");
        assert_eq!(throttle.next_due(), Some(start), "the rest is due at once");
        let second = throttle.announce([], start + ms(3));
        assert_eq!(second.len(), MAX_PER_TRANSACTION);
        // A board of the round that changes again waits for the next round.
        let third = throttle.announce([first[0]], start + ms(6));
        assert_eq!(third.len(), 10);
        let mut announced: Vec<Uuid> = [first.clone(), second, third].concat();
        announced.sort_unstable();
        boards.sort_unstable();
        assert_eq!(announced, boards, "each board once");
        assert_eq!(throttle.next_due(), Some(start + ms(6) + EVENT_EVERY));
        assert!(throttle.announce([], start + ms(1005)).is_empty());
        assert_eq!(throttle.announce([], start + ms(1006)), vec![first[0]]);
        assert_eq!(throttle.next_due(), None);
    }
}
