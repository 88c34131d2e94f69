//! Who is on a board's canvas, as the Pusher channel `presence-whiteboard-{id}` shows it
//! (CONTRACT §11: the channel "shows who is on it"): every y-websocket connection is a member
//! there, beside the Pusher sockets subscribed to it. The Pusher dialect keeps the roster,
//! across nodes; a whiteboard connection only says when it arrives and when it leaves.

use async_trait::async_trait;
use store::UserRow;
use uuid::Uuid;

#[async_trait]
pub trait CanvasRoster: Send + Sync {
    /// Connection `conn` of this node opened `board` as `user`.
    async fn arrived(&self, board: Uuid, conn: u64, user: &UserRow);
    /// That connection ended, cleanly or not.
    async fn left(&self, board: Uuid, conn: u64);
}
