//! Authentication: password login, passwords, access tokens, the session cookie, CSRF, rate limits and
//! WebSocket tickets.

pub mod extract;
pub mod limits;
pub mod login;
pub mod password;
pub mod tickets;
pub mod tokens;

pub use extract::Authed;

/// The session cookie's name (CONTRACT §3).
pub const SESSION_COOKIE: &str = "liveplan_session";
