//! The throttle of `whiteboard_updated` (CONTRACT §11: at most one a second per board, from
//! one node): a board's first change gets its event at once; the changes of the rest of that
//! second get one more event when the second is over.
//!
//! The node's writer owns it and asks it once per transaction, so the events of a second's
//! end ride with whatever the writer stores next (at a thousand busy boards, about one event
//! per update: a timer and a task per board used to wake the runtime for each). The writer
//! sleeps until [`Throttle::next_due`] only while nothing else comes in.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// At most one `whiteboard_updated` per board per this long.
pub const EVENT_EVERY: Duration = Duration::from_secs(1);

/// Per board, when its last event went out and whether a change waits for the next.
pub struct Throttle {
    boards: HashMap<Uuid, Announced>,
    /// The waiting boards, by when their second is over.
    due: BinaryHeap<Reverse<(Instant, Uuid)>>,
    /// When the boards whose second is over were last forgotten.
    pruned: Instant,
}

struct Announced {
    at: Instant,
    waiting: bool,
}

impl Throttle {
    pub fn new(now: Instant) -> Throttle {
        Throttle {
            boards: HashMap::new(),
            due: BinaryHeap::new(),
            pruned: now,
        }
    }

    /// The boards whose `whiteboard_updated` goes with a transaction made at `now` that
    /// stores changes of `changed`: sorted, without duplicates.
    pub fn announce(&mut self, changed: impl IntoIterator<Item = Uuid>, now: Instant) -> Vec<Uuid> {
        self.prune(now);
        let mut announced = Vec::new();
        while let Some(Reverse((at, board))) = self.due.peek().copied() {
            if at > now {
                break;
            }
            self.due.pop();
            if let Some(entry) = self.boards.get_mut(&board) {
                *entry = Announced {
                    at: now,
                    waiting: false,
                };
                announced.push(board);
            }
        }
        let mut changed: Vec<Uuid> = changed.into_iter().collect();
        changed.sort_unstable();
        changed.dedup();
        for board in changed {
            match self.boards.get_mut(&board) {
                Some(Announced { waiting: true, .. }) => {}
                Some(entry) if now.duration_since(entry.at) < EVENT_EVERY => {
                    entry.waiting = true;
                    self.due.push(Reverse((entry.at + EVENT_EVERY, board)));
                }
                _ => {
                    self.boards.insert(
                        board,
                        Announced {
                            at: now,
                            waiting: false,
                        },
                    );
                    announced.push(board);
                }
            }
        }
        announced.sort_unstable();
        announced.dedup();
        announced
    }

    /// When the next waiting event is due (`None`: none waits).
    pub fn next_due(&self) -> Option<Instant> {
        self.due.peek().map(|Reverse((at, _))| *at)
    }

    /// Forgets the boards whose second is over and that wait for nothing, once a second, not
    /// on every call: only to bound the map (at a thousand boards, visiting all on every
    /// transaction would cost more than the events).
    fn prune(&mut self, now: Instant) {
        if now.duration_since(self.pruned) < EVENT_EVERY {
            return;
        }
        self.pruned = now;
        self.boards
            .retain(|_, entry| entry.waiting || now.duration_since(entry.at) < EVENT_EVERY);
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
    fn the_map_forgets_boards_whose_second_is_over() {
        let start = Instant::now();
        let mut throttle = Throttle::new(start);
        let boards: Vec<Uuid> = (0..100).map(|_| Uuid::new_v4()).collect();
        throttle.announce(boards.iter().copied(), start);
        let waiting = boards[0];
        throttle.announce([waiting], start + ms(500));
        // Pruned at a later transaction; the waiting board is kept until its event went out.
        throttle.announce([], start + ms(1200));
        assert_eq!(throttle.boards.len(), 1);
        throttle.announce([], start + ms(2300));
        assert!(throttle.boards.is_empty());
    }
}
