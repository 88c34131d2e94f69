//! [`ClusterState`] on Redis or Valkey (6+): the scripts of [`super::scripts`] over one
//! [`ConnectionManager`] (which reconnects on its own), and the control channel on a pub/sub
//! connection of its own that this module re-opens whenever it drops.

use super::scripts::Scripts;
use super::{
    ClusterError, ClusterState, ClusterTiming, ControlFeed, ControlItem, ControlMessage, NodeState,
};
use async_trait::async_trait;
use hub::{PresenceChange, PresenceEntry};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use uuid::Uuid;

/// The pub/sub channel of control messages, after the cluster's prefix.
const CONTROL_CHANNEL: &str = "control";
/// One request may take this long before the node gives up on it (and falls back, see
/// TRANSPORTS.md "Many nodes").
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest pause of the connection manager's reconnects.
const RECONNECT_MAX: Duration = Duration::from_secs(2);

pub struct RedisCluster {
    node_id: Uuid,
    /// The cluster's prefix of every key and channel ([`super::ClusterInfo::redis_prefix`]).
    prefix: String,
    client: redis::Client,
    /// Replaced by a fresh one after a failure: the manager reconnects by itself only after
    /// some errors (I/O ones), and a reconnect that failed otherwise (a handshake cut short, a
    /// timeout) would leave it failing for good.
    conn: Mutex<ConnectionManager>,
    scripts: Scripts,
    timing: ClusterTiming,
}

type Envelope = super::subscriber::Envelope<ControlMessage>;

/// A connection manager that connects on first use.
pub(super) fn manager(client: &redis::Client) -> Result<ConnectionManager, ClusterError> {
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(RECONNECT_MAX);
    ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(unavailable)
}

pub(super) fn unavailable(err: redis::RedisError) -> ClusterError {
    ClusterError::Unavailable(err.to_string())
}

pub(super) fn protocol(what: impl std::fmt::Display) -> ClusterError {
    ClusterError::Protocol(what.to_string())
}

impl RedisCluster {
    /// Prepares the connection without waiting for the server: a node starts while Redis is
    /// down and joins once it is back.
    pub fn new(
        url: &str,
        node_id: Uuid,
        prefix: &str,
        timing: ClusterTiming,
    ) -> Result<Self, ClusterError> {
        let client = redis::Client::open(url).map_err(protocol)?;
        let conn = Mutex::new(manager(&client)?);
        Ok(RedisCluster {
            node_id,
            prefix: prefix.to_string(),
            client,
            conn,
            scripts: Scripts::new(prefix),
            timing,
        })
    }

    fn control_channel(&self) -> String {
        format!("{}{CONTROL_CHANNEL}", self.prefix)
    }

    fn conn(&self) -> ConnectionManager {
        self.conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs a request on the connection; after a failure the next request starts on a new
    /// connection.
    async fn run<T, F>(
        &self,
        request: impl FnOnce(ConnectionManager) -> F,
    ) -> Result<T, ClusterError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        match request(self.conn()).await {
            Ok(answer) => Ok(answer),
            Err(err) => {
                if let Ok(fresh) = manager(&self.client) {
                    *self.conn.lock().unwrap_or_else(PoisonError::into_inner) = fresh;
                }
                Err(unavailable(err))
            }
        }
    }

    fn ttl_ms(&self) -> u64 {
        self.timing.node_ttl.as_millis() as u64
    }
}

#[async_trait]
impl ClusterState for RedisCluster {
    fn node_id(&self) -> Uuid {
        self.node_id
    }

    async fn presence_changed(
        &self,
        changes: &[PresenceChange],
    ) -> Result<Vec<bool>, ClusterError> {
        let rows: Vec<Value> = changes
            .iter()
            .map(|c| {
                json!([
                    c.project_id,
                    c.user_id,
                    c.display_name,
                    c.connections,
                    u8::from(c.joined)
                ])
            })
            .collect();
        let rows = Value::Array(rows).to_string();
        let answer: Vec<i64> = self
            .run(|mut conn| async move {
                self.scripts
                    .presence
                    .arg(self.node_id.to_string())
                    .arg(self.ttl_ms())
                    .arg(rows)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        if answer.len() != changes.len() {
            return Err(protocol("presence answer of the wrong length"));
        }
        Ok(answer.into_iter().map(|n| n == 1).collect())
    }

    async fn roster_elsewhere(&self, project_id: Uuid) -> Result<Vec<PresenceEntry>, ClusterError> {
        let answer: String = self
            .run(|mut conn| async move {
                self.scripts
                    .roster
                    .arg(project_id.to_string())
                    .arg(self.node_id.to_string())
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        let rows: Vec<(Uuid, String)> = serde_json::from_str(&answer).map_err(protocol)?;
        let mut by_user: HashMap<Uuid, PresenceEntry> = HashMap::new();
        for (user_id, entry) in rows {
            let (connections, name): (usize, String) =
                serde_json::from_str(&entry).map_err(protocol)?;
            by_user
                .entry(user_id)
                .or_insert_with(|| PresenceEntry {
                    user_id,
                    display_name: name,
                    connections: 0,
                })
                .connections += connections;
        }
        Ok(by_user.into_values().collect())
    }

    async fn heartbeat(&self, state: &NodeState) -> Result<Vec<PresenceChange>, ClusterError> {
        let presence: serde_json::Map<String, Value> = state
            .presence
            .iter()
            .map(|(project, entries)| {
                let rows = entries
                    .iter()
                    .map(|e| json!([e.user_id, e.display_name, e.connections]))
                    .collect();
                (project.to_string(), Value::Array(rows))
            })
            .collect();
        let sse: serde_json::Map<String, Value> = state
            .sse
            .iter()
            .map(|(user, n)| (user.to_string(), json!(n)))
            .collect();
        let state = json!({"p": presence, "s": sse}).to_string();
        let answer: String = self
            .run(|mut conn| async move {
                self.scripts
                    .heartbeat
                    .arg(self.node_id.to_string())
                    .arg(self.ttl_ms())
                    .arg(state)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        let leaves: Vec<(Uuid, Uuid, String)> = serde_json::from_str(&answer).map_err(protocol)?;
        Ok(leaves
            .into_iter()
            .map(|(project_id, user_id, display_name)| PresenceChange {
                project_id,
                user_id,
                display_name,
                connections: 0,
                joined: false,
            })
            .collect())
    }

    async fn acquire_sse(&self, user_id: Uuid, max: usize) -> Result<bool, ClusterError> {
        let taken: i64 = self
            .run(|mut conn| async move {
                self.scripts
                    .sse_acquire
                    .arg(user_id.to_string())
                    .arg(self.node_id.to_string())
                    .arg(max)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(taken == 1)
    }

    async fn release_sse(&self, user_id: Uuid) -> Result<(), ClusterError> {
        let _: i64 = self
            .run(|mut conn| async move {
                self.scripts
                    .sse_release
                    .arg(user_id.to_string())
                    .arg(self.node_id.to_string())
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(())
    }

    async fn hit(&self, key: &str, limit: u32, window: Duration) -> Result<bool, ClusterError> {
        let within: i64 = self
            .run(|mut conn| async move {
                self.scripts
                    .hit
                    .key(format!("{}rate:{key}", self.prefix))
                    .arg(limit)
                    .arg(window.as_millis() as u64)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(within == 1)
    }

    async fn broadcast(&self, message: &ControlMessage) -> Result<(), ClusterError> {
        let envelope = Envelope {
            from: self.node_id,
            message: message.clone(),
        };
        let text = serde_json::to_string(&envelope).map_err(protocol)?;
        let channel = self.control_channel();
        self.run(|mut conn| async move {
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(text)
                .query_async::<i64>(&mut conn)
                .await
        })
        .await?;
        Ok(())
    }

    fn control_feed(&self) -> ControlFeed {
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(super::subscriber::follow(
            self.client.clone(),
            self.control_channel(),
            self.node_id,
            tx,
            super::subscriber::Follow {
                what: "control",
                connected: Some(|| ControlItem::Connected),
                wrap: ControlItem::Message,
            },
        ));
        Box::pin(tokio_stream_from(rx))
    }
}

fn tokio_stream_from(
    rx: tokio::sync::mpsc::Receiver<ControlItem>,
) -> impl futures::Stream<Item = ControlItem> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) })
}
