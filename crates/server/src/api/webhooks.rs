//! A project's webhooks (CONTRACT §12): each handler parses, calls one `Domain` function
//! (`domain::webhooks`, where the Admin rule and validation live) and maps the result.

use crate::app::AppState;
use crate::auth::Authed;
use crate::http::{HttpResult, JsonBody, path_id};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::Value;

pub async fn list(
    State(state): State<AppState>,
    auth: Authed,
    Path(project): Path<String>,
) -> HttpResult<Json<Value>> {
    let project = path_id(&project, "project")?;
    Ok(Json(Value::Array(
        state.domain.list_webhooks(&auth.actor, project).await?,
    )))
}

pub async fn create(
    State(state): State<AppState>,
    auth: Authed,
    Path(project): Path<String>,
    JsonBody(body): JsonBody,
) -> HttpResult<(StatusCode, Json<Value>)> {
    let project = path_id(&project, "project")?;
    Ok((
        StatusCode::CREATED,
        Json(
            state
                .domain
                .create_webhook(&auth.actor, project, &body)
                .await?,
        ),
    ))
}

pub async fn get(
    State(state): State<AppState>,
    auth: Authed,
    Path((project, id)): Path<(String, String)>,
) -> HttpResult<Json<Value>> {
    let project = path_id(&project, "project")?;
    let id = path_id(&id, "webhook")?;
    Ok(Json(
        state.domain.get_webhook(&auth.actor, project, id).await?,
    ))
}

pub async fn update(
    State(state): State<AppState>,
    auth: Authed,
    Path((project, id)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> HttpResult<Json<Value>> {
    let project = path_id(&project, "project")?;
    let id = path_id(&id, "webhook")?;
    Ok(Json(
        state
            .domain
            .update_webhook(&auth.actor, project, id, &body)
            .await?,
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    auth: Authed,
    Path((project, id)): Path<(String, String)>,
) -> HttpResult<StatusCode> {
    let project = path_id(&project, "project")?;
    let id = path_id(&id, "webhook")?;
    state
        .domain
        .delete_webhook(&auth.actor, project, id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn deliveries(
    State(state): State<AppState>,
    auth: Authed,
    Path((project, id)): Path<(String, String)>,
) -> HttpResult<Json<Value>> {
    let project = path_id(&project, "project")?;
    let id = path_id(&id, "webhook")?;
    Ok(Json(Value::Array(
        state
            .domain
            .list_webhook_deliveries(&auth.actor, project, id)
            .await?,
    )))
}
