//! The open whiteboards' notes between nodes ([`crate::whiteboard::peers`]) on the cluster's
//! `whiteboards` pub/sub channel. One task publishes them in order from a bounded queue; past
//! it a note is dropped with a warning (at most one line per thousand) rather than the node
//! holding a backlog while Redis is slow or away: awareness is renewed by its clients and
//! stored updates are read by the documents' poll. The other nodes' notes are followed by
//! [`super::subscriber::follow`] and handed to the node's [`Boards`].

use super::ClusterInfo;
use super::redis_state::{manager, protocol, unavailable};
use super::state::ClusterError;
use super::subscriber::{Envelope, Follow, follow};
use crate::whiteboard::Boards;
use crate::whiteboard::peers::{PeerNote, Peers};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;
use uuid::Uuid;

/// The pub/sub channel, after the cluster's prefix.
const CHANNEL: &str = "whiteboards";
/// Notes waiting to be published.
const OUTBOX: usize = 8_192;

/// A note as it travels (awareness bytes in base64, the rest of the channels' messages being
/// JSON too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Wire {
    Awareness { board: Uuid, update: String },
    Changed { board: Uuid },
    Query { board: Uuid },
}

impl Wire {
    fn new(board: Uuid, note: PeerNote) -> Wire {
        match note {
            PeerNote::Awareness(bytes) => Wire::Awareness {
                board,
                update: STANDARD.encode(bytes),
            },
            PeerNote::Changed => Wire::Changed { board },
            PeerNote::Query => Wire::Query { board },
        }
    }

    fn note(self) -> Option<(Uuid, PeerNote)> {
        Some(match self {
            Wire::Awareness { board, update } => {
                (board, PeerNote::Awareness(STANDARD.decode(update).ok()?))
            }
            Wire::Changed { board } => (board, PeerNote::Changed),
            Wire::Query { board } => (board, PeerNote::Query),
        })
    }
}

/// This node's way to the other nodes' open whiteboards.
pub struct RedisPeers {
    node_id: Uuid,
    outbox: mpsc::Sender<String>,
    dropped: AtomicU64,
}

impl Peers for RedisPeers {
    fn tell(&self, board: Uuid, note: PeerNote) {
        let envelope = Envelope {
            from: self.node_id,
            message: Wire::new(board, note),
        };
        let Ok(text) = serde_json::to_string(&envelope) else {
            return;
        };
        if self.outbox.try_send(text).is_err()
            && self
                .dropped
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(1000)
        {
            tracing::warn!("whiteboard notes for the other nodes are being dropped");
        }
    }
}

/// Connects `boards` to the other nodes of the cluster (`None` on a node alone): starts the
/// publishing task and the follower, which live as long as `boards` does.
pub fn connect(
    cluster: &ClusterInfo,
    boards: &Arc<Boards>,
) -> Result<Option<Arc<RedisPeers>>, ClusterError> {
    let Some(url) = cluster.redis_url.as_deref() else {
        return Ok(None);
    };
    let client = redis::Client::open(url).map_err(protocol)?;
    let channel = format!("{}{CHANNEL}", cluster.redis_prefix);
    let (outbox, queued) = mpsc::channel(OUTBOX);
    tokio::spawn(publish(client.clone(), channel.clone(), queued));
    let (tx, mut rx) = mpsc::channel::<Wire>(OUTBOX);
    tokio::spawn(follow(
        client,
        channel,
        cluster.node_id,
        tx,
        Follow {
            what: "whiteboards",
            connected: None,
            wrap: std::convert::identity,
        },
    ));
    let weak = Arc::downgrade(boards);
    tokio::spawn(async move {
        while let Some(wire) = rx.recv().await {
            let Some(boards) = weak.upgrade() else {
                return;
            };
            if let Some((board, note)) = wire.note() {
                boards.from_peer(board, note);
            }
        }
    });
    Ok(Some(Arc::new(RedisPeers {
        node_id: cluster.node_id,
        outbox,
        dropped: AtomicU64::new(0),
    })))
}

/// Publishes the queued notes in order until every sender is gone.
async fn publish(client: redis::Client, channel: String, mut queued: mpsc::Receiver<String>) {
    let mut conn = match manager(&client) {
        Ok(conn) => conn,
        Err(err) => {
            tracing::error!(error = %err, "whiteboard notes cannot reach the other nodes");
            return;
        }
    };
    while let Some(text) = queued.recv().await {
        let sent = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(text)
            .query_async::<i64>(&mut conn)
            .await;
        if let Err(err) = sent {
            tracing::debug!(error = %unavailable(err), "a whiteboard note for the other nodes was lost");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_travel_unchanged() {
        let board = Uuid::now_v7();
        for note in [
            PeerNote::Awareness(vec![1, 0, 255, 7]),
            PeerNote::Changed,
            PeerNote::Query,
        ] {
            let text = serde_json::to_string(&Wire::new(board, note.clone())).unwrap();
            let back: Wire = serde_json::from_str(&text).unwrap();
            assert_eq!(back.note(), Some((board, note)));
        }
        let bad =
            r#"{"kind":"awareness","board":"00000000-0000-0000-0000-000000000000","update":"%%"}"#;
        assert_eq!(serde_json::from_str::<Wire>(bad).unwrap().note(), None);
    }
}
