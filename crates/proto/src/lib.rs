//! Wire and domain types shared by every liveplan crate. No I/O lives here.
//!
//! Layout:
//! - [`role`]: the five numeric project roles and what each may do.
//! - [`event`]: the frozen catalog of canonical event names, streams and the event record.
//! - [`dotted`]: the dotted event names webhooks use (`task.created`).
//! - [`error`]: the public error codes and the HTTP status each maps to.
//! - [`ids`]: UUID v7 ids.

pub mod dotted;
pub mod error;
pub mod event;
pub mod ids;
pub mod role;

pub use error::{ApiError, ErrorCode};
pub use event::{Event, EventType, StreamKey};
pub use role::Role;
