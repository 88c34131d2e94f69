//! Per-project webhooks (CONTRACT §12), delivered from the event log.
//!
//! Each webhook has a durable cursor: the last seq of its project's stream it has handled.
//! One worker per node ([`worker`]), woken by this node's commits ([`Wake`]) and by a poll
//! (every [`WebhookConfig::poll`], for commits of other nodes and for retries that come due),
//! asks the store for the webhooks that are behind their stream, takes each one's lease (one
//! conditional UPDATE: one node at a time sends a webhook, whatever the number of nodes on the
//! database), and sends its events after the cursor in seq order, filtered by its event names.
//! The cursor moves past an event only with its final outcome (delivered, refused for good, or
//! given up after [`ATTEMPTS`] attempts), in the same transaction that records it: nothing is
//! skipped or sent twice across restarts, except that a crash (or a lost lease) between a POST
//! and that transaction sends the event again, with the same delivery id
//! (`X-Liveplan-Delivery`, made and stored before the first attempt): receivers dedupe on it.
//! A failing event holds back the later ones while it is retried.
//!
//! - [`guard`]: the SSRF guard: resolve the host at each delivery, refuse internal addresses,
//!   and connect to the address checked.
//! - [`message`]: the body and its signature.
//! - [`attempt`]: one POST and what it came to.
//! - [`worker`]: the loop, the lease, the cursor and the deliveries' records.

pub mod attempt;
pub mod guard;
pub mod message;
pub mod worker;

use domain::CommitListener;
use proto::{Event, StreamKey};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

pub use worker::spawn;

/// Attempts per delivery, the first included.
pub const ATTEMPTS: i32 = 5;

/// How the node's webhook worker runs.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// `--webhook-retry-base-ms`: the pause after the first failed attempt; each later one
    /// doubles it (30 s, 60 s, 120 s, 240 s by default).
    pub retry_base: Duration,
    /// `--webhooks-allow-private`: internal addresses are allowed targets.
    pub allow_private: bool,
    /// `--webhook-ca-file`: certificates (PEM) trusted for `https` targets beside the system's
    /// roots (an internal CA, a receiver's own certificate).
    pub extra_roots: Vec<reqwest::Certificate>,
    /// The whole of one attempt (connect, send, answer).
    pub timeout: Duration,
    /// How often the worker looks for due webhooks without being woken.
    pub poll: Duration,
    /// How long a node holds a webhook's lease without renewing it (renewed before every
    /// attempt, so it outlives one attempt's timeout with room to spare).
    pub lease: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            retry_base: Duration::from_secs(30),
            allow_private: false,
            extra_roots: Vec::new(),
            timeout: Duration::from_secs(10),
            poll: Duration::from_secs(1),
            lease: Duration::from_secs(60),
        }
    }
}

impl WebhookConfig {
    /// The pause after the `attempts`-th failed attempt: base · 2^(attempts − 1).
    pub fn retry_after(&self, attempts: i32) -> Duration {
        let doublings = u32::try_from(attempts.saturating_sub(1))
            .unwrap_or(0)
            .min(20);
        self.retry_base.saturating_mul(1 << doublings)
    }
}

/// Rings the worker when this node commits to a project stream.
#[derive(Default)]
pub struct Wake(Notify);

impl Wake {
    pub fn new() -> Arc<Wake> {
        Arc::new(Wake::default())
    }

    pub async fn rung(&self) {
        self.0.notified().await;
    }
}

impl CommitListener for Wake {
    fn committed(&self, events: &[Event]) {
        if events
            .iter()
            .any(|e| matches!(e.stream, StreamKey::Project(_)))
        {
            self.0.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_the_base() {
        let config = WebhookConfig::default();
        let pauses: Vec<u64> = (1..ATTEMPTS)
            .map(|n| config.retry_after(n).as_secs())
            .collect();
        assert_eq!(pauses, [30, 60, 120, 240]);
        let fast = WebhookConfig {
            retry_base: Duration::from_millis(10),
            ..WebhookConfig::default()
        };
        assert_eq!(fast.retry_after(3), Duration::from_millis(40));
        assert!(config.retry_after(i32::MAX) >= config.retry_after(4));
    }
}
