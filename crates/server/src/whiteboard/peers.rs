//! The other nodes of a cluster as an open document sees them: what it tells them and what they
//! tell it ([`PeerNote`]). Awareness states (cursors, names) are never stored, so they travel
//! between nodes only this way; updates are in the store, and only the hint that there are new
//! ones travels, so a peer reads them now instead of at its next poll. Notes may be lost
//! (clients renew their awareness every 15 s; the poll reads what a lost hint announced).
//!
//! The transport is the cluster's (`cluster::whiteboard_relay`); a node alone has none.

use std::time::Duration;
use uuid::Uuid;

/// The connection id under which an open document keeps the states other nodes' clients
/// brought (never one of its own connections: those count up from 1).
pub const PEERS: u64 = u64::MAX;
/// How many awareness clients other nodes may bring to one board on this node.
pub const MAX_PEER_CLIENTS: usize = 1024;
/// Other nodes' states not renewed for this long are removed (y-protocols' `outdatedTimeout`:
/// a live client renews every 15 s, so only a state whose node died or lost its way to this
/// one ages past it).
pub const PEER_STATE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often an open document looks for such states.
pub const PEER_STATE_SWEEP: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerNote {
    /// A y-protocols awareness update (encoded) of the sending node's clients.
    Awareness(Vec<u8>),
    /// The sending node stored updates of the board: read the store.
    Changed,
    /// The sending node opened the board: send it your clients' states.
    Query,
}

/// Where an open document sends its notes for the other nodes.
pub trait Peers: Send + Sync {
    /// Never blocks; may drop the note when the way out is full.
    fn tell(&self, board: Uuid, note: PeerNote);
}
