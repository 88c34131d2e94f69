//! What log retention reads and deletes (`Queries::log_bounds`, `Queries::prune_events`).

use crate::Timestamp;
use proto::StreamKey;

/// One stream's log as retention sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogBounds {
    pub stream: StreamKey,
    /// The last seq allocated on the stream (its counter, which deletes never lower).
    pub latest_seq: i64,
    /// The oldest event the log still holds, `None` when it holds none.
    pub oldest_seq: Option<i64>,
    pub oldest_ts: Option<Timestamp>,
}

/// The last seq of the oldest events (`(seq, time)` in seq order, as a page of the log reads
/// them) that `Queries::prune_events` may delete: each below `keep_from_seq` or, when given,
/// before `older_than`, up to the first that is neither. `None` when the first one stays. Both
/// backends decide with this one function.
pub fn prunable_prefix(
    oldest: &[(i64, Timestamp)],
    keep_from_seq: i64,
    older_than: Option<Timestamp>,
) -> Option<i64> {
    oldest
        .iter()
        .take_while(|(seq, ts)| *seq < keep_from_seq || older_than.is_some_and(|cut| *ts < cut))
        .last()
        .map(|(seq, _)| *seq)
}
