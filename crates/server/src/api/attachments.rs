//! Attachment bytes: streamed to `<data-dir>/attachments/<project>/<id>` with a size limit and
//! a SHA-256, recorded through the domain, served back with safe headers.

use crate::app::AppState;
use crate::auth::Authed;
use crate::http::{HttpError, HttpResult, error, path_id};
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use domain::collections::ATTACHMENTS;
use domain::validate::JsonObject;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use proto::{ApiError, ErrorCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

fn file_path(state: &AppState, project: Uuid, id: Uuid) -> PathBuf {
    state
        .config
        .attachments_dir()
        .join(project.to_string())
        .join(id.to_string())
}

/// The longest file name kept, in characters (most file systems' limit).
const MAX_FILENAME_CHARS: usize = 255;

/// Keeps only characters that are safe in a file name and a header; refuses a name longer
/// than [`MAX_FILENAME_CHARS`] rather than storing a cut one the uploader never chose.
pub fn clean_filename(name: &str) -> HttpResult<String> {
    let cleaned: String = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control() && *c != '"')
        .collect();
    if cleaned.chars().count() > MAX_FILENAME_CHARS {
        return Err(error(
            ErrorCode::ValidationFailed,
            "the file name is longer than 255 characters",
        ));
    }
    Ok(if cleaned.trim().is_empty() {
        "file".to_owned()
    } else {
        cleaned
    })
}

/// `attachment; filename="…"` with an ASCII stand-in for old clients, and, when the name is
/// not plain ASCII, `filename*=UTF-8''…` (RFC 6266 / RFC 8187), which browsers prefer.
pub fn content_disposition(filename: &str) -> String {
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if ascii == filename {
        return format!("attachment; filename=\"{ascii}\"");
    }
    // RFC 8187's attr-char: ALPHA / DIGIT / "!#$&+-.^_`|~"; everything else is %-encoded.
    const NOT_ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'!')
        .remove(b'#')
        .remove(b'$')
        .remove(b'&')
        .remove(b'+')
        .remove(b'-')
        .remove(b'.')
        .remove(b'^')
        .remove(b'_')
        .remove(b'`')
        .remove(b'|')
        .remove(b'~');
    let encoded = utf8_percent_encode(filename, NOT_ATTR_CHAR);
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// Reads a multipart body: a `task_id` field and a `file` field.
pub async fn upload(
    state: &AppState,
    auth: &Authed,
    project: Uuid,
    request: Request,
) -> HttpResult<Value> {
    let mut multipart = Multipart::from_request(request, state).await.map_err(|_| {
        error(
            ErrorCode::UnsupportedMediaType,
            "attachments are uploaded as multipart/form-data",
        )
    })?;
    let id = proto::ids::new_id();
    let path = file_path(state, project, id);
    let mut task_id: Option<String> = None;
    let mut stored: Option<(String, String, u64, String)> = None;
    let result: HttpResult<()> = async {
        while let Some(mut field) = multipart
            .next_field()
            .await
            .map_err(|_| error(ErrorCode::MalformedBody, "the multipart body is malformed"))?
        {
            match field.name() {
                Some("task_id") => {
                    let text = field
                        .text()
                        .await
                        .map_err(|_| error(ErrorCode::MalformedBody, "bad task_id field"))?;
                    task_id = Some(text.chars().take(64).collect());
                }
                Some("file") if stored.is_none() => {
                    let filename = clean_filename(field.file_name().unwrap_or("file"))?;
                    let content_type = field
                        .content_type()
                        .filter(|t| t.len() <= 255 && t.is_ascii())
                        .unwrap_or("application/octet-stream")
                        .to_owned();
                    if let Some(dir) = path.parent() {
                        tokio::fs::create_dir_all(dir)
                            .await
                            .map_err(|_| ApiError::internal())?;
                    }
                    let mut file = tokio::fs::File::create(&path)
                        .await
                        .map_err(|_| ApiError::internal())?;
                    let mut hasher = Sha256::new();
                    let mut size: u64 = 0;
                    while let Some(chunk) = field.chunk().await.map_err(|_| {
                        error(
                            ErrorCode::PayloadTooLarge,
                            "the upload is too large or was cut off",
                        )
                    })? {
                        size += chunk.len() as u64;
                        if size > state.config.max_upload_bytes as u64 {
                            return Err(error(
                                ErrorCode::PayloadTooLarge,
                                format!(
                                    "an attachment is at most {} bytes",
                                    state.config.max_upload_bytes
                                ),
                            ));
                        }
                        hasher.update(&chunk);
                        file.write_all(&chunk)
                            .await
                            .map_err(|_| ApiError::internal())?;
                    }
                    file.flush().await.map_err(|_| ApiError::internal())?;
                    let digest = hex::encode(hasher.finalize());
                    stored = Some((filename, content_type, size, digest));
                }
                _ => {}
            }
        }
        Ok(())
    }
    .await;
    let outcome = match (result, task_id, stored) {
        (Err(e), _, _) => Err(e),
        (Ok(()), None, _) => Err(error(ErrorCode::ValidationFailed, "task_id is required")),
        (Ok(()), _, None) => Err(error(
            ErrorCode::ValidationFailed,
            "a file field is required",
        )),
        (Ok(()), Some(task_id), Some((filename, content_type, size, sha256))) => {
            let mut meta = JsonObject::new();
            meta.insert("task_id".into(), json!(task_id));
            domain::validate::check_value(
                ATTACHMENTS
                    .field("task_id")
                    .ok_or_else(ApiError::internal)?,
                &json!(task_id),
            )?;
            meta.insert("filename".into(), json!(filename));
            meta.insert("content_type".into(), json!(content_type));
            meta.insert("size".into(), json!(size));
            meta.insert("sha256".into(), json!(sha256));
            state
                .domain
                .create_attachment(&auth.actor, project, id, meta)
                .await
                .map_err(HttpError)
        }
    };
    if outcome.is_err() {
        let _ = tokio::fs::remove_file(&path).await;
    }
    outcome
}

pub async fn remove_files(state: &AppState, project: Uuid, ids: &[Uuid]) {
    for id in ids {
        if let Err(e) = tokio::fs::remove_file(file_path(state, project, *id)).await {
            tracing::warn!(attachment = %id, error = %e, "could not remove attachment bytes");
        }
    }
}

/// `GET …/attachments/{id}/content`.
pub async fn download(
    State(state): State<AppState>,
    auth: Authed,
    Path((project, id)): Path<(String, String)>,
) -> HttpResult<Response> {
    let project = path_id(&project, "project")?;
    let id = path_id(&id, "attachment")?;
    let row = state
        .domain
        .get_record(&auth.actor, project, &ATTACHMENTS, id)
        .await?;
    let file = tokio::fs::File::open(file_path(&state, project, id))
        .await
        .map_err(|_| HttpError(ApiError::not_found("attachment content")))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    let content_type = row
        .body
        .get("content_type")
        .and_then(Value::as_str)
        .unwrap_or("application/octet-stream");
    let filename = row
        .body
        .get("filename")
        .and_then(Value::as_str)
        .unwrap_or("file");
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&content_disposition(filename)) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_ascii_name_keeps_its_characters_in_filename_star() {
        assert_eq!(
            content_disposition("plan v2.pdf"),
            "attachment; filename=\"plan v2.pdf\""
        );
        assert_eq!(
            content_disposition("Übersicht – März.pdf"),
            "attachment; filename=\"_bersicht _ M_rz.pdf\"; \
             filename*=UTF-8''%C3%9Cbersicht%20%E2%80%93%20M%C3%A4rz.pdf"
        );
    }

    #[test]
    fn names_are_cleaned_and_long_ones_refused() {
        assert_eq!(clean_filename("../../etc/pass\"wd").unwrap(), "passwd");
        assert_eq!(clean_filename("dir\\\n").unwrap(), "file");
        assert_eq!(
            clean_filename(&"é".repeat(255)).unwrap().chars().count(),
            255
        );
        assert!(clean_filename(&"a".repeat(256)).is_err());
    }
}
