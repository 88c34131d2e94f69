//! The project collections, one set of handlers for all of them, driven by the collection
//! table in the domain.

use crate::api::attachments;
use crate::app::AppState;
use crate::auth::Authed;
use crate::http::{HttpError, HttpResult, IfMatch, JsonBody, PageQuery, Query, path_id};
use axum::Json;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::collections::{self, Collection};
use domain::records::record_json;
use proto::ApiError;
use serde_json::Value;
use uuid::Uuid;

fn collection(name: &str) -> Result<&'static Collection, HttpError> {
    collections::by_name(name).ok_or_else(|| HttpError(ApiError::not_found("collection")))
}

fn ids(project: &str, name: &str) -> Result<(Uuid, &'static Collection), HttpError> {
    let spec = collection(name)?;
    Ok((path_id(project, "project")?, spec))
}

/// The collection of `…/projects/{project_id}/{collection}/{id}` when its records never
/// change.
fn immutable_record_path(path: &str) -> Option<&'static Collection> {
    let path = path.strip_prefix("/api/v1").unwrap_or(path);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["projects", _, collection, _] => {
            collections::by_name(collection).filter(|spec| !spec.patchable)
        }
        _ => None,
    }
}

/// On a collection whose records never change, `PATCH` is 405 before anything else is looked
/// at (session, body): the method is what is wrong, whoever sends it. Every 405 there lists
/// the methods the records do have (the router's own would offer `PATCH`, which the route has
/// for the collections that allow it).
pub async fn refuse_change_of_immutable(
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    if immutable_record_path(request.uri().path()).is_none() {
        return next.run(request).await;
    }
    let mut response = if request.method() == axum::http::Method::PATCH {
        HttpError(ApiError::new(
            proto::ErrorCode::MethodNotAllowed,
            "records of this collection cannot be changed",
        ))
        .into_response()
    } else {
        next.run(request).await
    };
    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        response.headers_mut().insert(
            header::ALLOW,
            axum::http::HeaderValue::from_static("GET,HEAD,DELETE"),
        );
    }
    response
}

pub async fn list(
    State(state): State<AppState>,
    auth: Authed,
    Path((project, name)): Path<(String, String)>,
    Query(page): Query<PageQuery>,
) -> HttpResult<Json<Value>> {
    let (project, spec) = ids(&project, &name)?;
    let rows = state
        .domain
        .list_records(&auth.actor, project, spec, page.page())
        .await?;
    Ok(Json(Value::Array(rows)))
}

/// JSON for most collections; a multipart upload for attachments.
pub async fn create(
    State(state): State<AppState>,
    auth: Authed,
    Path((project, name)): Path<(String, String)>,
    request: Request,
) -> HttpResult<Response> {
    let (project, spec) = ids(&project, &name)?;
    if spec.upload_only {
        let record = attachments::upload(&state, &auth, project, request).await?;
        return Ok((StatusCode::CREATED, Json(record)).into_response());
    }
    let JsonBody(body) = JsonBody::from_request(request, &state).await?;
    let record = state
        .domain
        .create_record(&auth.actor, project, spec, &body)
        .await?;
    Ok((StatusCode::CREATED, Json(record)).into_response())
}

pub async fn get(
    State(state): State<AppState>,
    auth: Authed,
    Path((project, name, id)): Path<(String, String, String)>,
) -> HttpResult<Response> {
    let (project, spec) = ids(&project, &name)?;
    let id = path_id(&id, spec.singular)?;
    let row = state
        .domain
        .get_record(&auth.actor, project, spec, id)
        .await?;
    let mut response = Json(record_json(&row)).into_response();
    if let Ok(etag) = format!("\"{}\"", row.version).parse() {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

pub async fn update(
    State(state): State<AppState>,
    auth: Authed,
    Path((project, name, id)): Path<(String, String, String)>,
    if_match: IfMatch,
    JsonBody(body): JsonBody,
) -> HttpResult<Json<Value>> {
    let (project, spec) = ids(&project, &name)?;
    let id = path_id(&id, spec.singular)?;
    Ok(Json(
        state
            .domain
            .update_record(&auth.actor, project, spec, id, &body, if_match.0)
            .await?,
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    auth: Authed,
    Path((project, name, id)): Path<(String, String, String)>,
    if_match: IfMatch,
) -> HttpResult<StatusCode> {
    let (project, spec) = ids(&project, &name)?;
    let id = path_id(&id, spec.singular)?;
    let removed = state
        .domain
        .delete_record(&auth.actor, project, spec, id, if_match.0)
        .await?;
    attachments::remove_files(&state, project, &removed).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST …/sprints/{id}/{activate|close|cancel}` and `POST …/baselines/{id}/activate`.
pub async fn action(
    State(state): State<AppState>,
    auth: Authed,
    Path((project, name, id, action)): Path<(String, String, String, String)>,
) -> HttpResult<Json<Value>> {
    let (project, spec) = ids(&project, &name)?;
    let id = path_id(&id, spec.singular)?;
    let result = match (spec.name, action.as_str()) {
        ("sprints", "activate" | "close" | "cancel") => {
            state
                .domain
                .sprint_action(&auth.actor, project, id, &action)
                .await?
        }
        ("baselines", "activate") => {
            state
                .domain
                .activate_baseline(&auth.actor, project, id)
                .await?
        }
        _ => return Err(HttpError(ApiError::not_found("action"))),
    };
    Ok(Json(result))
}
