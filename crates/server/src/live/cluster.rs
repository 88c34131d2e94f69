//! The node's side of the cluster ([`crate::cluster`]): presence decided with the other nodes,
//! the heartbeat that republishes this node's state and announces a dead node's leaves, the
//! control messages of the other nodes, and the heal task.

use super::LiveFeed;
use super::access::heal;
use crate::cluster::{Cluster, ControlFeed, ControlItem, ControlMessage, NodeState};
use async_trait::async_trait;
use futures::StreamExt;
use hub::{CloseReason, EvictScope, PresenceChange, PresenceRelay};
use proto::Event;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// Presence across nodes: a change is announced when it changed the cluster's roster (the
/// user's first connection anywhere, their last one anywhere). While the cluster state is
/// unreachable the node decides alone, as a node without a cluster does.
pub struct ClusterPresence {
    pub cluster: Arc<Cluster>,
}

#[async_trait]
impl PresenceRelay for ClusterPresence {
    async fn relay(&self, changes: Vec<PresenceChange>) -> Vec<Event> {
        let _sync = self.cluster.sync.lock().await;
        let decided = self
            .cluster
            .ask("presence", self.cluster.state().presence_changed(&changes))
            .await;
        match decided {
            Some(flags) => changes
                .iter()
                .zip(flags)
                .filter(|(_, changed)| *changed)
                .map(|(change, _)| change.event())
                .collect(),
            None => changes
                .iter()
                .filter(|c| c.is_node_transition())
                .map(PresenceChange::event)
                .collect(),
        }
    }
}

/// The longest the first heartbeat may hold up the start.
const FIRST_HEARTBEAT: Duration = Duration::from_secs(2);

/// Registers the node with one heartbeat, then spawns its cluster tasks.
pub(super) async fn start(feed: &Arc<LiveFeed>, cluster: &Arc<Cluster>) {
    let _ = tokio::time::timeout(FIRST_HEARTBEAT, beat(feed, cluster)).await;
    tokio::spawn(heartbeats(Arc::downgrade(feed), cluster.clone()));
    tokio::spawn(follow_control(
        Arc::downgrade(feed),
        cluster.state().control_feed(),
    ));
}

/// Spawns the heal task (every node has one; see [`super::access`]).
pub(super) fn spawn_healer(feed: Weak<LiveFeed>, wanted: Arc<Notify>) {
    tokio::spawn(async move {
        loop {
            wanted.notified().await;
            let Some(feed) = feed.upgrade() else {
                return;
            };
            if let Err(err) = heal(&feed).await {
                tracing::warn!(error = %err, "could not re-check open connections; will retry");
                tokio::time::sleep(Duration::from_secs(1)).await;
                feed.heal_soon();
            }
        }
    });
}

async fn beat(feed: &LiveFeed, cluster: &Cluster) {
    let leaves = {
        let _sync = cluster.sync.lock().await;
        let state = NodeState {
            presence: feed.hub().presence_all(),
            sse: feed.sse_counts().clone(),
        };
        cluster
            .probe("heartbeat", cluster.state().heartbeat(&state))
            .await
    };
    for leave in leaves.unwrap_or_default() {
        if let Err(err) = feed.hub().publish(leave.event()).await {
            tracing::warn!(error = %err, "could not announce a dead node's leave");
        }
    }
}

async fn heartbeats(feed: Weak<LiveFeed>, cluster: Arc<Cluster>) {
    let mut tick = tokio::time::interval(cluster.timing.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(feed) = feed.upgrade() else {
            return;
        };
        beat(&feed, &cluster).await;
    }
}

async fn follow_control(feed: Weak<LiveFeed>, mut control: ControlFeed) {
    while let Some(item) = control.next().await {
        let Some(feed) = feed.upgrade() else {
            return;
        };
        match item {
            // Whatever was said while the channel was down is lost: look again.
            ControlItem::Connected => feed.heal_soon(),
            ControlItem::Message(ControlMessage::SessionEnded { session_id }) => {
                feed.hub()
                    .evict(EvictScope::Session(session_id), CloseReason::LoggedOut);
            }
            ControlItem::Message(ControlMessage::UserSessionsEnded { user_id }) => {
                feed.hub()
                    .evict(EvictScope::User(user_id), CloseReason::LoggedOut);
            }
            ControlItem::Message(ControlMessage::BryntumEcho {
                project_id,
                revision,
            }) => {
                feed.bryntum_echo_here(project_id, &revision);
            }
        }
    }
}
