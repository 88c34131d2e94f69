//! The whiteboards' Yjs documents (CONTRACT §11): each board keeps its accepted updates in
//! order, and its named snapshots.
//!
//! What a backend guarantees:
//! - **Order.** [`crate::Queries::append_whiteboard_update`] gives each update the next `seq`
//!   of its board, from 1, gap-free and in commit order whatever the number of writers and
//!   nodes (the board's counter row is held until the transaction ends, as a stream's is). So a
//!   reader that has applied everything through `seq` N and reads the updates after N misses
//!   nothing another node stored.
//! - **Compaction.** [`crate::Queries::compact_whiteboard`] replaces the board's updates
//!   through a seq by one row at that seq holding one state (the caller's merge of them) in one
//!   transaction: a reader sees either the updates or the state, never neither. Seqs go on from
//!   where they were. A reader that stopped inside the compacted range reads the state next,
//!   which holds what it had (applying a Yjs update twice changes nothing).
//! - **Lifetime.** A board's updates and snapshots go with its whiteboard record.

use crate::Timestamp;
use uuid::Uuid;

/// One stored update (or, after a compaction, the state standing for every update through
/// `seq`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhiteboardUpdateRow {
    pub board_id: Uuid,
    pub seq: i64,
    pub update: Vec<u8>,
    pub at: Timestamp,
}

/// A named version of a board: its whole state (a Yjs update from the empty document).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhiteboardSnapshotRow {
    pub id: Uuid,
    pub board_id: Uuid,
    pub name: String,
    pub state: Vec<u8>,
    pub created_at: Timestamp,
}

/// A snapshot as listed: everything but the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhiteboardSnapshotInfo {
    pub id: Uuid,
    pub board_id: Uuid,
    pub name: String,
    pub created_at: Timestamp,
}

impl WhiteboardSnapshotRow {
    pub fn info(&self) -> WhiteboardSnapshotInfo {
        WhiteboardSnapshotInfo {
            id: self.id,
            board_id: self.board_id,
            name: self.name.clone(),
            created_at: self.created_at,
        }
    }
}
