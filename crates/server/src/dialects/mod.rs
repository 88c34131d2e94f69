//! The wire dialects clients speak to live delivery. Each dialect is a hub encoder (one
//! encoding per event, shared by its sockets) and a socket that serves one client.
//!
//! - [`bryntum`]: the Bryntum Gantt WebSocket protocol (CONTRACT §8).

pub mod bryntum;
