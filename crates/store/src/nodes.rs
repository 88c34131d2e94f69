//! The node registry: which liveplan nodes run on this database (CONTRACT §9). Each node joins
//! at start, says it is alive every few seconds and leaves when it stops; a node whose last
//! heartbeat is older than the caller's `max_age` counts as gone. Ages are measured by the
//! database's clock where there is one (PostgreSQL's `now()`), so nodes on machines whose
//! clocks differ still agree.

use crate::Timestamp;
use uuid::Uuid;

/// One registered node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRow {
    pub id: Uuid,
    /// Whether the node runs with a Redis/Valkey bus (`--redis-url`).
    pub has_redis: bool,
    /// Where it listens, for people reading a refusal message.
    pub address: String,
    pub started_at: Timestamp,
    /// Set by the store on join and on every heartbeat; ignored when joining.
    pub heartbeat_at: Timestamp,
}

/// What [`crate::Store::join_nodes`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeJoin {
    /// Whether the node was registered (the caller's rule admitted it).
    pub admitted: bool,
    /// The other live nodes, as the rule saw them.
    pub others: Vec<NodeRow>,
}

/// The rule a joining node is admitted by, given the other live nodes.
pub type Admit = dyn for<'a> Fn(&'a [NodeRow]) -> bool + Sync;
