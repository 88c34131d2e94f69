//! The bus carries committed (and ephemeral) events from whoever committed them to the hub of
//! every node. It is allowed to be lossy: the hub orders by seq, drops duplicates and fills gaps
//! from the log, so a bus only has to say when it *knows* it lost something ([`BusMessage::Lagged`]).

use async_trait::async_trait;
use futures::stream::BoxStream;
use proto::Event;
use std::sync::Arc;
use tokio::sync::broadcast;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    #[error("bus backend error")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// One item of a bus feed.
#[derive(Debug, Clone)]
pub enum BusMessage {
    Event(Arc<Event>),
    /// The feed may have lost events (a lagging receiver, a reconnect to Redis/Valkey). The hub
    /// answers by reading every stream it serves from the log up to its latest seq.
    Lagged,
}

/// The feed of every event published on the bus, from every node.
pub type BusFeed = BoxStream<'static, BusMessage>;

/// Publish/subscribe of events between committers and hubs. Implementations may deliver
/// duplicated, reordered or incomplete feeds; they must not invent events.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Publishes an event. Call it only after the transaction that wrote the event committed
    /// (ephemeral events excepted), or subscribers could read a seq the log does not have yet.
    async fn publish(&self, event: Arc<Event>) -> Result<(), BusError>;

    /// A new feed of every event published from now on.
    async fn subscribe(&self) -> Result<BusFeed, BusError>;
}

/// The single-process bus: a tokio broadcast channel. A receiver that falls more than `capacity`
/// events behind loses the oldest ones and is told so, which the hub turns into a log read.
pub struct InProcessBus {
    tx: broadcast::Sender<Arc<Event>>,
}

impl InProcessBus {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self { tx }
    }
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self::new(4096)
    }
}

#[async_trait]
impl Bus for InProcessBus {
    async fn publish(&self, event: Arc<Event>) -> Result<(), BusError> {
        // No receiver means no hub is running; the event is in the log, nothing is lost.
        let _ = self.tx.send(event);
        Ok(())
    }

    async fn subscribe(&self) -> Result<BusFeed, BusError> {
        let rx = self.tx.subscribe();
        let feed = futures::stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                Ok(event) => Some((BusMessage::Event(event), rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => Some((BusMessage::Lagged, rx)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        Ok(Box::pin(feed))
    }
}
