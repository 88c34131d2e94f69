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

/// A directory known only once it exists: the webhook sender needs the directory (for its
/// grace checks) and the socket side, which is the directory, needs the webhook sender. It
/// holds the directory weakly, so the two do not keep each other alive; until it is set, or
/// once the directory is gone, it answers [`DirectoryError::Unavailable`].
#[derive(Default)]
pub struct LateDirectory {
    directory: std::sync::OnceLock<std::sync::Weak<dyn ChannelDirectory>>,
}

impl LateDirectory {
    /// Sets the directory; a second call changes nothing.
    pub fn set(&self, directory: std::sync::Weak<dyn ChannelDirectory>) {
        let _ = self.directory.set(directory);
    }

    fn get(&self) -> Result<std::sync::Arc<dyn ChannelDirectory>, DirectoryError> {
        self.directory
            .get()
            .and_then(std::sync::Weak::upgrade)
            .ok_or(DirectoryError::Unavailable)
    }
}

#[async_trait]
impl ChannelDirectory for LateDirectory {
    async fn publish(
        &self,
        publication: Publication<'_>,
    ) -> Result<Vec<(String, i64)>, DirectoryError> {
        self.get()?.publish(publication).await
    }

    async fn occupied_channels(
        &self,
        prefix: Option<&str>,
    ) -> Result<Vec<ChannelInfo>, DirectoryError> {
        self.get()?.occupied_channels(prefix).await
    }

    async fn channel(&self, name: &str) -> Result<ChannelInfo, DirectoryError> {
        self.get()?.channel(name).await
    }

    async fn presence_users(&self, name: &str) -> Result<Vec<String>, DirectoryError> {
        self.get()?.presence_users(name).await
    }

    async fn terminate_user_connections(&self, user_id: &str) -> Result<(), DirectoryError> {
        self.get()?.terminate_user_connections(user_id).await
    }
}
