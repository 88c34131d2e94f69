//! The delivery core of liveplan: streams, subscribers, bounded queues, replay-then-live,
//! presence, eviction, and the [`Bus`] and [`LogReader`] seams.
//!
//! Transports (native WS, SSE, …) live in the server crate. Each one registers its [`Dialect`]
//! with the [`HubBuilder`], calls [`Hub::subscribe`] per connection and forwards what
//! [`Subscription::recv`] yields. Everything that makes delivery ordered, gap-free and bounded
//! lives here so every transport gets it the same way (DESIGN invariants 2–6).
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use liveplan_hub::{Delivery, Hub, InProcessBus, MemoryLog, NativeWs, SubscribeRequest};
//! use proto::{EventType, StreamKey};
//! use std::sync::Arc;
//!
//! let log = Arc::new(MemoryLog::new());
//! let bus = Arc::new(InProcessBus::default());
//! let mut builder = Hub::builder(log.clone(), bus.clone());
//! let ws = builder.dialect(NativeWs);
//! let hub = builder.start().await?;
//!
//! let project = StreamKey::Project(uuid::Uuid::now_v7());
//! let mut req = SubscribeRequest::new(project, ws, uuid::Uuid::now_v7());
//! req.since = Some(0); // replay everything the log holds, then go live
//! let mut sub = hub.subscribe(req).await?;
//!
//! // The write path: commit (here: append to the log), then publish.
//! let committed = log.append(liveplan_hub::testing::event(project, EventType::TaskCreated));
//! hub.publish(committed).await?;
//!
//! let Delivery::Frame(frame) = sub.recv().await else { unreachable!() };
//! assert!(frame.starts_with(br#"{"protocol_version":1,"event_type":"task_created""#));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! - [`log`]: what the hub needs from the event log, and an in-memory log.
//! - [`bus`]: how committed events reach the hubs; an in-process bus.
//! - [`dialect`]: encoders; the native WS and SSE envelopes and the PUNT type names.

pub mod bus;
pub mod dialect;
mod hub;
pub mod log;
mod presence;
mod shared;
pub mod stats;
mod subscriber;
mod subscription;
pub mod testing;
mod watch;

pub use bus::{Bus, BusError, BusFeed, BusMessage, InProcessBus};
pub use dialect::{Dialect, DialectId, NativeWs, Pusher, Sse, punt_type};
pub use hub::{EvictScope, Holder, Hub, HubBuilder, HubError};
pub use log::{LogError, LogReader, MemoryLog};
pub use presence::{PresenceEntry, presence_event};
pub use shared::{HubConfig, WallClock};
pub use stats::{DialectCounts, HubStats};
pub use subscriber::{
    CloseReason, Delivery, DirectOutcome, DirectWrite, EventFilter, QueueLimits, QueueStats,
    SubscribeRequest,
};
pub use subscription::Subscription;
pub use watch::{EventWatcher, NoWatcher, NodePresence, PresenceChange, PresenceRelay};

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Every critical section in this crate leaves its data consistent at each step, so a panic
/// elsewhere while holding the lock does not make the data unusable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
