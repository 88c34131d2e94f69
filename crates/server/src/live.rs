//! The feed of committed events leaving the domain. Every committed transaction's events are
//! handed here in commit order; live transports subscribe to it.

use domain::CommitListener;
use proto::Event;
use std::sync::Arc;
use tokio::sync::broadcast;

/// How many committed events the feed holds for a slow consumer before it must catch up
/// from the log.
const FEED_CAPACITY: usize = 65_536;

pub struct LiveFeed {
    sender: broadcast::Sender<Arc<Event>>,
}

impl LiveFeed {
    pub fn new() -> Arc<LiveFeed> {
        let (sender, _) = broadcast::channel(FEED_CAPACITY);
        Arc::new(LiveFeed { sender })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.sender.subscribe()
    }
}

impl CommitListener for LiveFeed {
    fn committed(&self, events: &[Event]) {
        for event in events {
            // No receiver is not an error: nobody is listening yet.
            let _ = self.sender.send(Arc::new(event.clone()));
        }
    }
}

impl LiveFeed {
    /// A session ended (logout): its live connections must close.
    pub fn session_ended(&self, _session_id: uuid::Uuid) {}

    /// Every session of a user ended (deactivation, password change).
    pub fn user_sessions_ended(&self, _user_id: uuid::Uuid) {}
}
