//! What the nodes of one liveplan share besides the database and the event bus: presence,
//! per-user limits and control messages (CONTRACT §9). Transports never see how: they talk to
//! [`ClusterState`], injected like the bus. A node alone has none ([`crate::live::LiveFeed`]
//! then keeps everything in memory, as it always did); with `--redis-url` it is
//! [`super::redis_state::RedisCluster`].
//!
//! Each node keeps the truth about its own connections and publishes it: every presence change
//! at once, and its whole state again on every heartbeat. A node that stops heartbeating is
//! dead for the others after [`ClusterTiming::node_ttl`]; the first survivor to notice removes
//! its state and announces the leaves it causes. A lost server (restart) is healed by the next
//! heartbeat of every node.

use async_trait::async_trait;
use futures::stream::BoxStream;
use hub::{PresenceChange, PresenceEntry};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("the cluster state is unreachable: {0}")]
    Unavailable(String),
    #[error("the cluster state answered something unexpected: {0}")]
    Protocol(String),
}

/// What other nodes must do about something that is not a committed event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ControlMessage {
    /// A session ended (logout): its connections close.
    SessionEnded { session_id: Uuid },
    /// Every session of a user ended (password change): all their connections close.
    UserSessionsEnded { user_id: Uuid },
    /// The echo of a Bryntum revision that wrote nothing liveplan keeps (view state only), for
    /// the project's Bryntum sockets: the revision of a `project_change`.
    BryntumEcho {
        project_id: Uuid,
        revision: serde_json::Value,
    },
}

/// One item of the control feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlItem {
    Message(ControlMessage),
    /// The feed (re)connected: messages sent while it was down are lost, so the node must
    /// re-check its connections against the store.
    Connected,
}

pub type ControlFeed = BoxStream<'static, ControlItem>;

/// A node's whole state, republished on every heartbeat.
#[derive(Debug, Clone, Default)]
pub struct NodeState {
    pub presence: HashMap<Uuid, Vec<PresenceEntry>>,
    /// Open SSE streams per user on this node.
    pub sse: HashMap<Uuid, usize>,
}

/// How often a node heartbeats and how long the others wait for it.
#[derive(Debug, Clone, Copy)]
pub struct ClusterTiming {
    pub heartbeat: Duration,
    pub node_ttl: Duration,
}

impl ClusterTiming {
    /// A dead node's connections leave the roster within one `interval` (the ping interval,
    /// CONTRACT §9): it is given up two heartbeats after its last, and survivors look every
    /// heartbeat.
    pub fn within(interval: Duration) -> ClusterTiming {
        let heartbeat = (interval / 3).max(Duration::from_millis(100));
        ClusterTiming {
            heartbeat,
            node_ttl: heartbeat * 2,
        }
    }
}

/// The state the nodes of a cluster share.
#[async_trait]
pub trait ClusterState: Send + Sync + 'static {
    /// This node's id.
    fn node_id(&self) -> Uuid;

    /// Records this node's presence changes, in order; for each, whether it changed the
    /// cluster's roster: a join when no other live node had the user on the project, a leave
    /// when none has them any more.
    async fn presence_changed(&self, changes: &[PresenceChange])
    -> Result<Vec<bool>, ClusterError>;

    /// The roster of the other live nodes for a project (this node's own is local).
    async fn roster_elsewhere(&self, project_id: Uuid) -> Result<Vec<PresenceEntry>, ClusterError>;

    /// Keeps this node alive, replaces its published state with `state`, and gives up nodes
    /// that stopped heartbeating; returns the leaves that causes (users no live node has).
    async fn heartbeat(&self, state: &NodeState) -> Result<Vec<PresenceChange>, ClusterError>;

    /// Takes one of the user's SSE slots if fewer than `max` are open on all live nodes.
    async fn acquire_sse(&self, user_id: Uuid, max: usize) -> Result<bool, ClusterError>;

    /// Gives one back.
    async fn release_sse(&self, user_id: Uuid) -> Result<(), ClusterError>;

    /// Counts one hit on `key` in the current window of `window`; whether it is within `limit`.
    async fn hit(&self, key: &str, limit: u32, window: Duration) -> Result<bool, ClusterError>;

    /// Sends a control message to every other node.
    async fn broadcast(&self, message: &ControlMessage) -> Result<(), ClusterError>;

    /// The control messages of the other nodes, with [`ControlItem::Connected`] after every
    /// (re)connect. Runs until dropped.
    fn control_feed(&self) -> ControlFeed;
}

/// A node's handle on the [`ClusterState`]: it remembers whether the state answered lately, so
/// that while it is unreachable requests fall back at once instead of each waiting for a
/// timeout, and it serializes this node's presence updates with its heartbeats.
pub struct Cluster {
    state: Arc<dyn ClusterState>,
    pub timing: ClusterTiming,
    reachable: AtomicBool,
    /// Held while a presence batch or a heartbeat is in flight: a heartbeat's snapshot must
    /// not overtake a batch taken before it, nor the other way round.
    pub(crate) sync: tokio::sync::Mutex<()>,
}

impl Cluster {
    pub fn new(state: Arc<dyn ClusterState>, timing: ClusterTiming) -> Arc<Cluster> {
        Arc::new(Cluster {
            state,
            timing,
            reachable: AtomicBool::new(true),
            sync: tokio::sync::Mutex::new(()),
        })
    }

    pub fn state(&self) -> &dyn ClusterState {
        &*self.state
    }

    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::Acquire)
    }

    /// Runs `request` unless the state is known to be unreachable; `None` when it is or when
    /// the request fails (the caller then falls back to what the node knows alone).
    pub async fn ask<T>(
        &self,
        what: &str,
        request: impl Future<Output = Result<T, ClusterError>>,
    ) -> Option<T> {
        if !self.is_reachable() {
            return None;
        }
        self.probe(what, request).await
    }

    /// Runs `request` whatever the last outcome was (heartbeats: they find out when the state
    /// is back).
    pub async fn probe<T>(
        &self,
        what: &str,
        request: impl Future<Output = Result<T, ClusterError>>,
    ) -> Option<T> {
        match request.await {
            Ok(answer) => {
                if !self.reachable.swap(true, Ordering::AcqRel) {
                    tracing::info!("the cluster state is reachable again");
                }
                Some(answer)
            }
            Err(err) => {
                if self.reachable.swap(false, Ordering::AcqRel) {
                    tracing::warn!(error = %err, during = what, "the cluster state is unreachable: presence and limits fall back to this node's own until it is back");
                }
                None
            }
        }
    }
}
