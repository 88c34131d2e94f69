//! The hub's [`Bus`] over Redis (or Valkey) pub/sub: what joins several liveplan nodes into one.
//!
//! Every node publishes the events it commits on one channel and subscribes to it; each hub
//! drops the events of streams it does not serve. Redis pub/sub is fire-and-forget: a message
//! published while a node is disconnected never reaches it. That is allowed (the [`Bus`]
//! contract): the hub orders by seq and reads gaps from the log, and this bus says
//! [`hub::BusMessage::Lagged`] whenever it may have missed something, so the hub reads every stream
//! it serves from the log:
//!
//! - after every (re)subscription of the feed, the first one included: a Redis restart, a cut
//!   connection or a slow start lose nothing;
//! - when a message from another node cannot be read (over [`RedisBusConfig::max_message_bytes`]
//!   or malformed: dropped with a warning);
//! - when another node says it could not publish something (a `lag` hint, see [`wire`]).
//!
//! The node's own events go to its hub directly (an in-process broadcast, as on a single
//! node), not through Redis: local delivery does not wait on Redis, and goes on while Redis is
//! away. Their copies coming back from Redis are skipped by the sender's node id.
//!
//! Publishing never blocks a commit: [`Bus::publish`] hands the event to the local hub and to a
//! bounded queue that one task sends to Redis in order (pipelined). A full queue or a failed
//! send is logged and followed by a `lag` hint once Redis takes messages again.

mod publisher;
mod subscriber;
pub mod wire;

use async_trait::async_trait;
use hub::{Bus, BusError, BusFeed, InProcessBus};
use proto::Event;
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// How a [`RedisBus`] connects and what it bounds. [`RedisBusConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct RedisBusConfig {
    /// `redis://[user:password@]host[:port][/db]` (or `rediss://`, `unix://`).
    pub url: String,
    /// The pub/sub channel shared by the nodes of one cluster.
    pub channel: String,
    /// This node: its messages carry it, and it skips its own.
    pub node_id: Uuid,
    /// The local broadcast to this node's hub (as `InProcessBus`).
    pub local_capacity: usize,
    /// The largest message sent or accepted. A larger event is not sent (a `lag` hint goes
    /// instead and the receivers read it from the log); a larger message received is dropped.
    pub max_message_bytes: usize,
    /// Events waiting to be sent to Redis; beyond it they are dropped (and a `lag` hint sent).
    pub publish_queue: usize,
    /// Events sent to Redis in one pipeline.
    pub publish_batch: usize,
    /// Messages received from Redis waiting for the hub.
    pub feed_buffer: usize,
    /// Bounds on one connection attempt and on one command's answer.
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// The subscriber's reconnect delay: doubles from `min` up to `max` while Redis is away.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How often the subscriber pings Redis, so a dead connection is noticed even when nobody
    /// publishes.
    pub ping_interval: Duration,
}

impl RedisBusConfig {
    pub fn new(url: impl Into<String>, channel: impl Into<String>, node_id: Uuid) -> Self {
        RedisBusConfig {
            url: url.into(),
            channel: channel.into(),
            node_id,
            local_capacity: 4096,
            max_message_bytes: 4 * 1024 * 1024,
            publish_queue: 16 * 1024,
            publish_batch: 256,
            feed_buffer: 4096,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
            ping_interval: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedisBusError {
    /// The URL did not parse. The URL is never repeated: it may hold a password.
    #[error("the Redis URL is not valid ({0}); expected redis://host:port")]
    BadUrl(String),
    #[error("cannot reach Redis at {address}: {reason}")]
    Unreachable { address: String, reason: String },
}

/// The bus between the nodes of a cluster. Cheap to share (`Arc`).
pub struct RedisBus {
    local: InProcessBus,
    publisher: publisher::Publisher,
    client: redis::Client,
    config: Arc<RedisBusConfig>,
}

impl RedisBus {
    /// Connects (bounded by [`RedisBusConfig::connect_timeout`]) and starts the publishing task
    /// on the current runtime. Fails when the URL is bad or Redis does not answer: a node that
    /// was told to join a cluster must not start alone.
    pub async fn connect(config: RedisBusConfig) -> Result<RedisBus, RedisBusError> {
        let client = open_client(&config.url)?;
        let address = client.get_connection_info().addr().to_string();
        let unreachable = |reason: String| RedisBusError::Unreachable {
            address: address.clone(),
            reason,
        };
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_min_delay(config.backoff_min)
            .set_max_delay(config.backoff_max)
            .set_number_of_retries(2);
        let connecting = client.get_connection_manager_with_config(manager_config);
        let mut manager: ConnectionManager =
            tokio::time::timeout(config.connect_timeout * 2, connecting)
                .await
                .map_err(|_| unreachable("no answer in time".into()))?
                .map_err(|e| unreachable(e.to_string()))?;
        let pong: String = redis::cmd("PING")
            .query_async(&mut manager)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        if pong != "PONG" {
            return Err(unreachable(format!("PING answered {pong:?}")));
        }
        let config = Arc::new(config);
        Ok(RedisBus {
            local: InProcessBus::new(config.local_capacity),
            publisher: publisher::Publisher::start(manager, config.clone()),
            client,
            config,
        })
    }

    pub fn node_id(&self) -> Uuid {
        self.config.node_id
    }

    pub fn channel(&self) -> &str {
        &self.config.channel
    }
}

/// Parses a Redis URL into a client (no connection yet).
pub fn open_client(url: &str) -> Result<redis::Client, RedisBusError> {
    redis::Client::open(url).map_err(|e| RedisBusError::BadUrl(e.to_string()))
}

#[async_trait]
impl Bus for RedisBus {
    async fn publish(&self, event: Arc<Event>) -> Result<(), BusError> {
        self.publisher.offer(event.clone());
        self.local.publish(event).await
    }

    async fn subscribe(&self) -> Result<BusFeed, BusError> {
        let local = self.local.subscribe().await?;
        let remote = subscriber::feed(self.client.clone(), self.config.clone());
        Ok(Box::pin(futures::stream::select(local, remote)))
    }
}
