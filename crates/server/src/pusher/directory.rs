//! What the HTTP API (`/apps/{app_id}/…`) and the webhooks ask of the cluster's channels. The
//! socket side (`dialects::pusher`) answers: it knows which sockets are on which channel on
//! every node.

use async_trait::async_trait;

/// One occupied channel as the HTTP API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    pub name: String,
    /// Sockets subscribed on every node.
    pub subscription_count: u64,
    /// Distinct members of a presence channel; `None` for other channels.
    pub user_count: Option<u64>,
}

/// One event the HTTP API publishes to app channels (never to liveplan's own: the caller has
/// refused those with 403 before).
#[derive(Debug, Clone, Copy)]
pub struct Publication<'a> {
    pub channels: &'a [String],
    pub event: &'a str,
    /// The event's data as the publisher sent it (a string; Pusher never parses it).
    pub data: &'a str,
    /// `socket_id`: this socket does not receive the event.
    pub exclude_socket: Option<&'a str>,
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The state nodes share (Redis) or the app channels' log cannot be reached now.
    #[error("channel state is unavailable")]
    Unavailable,
}

#[async_trait]
pub trait ChannelDirectory: Send + Sync + 'static {
    /// Appends the event to each channel's log (one serial per channel), then delivers it to
    /// the channels' sockets on every node. Returns `(channel, serial)` in `channels` order.
    async fn publish(
        &self,
        publication: Publication<'_>,
    ) -> Result<Vec<(String, i64)>, DirectoryError>;

    /// Occupied channels on every node, optionally only those whose name starts with `prefix`.
    async fn occupied_channels(
        &self,
        prefix: Option<&str>,
    ) -> Result<Vec<ChannelInfo>, DirectoryError>;

    /// One channel (a `subscription_count` of 0 means unoccupied).
    async fn channel(&self, name: &str) -> Result<ChannelInfo, DirectoryError>;

    /// The user ids of a presence channel's members, on every node.
    async fn presence_users(&self, name: &str) -> Result<Vec<String>, DirectoryError>;

    /// Closes every socket signed in as `user_id` (`pusher:signin`), on every node.
    async fn terminate_user_connections(&self, user_id: &str) -> Result<(), DirectoryError>;
}
