//! The REST side of whiteboard documents (CONTRACT §11): the content as JSON, snapshots, and
//! restore (Member+) as a new change made by the board's actor, so connected clients receive
//! it and the store keeps it like any other update.

use super::doc::{Command, RestoreFailed};
use super::{WbState, content};
use crate::auth::Authed;
use crate::http::{HttpResult, JsonBody, path_id};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::OrApi;
use domain::access::require;
use proto::{ApiError, Role};
use serde_json::{Value, json};
use store::{RecordRow, Store, WhiteboardSnapshotInfo, WhiteboardSnapshotRow};
use tokio::sync::oneshot;
use uuid::Uuid;
use yrs::Doc;

/// The longest snapshot name.
pub const MAX_NAME: usize = 200;
/// Updates read per query when loading a document for a read.
const PAGE: u32 = 500;

/// The whiteboard record `id` of project `project_id`, if the caller may see it with at least
/// `needed`: 404 for a project or whiteboard they cannot see, 403 below `needed`.
async fn board(
    state: &WbState,
    auth: &Authed,
    project_id: &str,
    id: &str,
    needed: Role,
    action: &str,
) -> HttpResult<RecordRow> {
    let project_id = path_id(project_id, "project")?;
    let id = path_id(id, "whiteboard")?;
    let mut ops = state.0.app.domain.store.read().await.or_api()?;
    // A project the caller is not a member of is not found (404), as everywhere.
    let (_, role) = domain::access::project_role(&mut *ops, project_id, &auth.actor).await?;
    let record = ops
        .get_record(id)
        .await
        .or_api()?
        .filter(|r| r.project_id == project_id && r.collection == "whiteboards")
        .ok_or_else(|| ApiError::not_found("whiteboard"))?;
    require(role, needed, action)?;
    Ok(record)
}

/// The board's document as stored.
pub async fn load_stored(store: &dyn Store, board: Uuid) -> Result<Doc, ApiError> {
    let doc = content::new_doc();
    let mut after = 0;
    loop {
        let rows = {
            let mut ops = store.read().await.or_api()?;
            ops.read_whiteboard_updates(board, after, PAGE)
                .await
                .or_api()?
        };
        let full = rows.len() == PAGE as usize;
        for row in rows {
            if !content::apply(&doc, &row.update) {
                return Err(ApiError::internal());
            }
            after = row.seq;
        }
        if !full {
            return Ok(doc);
        }
    }
}

fn snapshot_json(info: &WhiteboardSnapshotInfo) -> Value {
    json!({ "id": info.id, "name": info.name, "created_at": store::format_ts(info.created_at) })
}

/// `GET …/whiteboards/{id}/content`.
pub async fn content(
    State(state): State<WbState>,
    auth: Authed,
    Path((project_id, id)): Path<(String, String)>,
) -> HttpResult<Json<Value>> {
    let record = board(&state, &auth, &project_id, &id, Role::Viewer, "reading").await?;
    let doc = load_stored(&*state.0.app.domain.store, record.id).await?;
    Ok(Json(content::content_json(&doc)))
}

/// `GET …/whiteboards/{id}/snapshots`: oldest first.
pub async fn list_snapshots(
    State(state): State<WbState>,
    auth: Authed,
    Path((project_id, id)): Path<(String, String)>,
) -> HttpResult<Json<Value>> {
    let record = board(&state, &auth, &project_id, &id, Role::Viewer, "reading").await?;
    let mut ops = state.0.app.domain.store.read().await.or_api()?;
    let list = ops.list_whiteboard_snapshots(record.id).await.or_api()?;
    Ok(Json(Value::Array(list.iter().map(snapshot_json).collect())))
}

/// `POST …/whiteboards/{id}/snapshots {name}` (Member+): 201 `{id, name, created_at}`.
pub async fn create_snapshot(
    State(state): State<WbState>,
    auth: Authed,
    Path((project_id, id)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> HttpResult<Response> {
    let record = board(
        &state,
        &auth,
        &project_id,
        &id,
        Role::Member,
        "saving a whiteboard version",
    )
    .await?;
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty() && n.chars().count() <= MAX_NAME)
        .ok_or_else(|| {
            ApiError::invalid(format!("name must be a text of 1 to {MAX_NAME} characters"))
        })?;
    let store = &state.0.app.domain.store;
    let doc = load_stored(&**store, record.id).await?;
    let row = WhiteboardSnapshotRow {
        id: Uuid::now_v7(),
        board_id: record.id,
        name: name.to_owned(),
        state: content::state(&doc).ok_or_else(|| {
            tracing::warn!(board = %record.id, "the board's document cannot be encoded; no snapshot");
            ApiError::internal()
        })?,
        created_at: store::now(),
    };
    let mut tx = store.write().await.or_api()?;
    tx.insert_whiteboard_snapshot(&row).await.or_api()?;
    tx.commit().await.or_api()?;
    Ok((StatusCode::CREATED, Json(snapshot_json(&row.info()))).into_response())
}

/// `POST …/whiteboards/{id}/snapshots/{sid}/restore` (Member+): the document's content
/// afterwards.
pub async fn restore(
    State(state): State<WbState>,
    auth: Authed,
    Path((project_id, id, snapshot_id)): Path<(String, String, String)>,
) -> HttpResult<Json<Value>> {
    let record = board(
        &state,
        &auth,
        &project_id,
        &id,
        Role::Member,
        "restoring a whiteboard version",
    )
    .await?;
    let snapshot_id = path_id(&snapshot_id, "snapshot")?;
    let store = &state.0.app.domain.store;
    let snapshot = {
        let mut ops = store.read().await.or_api()?;
        ops.get_whiteboard_snapshot(snapshot_id)
            .await
            .or_api()?
            .filter(|s| s.board_id == record.id)
            .ok_or_else(|| ApiError::not_found("snapshot"))?
    };
    let (reply, done) = oneshot::channel();
    state.0.boards.submit(
        record.id,
        Command::Restore {
            state: snapshot.state,
            reply,
        },
    );
    match done.await {
        Ok(Ok(())) => {}
        Ok(Err(RestoreFailed::BadSnapshot)) => return Err(ApiError::internal().into()),
        Ok(Err(RestoreFailed::Store)) | Err(_) => {
            return Err(ApiError::new(
                proto::ErrorCode::StoreUnavailable,
                "the whiteboard could not be stored; try again",
            )
            .into());
        }
    }
    let doc = load_stored(&**store, record.id).await?;
    Ok(Json(content::content_json(&doc)))
}
