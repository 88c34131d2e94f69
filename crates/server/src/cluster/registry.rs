//! The node registry (CONTRACT §9): every node registers in the database at start, says it is
//! alive every [`Config::node_heartbeat`] and leaves when it stops; a node not heard of for
//! [`Config::node_expiry`] counts as gone. It enforces one rule: nodes share a database only
//! when every one of them has `--redis-url`. A node without Redis beside another node would
//! never hear of the other's commits (its clients would miss them until they reconnect), so it
//! refuses to start, and says why.
//!
//! A node that was killed leaves its row behind until the row expires, so a starting node that
//! finds an incompatible node waits up to one expiry (plus a heartbeat) before refusing: a
//! restart after a crash is only delayed, a real second node is refused.

use crate::app::{Config, StartError};
use std::sync::Arc;
use std::time::Duration;
use store::{NodeRow, Store};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// The longest pause between two attempts to join while an incompatible node may be expiring.
const JOIN_RETRY: Duration = Duration::from_millis(500);

/// This node's place in the registry; [`Registration::leave`] gives it up.
pub struct Registration {
    store: Arc<dyn Store>,
    node_id: Uuid,
    heartbeat: JoinHandle<()>,
}

/// Whether a node (with Redis or not) may run beside `others`.
pub fn admits(has_redis: bool, others: &[NodeRow]) -> bool {
    others.is_empty() || (has_redis && others.iter().all(|other| other.has_redis))
}

/// Why a node may not run beside `others`, for the operator.
pub fn refusal(has_redis: bool, others: &[NodeRow]) -> String {
    let describe = |node: &NodeRow| {
        format!(
            "node {} at {} (started {}, {})",
            node.id,
            node.address,
            store::format_ts(node.started_at),
            if node.has_redis {
                "with --redis-url"
            } else {
                "without --redis-url"
            }
        )
    };
    let blocking: Vec<String> = others
        .iter()
        .filter(|other| !has_redis || !other.has_redis)
        .map(describe)
        .collect();
    let why = if has_redis {
        "it runs without --redis-url, so it would not hear of this node's changes"
    } else {
        "this node has no --redis-url, so the nodes would not hear of each other's changes"
    };
    format!(
        "another liveplan node runs on this database: {}; {why}. Several nodes on one database must all be started with the same --redis-url (LIVEPLAN_REDIS_URL); or stop the other node",
        blocking.join(", ")
    )
}

/// Registers this node, waiting up to one expiry for an incompatible node to go (see the
/// module), and starts its heartbeat.
pub async fn join(
    store: Arc<dyn Store>,
    config: &Config,
    node_id: Uuid,
    address: String,
) -> Result<Registration, StartError> {
    let has_redis = config.redis_url.is_some();
    let node = NodeRow {
        id: node_id,
        has_redis,
        address,
        started_at: store::now(),
        heartbeat_at: store::now(),
    };
    let expiry = config.node_expiry;
    let deadline = tokio::time::Instant::now() + expiry + config.node_heartbeat;
    let mut warned = false;
    loop {
        let joined = store
            .join_nodes(&node, expiry, &move |others| admits(has_redis, others))
            .await?;
        if joined.admitted {
            break;
        }
        let why = refusal(has_redis, &joined.others);
        if tokio::time::Instant::now() >= deadline {
            return Err(StartError::Refused(why));
        }
        if !warned {
            tracing::warn!(
                "{why}. Waiting up to {}s in case it is a node that stopped without leaving",
                (expiry + config.node_heartbeat).as_secs()
            );
            warned = true;
        }
        tokio::time::sleep(JOIN_RETRY.min(config.node_heartbeat)).await;
    }
    tracing::info!(%node_id, has_redis, "joined the node registry");
    let heartbeat = tokio::spawn(beat(store.clone(), node, config.node_heartbeat, expiry));
    Ok(Registration {
        store,
        node_id,
        heartbeat,
    })
}

impl Registration {
    /// Leaves the registry (a clean stop): the next node need not wait for this one to expire.
    pub async fn leave(self) {
        self.heartbeat.abort();
        if let Err(err) = self.store.leave_nodes(self.node_id).await {
            tracing::warn!(error = %err, "could not leave the node registry; the entry expires by itself");
        }
    }
}

async fn beat(store: Arc<dyn Store>, node: NodeRow, every: Duration, expiry: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        match store.heartbeat_node(node.id).await {
            Ok(true) => {}
            Ok(false) => {
                // Counted as gone (the database was out of reach, or the node stalled, for a
                // whole expiry): register again under the same rule.
                let has_redis = node.has_redis;
                match store
                    .join_nodes(&node, expiry, &move |others| admits(has_redis, others))
                    .await
                {
                    Ok(joined) if joined.admitted => {
                        tracing::warn!(
                            "this node had expired from the node registry; registered again"
                        );
                    }
                    Ok(joined) => tracing::error!(
                        "this node expired from the node registry and cannot register again: {}",
                        refusal(has_redis, &joined.others)
                    ),
                    Err(err) => tracing::warn!(error = %err, "node registry heartbeat failed"),
                }
            }
            Err(err) => tracing::warn!(error = %err, "node registry heartbeat failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(has_redis: bool) -> NodeRow {
        NodeRow {
            id: Uuid::now_v7(),
            has_redis,
            address: "127.0.0.1:8080".into(),
            started_at: store::now(),
            heartbeat_at: store::now(),
        }
    }

    #[test]
    fn nodes_share_a_database_only_all_with_redis() {
        assert!(admits(false, &[]));
        assert!(admits(true, &[]));
        assert!(admits(true, &[node(true), node(true)]));
        assert!(!admits(false, &[node(true)]));
        assert!(!admits(false, &[node(false)]));
        assert!(!admits(true, &[node(true), node(false)]));
    }

    #[test]
    fn a_refusal_names_the_other_node_and_the_flag() {
        let other = node(true);
        let message = refusal(false, std::slice::from_ref(&other));
        assert!(message.contains(&other.id.to_string()), "{message}");
        assert!(message.contains("--redis-url"), "{message}");
        let message = refusal(true, &[node(true), node(false)]);
        assert!(message.contains("without --redis-url"), "{message}");
        assert!(!message.contains("with --redis-url ("), "{message}");
    }
}
