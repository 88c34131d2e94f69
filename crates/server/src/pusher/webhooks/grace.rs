//! The 3 s grace of `channel_vacated` and `member_removed` (CONTRACT §10): a page reload leaves
//! and rejoins within it and should report nothing. A leave waits here; a rejoin recorded on
//! this node meanwhile cancels both; once due, the sender asks the directory whether the
//! channel is still empty or the user still gone ([`still_gone`]), which also catches a rejoin
//! on another node.

use crate::pusher::activity::ChannelActivity;
use crate::pusher::directory::ChannelDirectory;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// A channel, and the user for presence leaves.
type Key = (String, Option<String>);

/// The leaves waiting out their grace, oldest first (one fixed delay, so also soonest due first).
pub struct Grace {
    delay: Duration,
    capacity: usize,
    pending: VecDeque<(Instant, ChannelActivity)>,
    /// How many leaves of each key wait, so a join looks through `pending` only when one does.
    waiting: HashMap<Key, usize>,
}

fn leave_key(activity: &ChannelActivity) -> Option<Key> {
    match activity {
        ChannelActivity::Vacated { channel } => Some((channel.clone(), None)),
        ChannelActivity::MemberRemoved { channel, user_id } => {
            Some((channel.clone(), Some(user_id.clone())))
        }
        _ => None,
    }
}

/// The leave a join undoes.
fn join_key(activity: &ChannelActivity) -> Option<Key> {
    match activity {
        ChannelActivity::Occupied { channel } => Some((channel.clone(), None)),
        ChannelActivity::MemberAdded { channel, user_id } => {
            Some((channel.clone(), Some(user_id.clone())))
        }
        _ => None,
    }
}

impl Grace {
    /// `capacity` bounds the leaves waiting; past it a leave is reported at once.
    pub fn new(delay: Duration, capacity: usize) -> Grace {
        Grace {
            delay,
            capacity,
            pending: VecDeque::new(),
            waiting: HashMap::new(),
        }
    }

    /// Takes `activity` recorded at `now`: returns it when it is to be sent now, `None` when it
    /// waits (a leave) or cancelled a waiting leave (a rejoin: neither is reported).
    pub fn on_activity(
        &mut self,
        activity: ChannelActivity,
        now: Instant,
    ) -> Option<ChannelActivity> {
        if let Some(key) = leave_key(&activity) {
            if self.pending.len() >= self.capacity {
                return Some(activity);
            }
            *self.waiting.entry(key).or_default() += 1;
            self.pending.push_back((now + self.delay, activity));
            return None;
        }
        if let Some(key) = join_key(&activity)
            && self.waiting.contains_key(&key)
        {
            let found = self
                .pending
                .iter()
                .position(|(_, leave)| leave_key(leave).as_ref() == Some(&key));
            if let Some(index) = found {
                self.pending.remove(index);
                self.forget(&key);
                return None;
            }
        }
        Some(activity)
    }

    /// The leaves whose grace is over at `now`, oldest first.
    pub fn due(&mut self, now: Instant) -> Vec<ChannelActivity> {
        let mut due = Vec::new();
        while self.pending.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, leave)) = self.pending.pop_front() {
                if let Some(key) = leave_key(&leave) {
                    self.forget(&key);
                }
                due.push(leave);
            }
        }
        due
    }

    /// When the next leave is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.pending.front().map(|(at, _)| *at)
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    fn forget(&mut self, key: &Key) {
        if let Some(count) = self.waiting.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                self.waiting.remove(key);
            }
        }
    }
}

/// Whether a leave whose grace is over still holds: the channel has no subscriber, the user
/// is not a member again. A directory that cannot answer in `timeout` counts as yes (better a
/// report that a rejoin may have made stale than none).
pub async fn still_gone(
    leave: &ChannelActivity,
    directory: &dyn ChannelDirectory,
    timeout: Duration,
) -> bool {
    match leave {
        ChannelActivity::Vacated { channel } => {
            match tokio::time::timeout(timeout, directory.channel(channel)).await {
                Ok(Ok(info)) => info.subscription_count == 0,
                _ => true,
            }
        }
        ChannelActivity::MemberRemoved { channel, user_id } => {
            match tokio::time::timeout(timeout, directory.presence_users(channel)).await {
                Ok(Ok(users)) => !users.iter().any(|u| u == user_id),
                _ => true,
            }
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vacated(channel: &str) -> ChannelActivity {
        ChannelActivity::Vacated {
            channel: channel.into(),
        }
    }

    fn occupied(channel: &str) -> ChannelActivity {
        ChannelActivity::Occupied {
            channel: channel.into(),
        }
    }

    fn removed(channel: &str, user: &str) -> ChannelActivity {
        ChannelActivity::MemberRemoved {
            channel: channel.into(),
            user_id: user.into(),
        }
    }

    fn added(channel: &str, user: &str) -> ChannelActivity {
        ChannelActivity::MemberAdded {
            channel: channel.into(),
            user_id: user.into(),
        }
    }

    const DELAY: Duration = Duration::from_secs(3);

    #[test]
    fn leaves_wait_out_the_grace_and_everything_else_goes_at_once() {
        let t0 = Instant::now();
        let mut grace = Grace::new(DELAY, 100);
        assert_eq!(grace.on_activity(occupied("a"), t0), Some(occupied("a")));
        assert_eq!(grace.on_activity(vacated("a"), t0), None);
        assert_eq!(
            grace.on_activity(removed("presence-p", "1"), t0 + Duration::from_secs(1)),
            None
        );
        let miss = ChannelActivity::CacheMiss {
            channel: "cache-x".into(),
        };
        assert_eq!(grace.on_activity(miss.clone(), t0), Some(miss));
        assert_eq!(grace.len(), 2);
        assert_eq!(grace.next_due(), Some(t0 + DELAY));
        assert!(grace.due(t0 + Duration::from_millis(2_999)).is_empty());
        assert_eq!(grace.due(t0 + DELAY), [vacated("a")]);
        assert_eq!(grace.next_due(), Some(t0 + Duration::from_secs(4)));
        assert_eq!(
            grace.due(t0 + Duration::from_secs(10)),
            [removed("presence-p", "1")]
        );
        assert!(grace.is_empty());
        assert_eq!(grace.next_due(), None);
    }

    #[test]
    fn a_rejoin_within_the_grace_reports_neither() {
        let t0 = Instant::now();
        let mut grace = Grace::new(DELAY, 100);
        grace.on_activity(vacated("a"), t0);
        grace.on_activity(vacated("b"), t0);
        grace.on_activity(removed("presence-p", "1"), t0);
        grace.on_activity(removed("presence-p", "2"), t0);
        assert_eq!(grace.on_activity(occupied("a"), t0), None, "cancelled");
        assert_eq!(grace.on_activity(added("presence-p", "2"), t0), None);
        // Another user's join, or a join of a channel with no leave waiting, goes out.
        assert_eq!(
            grace.on_activity(added("presence-p", "3"), t0),
            Some(added("presence-p", "3"))
        );
        assert_eq!(grace.on_activity(occupied("c"), t0), Some(occupied("c")));
        assert_eq!(
            grace.due(t0 + DELAY),
            [vacated("b"), removed("presence-p", "1")]
        );
        // Once the leave went out, a new join is a join.
        assert_eq!(grace.on_activity(occupied("b"), t0), Some(occupied("b")));
    }

    #[test]
    fn past_its_capacity_a_leave_is_reported_at_once() {
        let t0 = Instant::now();
        let mut grace = Grace::new(DELAY, 1);
        assert_eq!(grace.on_activity(vacated("a"), t0), None);
        assert_eq!(grace.on_activity(vacated("b"), t0), Some(vacated("b")));
        assert_eq!(grace.len(), 1);
    }
}
