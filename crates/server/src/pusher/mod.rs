//! What every part of the Pusher Channels protocol (CONTRACT §10) shares: the socket dialect
//! (`dialects::pusher`), the authorization endpoints and the HTTP API. TARO's `pusher-js` and
//! `laravel-echo` apps connect unchanged, and the `pusher` server SDKs publish.
//!
//! Here: [`channel`] (channel
//! names and what they mean), [`signature`] (every HMAC Pusher defines) and [`credentials`]
//! (the one app this server is).

pub mod channel;
pub mod credentials;
pub mod signature;
