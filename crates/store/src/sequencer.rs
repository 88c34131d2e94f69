//! Runs what follows each commit (the domain's commit listener) in commit order, while the
//! commits themselves may overlap: so that concurrent writers can share one flush to disk
//! (PostgreSQL's group commit, the SQLite store's grouped WAL sync) without a later writer's
//! events reaching the listener first.
//!
//! A writer takes a [`Ticket`] at the moment that fixes its place in commit order (just before
//! it commits, while it still holds what any later writer of its streams must wait for), and
//! after its commit runs its follow-up with [`Ticket::in_turn`], which waits until every
//! earlier ticket has run or been given up. A ticket dropped without running (a failed commit,
//! a cancelled request) gives its turn up, so it never holds the others back.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::Notify;

#[derive(Default)]
pub struct CommitSequencer {
    state: Mutex<State>,
    turn_changed: Notify,
}

#[derive(Default)]
struct State {
    next: u64,
    turn: u64,
    /// Tickets given up before their turn came.
    given_up: BTreeSet<u64>,
}

impl CommitSequencer {
    /// The next place in commit order.
    pub fn ticket(self: &Arc<Self>) -> Ticket {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let place = state.next;
        state.next += 1;
        Ticket {
            sequencer: self.clone(),
            place,
            finished: false,
        }
    }
}

pub struct Ticket {
    sequencer: Arc<CommitSequencer>,
    place: u64,
    finished: bool,
}

impl Ticket {
    /// Waits until every earlier ticket is done, runs `follow_up`, then lets the next go.
    pub async fn in_turn<R>(mut self, follow_up: impl FnOnce() -> R) -> R {
        loop {
            let notified = self.sequencer.turn_changed.notified();
            tokio::pin!(notified);
            // Registered before the check, so a turn change in between is not missed.
            notified.as_mut().enable();
            let turn = self
                .sequencer
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .turn;
            if turn == self.place {
                break;
            }
            notified.await;
        }
        let result = follow_up();
        self.finish();
        result
    }

    fn finish(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let mut state = self
            .sequencer
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if state.turn == self.place {
            state.turn += 1;
            loop {
                let next = state.turn;
                if !state.given_up.remove(&next) {
                    break;
                }
                state.turn += 1;
            }
        } else {
            state.given_up.insert(self.place);
        }
        drop(state);
        self.sequencer.turn_changed.notify_waiters();
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn follow_ups_run_in_ticket_order_and_given_up_tickets_do_not_block() {
        let sequencer = Arc::new(CommitSequencer::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let tickets: Vec<Ticket> = (0..5).map(|_| sequencer.ticket()).collect();
        let mut tasks = tokio::task::JoinSet::new();
        // Started in reverse, each later one ready first; ticket 2 is given up.
        for (place, ticket) in tickets.into_iter().enumerate().rev() {
            let seen = seen.clone();
            tasks.spawn(async move {
                if place == 2 {
                    drop(ticket);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10 * (5 - place as u64))).await;
                ticket.in_turn(|| seen.lock().unwrap().push(place)).await;
            });
        }
        let all = async {
            while let Some(done) = tasks.join_next().await {
                done.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(10), all)
            .await
            .expect("no ticket waits forever");
        assert_eq!(*seen.lock().unwrap(), vec![0, 1, 3, 4]);
    }
}
