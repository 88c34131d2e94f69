//! The Pusher Channels WebSocket dialect, protocol 7 at `GET /app/{key}` (CONTRACT §10):
//! unchanged `pusher-js` clients connect to it. Choices the contract leaves open are in the
//! "Pusher" section of `crates/server/TRANSPORTS.md`.
//!
//! - [`protocol`]: client frames and the server's frames (pure).
//! - [`session`]: one socket's rules: subscriptions, signatures, client events, pings (pure).
//! - [`node`]: what the node's sockets share: channels, presence members, caches, sign-ins.
//! - `socket`: the upgrade and the connection's loop.
//!
//! The dialect imports nothing of the app: the server hands it a [`PusherNode`] and routes
//! `/app/{key}` with it as the state ([`router`]). The node is also the HTTP API's
//! [`ChannelDirectory`].

pub mod node;
pub mod protocol;
pub mod session;
mod socket;

use crate::auth::tokens::TokenKeys;
use crate::live::LiveFeed;
use crate::pusher::activity::{ActivitySink, ChannelActivity};
use crate::pusher::app_log::AppChannelLog;
use crate::pusher::credentials::PusherCredentials;
use crate::pusher::directory::{ChannelDirectory, ChannelInfo, DirectoryError, Publication};
use async_trait::async_trait;
use domain::Domain;
use node::Channels;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a Pusher socket reaches of its node.
pub struct PusherNode {
    pub credentials: PusherCredentials,
    pub domain: Domain,
    pub live: Arc<LiveFeed>,
    /// Reads the session cookie (or Bearer token) of an upgrade.
    pub tokens: Arc<TokenKeys>,
    pub log: Arc<dyn AppChannelLog>,
    pub channels: Channels,
    /// The first half of this node's socket ids: from the node id's random bits, so two nodes
    /// hand out different ids.
    node_tag: u32,
    next_socket: AtomicU64,
}

/// `GET /app/{key}`, served with the node as its state.
pub fn router<S: Clone + Send + Sync + 'static>(node: Arc<PusherNode>) -> axum::Router<S> {
    axum::Router::new()
        .route("/app/{key}", axum::routing::any(socket::upgrade))
        .with_state(node)
}

impl PusherNode {
    pub fn new(
        credentials: PusherCredentials,
        domain: Domain,
        live: Arc<LiveFeed>,
        tokens: Arc<TokenKeys>,
        log: Arc<dyn AppChannelLog>,
        activity: Arc<dyn ActivitySink>,
    ) -> PusherNode {
        let bytes = live.node_id.as_bytes();
        let node_tag =
            u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) % 1_000_000_000;
        PusherNode {
            credentials,
            domain,
            live,
            tokens,
            log,
            channels: Channels::new(activity),
            node_tag,
            next_socket: AtomicU64::new(0),
        }
    }

    /// A socket id (`\d+\.\d+`) unique on this node and, by its node tag, across nodes.
    pub fn new_socket_id(&self) -> String {
        let n = self.next_socket.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{}.{n}", self.node_tag)
    }

    /// Publishes an event of an app channel: logged (for its serial and resume), then handed
    /// to the channel's sockets here.
    pub async fn publish_app_event(
        &self,
        channels: &[String],
        event: &str,
        data: &str,
        exclude_socket: Option<&str>,
    ) -> Result<Vec<(String, i64)>, DirectoryError> {
        let stored = self
            .log
            .append(channels, event, data, chrono::Utc::now())
            .await
            .map_err(|_| DirectoryError::Unavailable)?;
        let mut serials = Vec::with_capacity(stored.len());
        for stored in stored {
            let stream_id = self
                .log
                .position(&stored.channel)
                .await
                .map_err(|_| DirectoryError::Unavailable)?
                .map(|p| p.stream_id)
                .unwrap_or_default();
            let frame: Arc<str> = protocol::event_frame(
                &stored.event,
                &stored.channel,
                &stored.data,
                stored.serial,
                &stream_id,
            )
            .into();
            if is_cache_channel(&stored.channel) {
                self.channels.cache(&stored.channel, frame.clone());
            }
            self.channels
                .broadcast(&stored.channel, frame, exclude_socket);
            serials.push((stored.channel, stored.serial));
        }
        Ok(serials)
    }

    pub fn record(&self, activity: ChannelActivity) {
        self.channels.activity().record(activity);
    }
}

fn is_cache_channel(name: &str) -> bool {
    ["cache-", "private-cache-", "presence-cache-"]
        .iter()
        .any(|p| name.starts_with(p))
}

#[async_trait]
impl ChannelDirectory for PusherNode {
    async fn publish(
        &self,
        publication: Publication<'_>,
    ) -> Result<Vec<(String, i64)>, DirectoryError> {
        self.publish_app_event(
            publication.channels,
            publication.event,
            publication.data,
            publication.exclude_socket,
        )
        .await
    }

    async fn occupied_channels(
        &self,
        prefix: Option<&str>,
    ) -> Result<Vec<ChannelInfo>, DirectoryError> {
        let mut names = self.channels.occupied();
        names.retain(|name| prefix.is_none_or(|p| name.starts_with(p)));
        names.sort();
        let mut infos = Vec::with_capacity(names.len());
        for name in names {
            infos.push(self.channel(&name).await?);
        }
        Ok(infos)
    }

    async fn channel(&self, name: &str) -> Result<ChannelInfo, DirectoryError> {
        let (sockets, users) = self.channels.counts(name);
        Ok(ChannelInfo {
            name: name.to_owned(),
            subscription_count: sockets,
            user_count: users.map(|u| u.len() as u64),
        })
    }

    async fn presence_users(&self, name: &str) -> Result<Vec<String>, DirectoryError> {
        let mut users = self.channels.counts(name).1.unwrap_or_default();
        users.sort();
        Ok(users)
    }

    async fn terminate_user_connections(&self, user_id: &str) -> Result<(), DirectoryError> {
        self.channels.terminate(user_id);
        Ok(())
    }
}
