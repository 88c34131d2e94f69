//! The feed from Redis: one pub/sub connection per feed, reconnected with a capped backoff, and
//! a [`BusMessage::Lagged`] after every subscription (see the crate's docs).

use crate::RedisBusConfig;
use crate::wire::{self, DecodeError, Decoded};
use futures::StreamExt;
use hub::{BusFeed, BusMessage};
use std::sync::Arc;
use tokio::sync::mpsc;

/// A feed of the other nodes' events; its task ends when the feed is dropped.
pub(crate) fn feed(client: redis::Client, config: Arc<RedisBusConfig>) -> BusFeed {
    let (tx, rx) = mpsc::channel(config.feed_buffer.max(1));
    tokio::spawn(run(client, config, tx));
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|message| (message, rx))
    }))
}

/// How one connection ended.
enum Ended {
    /// The feed was dropped: stop.
    FeedClosed,
    /// Subscribed for a while, then lost: reconnect at once.
    Lost(String),
    /// Could not connect or subscribe: wait, longer each time.
    Failed(String),
}

async fn run(client: redis::Client, config: Arc<RedisBusConfig>, tx: mpsc::Sender<BusMessage>) {
    let mut delay = config.backoff_min;
    let mut failures: u64 = 0;
    let mut drops = Drops::default();
    loop {
        let wait = match session(&client, &config, &tx, &mut drops).await {
            Ended::FeedClosed => return,
            Ended::Lost(reason) => {
                tracing::warn!(%reason, "lost the Redis feed; reconnecting");
                failures = 0;
                delay = config.backoff_min;
                config.backoff_min
            }
            Ended::Failed(reason) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(%reason, "cannot subscribe to Redis; retrying with backoff");
                } else {
                    tracing::debug!(%reason, failures, "cannot subscribe to Redis");
                }
                let wait = delay;
                delay = (delay * 2).min(config.backoff_max);
                wait
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = tx.closed() => return,
        }
    }
}

async fn session(
    client: &redis::Client,
    config: &RedisBusConfig,
    tx: &mpsc::Sender<BusMessage>,
    drops: &mut Drops,
) -> Ended {
    let connecting = tokio::time::timeout(config.connect_timeout, client.get_async_pubsub());
    let pubsub = tokio::select! {
        connected = connecting => match connected {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(err)) => return Ended::Failed(err.to_string()),
            Err(_) => return Ended::Failed("no answer in time".into()),
        },
        () = tx.closed() => return Ended::FeedClosed,
    };
    let (mut sink, mut stream) = pubsub.split();
    match tokio::time::timeout(config.response_timeout, sink.subscribe(&config.channel)).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => return Ended::Failed(err.to_string()),
        Err(_) => return Ended::Failed("SUBSCRIBE unanswered".into()),
    }
    // Whatever was published before this point (while disconnected, or before the node
    // started) is only in the log: the hub reads it there.
    if tx.send(BusMessage::Lagged).await.is_err() {
        return Ended::FeedClosed;
    }
    tracing::info!(channel = %config.channel, "subscribed to the Redis bus");
    let mut ping = tokio::time::interval(config.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else {
                    return Ended::Lost("connection closed".into());
                };
                let Some(out) = read(config, message.get_payload_bytes(), drops) else {
                    continue;
                };
                if tx.send(out).await.is_err() {
                    return Ended::FeedClosed;
                }
            }
            _ = ping.tick() => {
                let pong = tokio::time::timeout(config.response_timeout, sink.ping::<redis::Value>()).await;
                if !matches!(pong, Ok(Ok(_))) {
                    return Ended::Lost("PING unanswered".into());
                }
            }
            () = tx.closed() => return Ended::FeedClosed,
        }
    }
}

/// What one message from the channel means for the hub, if anything.
fn read(config: &RedisBusConfig, bytes: &[u8], drops: &mut Drops) -> Option<BusMessage> {
    match wire::decode(bytes, config.max_message_bytes) {
        Ok(Decoded::Event { origin, .. } | Decoded::Lag { origin }) if origin == config.node_id => {
            None
        }
        Ok(Decoded::Event { event, .. }) => Some(BusMessage::Event(Arc::from(event))),
        Ok(Decoded::Lag { .. }) => Some(BusMessage::Lagged),
        Err(err @ DecodeError::Oversized { .. }) => {
            drops.note(&err);
            // It may have been a real event: the log has it.
            Some(BusMessage::Lagged)
        }
        Err(err) => {
            drops.note(&err);
            None
        }
    }
}

/// Counts dropped messages so a flood of bad ones cannot flood the log: the first is logged,
/// then every 1,000th.
#[derive(Default)]
struct Drops(u64);

impl Drops {
    fn note(&mut self, err: &DecodeError) {
        self.0 += 1;
        if self.0 % 1000 == 1 {
            tracing::warn!(error = %err, dropped = self.0, "dropped a message from the Redis bus");
        }
    }
}
