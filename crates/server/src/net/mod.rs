//! Sockets, not protocols: the listener, the WebSocket handshake, direct writes from the hub's
//! fan-out, the SSE front and the read gate. Nothing here knows a dialect's frames.
//!
//! Imports run one way: [`io`] is a leaf; [`peer`] names the client end; [`direct`] writes
//! through `io`; [`sse_front`] and [`ws_upgrade`] build on `direct`; [`listener`] hands each
//! connection to the SSE front or to hyper.

pub(crate) mod body_deadline;
pub(crate) mod direct;
pub(crate) mod fragment_limit;
pub(crate) mod io;
pub mod limits;
pub mod listener;
pub mod peer;
pub(crate) mod read_gate;
pub(crate) mod serve;
pub(crate) mod sse_front;
pub(crate) mod ws_upgrade;

pub use peer::Peer;
