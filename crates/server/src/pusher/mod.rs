//! What every part of the Pusher Channels protocol (CONTRACT §10) shares: the socket dialect
//! (`dialects::pusher`), the authorization endpoints and the HTTP API. TARO's `pusher-js` and
//! `laravel-echo` apps connect unchanged, and the `pusher` server SDKs publish.
//!
//! Here: [`channel`] (channel names and what they mean), [`signature`] (every HMAC Pusher
//! defines) and [`credentials`] (the one app this server is), [`member`] (what presence channels say of a user), and the seams between the socket side and the rest:
//! [`directory`] (what the HTTP API and webhooks ask of the channels), [`activity`] (what the
//! sockets report for webhooks) and [`app_log`] (the history of the app's own channels), kept by [`app_log_store`] in
//! the store; [`webhooks`] sends what [`activity`] records.

pub mod activity;
pub mod app_log;
pub mod app_log_store;
pub mod channel;
pub mod credentials;
pub mod directory;
pub mod member;
pub mod signature;
pub mod webhooks;
