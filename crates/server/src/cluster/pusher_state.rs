//! What the Pusher sockets of the nodes share on Redis (CONTRACT §10 across nodes): each
//! node's socket count per channel and its presence members, the frames one node hands the
//! others' sockets (app-channel events, client events, presence changes) and the
//! `terminate_connections` orders. The socket side (`dialects::pusher`) decides with it.
//!
//! As [`super::state`] does for liveplan's presence, each node keeps the truth about its own
//! sockets: it records every change at once (a Lua script, atomic, which also says what the
//! other nodes hold: so "first socket anywhere" and "last member anywhere" are exact), and its
//! whole state again on every heartbeat (which heals a Redis that lost everything). A node
//! that stops heartbeating is reaped by the first survivor after the node TTL; the script
//! returns the channels and members that leaves, which the survivor announces.
//!
//! Keys, after the cluster's prefix: `pusher:nodes` (sorted set: node → expiry in ms),
//! `pusher:sockets:{channel}` (hash: node → sockets), `pusher:members:{channel}` (hash:
//! `{node}:{user}` → `"{connections} {user_info JSON}"`), `pusher:node:{node}` (set of the
//! node's channels). Frames and orders travel on the pub/sub channel `pusher`.

use super::redis_state::{manager, protocol, unavailable};
use super::{ClusterError, ClusterTiming};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;

const HEAD: &str = r#"
local nodes = 'liveplan:pusher:nodes'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function held(members, user, except)
  for _, node in ipairs(redis.call('ZRANGE', nodes, 0, -1)) do
    if node ~= except and redis.call('HEXISTS', members, node .. ':' .. user) == 1 then
      return true
    end
  end
  return false
end
local function split(f)
  local sep = string.find(f, ':', 1, true)
  if not sep then return nil, nil end
  return string.sub(f, 1, sep - 1), string.sub(f, sep + 1)
end
"#;

/// ARGV: node, ttl ms, channel, socket delta, user ('' for none), member delta, user_info
/// JSON, whether to list the members elsewhere (1|0). Returns `{sockets elsewhere, user held
/// elsewhere 0|1, user, info, user, info, …}` (the other nodes' members when asked).
const CHANGE: &str = r#"
local me, channel = ARGV[1], ARGV[3]
redis.call('ZADD', nodes, now + tonumber(ARGV[2]), me)
local sockets = 'liveplan:pusher:sockets:' .. channel
local members = 'liveplan:pusher:members:' .. channel
local n = redis.call('HINCRBY', sockets, me, tonumber(ARGV[4]))
if n <= 0 then
  redis.call('HDEL', sockets, me)
  redis.call('SREM', 'liveplan:pusher:node:' .. me, channel)
else
  redis.call('SADD', 'liveplan:pusher:node:' .. me, channel)
end
local elsewhere = 0
local flat = redis.call('HGETALL', sockets)
for i = 1, #flat, 2 do
  if flat[i] ~= me and redis.call('ZSCORE', nodes, flat[i]) then
    elsewhere = elsewhere + tonumber(flat[i + 1])
  end
end
local user = ARGV[5]
local out = {elsewhere, 0}
if user ~= '' then
  local field = me .. ':' .. user
  local count = tonumber(ARGV[6])
  local info = ARGV[7]
  local current = redis.call('HGET', members, field)
  if current then
    local sp = string.find(current, ' ', 1, true)
    count = count + tonumber(string.sub(current, 1, sp - 1))
    if tonumber(ARGV[6]) < 0 then info = string.sub(current, sp + 1) end
  end
  if count > 0 then
    redis.call('HSET', members, field, count .. ' ' .. info)
  else
    redis.call('HDEL', members, field)
  end
  if held(members, user, me) then out[2] = 1 end
end
if ARGV[8] == '1' then
  local all = redis.call('HGETALL', members)
  for i = 1, #all, 2 do
    local node, u = split(all[i])
    if node and node ~= me and redis.call('ZSCORE', nodes, node) then
      local v = all[i + 1]
      table.insert(out, u)
      table.insert(out, string.sub(v, string.find(v, ' ', 1, true) + 1))
    end
  end
end
return out
"#;

/// ARGV: node, ttl ms, JSON `{channel: [sockets, [[user, connections, info JSON], …]], …}`.
/// Replaces the node's state, then reaps expired nodes. Returns `{vacated channels, {channel,
/// user, channel, user, …}}`: what the reaped nodes' leaving ends in the cluster.
const HEARTBEAT: &str = r#"
local me = ARGV[1]
redis.call('ZADD', nodes, now + tonumber(ARGV[2]), me)
local state = cjson.decode(ARGV[3])
local mine = 'liveplan:pusher:node:' .. me
local chans = {}
for _, c in ipairs(redis.call('SMEMBERS', mine)) do chans[c] = true end
for c, _ in pairs(state) do chans[c] = true end
local prefix = me .. ':'
for c, _ in pairs(chans) do
  local sockets = 'liveplan:pusher:sockets:' .. c
  local members = 'liveplan:pusher:members:' .. c
  local want = state[c]
  local wanted = {}
  if want then
    redis.call('HSET', sockets, me, want[1])
    redis.call('SADD', mine, c)
    for _, m in ipairs(want[2]) do wanted[m[1]] = m end
  else
    redis.call('HDEL', sockets, me)
    redis.call('SREM', mine, c)
  end
  for _, f in ipairs(redis.call('HKEYS', members)) do
    if string.sub(f, 1, #prefix) == prefix and not wanted[string.sub(f, #prefix + 1)] then
      redis.call('HDEL', members, f)
    end
  end
  for u, m in pairs(wanted) do
    redis.call('HSET', members, prefix .. u, m[2] .. ' ' .. m[3])
  end
end
local vacated, removed = {}, {}
for _, dead in ipairs(redis.call('ZRANGEBYSCORE', nodes, '-inf', '(' .. now)) do
  if dead ~= me then
    redis.call('ZREM', nodes, dead)
    local theirs = 'liveplan:pusher:node:' .. dead
    local dprefix = dead .. ':'
    for _, c in ipairs(redis.call('SMEMBERS', theirs)) do
      local sockets = 'liveplan:pusher:sockets:' .. c
      local members = 'liveplan:pusher:members:' .. c
      redis.call('HDEL', sockets, dead)
      for _, f in ipairs(redis.call('HKEYS', members)) do
        if string.sub(f, 1, #dprefix) == dprefix then
          local user = string.sub(f, #dprefix + 1)
          redis.call('HDEL', members, f)
          if not held(members, user, dead) then
            table.insert(removed, c)
            table.insert(removed, user)
          end
        end
      end
      if redis.call('HLEN', sockets) == 0 then table.insert(vacated, c) end
    end
    redis.call('DEL', theirs)
  end
end
return {vacated, removed}
"#;

/// ARGV: channel. Returns `{sockets, user, user, …}` over the present nodes.
const CHANNEL: &str = r#"
local sockets = 'liveplan:pusher:sockets:' .. ARGV[1]
local members = 'liveplan:pusher:members:' .. ARGV[1]
local total = 0
local flat = redis.call('HGETALL', sockets)
for i = 1, #flat, 2 do
  if redis.call('ZSCORE', nodes, flat[i]) then total = total + tonumber(flat[i + 1]) end
end
local out, seen = {total}, {}
for _, f in ipairs(redis.call('HKEYS', members)) do
  local node, user = split(f)
  if node and not seen[user] and redis.call('ZSCORE', nodes, node) then
    seen[user] = true
    table.insert(out, user)
  end
end
return out
"#;

/// ARGV: name prefix. Returns `{channel, sockets, users, …}` of every occupied channel.
const CHANNELS: &str = r#"
local names = {}
for _, node in ipairs(redis.call('ZRANGE', nodes, 0, -1)) do
  for _, c in ipairs(redis.call('SMEMBERS', 'liveplan:pusher:node:' .. node)) do
    if string.sub(c, 1, #ARGV[1]) == ARGV[1] then names[c] = true end
  end
end
local out = {}
for c, _ in pairs(names) do
  local total = 0
  local flat = redis.call('HGETALL', 'liveplan:pusher:sockets:' .. c)
  for i = 1, #flat, 2 do
    if redis.call('ZSCORE', nodes, flat[i]) then total = total + tonumber(flat[i + 1]) end
  end
  local users, seen = 0, {}
  for _, f in ipairs(redis.call('HKEYS', 'liveplan:pusher:members:' .. c)) do
    local node, user = split(f)
    if node and not seen[user] and redis.call('ZSCORE', nodes, node) then
      seen[user] = true
      users = users + 1
    end
  end
  if total > 0 then
    table.insert(out, c)
    table.insert(out, total)
    table.insert(out, users)
  end
end
return out
"#;

/// The pub/sub channel of frames and orders, after the cluster's prefix.
const FEED_CHANNEL: &str = "pusher";
/// Frames waiting to be published; past it they are dropped (with a warning) rather than the
/// node holding an unbounded backlog while Redis is slow.
const OUTBOX: usize = 16_384;

/// What one node tells the others' Pusher sockets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PusherMessage {
    /// Hand `frame` to the channel's sockets, except `except`; a cache channel keeps it.
    Frame {
        channel: String,
        frame: String,
        #[serde(default)]
        except: Option<String>,
        #[serde(default)]
        cache: bool,
    },
    /// Close every socket signed in as this user (`terminate_connections`).
    Terminate { user_id: String },
}

type Envelope = super::subscriber::Envelope<PusherMessage>;

/// One socket joining (+1) or leaving (-1) a channel on this node.
pub struct Change<'a> {
    pub channel: &'a str,
    pub delta: i64,
    /// The presence member the socket is, with its `user_info` as JSON.
    pub member: Option<(&'a str, &'a str)>,
    /// Whether to answer the other nodes' members (a presence join).
    pub list_members: bool,
}

/// What the other nodes hold of a channel, as a change saw it.
#[derive(Debug, Default)]
pub struct Elsewhere {
    pub sockets: u64,
    /// The changed member is present on another node.
    pub member_held: bool,
    /// `(user id, user_info JSON)` of the other nodes' members (when asked).
    pub members: Vec<(String, String)>,
}

/// A node's own channels: sockets and presence members (`user → (connections, info JSON)`).
pub type NodeChannels = HashMap<String, (u64, HashMap<String, (u64, String)>)>;

/// What reaping dead nodes ended in the cluster.
#[derive(Debug, Default)]
pub struct Reaped {
    pub vacated: Vec<String>,
    /// `(channel, user)`: members no live node holds any more.
    pub removed: Vec<(String, String)>,
}

/// This node's handle on the shared Pusher state.
pub struct PusherShared {
    node_id: Uuid,
    prefix: String,
    client: redis::Client,
    conn: Mutex<ConnectionManager>,
    change: redis::Script,
    heartbeat: redis::Script,
    channel: redis::Script,
    channels: redis::Script,
    pub timing: ClusterTiming,
    reachable: AtomicBool,
    outbox: mpsc::Sender<String>,
}

impl PusherShared {
    /// Prepares the connection (without waiting for the server) and starts the task that
    /// publishes [`PusherShared::send`]'s messages in order.
    pub fn new(
        url: &str,
        node_id: Uuid,
        prefix: &str,
        timing: ClusterTiming,
    ) -> Result<std::sync::Arc<PusherShared>, ClusterError> {
        let client = redis::Client::open(url).map_err(protocol)?;
        let conn = Mutex::new(manager(&client)?);
        let script = |body: &str| {
            redis::Script::new(
                &format!("{HEAD}{body}").replace("'liveplan:", &format!("'{prefix}")),
            )
        };
        let (outbox, queued) = mpsc::channel(OUTBOX);
        let shared = std::sync::Arc::new(PusherShared {
            node_id,
            prefix: prefix.to_owned(),
            client,
            conn,
            change: script(CHANGE),
            heartbeat: script(HEARTBEAT),
            channel: script(CHANNEL),
            channels: script(CHANNELS),
            timing,
            reachable: AtomicBool::new(true),
            outbox,
        });
        tokio::spawn(publish_queued(
            std::sync::Arc::downgrade(&shared),
            queued,
            shared.feed_channel(),
        ));
        Ok(shared)
    }

    /// The shared state of the node's cluster, with `--redis-url` (`None`: the node is
    /// alone). It heartbeats three times per ping interval, as the cluster's presence does,
    /// and gives a silent node one ping interval (three heartbeats, one more than presence:
    /// a node given up while alive would announce its members' leaves, wrongly).
    pub fn for_cluster(
        cluster: &super::ClusterInfo,
        ping_interval: Duration,
    ) -> Option<std::sync::Arc<PusherShared>> {
        let url = cluster.redis_url.as_deref()?;
        let heartbeat = ClusterTiming::within(ping_interval).heartbeat;
        let timing = ClusterTiming {
            heartbeat,
            node_ttl: heartbeat * 3,
        };
        match PusherShared::new(url, cluster.node_id, &cluster.redis_prefix, timing) {
            Ok(shared) => Some(shared),
            Err(err) => {
                tracing::error!(error = %err, "the Pusher sockets cannot share state: this node serves them alone");
                None
            }
        }
    }

    fn feed_channel(&self) -> String {
        format!("{}{FEED_CHANNEL}", self.prefix)
    }

    fn conn(&self) -> ConnectionManager {
        self.conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs a request; after a failure the next one starts on a new connection, and while
    /// the state is unreachable requests other than heartbeats fail at once.
    async fn run<T, F>(
        &self,
        heartbeat: bool,
        request: impl FnOnce(ConnectionManager) -> F,
    ) -> Result<T, ClusterError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if !heartbeat && !self.reachable.load(Ordering::Acquire) {
            return Err(ClusterError::Unavailable("not reachable lately".into()));
        }
        match request(self.conn()).await {
            Ok(answer) => {
                if !self.reachable.swap(true, Ordering::AcqRel) {
                    tracing::info!("the Pusher cluster state is reachable again");
                }
                Ok(answer)
            }
            Err(err) => {
                if let Ok(fresh) = manager(&self.client) {
                    *self.conn.lock().unwrap_or_else(PoisonError::into_inner) = fresh;
                }
                if self.reachable.swap(false, Ordering::AcqRel) {
                    tracing::warn!(error = %err, "the Pusher cluster state is unreachable: counts and presence fall back to this node's own until it is back");
                }
                Err(unavailable(err))
            }
        }
    }

    fn ttl_ms(&self) -> u64 {
        self.timing.node_ttl.as_millis() as u64
    }

    /// Records one socket's join or leave; what the other nodes hold.
    pub async fn change(&self, change: &Change<'_>) -> Result<Elsewhere, ClusterError> {
        let (user, info) = change.member.unwrap_or(("", "null"));
        let answer: Vec<redis::Value> = self
            .run(false, |mut conn| async move {
                self.change
                    .arg(self.node_id.to_string())
                    .arg(self.ttl_ms())
                    .arg(change.channel)
                    .arg(change.delta)
                    .arg(user)
                    .arg(change.delta.signum())
                    .arg(info)
                    .arg(if change.list_members { "1" } else { "0" })
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        let mut items = answer.into_iter();
        let sockets = items.next().map(integer).transpose()?.unwrap_or(0);
        let held = items.next().map(integer).transpose()?.unwrap_or(0);
        let mut members = Vec::new();
        while let (Some(user), Some(info)) = (items.next(), items.next()) {
            members.push((text(user)?, text(info)?));
        }
        Ok(Elsewhere {
            sockets: sockets.max(0) as u64,
            member_held: held == 1,
            members,
        })
    }

    /// Keeps this node alive, replaces its published state and reaps dead nodes.
    pub async fn heartbeat(&self, state: &NodeChannels) -> Result<Reaped, ClusterError> {
        let state: serde_json::Map<String, serde_json::Value> = state
            .iter()
            .map(|(channel, (sockets, members))| {
                let members: Vec<_> = members
                    .iter()
                    .map(|(user, (n, info))| json!([user, n, info]))
                    .collect();
                (channel.clone(), json!([sockets, members]))
            })
            .collect();
        let state = serde_json::Value::Object(state).to_string();
        let (vacated, removed): (Vec<String>, Vec<String>) = self
            .run(true, |mut conn| async move {
                self.heartbeat
                    .arg(self.node_id.to_string())
                    .arg(self.ttl_ms())
                    .arg(state)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        let removed = removed
            .chunks_exact(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect();
        Ok(Reaped { vacated, removed })
    }

    /// A channel's sockets and distinct presence users on every live node.
    pub async fn channel(&self, name: &str) -> Result<(u64, Vec<String>), ClusterError> {
        let answer: Vec<redis::Value> = self
            .run(false, |mut conn| async move {
                self.channel.arg(name).invoke_async(&mut conn).await
            })
            .await?;
        let mut items = answer.into_iter();
        let sockets = items.next().map(integer).transpose()?.unwrap_or(0);
        let users = items.map(text).collect::<Result<_, _>>()?;
        Ok((sockets.max(0) as u64, users))
    }

    /// Every occupied channel whose name starts with `prefix`: `(name, sockets, users)`.
    pub async fn channels(&self, prefix: &str) -> Result<Vec<(String, u64, u64)>, ClusterError> {
        let answer: Vec<redis::Value> = self
            .run(false, |mut conn| async move {
                self.channels.arg(prefix).invoke_async(&mut conn).await
            })
            .await?;
        let mut out = Vec::new();
        let mut items = answer.into_iter();
        while let (Some(name), Some(sockets), Some(users)) =
            (items.next(), items.next(), items.next())
        {
            out.push((
                text(name)?,
                integer(sockets)?.max(0) as u64,
                integer(users)?.max(0) as u64,
            ));
        }
        Ok(out)
    }

    /// Queues a message for the other nodes (in order; never blocks).
    pub fn send(&self, message: PusherMessage) {
        let envelope = Envelope {
            from: self.node_id,
            message,
        };
        let Ok(text) = serde_json::to_string(&envelope) else {
            return;
        };
        if self.outbox.try_send(text).is_err() {
            tracing::warn!("the Pusher outbox is full: a frame for the other nodes was dropped");
        }
    }

    /// The other nodes' messages, until the receiver is dropped: a task holds the
    /// subscription open and reconnects after a growing pause when it drops.
    pub fn feed(&self) -> mpsc::Receiver<PusherMessage> {
        let (tx, rx) = mpsc::channel(OUTBOX);
        tokio::spawn(super::subscriber::follow(
            self.client.clone(),
            self.feed_channel(),
            self.node_id,
            tx,
            super::subscriber::Follow {
                what: "Pusher",
                connected: None,
                wrap: std::convert::identity,
            },
        ));
        rx
    }
}

fn integer(value: redis::Value) -> Result<i64, ClusterError> {
    redis::from_redis_value(value).map_err(protocol)
}

fn text(value: redis::Value) -> Result<String, ClusterError> {
    redis::from_redis_value(value).map_err(protocol)
}

async fn publish_queued(
    shared: std::sync::Weak<PusherShared>,
    mut queued: mpsc::Receiver<String>,
    channel: String,
) {
    while let Some(text) = queued.recv().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let channel = channel.clone();
        let sent = shared
            .run(true, |mut conn| async move {
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(text)
                    .query_async::<i64>(&mut conn)
                    .await
            })
            .await;
        if let Err(err) = sent {
            tracing::debug!(error = %err, "a Pusher frame for the other nodes was lost");
        }
    }
}
