//! The one harness of `crates/server/tests`: every test binary starts its servers and speaks
//! to them through this crate. It is a crate rather than a `tests/support` module so that each
//! helper is compiled once and needs no `allow(dead_code)` in binaries that use a part of it.
//!
//! - [`TestServer`] ([`server`]): a real server, in-process, on `127.0.0.1:0`; it stops,
//!   restarts on the same data (and, when a client must find it again, on the same address),
//!   writes while it is down, and reads a [`server::Fingerprint`] of everything stored through
//!   the `Store` API.
//! - [`backend`]: which database a test gets, from `LIVEPLAN_TEST_DATABASE_URL`.
//! - [`crash`]: what a crash of the operating system or of PostgreSQL would leave of the store.
//! - [`proxy`]: a TCP proxy between clients and the server that a test can sever.
//! - [`private_postgres`]: a PostgreSQL server of the test's own that it can crash and restart.
//! - [`private_redis`]: a Redis server of the test's own that it can stop, kill and restart.
//! - [`cluster`]: several nodes on one PostgreSQL database and one private Redis, in-process
//!   or as child processes of the binary (to SIGKILL one); [`cluster::Endpoint`], a node as
//!   clients see it.
//! - [`rest`], [`ws`], [`sse`], [`bryntum`]: clients; [`follow`]: a reconnecting reader that
//!   checks order.
//!
//! Every wait is bounded ([`GUARD`]) so a broken server fails a test instead of hanging it.
//!
//! # Time
//!
//! What the server does when time passes (the WebSocket pings, the session expiry its sweep
//! enforces, the SSE `: keepalive`, the Bryntum demo's idle reset) reads a
//! [`Clock`](liveplan_server::Clock) from its configuration. A test that is about those starts
//! the server with `config.clock = Clock::manual()`, which stands still until the test calls
//! [`TestServer::advance`]: a ping comes when the test has moved the clock by a ping interval,
//! not before, and a 12-hour session expires in no time ([`pings_until_close`] is a client that
//! never answers pings, for any WebSocket dialect). The database and its pool keep real
//! time, so these tests run on SQLite and PostgreSQL alike (tokio's paused clock, used before,
//! froze the pool's timers too and needed the server on the test's one thread).
//!
//! The manual clock moves only what reads it: the store's own timestamps (commits, a session's
//! `expires_at`) are the system's. Timeouts of single writes and handshakes are tokio's timers.

pub mod backend;
pub mod bryntum;
pub mod cluster;
pub mod crash;
pub mod follow;
pub mod node;
pub mod private_postgres;
pub mod private_redis;
pub mod proxy;
pub mod pusher_js;
pub mod receivers;
pub mod rest;
pub mod server;
pub mod sse;
pub mod ws;

pub use cluster::{BinaryNode, Cluster, Endpoint};
pub use liveplan_server::Clock;
pub use private_redis::PrivateRedis;
pub use rest::{ADMIN_EMAIL, ADMIN_PASSWORD, PASSWORD, admin_actor, assert_error};
pub use server::{TestServer, config, relax_rates};
pub use sse::{SseMessage, SseReader};
pub use ws::{
    Ws, WsNext, code, pings_until_close, raw_upgrade, read_raw_frame, whiteboard_update,
    ws_close_code, ws_connect, ws_event, ws_json, ws_next, ws_send,
};

/// The failure guard on every wait.
pub const GUARD: std::time::Duration = std::time::Duration::from_secs(30);
