//! The dialects: the native WebSocket (CONTRACT §6), Server-Sent Events (§7) and the Bryntum
//! Gantt WebSocket (§8), the routes of the first two, and the presence roster. Each is thin: it
//! authenticates, asks the access rules, opens a hub subscription and copies its deliveries to
//! the client. Ordering, replay, resync, slow readers and eviction are the hub's
//! (`crates/hub`). Choices the contract leaves open are listed in `crates/server/TRANSPORTS.md`.
//!
//! Each dialect is a folder of three files: `protocol.rs` (parse and encode, pure),
//! `session.rs` (one client's state machine, no I/O) and `socket.rs` (the glue between a
//! connection and its session). [`ws`] holds what WebSocket dialects share, [`position`] the
//! resume position every dialect parses, [`access`] the role check of the native and SSE
//! handshakes. Bryntum's sockets have a state of their own, [`bryntum::BryntumNode`], and
//! their route with it ([`bryntum::router`], merged by `server.rs`), so the app knows no
//! dialect. docs/ARCHITECTURE.md, "How to add a dialect", has the steps.

pub mod access;
pub mod bryntum;
pub mod native_ws;
pub mod position;
pub mod pusher;
pub mod sse;
pub mod whiteboard;
pub mod ws;

use crate::app::AppState;
use crate::auth::Authed;
use crate::http::{HttpResult, path_id};
use access::role_in;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{any, get};
use proto::ApiError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/ws/v1/projects/{project_id}",
            any(native_ws::socket::project),
        )
        .route(
            "/ws/v1/projects/{project_id}/",
            any(native_ws::socket::project),
        )
        .route("/ws", any(native_ws::socket::unknown))
        .route("/ws/", any(native_ws::socket::unknown))
        .route("/ws/{*rest}", any(native_ws::socket::unknown))
        .route(
            "/api/v1/projects/{project_id}/events",
            get(sse::socket::project),
        )
        .route("/api/v1/projects/events", get(sse::socket::projects))
        .route("/api/v1/users/events", get(sse::socket::users))
        .route(
            "/api/projects/{project_id_or_key}/events",
            get(sse::socket::project_alias),
        )
        .route("/api/projects/events", get(sse::socket::projects))
        .route("/api/users/events", get(sse::socket::users))
        .route("/api/v1/projects/{project_id}/presence", get(presence))
        .route("/api/v1/projects/{project_id}/presence/", get(presence))
}

/// `GET /api/v1/projects/{id}/presence/`: who has a live connection open on the project, on
/// every node of the cluster: `[{user_id, display_name, connections}]`, sorted by display
/// name. Any member may ask; anyone else gets 404.
pub async fn presence(
    State(state): State<AppState>,
    auth: Authed,
    Path(project_id): Path<String>,
) -> HttpResult<Json<Vec<hub::PresenceEntry>>> {
    let project_id = path_id(&project_id, "project")?;
    role_in(&state, project_id, &auth.actor)
        .await?
        .ok_or_else(|| ApiError::not_found("project"))?;
    Ok(Json(state.live.roster(project_id).await))
}
