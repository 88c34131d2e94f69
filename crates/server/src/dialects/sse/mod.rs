//! The Server-Sent Events dialect (CONTRACT §7).
//!
//! - [`protocol`]: the resume position and the keepalive comment (pure).
//! - [`session`]: one stream's state (no I/O): what it carries and what each delivery writes.
//! - [`socket`]: the handlers, admission and the response body.

pub mod protocol;
pub mod session;
pub mod socket;
