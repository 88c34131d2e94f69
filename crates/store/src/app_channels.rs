//! The log of a Pusher app's own channels (CONTRACT §10, "History and resume"): each channel
//! keeps its last events for a while, numbered by a serial of its own, under a `stream_id` that
//! changes whenever its history was lost in a way its serials cannot show.
//!
//! Per channel the store keeps one counter row (`stream_id`, the last serial, when it was last
//! written) and the events still kept. What a backend guarantees:
//! - **Serials** start at 1 and grow by one per event of the channel, gap-free and never going
//!   backwards while the counter row lives, whatever the number of writers and nodes (the
//!   counter row is locked by the append, as a stream's counter is). An append to several
//!   channels takes their counter rows in name order, so two of them cannot deadlock.
//! - **Pruning** runs in the append's transaction and only on the channels appended to: what
//!   lies beyond the newest [`AppLogRetention::keep_events`] goes, and so do the oldest of
//!   those older than [`AppLogRetention::keep_since`] (a bounded number per append; reads never
//!   return an event older than their `not_before`, so what is left over is never seen).
//!   A channel whose every event expired keeps its counter row: its serials go on.
//! - **`stream_id`** is made at random with the counter row. So it changes exactly when the row
//!   is made anew: after [`crate::Queries::forget_idle_app_channels`] removed an idle channel
//!   (serials restart at 1), after [`crate::Queries::delete_app_channels`] (an import), or when
//!   a store that may have lost the tail of its commits starts (`store::durability`: every
//!   channel gets a new `stream_id`, as a lost tail may have taken serials clients saw).

use crate::Timestamp;

/// One event of an app channel, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppChannelEventRow {
    pub channel: String,
    pub serial: i64,
    pub event: String,
    pub data: String,
    pub at: Timestamp,
}

/// Where a channel's kept history stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppChannelPositionRow {
    pub stream_id: String,
    /// The oldest serial still kept (`last_serial + 1` when none is).
    pub first_serial: i64,
    pub last_serial: i64,
}

/// How much of each channel an append keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppLogRetention {
    /// The newest events kept per channel (at least 1: the one appended).
    pub keep_events: u32,
    /// Events older than this are dropped.
    pub keep_since: Timestamp,
}

/// How many of a channel's expired events one append drops at most, beside the count-based
/// cut (one index range): a channel quiet for a day loses its stale events over its next
/// appends, or to the idle cleanup, never in one long statement.
pub const EXPIRED_DROPPED_PER_APPEND: u32 = 64;

/// The channels of `channels`, each once, in the order their counter rows are locked.
pub fn lock_order(channels: &[String]) -> Vec<&str> {
    let mut sorted: Vec<&str> = channels.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    sorted
}

/// The appended events in `channels` order (a channel named twice gets its one event twice),
/// from those made in [`lock_order`].
pub fn in_caller_order(
    channels: &[String],
    appended: Vec<AppChannelEventRow>,
) -> Vec<AppChannelEventRow> {
    channels
        .iter()
        .filter_map(|channel| appended.iter().find(|e| &e.channel == channel).cloned())
        .collect()
}

/// A new opaque `stream_id`.
pub fn new_stream_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}
