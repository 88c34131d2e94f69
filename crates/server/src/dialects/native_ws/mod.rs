//! The native WebSocket dialect (CONTRACT §6).
//!
//! - [`protocol`]: client frames, the server's answers, `since`, close texts (pure).
//! - [`session`]: one client's state machine (no I/O).
//! - [`socket`]: the upgrade, admission and the connection's loop.

pub mod protocol;
pub mod session;
pub mod socket;
