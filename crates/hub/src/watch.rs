//! The hooks through which a node acts on what its hub learns, besides delivering it: the
//! server evicts connections that lost access ([`EventWatcher`]) and decides, with the other
//! nodes, whether a user's presence changed for the whole cluster ([`PresenceRelay`]).

use async_trait::async_trait;
use proto::{Event, EventType};
use std::sync::Arc;
use uuid::Uuid;

use crate::hub::EvictScope;
use crate::presence::presence_event;

/// Sees committed events before any subscriber of this node is offered them.
///
/// Called synchronously on the hub's tasks: it must not block (evicting is fine).
pub trait EventWatcher: Send + Sync + 'static {
    /// Every event the bus brings, in the bus's order, before it is routed to its stream.
    fn on_bus_event(&self, event: &Event);
    /// An event read from the log to fill a gap in a stream (the bus may have lost it), just
    /// before it is offered to the stream's subscribers. It may have been seen on the bus too.
    fn on_filled_event(&self, event: &Event);
    /// The bus may have lost events (a lagging receiver, a reconnect).
    fn on_bus_lagged(&self);
    /// The hub was just told to close the subscriptions in `scope` (whether or not any
    /// matched, whatever the dialect), after it closed them: connections that are not the
    /// hub's (whiteboards) learn here that their access may have changed.
    fn on_evicted(&self, _scope: EvictScope) {}
}

/// A watcher that does nothing (a hub without access rules, e.g. in the hub's own tests).
pub struct NoWatcher;

impl EventWatcher for NoWatcher {
    fn on_bus_event(&self, _: &Event) {}
    fn on_filled_event(&self, _: &Event) {}
    fn on_bus_lagged(&self) {}
}

/// One change of a user's connection count to a project on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceChange {
    pub project_id: Uuid,
    pub user_id: Uuid,
    pub display_name: String,
    /// The user's connections to the project on this node after the change.
    pub connections: usize,
    /// Whether a connection opened (else one closed).
    pub joined: bool,
}

impl PresenceChange {
    /// The user's first connection on this node opened, or their last one here closed.
    pub fn is_node_transition(&self) -> bool {
        (self.joined && self.connections == 1) || (!self.joined && self.connections == 0)
    }

    /// The `presence_join` / `presence_leave` event this change announces.
    pub fn event(&self) -> Event {
        let event_type = if self.joined {
            EventType::PresenceJoin
        } else {
            EventType::PresenceLeave
        };
        presence_event(
            event_type,
            self.project_id,
            self.user_id,
            &self.display_name,
        )
    }
}

/// Decides which of this node's presence changes are announced (published on the bus).
#[async_trait]
pub trait PresenceRelay: Send + Sync + 'static {
    /// The changes in the order they happened; returns the events to publish, in order.
    async fn relay(&self, changes: Vec<PresenceChange>) -> Vec<Event>;
}

/// A node alone: a user's first connection here joins, their last one here leaves.
pub struct NodePresence;

#[async_trait]
impl PresenceRelay for NodePresence {
    async fn relay(&self, changes: Vec<PresenceChange>) -> Vec<Event> {
        changes
            .iter()
            .filter(|c| c.is_node_transition())
            .map(PresenceChange::event)
            .collect()
    }
}

/// Shared handle kinds, so the builder can hold them.
pub(crate) type Watcher = Arc<dyn EventWatcher>;
pub(crate) type Relay = Arc<dyn PresenceRelay>;
