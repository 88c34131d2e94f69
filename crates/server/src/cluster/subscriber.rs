//! One pub/sub channel of the cluster on Redis, followed for as long as its reader lives:
//! subscribe, forward the other nodes' messages, and start again after a growing pause when
//! the connection drops. The control channel (`redis_state`) and the Pusher channel
//! (`pusher_state`) both run on it.

use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;

/// A message as it travels on a cluster channel: who sent it, so a node skips its own.
#[derive(Serialize, Deserialize)]
pub struct Envelope<M> {
    pub from: Uuid,
    #[serde(flatten)]
    pub message: M,
}

const RECONNECT_MIN: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// A subscription not made by then is given up and tried again.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How one channel's messages reach its reader.
pub struct Follow<M, T> {
    /// The channel's name in logs ("control", "Pusher").
    pub what: &'static str,
    /// Sent each time the subscription is (re)made: messages sent while it was down are lost.
    pub connected: Option<fn() -> T>,
    pub wrap: fn(M) -> T,
}

/// Follows `channel` until `tx`'s receiver is dropped, skipping the messages `me` sent.
pub async fn follow<M: DeserializeOwned, T>(
    client: redis::Client,
    channel: String,
    me: Uuid,
    tx: mpsc::Sender<T>,
    how: Follow<M, T>,
) {
    let what = how.what;
    let mut pause = RECONNECT_MIN;
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribed).await {
            Ok(Ok(pubsub)) => {
                pause = RECONNECT_MIN;
                if let Some(connected) = how.connected
                    && tx.send(connected()).await.is_err()
                {
                    return;
                }
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    let Ok(text) = msg.get_payload::<String>() else {
                        continue;
                    };
                    match serde_json::from_str::<Envelope<M>>(&text) {
                        Ok(envelope) if envelope.from == me => {}
                        Ok(envelope) => {
                            if tx.send((how.wrap)(envelope.message)).await.is_err() {
                                return;
                            }
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, channel = what, "ignored a malformed cluster message")
                        }
                    }
                }
                tracing::warn!(channel = what, "a cluster channel dropped; reconnecting");
            }
            Ok(Err(err)) => tracing::debug!(error = %err, channel = what, "cannot subscribe"),
            Err(_) => tracing::debug!(channel = what, "subscribing timed out"),
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RECONNECT_MAX);
    }
}
