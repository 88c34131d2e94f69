//! The log of the app's own channels (CONTRACT §10, "History and resume"): each channel keeps
//! its last 1,000 events for 24 h, numbered by a serial of its own, under a `stream_id` that
//! changes when its history was lost. liveplan's own channels need none of this: they are the
//! project and user streams of the event log.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// How much of an app channel's history is kept.
pub const KEEP_EVENTS: usize = 1_000;
pub const KEEP_FOR: Duration = Duration::from_secs(24 * 3600);

/// One event of an app channel, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppChannelEvent {
    pub channel: String,
    pub serial: i64,
    pub event: String,
    pub data: String,
    pub at: DateTime<Utc>,
}

/// Where an app channel's kept history stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppChannelPosition {
    /// Opaque; a new one when the channel's history was lost (a stream made anew after all of
    /// it expired, or a store that lost it).
    pub stream_id: String,
    /// The oldest serial still kept (`last_serial + 1` when none is kept).
    pub first_serial: i64,
    pub last_serial: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum AppLogError {
    #[error("the app channels' log is unavailable")]
    Unavailable,
}

#[async_trait]
pub trait AppChannelLog: Send + Sync + 'static {
    /// Appends one event to each channel in one transaction, each with the next serial of its
    /// channel (gap-free, never backwards, whichever node writes), and drops what is past
    /// [`KEEP_EVENTS`] or older than [`KEEP_FOR`] for those channels. Returns the stored
    /// events in `channels` order.
    async fn append(
        &self,
        channels: &[String],
        event: &str,
        data: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<AppChannelEvent>, AppLogError>;

    /// Up to `limit` events of `channel` with serials above `after`, oldest first.
    async fn after(
        &self,
        channel: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<AppChannelEvent>, AppLogError>;

    /// The channel's stream, or `None` for a channel that never had an event kept.
    async fn position(&self, channel: &str) -> Result<Option<AppChannelPosition>, AppLogError>;
}
