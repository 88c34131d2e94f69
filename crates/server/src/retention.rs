//! Keeping the event log bounded (CONTRACT §12): `--log-retention-days` (default 30) and
//! `--log-max-events-per-stream` (default 1,000,000).
//!
//! One task per node looks at every stream's bounds ([`store::Queries::log_bounds`]: its
//! counter and oldest event, no row counting) at start and then every [`PASS_EVERY`], and
//! prunes a stream over its limits from the oldest event on, in write transactions of at most
//! [`BATCH`] events, so a writer never waits long behind it. A stream is back within its
//! limits at the end of the pass after it went over: within [`PASS_EVERY`] plus the pass.
//!
//! - The count: a stream keeps its newest `max_events_per_stream` events. Seqs are gap-free,
//!   so that is every seq among the last `max_events_per_stream`; after a lost-tail skip (or
//!   the start on a restored backup), whose hole the counter cannot see, the events are
//!   counted ([`store::Queries::nth_newest_seq`]) so the history below the hole stays.
//! - The age is the commit time of each event (its `ts`), against this node's clock. Only a
//!   prefix goes ([`store::Queries::prune_events`]): the log stays one unbroken run of seqs, and
//!   no counter moves, so seqs never go backwards.
//! - A client whose position is no longer in the log is told `resync_required` by the hub
//!   (its `oldest_seq` check), on every dialect; `/log` reports `first_seq`.
//!
//! - Webhooks: an event an active webhook of the project has not handled yet (a seq above the
//!   lowest cursor, [`store::Queries::min_webhook_cursor`]) is never pruned for its age; the
//!   count limit still prunes it (the log must stay bounded), and the webhook then records one
//!   delivery with outcome `skipped` for the seqs it lost (`crate::webhooks::worker`).
//!
//! Several nodes may prune the same stream at once: each deletes the same prefix, which is
//! harmless (the second finds nothing to delete).

use crate::clock::Clock;
use proto::StreamKey;
use std::sync::Arc;
use std::time::Duration;
use store::{LogBounds, Store, Timestamp};
use tokio::sync::watch;

/// `--log-retention-days` and `--log-max-events-per-stream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Events older than this go (by their commit time). `None`: kept whatever their age.
    pub max_age: Option<Duration>,
    /// The most events a stream keeps; older ones go first. `None`: no limit.
    pub max_events_per_stream: Option<u64>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            max_age: Some(Duration::from_secs(30 * 24 * 3600)),
            max_events_per_stream: Some(1_000_000),
        }
    }
}

impl RetentionConfig {
    pub fn is_off(&self) -> bool {
        self.max_age.is_none() && self.max_events_per_stream.is_none()
    }

    /// What a stream keeps now: every seq from the first value on, and (when given) every event
    /// committed at or after the second.
    fn keep(&self, latest_seq: i64, now: Timestamp) -> (i64, Option<Timestamp>) {
        let keep_from_seq = self.max_events_per_stream.map_or(0, |max| {
            latest_seq.saturating_sub(i64::try_from(max).unwrap_or(i64::MAX)) + 1
        });
        let older_than = self
            .max_age
            .and_then(|age| chrono::Duration::from_std(age).ok())
            .and_then(|age| now.checked_sub_signed(age));
        (keep_from_seq, older_than)
    }

    fn over(&self, bounds: &LogBounds, now: Timestamp) -> bool {
        let (keep_from_seq, older_than) = self.keep(bounds.latest_seq, now);
        bounds
            .oldest_seq
            .is_some_and(|oldest| oldest < keep_from_seq)
            || matches!((bounds.oldest_ts, older_than), (Some(ts), Some(cut)) if ts < cut)
    }
}

/// How often the task looks at every stream.
pub const PASS_EVERY: Duration = Duration::from_secs(5);
/// Events deleted per write transaction.
pub const BATCH: u32 = 500;
/// Streams read per page of bounds.
const PAGE: u32 = 500;
/// The pause after a pass the store refused, before the next tick.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// Starts the retention task on the current runtime; it ends when `stop` says so.
pub fn spawn(
    store: Arc<dyn Store>,
    config: RetentionConfig,
    clock: Clock,
    mut stop: watch::Receiver<bool>,
) {
    if config.is_off() {
        return;
    }
    tokio::spawn(async move {
        let mut ticks = clock.ticker(PASS_EVERY);
        loop {
            // The first pass runs at once: the limits hold from the start.
            match pass(&*store, config, clock.wall()).await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, "log retention pruned old events"),
                Err(err) => {
                    tracing::warn!(error = %err, "log retention could not run; trying again");
                    tokio::time::sleep(STORE_RETRY).await;
                }
            }
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    });
}

/// One look at every stream, pruning those over their limits. Returns how many events went.
pub async fn pass(
    store: &dyn Store,
    config: RetentionConfig,
    now: Timestamp,
) -> store::StoreResult<u64> {
    let mut pruned = 0;
    let mut after = None;
    loop {
        let page = store.read().await?.log_bounds(after, PAGE).await?;
        for bounds in &page {
            if config.over(bounds, now) {
                pruned += prune_stream(store, config, bounds, now).await?;
            }
        }
        match page.last() {
            Some(last) if page.len() == PAGE as usize => after = Some(last.stream),
            _ => return Ok(pruned),
        }
    }
}

/// Prunes one stream down to its limits, a batch per transaction.
async fn prune_stream(
    store: &dyn Store,
    config: RetentionConfig,
    bounds: &LogBounds,
    now: Timestamp,
) -> store::StoreResult<u64> {
    let (mut keep_from_seq, older_than) = config.keep(bounds.latest_seq, now);
    if let (Some(max), Some(oldest)) = (config.max_events_per_stream, bounds.oldest_seq)
        && oldest < keep_from_seq
    {
        // The last `max` seqs hold at most `max` events; they hold exactly that unless a
        // lost-tail skip left a hole among them, and then the events are counted instead.
        let mut ops = store.read().await?;
        let at = ops.read_events(bounds.stream, keep_from_seq - 1, 1).await?;
        if at.first().and_then(|e| e.seq) != Some(keep_from_seq) {
            keep_from_seq = ops
                .nth_newest_seq(bounds.stream, max)
                .await?
                .unwrap_or(i64::MIN);
        }
    }
    let (keep_from_seq, older_than) = match bounds.stream {
        StreamKey::Project(project_id) => {
            spare_for_webhooks(store, bounds.stream, project_id, keep_from_seq, older_than).await?
        }
        _ => (keep_from_seq, older_than),
    };
    let mut pruned = 0;
    loop {
        let mut tx = store.write().await?;
        let deleted = tx
            .prune_events(bounds.stream, keep_from_seq, older_than, BATCH)
            .await?;
        tx.commit().await?;
        pruned += deleted;
        if deleted < u64::from(BATCH) {
            return Ok(pruned);
        }
        // Let the writers this batch held up go first.
        tokio::task::yield_now().await;
    }
}

/// The cuts for a project stream, narrowed so that no event after the lowest cursor of the
/// project's active webhooks goes for its age (the count cut stays). Pruning takes a prefix and
/// stops at the first event that is neither too old nor below the seq cut, and events are
/// logged in commit order, so it is enough to keep the first unhandled event (cursor + 1): when
/// it is younger than the age cut, pruning stops there at the latest; when it is older, the
/// age cut becomes a seq cut just below it.
async fn spare_for_webhooks(
    store: &dyn Store,
    stream: StreamKey,
    project_id: uuid::Uuid,
    keep_from_seq: i64,
    older_than: Option<Timestamp>,
) -> store::StoreResult<(i64, Option<Timestamp>)> {
    let Some(cut) = older_than else {
        return Ok((keep_from_seq, None));
    };
    let mut ops = store.read().await?;
    let Some(cursor) = ops.min_webhook_cursor(project_id).await? else {
        return Ok((keep_from_seq, Some(cut)));
    };
    let next = ops.read_events(stream, cursor, 1).await?;
    Ok(match next.first() {
        Some(unhandled) if unhandled.ts < cut => {
            (keep_from_seq.max(unhandled.seq.unwrap_or(cursor + 1)), None)
        }
        _ => (keep_from_seq, Some(cut)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(
        latest: i64,
        oldest: Option<i64>,
        age_days: Option<i64>,
        now: Timestamp,
    ) -> LogBounds {
        LogBounds {
            stream: StreamKey::System,
            latest_seq: latest,
            oldest_seq: oldest,
            oldest_ts: age_days.map(|d| now - chrono::Duration::days(d)),
        }
    }

    #[test]
    fn a_stream_is_over_by_count_or_by_age() {
        let now = chrono::Utc::now();
        let config = RetentionConfig {
            max_age: Some(Duration::from_secs(30 * 24 * 3600)),
            max_events_per_stream: Some(10),
        };
        assert!(!config.over(&bounds(10, Some(1), Some(29), now), now));
        assert!(config.over(&bounds(11, Some(1), Some(29), now), now));
        assert!(!config.over(&bounds(11, Some(2), Some(29), now), now));
        assert!(config.over(&bounds(5, Some(1), Some(31), now), now));
        assert!(!config.over(&bounds(5, None, None, now), now));
        let off = RetentionConfig {
            max_age: None,
            max_events_per_stream: None,
        };
        assert!(off.is_off());
        assert!(!off.over(&bounds(i64::MAX, Some(1), Some(10_000), now), now));
        assert_eq!(off.keep(50, now), (0, None));
        assert_eq!(config.keep(50, now).0, 41);
        assert_eq!(config.keep(3, now).0, -6);
    }
}
