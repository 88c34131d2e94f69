//! The dialects: the native WebSocket (CONTRACT §6), Server-Sent Events (§7) and the Bryntum
//! Gantt WebSocket (§8, routed in `server.rs`), their routes, and the presence roster. Each is thin: it authenticates, asks the access rules, opens a hub
//! subscription and copies its deliveries to the client. Ordering, replay, resync, slow readers
//! and eviction are the hub's (`crates/hub`). Choices the contract leaves open are listed in
//! `crates/server/TRANSPORTS.md`.
//!
//! Each dialect is a folder of three files: `protocol.rs` (parse and encode, pure),
//! `session.rs` (one client's state machine, no I/O) and `socket.rs` (the glue between a
//! connection and its session). [`ws`] holds what WebSocket dialects share, [`position`] the
//! resume position every dialect parses. docs/ARCHITECTURE.md, "How to add a dialect", has
//! the steps.

pub mod bryntum;
pub mod native_ws;
pub mod position;
pub mod sse;
pub mod ws;

use crate::app::AppState;
use crate::auth::Authed;
use crate::http::{HttpResult, path_id};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{any, get};
use domain::access::project_role;
use domain::{Actor, OrApi};
use proto::{ApiError, ErrorCode, Role};
use uuid::Uuid;

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

/// The caller's role in a project, `None` when the project does not exist for them.
pub(crate) async fn role_in(
    state: &AppState,
    project_id: Uuid,
    actor: &Actor,
) -> Result<Option<Role>, ApiError> {
    let mut ops = state.domain.store.read().await.or_api()?;
    match project_role(&mut *ops, project_id, actor).await {
        Ok((_, role)) => Ok(Some(role)),
        Err(e) if e.code == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e),
    }
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
