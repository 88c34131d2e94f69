//! The liveplan server.
//!
//! Layout:
//! - [`app`]: configuration, shared state and startup.
//! - [`backends`]: the one place that opens a store by its database URL.
//! - [`clock`]: the time the live side reads and waits for (a test may move it).
//! - [`cluster`]: several nodes as one: the bus (Redis or in-process), the node registry, and
//!   what else they share (presence, limits, control messages).
//! - [`http`]: JSON errors and request extractors.
//! - [`auth`]: passwords, tokens, cookie, CSRF, rate limits, tickets.
//! - [`api`]: the REST handlers, one module per resource.
//! - [`openapi`]: the OpenAPI document, generated from the collection table.
//! - [`metrics`]: `GET /metrics`, the app's own Prometheus registry and the request counter.
//! - [`readiness`]: `GET /readyz`: whether the node takes traffic (store, bus).
//! - [`retention`]: keeping the event log within `--log-retention-days` and
//!   `--log-max-events-per-stream`.
//! - [`live`]: the hub, fed by committed events; eviction and connection bookkeeping.
//! - [`net`]: sockets, not protocols: the listener, the WebSocket handshake, direct writes,
//!   the SSE front and the read gate.
//! - [`dialects`]: the native WebSocket and SSE (each `protocol`, `session`, `socket`), what
//!   WebSocket dialects share (`ws`), their routes and the presence roster.
//! - [`pusher`]: what every part of the Pusher Channels protocol shares (CONTRACT §10): channel
//!   names, Pusher's signatures and the app's credentials.
//! - [`scheduler`]: the worker that recomputes schedules after commits.
//! - [`dialects`]: the Bryntum Gantt WebSocket protocol (CONTRACT §8).
//! - [`demo`]: the `--demo` seed.
//! - [`server`]: binding, serving and graceful shutdown.
//! - [`transfer`]: export and import of all data, attachments' bytes included.
//! - [`web_app`]: the browser app at `/`, embedded from the committed `web/dist`.
//! - [`webhooks`]: per-project webhooks, delivered from the log by one worker per node.
//! - [`whiteboard`]: whiteboards' Yjs documents (their actors, content, snapshots; the
//!   y-websocket dialect is `dialects::whiteboard`).

pub mod api;
pub mod app;
pub mod auth;
pub mod backends;
pub mod clock;
pub mod cluster;
pub mod demo;
pub mod dialects;
pub mod http;
pub mod live;
pub mod metrics;
pub mod net;
pub mod openapi;
pub mod pusher;
pub mod readiness;
pub mod retention;
pub mod scheduler;
pub mod server;
pub mod transfer;
pub mod web_app;
pub mod webhooks;
pub mod whiteboard;

pub use app::{AppState, Config, StartError};
pub use clock::Clock;
pub use server::{RunningServer, start};
