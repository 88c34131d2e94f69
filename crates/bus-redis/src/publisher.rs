//! Sends this node's events to Redis in order, on one task, pipelined, without ever making a
//! committer wait (see the crate's docs).

use crate::RedisBusConfig;
use crate::wire;
use proto::Event;
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc;

pub(crate) struct Publisher {
    queue: mpsc::Sender<Arc<Event>>,
    /// Something of this node's did not reach Redis: the others must read the log.
    lost: Arc<AtomicBool>,
}

impl Publisher {
    pub(crate) fn start(manager: ConnectionManager, config: Arc<RedisBusConfig>) -> Publisher {
        let (queue, rx) = mpsc::channel(config.publish_queue.max(1));
        let lost = Arc::new(AtomicBool::new(false));
        tokio::spawn(run(manager, config, rx, lost.clone()));
        Publisher { queue, lost }
    }

    /// Queues `event` for Redis; when the queue is full it is dropped and the other nodes are
    /// told to read the log once Redis takes messages again.
    pub(crate) fn offer(&self, event: Arc<Event>) {
        if self.queue.try_send(event).is_err() && !self.lost.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                "the Redis publish queue is full (Redis slow or away): events are dropped from it; other nodes will read them from the log"
            );
        }
    }
}

async fn run(
    mut manager: ConnectionManager,
    config: Arc<RedisBusConfig>,
    mut rx: mpsc::Receiver<Arc<Event>>,
    lost: Arc<AtomicBool>,
) {
    let node = config.node_id;
    let batch_size = config.publish_batch.max(1);
    let mut batch = Vec::with_capacity(batch_size);
    let mut failing = false;
    let mut retry_delay = config.backoff_min;
    loop {
        // While something is owed to the others, a lag hint is retried even when nothing new
        // is published, so they hear of it as soon as Redis is back.
        let lag_owed = lost.load(Ordering::Acquire);
        // `None`: the retry delay passed with nothing new; `Some(0)`: the bus was dropped.
        let received = if lag_owed {
            tokio::select! {
                n = rx.recv_many(&mut batch, batch_size) => Some(n),
                () = tokio::time::sleep(retry_delay) => None,
            }
        } else {
            Some(rx.recv_many(&mut batch, batch_size).await)
        };
        if received == Some(0) {
            return;
        }
        let mut pipe = redis::pipe();
        if lost.swap(false, Ordering::AcqRel) {
            pipe.cmd("PUBLISH")
                .arg(&config.channel)
                .arg(wire::encode_lag(node))
                .ignore();
        }
        for event in batch.drain(..) {
            let message = match wire::encode_event(node, &event, config.max_message_bytes) {
                Some(message) => message,
                None => {
                    tracing::warn!(
                        stream = %event.stream,
                        seq = ?event.seq,
                        limit = config.max_message_bytes,
                        "an event is over the bus message limit: the other nodes are told to read it from the log"
                    );
                    wire::encode_lag(node)
                }
            };
            pipe.cmd("PUBLISH")
                .arg(&config.channel)
                .arg(message)
                .ignore();
        }
        if pipe.is_empty() {
            continue;
        }
        match pipe.query_async::<()>(&mut manager).await {
            Ok(()) => {
                if failing {
                    tracing::info!("publishing to Redis again");
                }
                failing = false;
                retry_delay = config.backoff_min;
            }
            Err(err) => {
                lost.store(true, Ordering::Release);
                if !failing {
                    tracing::warn!(error = %err, "publishing to Redis failed; other nodes will read these events from the log");
                }
                failing = true;
                retry_delay = (retry_delay * 2).min(config.backoff_max);
            }
        }
    }
}
