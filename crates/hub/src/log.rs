//! The hub's view of the event log: read-only, by stream and seq. The store implements
//! [`LogReader`]; [`MemoryLog`] is a complete in-memory log for tests and single-process demos.

use async_trait::async_trait;
use proto::{Event, StreamKey};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::lock;

/// Why the log could not be read. The hub treats every error alike (the read is abandoned and
/// the affected subscribers are told to resync or are closed), so the detail is for logs only.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    #[error("event log backend error")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Read access to committed events. Seqs of a stream start at 1 and are gap-free; a stream with
/// no events has latest seq 0. Events may be pruned from the start of a stream (retention), which
/// is what [`LogReader::oldest_seq`] reports.
#[async_trait]
pub trait LogReader: Send + Sync + 'static {
    /// Committed events of `stream` with `seq > after`, ascending by seq, at most `limit` of them.
    /// When the log was pruned past `after + 1`, the answer simply starts at the oldest held seq.
    async fn read_after(
        &self,
        stream: StreamKey,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Event>, LogError>;

    /// The highest committed seq of `stream`, 0 when it has none.
    async fn latest_seq(&self, stream: StreamKey) -> Result<i64, LogError>;

    /// The lowest seq the log still holds for `stream`, `None` when it holds none.
    async fn oldest_seq(&self, stream: StreamKey) -> Result<Option<i64>, LogError>;
}

#[derive(Default)]
struct StreamLog {
    events: VecDeque<Event>,
    latest: i64,
}

/// An in-memory event log that allocates seqs itself, like the store's transaction would.
#[derive(Default)]
pub struct MemoryLog {
    streams: Mutex<HashMap<StreamKey, StreamLog>>,
}

impl MemoryLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Commits `event` to its stream with the next seq and returns it as committed. Ephemeral
    /// events are never logged, so they come back untouched with `seq: None`.
    pub fn append(&self, mut event: Event) -> Event {
        if event.event_type.is_ephemeral() {
            event.seq = None;
            return event;
        }
        let mut streams = lock(&self.streams);
        let log = streams.entry(event.stream).or_default();
        log.latest += 1;
        event.seq = Some(log.latest);
        log.events.push_back(event.clone());
        event
    }

    /// Drops every event of `stream` with `seq < seq`, as a retention job would.
    pub fn prune_before(&self, stream: StreamKey, seq: i64) {
        let mut streams = lock(&self.streams);
        if let Some(log) = streams.get_mut(&stream) {
            log.events.retain(|e| e.seq.is_some_and(|s| s >= seq));
        }
    }

    /// Every seq the log holds for `stream`, ascending.
    pub fn seqs(&self, stream: StreamKey) -> Vec<i64> {
        let streams = lock(&self.streams);
        streams
            .get(&stream)
            .map(|log| log.events.iter().filter_map(|e| e.seq).collect())
            .unwrap_or_default()
    }
}

#[async_trait]
impl LogReader for MemoryLog {
    async fn read_after(
        &self,
        stream: StreamKey,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Event>, LogError> {
        let streams = lock(&self.streams);
        let Some(log) = streams.get(&stream) else {
            return Ok(Vec::new());
        };
        // Seqs are contiguous after pruning too, so the start index is arithmetic.
        let first = log.events.front().and_then(|e| e.seq).unwrap_or(1);
        let skip = usize::try_from((after + 1 - first).max(0)).unwrap_or(usize::MAX);
        Ok(log.events.iter().skip(skip).take(limit).cloned().collect())
    }

    async fn latest_seq(&self, stream: StreamKey) -> Result<i64, LogError> {
        Ok(lock(&self.streams).get(&stream).map_or(0, |log| log.latest))
    }

    async fn oldest_seq(&self, stream: StreamKey) -> Result<Option<i64>, LogError> {
        Ok(lock(&self.streams)
            .get(&stream)
            .and_then(|log| log.events.front().and_then(|e| e.seq)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::event;
    use proto::EventType;

    #[tokio::test]
    async fn memory_log_reads_pages_and_prunes() {
        let log = MemoryLog::new();
        let s = StreamKey::System;
        for _ in 0..10 {
            log.append(event(s, EventType::ProjectUpdated));
        }
        assert_eq!(log.latest_seq(s).await.unwrap(), 10);
        let page: Vec<_> = log.read_after(s, 3, 4).await.unwrap();
        let seqs: Vec<_> = page.iter().map(|e| e.seq.unwrap()).collect();
        assert_eq!(seqs, vec![4, 5, 6, 7]);
        log.prune_before(s, 6);
        assert_eq!(log.oldest_seq(s).await.unwrap(), Some(6));
        let seqs: Vec<_> = log
            .read_after(s, 2, 100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq.unwrap())
            .collect();
        assert_eq!(seqs, vec![6, 7, 8, 9, 10]);
        assert!(log.read_after(s, 10, 5).await.unwrap().is_empty());
        let other = StreamKey::User(uuid::Uuid::nil());
        assert_eq!(log.latest_seq(other).await.unwrap(), 0);
        assert_eq!(log.oldest_seq(other).await.unwrap(), None);
    }
}
