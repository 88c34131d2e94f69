//! The y-websocket protocol of the whiteboard sockets: its messages are
//! `crate::whiteboard::wire` (the document actor speaks them too); the handshake's close codes
//! are here.

pub use crate::whiteboard::wire::*;

/// Close codes (CONTRACT §11; y-websocket does not reconnect after a 44xx).
pub const CLOSE_NO_TICKET: u16 = 4401;
pub const CLOSE_FORBIDDEN: u16 = 4403;
pub const CLOSE_NOT_FOUND: u16 = 4404;
