//! The live transports: the native WebSocket (CONTRACT §6) and Server-Sent Events (§7), and the
//! presence roster. Both are thin: they authenticate, ask the access rules, open a hub
//! subscription and copy its deliveries to the client. Ordering, replay, resync, slow readers
//! and eviction are the hub's (`crates/hub`). Choices the contract leaves open are listed in
//! `crates/server/TRANSPORTS.md`.

pub(crate) mod direct;
pub mod native_ws;
pub(crate) mod read_gate;
pub mod sse;
pub(crate) mod sse_front;
pub mod tcp;
pub(crate) mod ws_upgrade;

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
        .route("/ws/v1/projects/{project_id}", any(native_ws::project))
        .route("/ws/v1/projects/{project_id}/", any(native_ws::project))
        .route("/ws", any(native_ws::unknown))
        .route("/ws/", any(native_ws::unknown))
        .route("/ws/{*rest}", any(native_ws::unknown))
        .route("/api/v1/projects/{project_id}/events", get(sse::project))
        .route("/api/v1/projects/events", get(sse::projects))
        .route("/api/v1/users/events", get(sse::users))
        .route(
            "/api/projects/{project_id_or_key}/events",
            get(sse::project_alias),
        )
        .route("/api/projects/events", get(sse::projects))
        .route("/api/users/events", get(sse::users))
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

/// `GET /api/v1/projects/{id}/presence/`: who has a native WebSocket open on the project, on
/// this node: `[{user_id, display_name, connections}]`, sorted by display name. Any member may
/// ask; anyone else gets 404.
pub async fn presence(
    State(state): State<AppState>,
    auth: Authed,
    Path(project_id): Path<String>,
) -> HttpResult<Json<Vec<hub::PresenceEntry>>> {
    let project_id = path_id(&project_id, "project")?;
    role_in(&state, project_id, &auth.actor)
        .await?
        .ok_or_else(|| ApiError::not_found("project"))?;
    Ok(Json(state.live.hub().presence(project_id)))
}

/// A `since` / `Last-Event-ID` as the hub wants it. Anything but a non-negative integer is a
/// position the server cannot resume from, so it becomes one beyond every log, which the hub
/// answers with `resync_required` and then live events (documented in TRANSPORTS.md).
pub(crate) fn parse_position(text: Option<&str>) -> Option<i64> {
    let text = text?.trim();
    if text.is_empty() {
        return None;
    }
    Some(match text.parse::<i64>() {
        Ok(n) if n >= 0 => n,
        _ => i64::MAX,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_position;

    #[test]
    fn positions() {
        assert_eq!(parse_position(None), None);
        assert_eq!(parse_position(Some("")), None);
        assert_eq!(parse_position(Some("0")), Some(0));
        assert_eq!(parse_position(Some(" 42 ")), Some(42));
        assert_eq!(parse_position(Some("-1")), Some(i64::MAX));
        assert_eq!(parse_position(Some("abc")), Some(i64::MAX));
        assert_eq!(parse_position(Some("99999999999999999999")), Some(i64::MAX));
    }
}
