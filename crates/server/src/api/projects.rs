//! Projects, their members, their log, and the system administration endpoints.

use crate::app::AppState;
use crate::auth::Authed;
use crate::http::{HttpResult, IfMatch, JsonBody, Query, path_id};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

pub async fn list(State(state): State<AppState>, auth: Authed) -> HttpResult<Json<Value>> {
    Ok(Json(Value::Array(
        state.domain.list_projects(&auth.actor).await?,
    )))
}

pub async fn create(
    State(state): State<AppState>,
    auth: Authed,
    JsonBody(body): JsonBody,
) -> HttpResult<(StatusCode, Json<Value>)> {
    Ok((
        StatusCode::CREATED,
        Json(state.domain.create_project(&auth.actor, &body).await?),
    ))
}

pub async fn get(
    State(state): State<AppState>,
    auth: Authed,
    Path(project): Path<String>,
) -> HttpResult<Json<Value>> {
    let project = path_id(&project, "project")?;
    Ok(Json(state.domain.get_project(&auth.actor, project).await?))
}

pub async fn update(
    State(state): State<AppState>,
    auth: Authed,
    Path(project): Path<String>,
    if_match: IfMatch,
    JsonBody(body): JsonBody,
) -> HttpResult<Json<Value>> {
    let project = path_id(&project, "project")?;
    Ok(Json(
        state
            .domain
            .update_project(&auth.actor, project, &body, if_match.0)
            .await?,
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    auth: Authed,
    Path(project): Path<String>,
    if_match: IfMatch,
) -> HttpResult<StatusCode> {
    let project = path_id(&project, "project")?;
    state
        .domain
        .delete_project(&auth.actor, project, if_match.0)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_members(
    State(state): State<AppState>,
    auth: Authed,
    Path(project): Path<String>,
) -> HttpResult<Json<Value>> {
    let project = path_id(&project, "project")?;
    Ok(Json(Value::Array(
        state.domain.list_members(&auth.actor, project).await?,
    )))
}

pub async fn add_member(
    State(state): State<AppState>,
    auth: Authed,
    Path(project): Path<String>,
    JsonBody(body): JsonBody,
) -> HttpResult<(StatusCode, Json<Value>)> {
    let project = path_id(&project, "project")?;
    Ok((
        StatusCode::CREATED,
        Json(state.domain.add_member(&auth.actor, project, &body).await?),
    ))
}

pub async fn get_member(
    State(state): State<AppState>,
    auth: Authed,
    Path((project, id)): Path<(String, String)>,
) -> HttpResult<Json<Value>> {
    let project = path_id(&project, "project")?;
    let id = path_id(&id, "member")?;
    Ok(Json(
        state.domain.get_member(&auth.actor, project, id).await?,
    ))
}

pub async fn change_member(
    State(state): State<AppState>,
    auth: Authed,
    Path((project, id)): Path<(String, String)>,
    if_match: IfMatch,
    JsonBody(body): JsonBody,
) -> HttpResult<Json<Value>> {
    let project = path_id(&project, "project")?;
    let id = path_id(&id, "member")?;
    Ok(Json(
        state
            .domain
            .change_member(&auth.actor, project, id, &body, if_match.0)
            .await?,
    ))
}

pub async fn remove_member(
    State(state): State<AppState>,
    auth: Authed,
    Path((project, id)): Path<(String, String)>,
    if_match: IfMatch,
) -> HttpResult<StatusCode> {
    let project = path_id(&project, "project")?;
    let id = path_id(&id, "member")?;
    state
        .domain
        .remove_member(&auth.actor, project, id, if_match.0)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct LogQuery {
    since: Option<i64>,
    limit: Option<u32>,
}

/// `GET /api/v1/projects/{id}/log?since=N&limit=M`.
pub async fn log(
    State(state): State<AppState>,
    auth: Authed,
    Path(project): Path<String>,
    Query(query): Query<LogQuery>,
) -> HttpResult<Json<Value>> {
    let project = path_id(&project, "project")?;
    let since = query.since.unwrap_or(0);
    let limit = query.limit.unwrap_or(100);
    Ok(Json(
        state
            .domain
            .read_log(&auth.actor, project, since, limit)
            .await?,
    ))
}

/// `GET /api/v1/admin/export`: the whole database with the attachments' bytes.
pub async fn export(
    State(state): State<AppState>,
    auth: Authed,
) -> HttpResult<Json<domain::transfer::ExportDocument>> {
    let mut document = state.domain.export(&auth.actor).await?;
    let missing =
        crate::transfer::add_attachments(&mut document, &state.config.attachments_dir()).await?;
    for id in missing {
        tracing::warn!(attachment = %id, "its bytes are missing; exported without them");
    }
    Ok(Json(document))
}

/// `POST /api/v1/admin/import`: replaces everything with the document's, faithfully (see
/// `domain::transfer`).
pub async fn import(
    State(state): State<AppState>,
    auth: Authed,
    JsonBody(body): JsonBody,
) -> HttpResult<Json<Value>> {
    domain::access::require_system_admin(&auth.actor)?;
    let document = crate::transfer::parse_value(body)?;
    Ok(Json(
        crate::transfer::import(
            &state.domain,
            Some(&auth.actor),
            &document,
            &state.config.attachments_dir(),
            domain::transfer::Existing::Replace,
        )
        .await?,
    ))
}

pub async fn wipe_projects(State(state): State<AppState>, auth: Authed) -> HttpResult<Json<Value>> {
    Ok(Json(state.domain.wipe_projects(&auth.actor).await?))
}

/// `GET /api/v1/projects/{id}/schedule`: the schedule of the committed inputs, computed now
/// (the same pure computation the scheduler worker writes into the tasks).
pub async fn schedule(
    State(state): State<AppState>,
    auth: Authed,
    Path(project): Path<String>,
) -> HttpResult<Json<Value>> {
    let project = path_id(&project, "project")?;
    let input = state
        .domain
        .schedule_input(Some(&auth.actor), project)
        .await?;
    let computed_at = store::now();
    let result = tokio::task::spawn_blocking(move || cpm::schedule(&input))
        .await
        .map_err(|_| proto::ApiError::internal())?;
    match result {
        Ok(schedule) => Ok(Json(domain::schedule::schedule_json(
            &schedule,
            computed_at,
        ))),
        Err(error) => {
            let (message, details) = domain::schedule::describe_error(&error);
            let code = match error {
                cpm::CpmError::Cycle(_) => proto::ErrorCode::DependencyCycle,
                _ => proto::ErrorCode::ValidationFailed,
            };
            Err(proto::ApiError::new(code, message)
                .with_details(details)
                .into())
        }
    }
}
