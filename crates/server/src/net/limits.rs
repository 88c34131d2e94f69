//! How long a client may take to send a request, and how many connections may be open.
//! The defaults are a production server's; tests shorten them.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct NetLimits {
    /// From accept (or from the end of the previous response on a keep-alive connection) to
    /// the end of a request head. A silent connection, a slow head (slowloris) and an idle
    /// keep-alive connection are all closed when it runs out (hyper's `header_read_timeout`;
    /// as Go's `IdleTimeout` defaults to its read timeout). Not applied once a WebSocket is
    /// upgraded or an SSE stream is streaming.
    pub head_timeout: Duration,
    /// A request body must arrive within `body_timeout` plus one second per `body_min_rate`
    /// bytes received: a minimum average rate after a grace period, so a large upload on a
    /// slow but steady link passes and a trickle does not. Past it: 408 and close.
    pub body_timeout: Duration,
    pub body_min_rate: u64,
    /// Open connections (HTTP, WebSocket, SSE) at most. One more is answered 503
    /// `unavailable` (`retry-after: 1`) and closed at once.
    pub max_connections: usize,
}

impl Default for NetLimits {
    fn default() -> Self {
        Self {
            head_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            body_min_rate: 64 * 1024,
            max_connections: 50_000,
        }
    }
}
