//! The Pusher Channels WebSocket dialect, protocol 7 at `GET /app/{key}` (CONTRACT §10):
//! unchanged `pusher-js` clients connect to it. Choices the contract leaves open are in the
//! "Pusher" section of `crates/server/TRANSPORTS.md`.
//!
//! - [`protocol`]: client frames and the server's frames (pure).
//! - [`session`]: one socket's rules: subscriptions, signatures, client events, pings (pure).
//! - [`node`]: what the node's sockets share: channels, presence members, caches, sign-ins.
//! - `socket`: the upgrade and the connection's loop.
//! - `canvas`: whiteboard connections as members of their board's presence channel.
//!
//! The dialect imports nothing of the app: the server hands it a [`PusherNode`] and routes
//! `/app/{key}` with it as the state ([`router`]). The node is also the HTTP API's
//! [`ChannelDirectory`].

mod canvas;
pub mod node;
pub mod protocol;
pub mod session;
mod socket;

use crate::auth::tokens::TokenKeys;
use crate::cluster::pusher_state::{Change, Elsewhere, PusherMessage, PusherShared};
use crate::live::LiveFeed;
use crate::pusher::activity::{ActivitySink, ChannelActivity};
use crate::pusher::app_log::AppChannelLog;
use crate::pusher::credentials::PusherCredentials;
use crate::pusher::directory::{ChannelDirectory, ChannelInfo, DirectoryError, Publication};
use async_trait::async_trait;
use bytes::Bytes;
use domain::Domain;
use node::{Channels, Mailbox};
use serde_json::Value;
use session::Member;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// What a Pusher socket reaches of its node.
pub struct PusherNode {
    pub credentials: PusherCredentials,
    pub domain: Domain,
    pub live: Arc<LiveFeed>,
    /// Reads the session cookie (or Bearer token) of an upgrade.
    pub tokens: Arc<TokenKeys>,
    pub log: Arc<dyn AppChannelLog>,
    pub channels: Channels,
    /// What the nodes share, with `--redis-url` (`None`: this node is alone).
    shared: Option<Arc<PusherShared>>,
    /// Held (shared) while a join or leave is recorded, and alone while a heartbeat snapshots
    /// the node's channels: a snapshot never overtakes a change recorded before it, nor the
    /// other way round.
    sync: tokio::sync::RwLock<()>,
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
        shared: Option<Arc<PusherShared>>,
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
            shared,
            sync: tokio::sync::RwLock::new(()),
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
            let frame = Bytes::from(protocol::event_frame(
                &stored.event,
                &stored.channel,
                &stored.data,
                stored.serial,
                &stream_id,
            ));
            let cache = is_cache_channel(&stored.channel);
            self.broadcast(&stored.channel, frame, exclude_socket, cache);
            serials.push((stored.channel, stored.serial));
        }
        Ok(serials)
    }

    pub fn record(&self, activity: ChannelActivity) {
        self.channels.activity().record(activity);
    }

    /// Hands `frame` to the channel's sockets on every node, except `except`; a cache
    /// channel keeps it (on every node).
    pub fn broadcast(&self, channel: &str, frame: Bytes, except: Option<&str>, cache: bool) {
        if cache {
            self.channels.cache(channel, frame.clone());
        }
        self.channels.broadcast(channel, frame.clone(), except);
        if let Some(shared) = &self.shared {
            shared.send(PusherMessage::Frame {
                channel: channel.to_owned(),
                frame: String::from_utf8_lossy(&frame).into_owned(),
                except: except.map(str::to_owned),
                cache,
            });
        }
    }

    /// Records a change with the other nodes; what they hold (nothing when this node is
    /// alone, or the shared state unreachable: then it decides alone).
    async fn tell_others(&self, change: Change<'_>) -> Elsewhere {
        match &self.shared {
            Some(shared) => shared.change(&change).await.unwrap_or_default(),
            None => Elsewhere::default(),
        }
    }

    /// Adds a socket to a channel. The channel's first socket anywhere makes it occupied, a
    /// member's first socket anywhere is announced to the channel's sockets on every node.
    pub async fn join(
        &self,
        channel: &str,
        socket_id: &Arc<str>,
        mailbox: Option<&Arc<Mailbox>>,
        member: Option<&Member>,
        cache: bool,
    ) -> Joined {
        let _sync = self.sync.read().await;
        let local = self.channels.join(channel, socket_id, mailbox, member);
        let mut members = local.members;
        if local.fresh {
            let info = member.map(|m| m.user_info.to_string());
            let elsewhere = self
                .tell_others(Change {
                    channel,
                    delta: 1,
                    member: member
                        .zip(info.as_deref())
                        .map(|(m, i)| (m.user_id.as_str(), i)),
                    list_members: member.is_some(),
                })
                .await;
            for (user, info) in elsewhere.members {
                members
                    .entry(user)
                    .or_insert_with(|| serde_json::from_str(&info).unwrap_or(Value::Null));
            }
            if local.first_socket && elsewhere.sockets == 0 {
                self.record(ChannelActivity::Occupied {
                    channel: channel.to_owned(),
                });
            }
            if let Some(member) = member
                && local.first_of_member
                && !elsewhere.member_held
            {
                self.record(ChannelActivity::MemberAdded {
                    channel: channel.to_owned(),
                    user_id: member.user_id.clone(),
                });
                let frame = protocol::member_added(channel, &member.user_id, &member.user_info);
                self.broadcast(channel, Bytes::from(frame), Some(socket_id), false);
            }
        }
        let presence = member.map(|_| node::presence_data(&members));
        let cached = if cache {
            let cached = self.channels.cached(channel);
            if cached.is_none() {
                self.record(ChannelActivity::CacheMiss {
                    channel: channel.to_owned(),
                });
            }
            cached
        } else {
            None
        };
        Joined { presence, cached }
    }

    /// Removes a socket from a channel: its member's last socket anywhere is announced, and
    /// the channel's last socket anywhere vacates it.
    pub async fn leave(&self, channel: &str, socket_id: &str) {
        let _sync = self.sync.read().await;
        let local = self.channels.leave(channel, socket_id);
        if !local.left {
            return;
        }
        let elsewhere = self
            .tell_others(Change {
                channel,
                delta: -1,
                member: local
                    .member
                    .as_ref()
                    .map(|(user, _)| (user.as_str(), "null")),
                list_members: false,
            })
            .await;
        if let Some((user_id, true)) = local.member
            && !elsewhere.member_held
        {
            self.member_gone(channel, user_id);
        }
        if local.last_socket && elsewhere.sockets == 0 {
            self.record(ChannelActivity::Vacated {
                channel: channel.to_owned(),
            });
        }
    }

    fn member_gone(&self, channel: &str, user_id: String) {
        let frame = protocol::member_removed(channel, &user_id);
        self.broadcast(channel, Bytes::from(frame), None, false);
        self.record(ChannelActivity::MemberRemoved {
            channel: channel.to_owned(),
            user_id,
        });
    }

    /// Starts following the other nodes (their frames and orders) and heartbeating this
    /// node's channels; nothing when the node is alone.
    pub fn start_cluster(self: &Arc<Self>) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        tokio::spawn(follow_others(Arc::downgrade(self), shared.feed()));
        tokio::spawn(heartbeats(Arc::downgrade(self), shared));
    }
}

/// What a socket that joined a channel is told.
pub struct Joined {
    /// `{ids, hash, count}` of a presence channel, with the members of every node.
    pub presence: Option<Value>,
    /// The cache channel's last event (`None`: a cache miss).
    pub cached: Option<Bytes>,
}

async fn follow_others(
    node: Weak<PusherNode>,
    mut feed: tokio::sync::mpsc::Receiver<PusherMessage>,
) {
    while let Some(message) = feed.recv().await {
        let Some(node) = node.upgrade() else {
            return;
        };
        match message {
            PusherMessage::Frame {
                channel,
                frame,
                except,
                cache,
            } => {
                let frame = Bytes::from(frame);
                if cache {
                    node.channels.cache(&channel, frame.clone());
                }
                node.channels.broadcast(&channel, frame, except.as_deref());
            }
            PusherMessage::Terminate { user_id } => node.channels.terminate(&user_id),
        }
    }
}

/// Republishes this node's channels every heartbeat (which heals a Redis that lost them) and
/// announces what reaping a dead node ended: its members' leaves, its channels' vacancy.
async fn heartbeats(node: Weak<PusherNode>, shared: Arc<PusherShared>) {
    let mut tick = tokio::time::interval(shared.timing.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(node) = node.upgrade() else {
            return;
        };
        let reaped = {
            let _sync = node.sync.write().await;
            let state = node.channels.snapshot();
            shared.heartbeat(&state).await
        };
        let reaped = match reaped {
            Ok(reaped) => reaped,
            Err(_) => continue,
        };
        for (channel, user_id) in reaped.removed {
            node.member_gone(&channel, user_id);
        }
        for channel in reaped.vacated {
            node.record(ChannelActivity::Vacated { channel });
        }
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
        if let Some(shared) = &self.shared
            && let Ok(everywhere) = shared.channels(prefix.unwrap_or("")).await
        {
            let mut infos: Vec<ChannelInfo> = everywhere
                .into_iter()
                .map(|(name, sockets, users)| ChannelInfo {
                    user_count: name.starts_with("presence-").then_some(users),
                    name,
                    subscription_count: sockets,
                })
                .collect();
            infos.sort_by(|a, b| a.name.cmp(&b.name));
            return Ok(infos);
        }
        let mut names = self.channels.occupied();
        names.retain(|name| prefix.is_none_or(|p| name.starts_with(p)));
        names.sort();
        let mut infos = Vec::with_capacity(names.len());
        for name in names {
            let (sockets, users) = self.channels.counts(&name);
            infos.push(ChannelInfo {
                name,
                subscription_count: sockets,
                user_count: users.map(|u| u.len() as u64),
            });
        }
        Ok(infos)
    }

    async fn channel(&self, name: &str) -> Result<ChannelInfo, DirectoryError> {
        let (sockets, users) = self.sockets_and_users(name).await;
        Ok(ChannelInfo {
            name: name.to_owned(),
            subscription_count: sockets,
            user_count: users.map(|u| u.len() as u64),
        })
    }

    async fn presence_users(&self, name: &str) -> Result<Vec<String>, DirectoryError> {
        let mut users = self.sockets_and_users(name).await.1.unwrap_or_default();
        users.sort();
        Ok(users)
    }

    async fn terminate_user_connections(&self, user_id: &str) -> Result<(), DirectoryError> {
        self.channels.terminate(user_id);
        if let Some(shared) = &self.shared {
            shared.send(PusherMessage::Terminate {
                user_id: user_id.to_owned(),
            });
        }
        Ok(())
    }
}

impl PusherNode {
    /// A channel's sockets and presence users on every node (this node's alone when it is
    /// alone or the shared state is unreachable).
    async fn sockets_and_users(&self, name: &str) -> (u64, Option<Vec<String>>) {
        if let Some(shared) = &self.shared
            && let Ok((sockets, users)) = shared.channel(name).await
        {
            return (sockets, name.starts_with("presence-").then_some(users));
        }
        self.channels.counts(name)
    }
}
