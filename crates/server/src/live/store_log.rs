//! The hub's [`LogReader`] over the store: every read takes a fresh read handle, so a hub
//! catch-up never holds a connection between pages.

use async_trait::async_trait;
use hub::{LogError, LogReader};
use proto::{Event, StreamKey};
use std::sync::Arc;
use store::{Store, StoreError};

pub struct StoreLog {
    store: Arc<dyn Store>,
}

impl StoreLog {
    pub fn new(store: Arc<dyn Store>) -> StoreLog {
        StoreLog { store }
    }
}

fn backend(error: StoreError) -> LogError {
    LogError::Backend(Box::new(error))
}

#[async_trait]
impl LogReader for StoreLog {
    async fn read_after(
        &self,
        stream: StreamKey,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Event>, LogError> {
        let mut ops = self.store.read().await.map_err(backend)?;
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        ops.read_events(stream, after, limit).await.map_err(backend)
    }

    async fn latest_seq(&self, stream: StreamKey) -> Result<i64, LogError> {
        let mut ops = self.store.read().await.map_err(backend)?;
        ops.latest_seq(stream).await.map_err(backend)
    }

    async fn oldest_seq(&self, stream: StreamKey) -> Result<Option<i64>, LogError> {
        let mut ops = self.store.read().await.map_err(backend)?;
        ops.oldest_seq(stream).await.map_err(backend)
    }
}
