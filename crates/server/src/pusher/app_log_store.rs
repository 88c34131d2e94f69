//! [`AppChannelLog`] over the store (`store::app_channels` says what each backend guarantees):
//! what the Pusher dialect and the HTTP API use for the history of the app's own channels.
//!
//! Kept: the last [`KEEP_EVENTS`] events of a channel, for [`KEEP_FOR`]. A channel nobody
//! wrote for [`KEEP_FOR`] has nothing left to replay; [`StoreAppChannelLog::spawn_idle_cleanup`]
//! then forgets it whole (its counter row too, so a later event starts at serial 1 under a new
//! `stream_id`, which a resuming client is told about as `stream_reset`). Not exported: the
//! history is ephemeral (24 h), and an import forgets every app channel (new `stream_id`s).

use super::app_log::{
    AppChannelEvent, AppChannelLog, AppChannelPosition, AppLogError, KEEP_EVENTS, KEEP_FOR,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use store::{AppChannelEventRow, AppLogRetention, Store, StoreError};

/// Attempts at an append the database gave up for a concurrent transaction.
const APPEND_ATTEMPTS: u32 = 3;
/// Channels the idle cleanup forgets per transaction, and the transactions per round: a
/// round's work is bounded; what is left waits for the next round.
const CLEANUP_BATCH: u32 = 500;
const CLEANUP_BATCHES_PER_ROUND: usize = 20;
/// How often the idle cleanup runs.
pub const CLEANUP_EVERY: Duration = Duration::from_secs(15 * 60);

pub struct StoreAppChannelLog {
    store: Arc<dyn Store>,
}

impl StoreAppChannelLog {
    pub fn new(store: Arc<dyn Store>) -> StoreAppChannelLog {
        StoreAppChannelLog { store }
    }

    /// Forgets the channels nobody wrote since `now - KEEP_FOR` (their events and counters), at
    /// most [`CLEANUP_BATCH`] × [`CLEANUP_BATCHES_PER_ROUND`] of them. Returns how many.
    pub async fn forget_idle(&self, now: DateTime<Utc>) -> Result<u64, AppLogError> {
        let idle_before = now - keep_for();
        let mut forgotten = 0;
        for _ in 0..CLEANUP_BATCHES_PER_ROUND {
            let mut tx = self.store.write().await.map_err(unavailable)?;
            let n = tx
                .forget_idle_app_channels(idle_before, CLEANUP_BATCH)
                .await
                .map_err(unavailable)?;
            tx.commit().await.map_err(unavailable)?;
            forgotten += n;
            if n < u64::from(CLEANUP_BATCH) {
                break;
            }
        }
        Ok(forgotten)
    }

    /// Runs [`StoreAppChannelLog::forget_idle`] at once and then every [`CLEANUP_EVERY`],
    /// until `stop` turns true or its sender is dropped (the server's stop signal). Every node
    /// may run it: a channel is forgotten once, whoever gets it.
    pub fn spawn_idle_cleanup(
        self: &Arc<Self>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let log = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(CLEANUP_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = stop.wait_for(|stop| *stop) => return,
                }
                match log.forget_idle(store::now()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(channels = n, "forgot idle app channels"),
                    Err(_) => tracing::warn!("the idle app channels' cleanup could not run"),
                }
            }
        })
    }
}

/// The idle cleanup of the app channels in `store`, until `stop` (the server's stop signal).
pub fn spawn_idle_cleanup(
    store: Arc<dyn Store>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    Arc::new(StoreAppChannelLog::new(store)).spawn_idle_cleanup(stop)
}

fn keep_for() -> chrono::Duration {
    chrono::Duration::from_std(KEEP_FOR).unwrap_or(chrono::Duration::MAX)
}

/// The store's errors are the operator's business (logged), never the client's.
fn unavailable(error: StoreError) -> AppLogError {
    match &error {
        StoreError::Unavailable | StoreError::Retryable => {}
        other => tracing::warn!(
            error = other as &dyn std::error::Error,
            "the app channels' log failed"
        ),
    }
    AppLogError::Unavailable
}

fn event_of(row: AppChannelEventRow) -> AppChannelEvent {
    AppChannelEvent {
        channel: row.channel,
        serial: row.serial,
        event: row.event,
        data: row.data,
        at: row.at,
    }
}

#[async_trait]
impl AppChannelLog for StoreAppChannelLog {
    async fn append(
        &self,
        channels: &[String],
        event: &str,
        data: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<AppChannelEvent>, AppLogError> {
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        let retention = AppLogRetention {
            keep_events: KEEP_EVENTS as u32,
            keep_since: now - keep_for(),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = async {
                let mut tx = self.store.write().await?;
                let rows = tx
                    .append_app_event(channels, event, data, now, retention)
                    .await?;
                tx.commit().await?;
                Ok::<_, StoreError>(rows)
            }
            .await;
            match result {
                Ok(rows) => return Ok(rows.into_iter().map(event_of).collect()),
                Err(StoreError::Retryable) if attempt < APPEND_ATTEMPTS => continue,
                Err(error) => return Err(unavailable(error)),
            }
        }
    }

    async fn after(
        &self,
        channel: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<AppChannelEvent>, AppLogError> {
        let limit = u32::try_from(limit.min(KEEP_EVENTS)).unwrap_or(u32::MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut ops = self.store.read().await.map_err(unavailable)?;
        let rows = ops
            .read_app_events(channel, after, limit, store::now() - keep_for())
            .await
            .map_err(unavailable)?;
        Ok(rows.into_iter().map(event_of).collect())
    }

    async fn position(&self, channel: &str) -> Result<Option<AppChannelPosition>, AppLogError> {
        let mut ops = self.store.read().await.map_err(unavailable)?;
        let position = ops
            .app_channel_position(channel, store::now() - keep_for())
            .await
            .map_err(unavailable)?;
        Ok(position.map(|p| AppChannelPosition {
            stream_id: p.stream_id,
            first_serial: p.first_serial,
            last_serial: p.last_serial,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store of the environment's backend (`LIVEPLAN_TEST_DATABASE_URL`: PostgreSQL, else
    /// SQLite), with what keeps it alive.
    async fn store() -> (Arc<dyn Store>, liveplan_testkit::backend::Backend) {
        let backend = liveplan_testkit::backend::Backend::from_env();
        let store = crate::backends::open_store(backend.database_url(), backend.data_dir())
            .await
            .unwrap();
        (store, backend)
    }

    fn names(channels: &[&str]) -> Vec<String> {
        channels.iter().map(|c| (*c).to_owned()).collect()
    }

    #[tokio::test]
    async fn appends_read_back_with_their_serials_and_position() {
        let (store, _backend) = store().await;
        let log = StoreAppChannelLog::new(store.clone());
        assert_eq!(log.position("chat").await.unwrap(), None);
        let now = store::now();
        let first = log
            .append(&names(&["chat", "news"]), "said", "{\"x\":1}", now)
            .await
            .unwrap();
        assert_eq!(
            first
                .iter()
                .map(|e| (e.channel.as_str(), e.serial))
                .collect::<Vec<_>>(),
            [("chat", 1), ("news", 1)]
        );
        for i in 2..=4 {
            let appended = log
                .append(&names(&["chat"]), "said", &format!("{i}"), now)
                .await
                .unwrap();
            assert_eq!(appended[0].serial, i);
        }
        let page = log.after("chat", 1, 2).await.unwrap();
        assert_eq!(
            page.iter()
                .map(|e| (e.serial, e.data.as_str()))
                .collect::<Vec<_>>(),
            [(2, "2"), (3, "3")]
        );
        assert!(log.after("chat", 0, 0).await.unwrap().is_empty());
        let position = log.position("chat").await.unwrap().unwrap();
        assert_eq!((position.first_serial, position.last_serial), (1, 4));
        assert!(log.append(&[], "e", "d", now).await.unwrap().is_empty());
        store.close().await;
    }

    #[tokio::test]
    async fn expired_history_keeps_the_stream_until_the_idle_cleanup_forgets_it() {
        let (store, _backend) = store().await;
        let log = StoreAppChannelLog::new(store.clone());
        let long_ago = store::now() - chrono::Duration::hours(30);
        log.append(&names(&["old"]), "e", "d", long_ago)
            .await
            .unwrap();
        log.append(&names(&["old"]), "e", "d", long_ago)
            .await
            .unwrap();
        let expired = log.position("old").await.unwrap().unwrap();
        assert_eq!((expired.first_serial, expired.last_serial), (3, 2));
        assert!(log.after("old", 0, 10).await.unwrap().is_empty());
        assert_eq!(log.forget_idle(store::now()).await.unwrap(), 1);
        assert_eq!(log.position("old").await.unwrap(), None);
        let again = log
            .append(&names(&["old"]), "e", "d", store::now())
            .await
            .unwrap();
        assert_eq!(again[0].serial, 1);
        let renewed = log.position("old").await.unwrap().unwrap();
        assert_ne!(renewed.stream_id, expired.stream_id);
        store.close().await;
    }

    #[tokio::test]
    async fn the_idle_cleanup_runs_at_once_and_ends_on_the_stop_signal() {
        let (store, _backend) = store().await;
        let log = Arc::new(StoreAppChannelLog::new(store.clone()));
        let long_ago = store::now() - chrono::Duration::hours(30);
        log.append(&names(&["idle"]), "e", "d", long_ago)
            .await
            .unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let cleanup = log.spawn_idle_cleanup(stopped);
        tokio::time::timeout(Duration::from_secs(20), async {
            while log.position("idle").await.unwrap().is_some() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the first round forgets the idle channel");
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(20), cleanup)
            .await
            .expect("the cleanup ends on the stop signal")
            .unwrap();
        store.close().await;
    }

    #[tokio::test]
    async fn a_closed_store_is_unavailable() {
        let (store, _backend) = store().await;
        let log = StoreAppChannelLog::new(store.clone());
        store.close().await;
        assert!(matches!(
            log.append(&names(&["c"]), "e", "d", store::now()).await,
            Err(AppLogError::Unavailable)
        ));
        assert!(matches!(
            log.after("c", 0, 10).await,
            Err(AppLogError::Unavailable)
        ));
        assert!(matches!(
            log.position("c").await,
            Err(AppLogError::Unavailable)
        ));
    }
}
