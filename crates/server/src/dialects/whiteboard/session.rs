//! One whiteboard connection's state, without I/O: who it is, whether it may edit, its message
//! allowance, and when it needs a keepalive.

use crate::dialects::ws::MessageLimiter;
use proto::Role;
use std::time::{Duration, Instant};

/// Client messages per second on average (a pen stroke sends one per pointer move)…
pub const MESSAGES_PER_SECOND: u32 = 300;
/// …in bursts of up to this many.
pub const MESSAGE_BURST: u32 = 3_000;
/// y-websocket drops a connection that received nothing for 30 s; the server speaks up after
/// this long of silence.
pub const KEEPALIVE_AFTER: Duration = Duration::from_secs(12);
/// How often the connection looks at the session's expiry, the node's shutdown and its own
/// silence.
pub const CHECK_EVERY: Duration = Duration::from_secs(4);
/// How often it reads its session and role from the store besides, in case it missed an access
/// change: every eviction the hub makes wakes it at once (`crate::whiteboard::rechecks`), so this is only the
/// net under that (it was every 4 s, which at 2,000 connections cost more store reads than the
/// updates they relayed).
pub const ACCESS_EVERY: Duration = Duration::from_secs(30);

pub struct WhiteboardSession {
    pub can_edit: bool,
    limiter: MessageLimiter,
    last_sent: Instant,
}

impl WhiteboardSession {
    pub fn new(role: Role) -> WhiteboardSession {
        WhiteboardSession {
            can_edit: Self::edits(role),
            limiter: MessageLimiter::new(MESSAGES_PER_SECOND, MESSAGE_BURST),
            last_sent: Instant::now(),
        }
    }

    /// Members (role ≥ 100) edit; a Viewer only reads and sends awareness.
    pub fn edits(role: Role) -> bool {
        role >= Role::Member
    }

    pub fn set_role(&mut self, role: Role) {
        self.can_edit = Self::edits(role);
    }

    /// Counts one client message; `false` when over the allowance (close 1008).
    pub fn allows_message(&self) -> bool {
        self.limiter.allows()
    }

    pub fn sent(&mut self) {
        self.last_sent = Instant::now();
    }

    /// Whether the client has heard nothing for long enough to need a keepalive.
    pub fn needs_keepalive(&self) -> bool {
        self.last_sent.elapsed() >= KEEPALIVE_AFTER
    }
}

/// The keepalive: an awareness update naming no client (y-protocols applies it as a no-op).
pub const KEEPALIVE: &[u8] = &[1, 1, 0];
