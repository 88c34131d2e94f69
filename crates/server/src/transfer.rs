//! Moving all data: the domain's export document plus the attachments' bytes, which live in
//! the data directory rather than the store (base64 in [`ExportDocument::attachments`]).
//! `liveplan export|import` and `GET`/`POST /api/v1/admin/export|import` all go through here.
//!
//! An import writes the bytes to temporary files beside their place first, commits the rows,
//! and only then moves the files in: a failed import leaves the attachments as they were.

use base64::Engine;
use domain::Domain;
use domain::transfer::{EXPORT_FORMAT, Existing, ExportAttachment, ExportDocument};
use proto::{ApiError, ErrorCode};
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// The most attachment bytes one export carries (their base64 is a third more): the document
/// is built and read whole in memory.
pub const MAX_ATTACHMENT_BYTES: u64 = 512 * 1024 * 1024;

/// The largest export file `liveplan import` reads: the attachments' base64 and the rows.
pub const MAX_FILE_BYTES: u64 = 2 * 1024 * 1024 * 1024;

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The document, or the database it goes into, is refused (the message says why).
    #[error("{}", .0.message)]
    Refused(ApiError),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a liveplan export: {reason}", path.display())]
    NotAnExport { path: PathBuf, reason: String },
}

impl From<ApiError> for TransferError {
    fn from(error: ApiError) -> Self {
        TransferError::Refused(error)
    }
}

/// Where attachment `id` of `project` keeps its bytes.
pub fn attachment_path(attachments_dir: &Path, project: Uuid, id: Uuid) -> PathBuf {
    attachments_dir
        .join(project.to_string())
        .join(id.to_string())
}

/// Adds the bytes of every attachment record of `document` from `attachments_dir`. Returns the
/// ids of attachments whose bytes are missing on disk (exported without them, as they are).
pub async fn add_attachments(
    document: &mut ExportDocument,
    attachments_dir: &Path,
) -> Result<Vec<Uuid>, ApiError> {
    let mut total: u64 = 0;
    let mut missing = Vec::new();
    for (project, id) in attachment_ids(document) {
        let path = attachment_path(attachments_dir, project, id);
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                missing.push(id);
                continue;
            }
            Err(e) => {
                tracing::error!(attachment = %id, error = %e, "cannot read attachment bytes");
                return Err(ApiError::internal());
            }
        };
        total += bytes.len() as u64;
        if total > MAX_ATTACHMENT_BYTES {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the attachments hold more than {} MiB, more than one export carries",
                    MAX_ATTACHMENT_BYTES / (1024 * 1024)
                ),
            ));
        }
        document.attachments.push(ExportAttachment {
            project_id: project,
            id,
            content: BASE64.encode(&bytes),
        });
    }
    Ok(missing)
}

/// The (project, id) of every attachment record of the document.
fn attachment_ids(document: &ExportDocument) -> Vec<(Uuid, Uuid)> {
    let mut ids = Vec::new();
    for project in &document.projects {
        let Some(project_id) = uuid_field(&project.project, "id") else {
            continue;
        };
        for record in &project.records {
            if record.collection == domain::collections::ATTACHMENTS.name
                && let Some(id) = uuid_field(&record.record, "id")
            {
                ids.push((project_id, id));
            }
        }
    }
    ids
}

fn uuid_field(value: &Value, key: &str) -> Option<Uuid> {
    value
        .get(key)
        .and_then(Value::as_str)
        .and_then(|t| Uuid::parse_str(t).ok())
}

/// A document from JSON text, or why it is none: a document of another format is named as such
/// even when the rest of it does not parse.
pub fn parse_document(text: &[u8]) -> Result<ExportDocument, String> {
    serde_json::from_slice(text).map_err(|e| {
        #[derive(serde::Deserialize)]
        struct Head {
            format: String,
        }
        match serde_json::from_slice::<Head>(text) {
            Ok(head) if head.format != EXPORT_FORMAT => format!(
                "it is of format {:?}; this liveplan reads {EXPORT_FORMAT}",
                head.format
            ),
            _ => e.to_string(),
        }
    })
}

/// [`parse_document`] for a JSON body.
pub fn parse_value(value: Value) -> Result<ExportDocument, ApiError> {
    let text = serde_json::to_vec(&value).map_err(|_| ApiError::internal())?;
    parse_document(&text)
        .map_err(|reason| ApiError::invalid(format!("not an export document: {reason}")))
}

/// Imports `document` (see [`Domain::import_document`]) with its attachments' bytes.
pub async fn import(
    domain: &Domain,
    importer: Option<&domain::Actor>,
    document: &ExportDocument,
    attachments_dir: &Path,
    existing: Existing,
) -> Result<Value, ApiError> {
    let staged = stage_attachments(document, attachments_dir).await?;
    let result = domain.import_document(importer, document, existing).await;
    let mut summary = match result {
        Ok(summary) => summary,
        Err(e) => {
            for (temp, _) in &staged {
                let _ = tokio::fs::remove_file(temp).await;
            }
            return Err(e);
        }
    };
    for (temp, path) in &staged {
        if let Err(e) = tokio::fs::rename(temp, path).await {
            // The rows are committed; the bytes stay beside their place for an operator.
            tracing::error!(file = %temp.display(), error = %e, "cannot move imported attachment bytes in");
            return Err(ApiError::internal());
        }
    }
    if let Value::Object(fields) = &mut summary {
        fields.insert("attachments".into(), staged.len().into());
    }
    Ok(summary)
}

/// Writes every attachment of the document to a temporary file beside its place; returns
/// (temporary, final) paths. Bytes for no attachment record of the document are refused.
async fn stage_attachments(
    document: &ExportDocument,
    attachments_dir: &Path,
) -> Result<Vec<(PathBuf, PathBuf)>, ApiError> {
    let records: HashSet<(Uuid, Uuid)> = attachment_ids(document).into_iter().collect();
    let mut staged = Vec::new();
    let result: Result<(), ApiError> = async {
        for attachment in &document.attachments {
            if !records.contains(&(attachment.project_id, attachment.id)) {
                return Err(ApiError::invalid(format!(
                    "attachments: bytes for {}, which is no attachment of the document",
                    attachment.id
                )));
            }
            let bytes = BASE64.decode(&attachment.content).map_err(|_| {
                ApiError::invalid(format!(
                    "attachments: the bytes of {} are not base64",
                    attachment.id
                ))
            })?;
            let path = attachment_path(attachments_dir, attachment.project_id, attachment.id);
            let temp = path.with_file_name(format!(".{}.import", attachment.id));
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| io_failure(dir, e))?;
            }
            tokio::fs::write(&temp, &bytes)
                .await
                .map_err(|e| io_failure(&temp, e))?;
            staged.push((temp, path));
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        for (temp, _) in &staged {
            let _ = tokio::fs::remove_file(temp).await;
        }
        return Err(e);
    }
    Ok(staged)
}

fn io_failure(path: &Path, error: std::io::Error) -> ApiError {
    tracing::error!(file = %path.display(), error = %error, "cannot write attachment bytes");
    ApiError::internal()
}

/// `liveplan export --out FILE`: the whole store, as of one moment, into `out` (written beside
/// it first and then renamed, so `out` is never half-written). Returns a summary.
pub async fn export_file(
    domain: &Domain,
    attachments_dir: &Path,
    out: &Path,
) -> Result<Value, TransferError> {
    let mut document = domain.export_all().await?;
    let missing = add_attachments(&mut document, attachments_dir).await?;
    for id in &missing {
        tracing::warn!(attachment = %id, "its bytes are missing from the data directory; exported without them");
    }
    let text = serde_json::to_vec(&document).map_err(|e| TransferError::Write {
        path: out.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    let mut temp = out.as_os_str().to_owned();
    temp.push(".partial");
    let temp = PathBuf::from(temp);
    let write = |source| TransferError::Write {
        path: out.to_path_buf(),
        source,
    };
    tokio::fs::write(&temp, &text).await.map_err(write)?;
    if let Err(e) = tokio::fs::rename(&temp, out).await {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(write(e));
    }
    Ok(serde_json::json!({
        "users": document.users.len(),
        "projects": document.projects.len(),
        "records": document.projects.iter().map(|p| p.records.len()).sum::<usize>(),
        "attachments": document.attachments.len(),
        "attachments_missing": missing.len(),
        "bytes": text.len(),
    }))
}

/// `liveplan import --in FILE [--replace]`.
pub async fn import_file(
    domain: &Domain,
    attachments_dir: &Path,
    input: &Path,
    existing: Existing,
) -> Result<Value, TransferError> {
    let read = |source| TransferError::Read {
        path: input.to_path_buf(),
        source,
    };
    let size = tokio::fs::metadata(input).await.map_err(read)?.len();
    if size > MAX_FILE_BYTES {
        return Err(TransferError::NotAnExport {
            path: input.to_path_buf(),
            reason: format!("it holds {size} bytes, more than the {MAX_FILE_BYTES} an export can"),
        });
    }
    let text = tokio::fs::read(input).await.map_err(read)?;
    let document = parse_document(&text).map_err(|reason| TransferError::NotAnExport {
        path: input.to_path_buf(),
        reason,
    })?;
    drop(text);
    Ok(import(domain, None, &document, attachments_dir, existing).await?)
}
