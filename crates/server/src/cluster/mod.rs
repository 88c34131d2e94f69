//! Several nodes as one liveplan (CONTRACT §9): which bus a node's hub runs on, the names the
//! nodes of one cluster share in Redis/Valkey, and the node registry in the database
//! ([`registry`]); and what the nodes share besides the bus ([`state`]: presence, per-user
//! limits, control messages; on Redis in [`redis_state`]), and what the Pusher sockets of the
//! nodes share ([`pusher_state`]: occupancy, presence members, frames for other nodes), and
//! what open whiteboards tell each other ([`whiteboard_relay`]: awareness, "updates stored").
//!
//! A cluster is every node on one database; with `--redis-url` they also share one Redis
//! server. Its id is made by the first node that starts on the database and kept there
//! (setting [`CLUSTER_ID_SETTING`]), and every key and channel of the cluster in Redis starts
//! with `liveplan:<cluster id>:` ([`ClusterInfo::redis_prefix`]). So two clusters (two
//! databases) can share one Redis server without hearing each other, and nodes agree on the
//! names without being told.

pub mod pusher_state;
pub mod redis_state;
pub mod registry;
mod scripts;
pub mod state;
mod subscriber;
pub mod whiteboard_relay;

pub use state::{
    Cluster, ClusterError, ClusterState, ClusterTiming, ControlFeed, ControlItem, ControlMessage,
    NodeState,
};

use crate::app::{Config, StartError};
use bus_redis::{RedisBus, RedisBusConfig};
use hub::{Bus, InProcessBus};
use std::sync::Arc;
use store::{Store, StoreError};
use uuid::Uuid;

/// The setting holding the cluster's id.
pub const CLUSTER_ID_SETTING: &str = "cluster_id";

/// Who this node is in its cluster, and where the cluster's shared state lives.
#[derive(Debug, Clone)]
pub struct ClusterInfo {
    /// This node, new at every start.
    pub node_id: Uuid,
    /// The cluster: every node on this database.
    pub cluster_id: Uuid,
    /// `liveplan:<cluster id>:`, the start of every Redis key and channel of the cluster.
    pub redis_prefix: String,
    /// `--redis-url`; `None` on a node that is alone.
    pub redis_url: Option<String>,
}

impl ClusterInfo {
    /// The pub/sub channel of the bus.
    pub fn bus_channel(&self) -> String {
        format!("{}events", self.redis_prefix)
    }
}

/// The cluster's id, made on the first start on this database.
pub async fn cluster_id(store: &dyn Store) -> Result<Uuid, StoreError> {
    let mut tx = store.write().await?;
    // Two nodes starting at once on a new database must agree: the first to hold the system
    // stream makes the id, the other reads it.
    tx.lock_stream(proto::StreamKey::System).await?;
    if let Some(existing) = tx.get_setting(CLUSTER_ID_SETTING).await?
        && let Ok(id) = Uuid::parse_str(&existing)
    {
        return Ok(id);
    }
    let id = Uuid::now_v7();
    tx.put_setting(CLUSTER_ID_SETTING, &id.to_string()).await?;
    tx.commit().await?;
    Ok(id)
}

/// What this node is in its cluster.
pub async fn info(
    config: &Config,
    store: &dyn Store,
    node_id: Uuid,
) -> Result<ClusterInfo, StartError> {
    let cluster_id = cluster_id(store).await?;
    Ok(ClusterInfo {
        node_id,
        cluster_id,
        redis_prefix: format!("liveplan:{}:", cluster_id.simple()),
        redis_url: config.redis_url.clone(),
    })
}

/// The bus of the node's hub: Redis when `--redis-url` names one, else in-process. A Redis that
/// cannot be reached at start is an error: a node told to join a cluster must not run alone.
pub async fn bus(config: &Config, cluster: &ClusterInfo) -> Result<Arc<dyn Bus>, StartError> {
    let Some(url) = &cluster.redis_url else {
        return Ok(Arc::new(InProcessBus::new(config.live.bus_capacity)));
    };
    let mut bus_config = RedisBusConfig::new(url, cluster.bus_channel(), cluster.node_id);
    bus_config.local_capacity = config.live.bus_capacity;
    let bus = RedisBus::connect(bus_config)
        .await
        .map_err(|e| StartError::Setup(format!("--redis-url: {e}")))?;
    Ok(Arc::new(bus))
}
