//! The whiteboards' y-websocket connections as members of their board's
//! `presence-whiteboard-{id}` channel: joined without a mailbox (they take no Pusher frames),
//! so Pusher clients see them arrive and leave, the HTTP API lists them, and webhooks report
//! them, on every node, as any member.

use super::PusherNode;
use super::session::Member;
use crate::pusher::channel::canvas;
use crate::pusher::member::UserInfo;
use crate::whiteboard::roster::CanvasRoster;
use async_trait::async_trait;
use serde_json::Value;
use std::sync::Arc;
use store::UserRow;
use uuid::Uuid;

/// The roster's key for a whiteboard connection: never a Pusher socket id (`\d+\.\d+`).
fn canvas_socket(conn: u64) -> Arc<str> {
    format!("whiteboard.{conn}").into()
}

#[async_trait]
impl CanvasRoster for PusherNode {
    async fn arrived(&self, board: Uuid, conn: u64, user: &UserRow) {
        let member = Member {
            user_id: user.id.to_string(),
            user_info: serde_json::to_value(UserInfo::of(user, true)).unwrap_or(Value::Null),
        };
        self.join(
            &canvas(board),
            &canvas_socket(conn),
            None,
            Some(&member),
            false,
        )
        .await;
    }

    async fn left(&self, board: Uuid, conn: u64) {
        self.leave(&canvas(board), &canvas_socket(conn)).await;
    }
}
