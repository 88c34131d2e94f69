//! The whole database as one document, and back: what `GET`/`POST /api/v1/admin/export|import`
//! and `liveplan export|import` share, so that both keep everything as it was.
//!
//! An import is faithful: users (with their password hashes and active flags), projects,
//! memberships and records keep their ids, versions and timestamps, and every stream's seq
//! counter is raised to at least the exported one, so clients never see a seq twice. The event
//! log itself does not move: a client that resumes from before the import is told to resync
//! (`database_wiped`, and the log no longer holds its position).
//!
//! Not moved: the history of the Pusher app's own channels (it lasts a day; an import forgets
//! it, and each channel starts anew under a new `stream_id`), sessions and tickets (everyone signs in again), the token signing secret (a
//! secret has no place in a file, and it only signs the sessions that do not move), Bryntum
//! autosave grants (they lapse within a minute) and phantom ids (they only matter to a client
//! mid-sync, and the import disconnects every client). Attachment bytes are not the domain's:
//! the server puts them into [`ExportDocument::attachments`] and writes them back.
//!
//! Whiteboards' documents move with their records ([`ExportWhiteboard`]): the stored Yjs
//! updates in order (after compaction, usually one) and the named snapshots, as base64; the
//! import stores them again under the same board, from seq 1.
//!
//! Documents written by hand or by older builds may leave out versions, timestamps, streams,
//! settings and whiteboards: those rows start at version 1 and now, as new (a board without
//! data is an empty canvas).

use crate::tx::Tx;
use crate::validate::invalid_field;
use crate::{Actor, Domain, DomainResult, OrApi, collections};
use base64::Engine;
use chrono::DateTime;
use proto::{ApiError, EventType, Role, StreamKey};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use store::{
    MembershipRow, Page, ProjectRow, RecordRef, RecordRow, Timestamp, UserRow,
    WhiteboardSnapshotRow, format_ts,
};
use uuid::Uuid;

/// The one format this build writes and reads. A document of another format (a newer
/// liveplan's) is refused, never half-read.
pub const EXPORT_FORMAT: &str = "liveplan-export-1";

/// The settings that move with the data: whether the demo data was seeded (so `--demo` on the
/// new database does not seed it again over the imported accounts). Everything else in the
/// settings table is either a secret or transient (see the module's doc).
pub const MOVED_SETTINGS: &[&str] = &["demo_seeded"];

/// The most bytes of one board's updates, or of one snapshot, an import takes (the server's
/// limit on a whiteboard document).
pub const MAX_WHITEBOARD_BYTES: usize = 64 * 1024 * 1024;
/// The most snapshots of one board an import takes.
pub const MAX_WHITEBOARD_SNAPSHOTS: usize = 1_000;
/// The longest snapshot name (as the REST API allows).
pub const MAX_SNAPSHOT_NAME: usize = 200;

pub(crate) const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Updates read from the store per query while exporting a board.
const EXPORT_PAGE: u32 = 500;

/// The whole database as one document.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExportDocument {
    pub format: String,
    pub users: Vec<ExportUser>,
    pub projects: Vec<ExportProject>,
    /// Each stream's last seq (`system`, `user:{id}`, `project:{id}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub streams: BTreeMap<String, i64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
    /// The attachments' bytes, filled in and written back by the server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<ExportAttachment>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExportUser {
    pub id: Uuid,
    pub email: String,
    pub username: Option<String>,
    pub display_name: String,
    /// The argon2id hash, so a restore keeps everyone's password.
    pub password_hash: String,
    pub is_admin: bool,
    pub is_active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExportProject {
    /// As the API shows it (with `id`, `version`, `created_at`, `updated_at`).
    pub project: Value,
    pub members: Vec<ExportMember>,
    pub records: Vec<ExportRecord>,
    /// The documents of the project's whiteboards (each also a record of `records`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub whiteboards: Vec<ExportWhiteboard>,
}

/// One whiteboard's Yjs document.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExportWhiteboard {
    /// The whiteboard record's id.
    pub id: Uuid,
    /// The stored updates in order, base64: applied in turn, they are the document.
    pub updates: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<ExportSnapshot>,
}

/// A named version of a board.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExportSnapshot {
    pub id: Uuid,
    pub name: String,
    pub created_at: String,
    /// The board's whole state then (a Yjs update from the empty document), base64.
    pub state: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExportMember {
    pub id: Uuid,
    pub user_id: Uuid,
    pub role: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExportRecord {
    pub collection: String,
    /// As the API shows it (with `id`, `project_id`, `version`, `created_at`, `updated_at`).
    pub record: Value,
}

/// One attachment's bytes, base64 (standard alphabet, padded).
#[derive(Debug, Serialize, Deserialize)]
pub struct ExportAttachment {
    pub project_id: Uuid,
    pub id: Uuid,
    pub content: String,
}

/// What an import found in the database it replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Replace whatever is there (the HTTP import, `liveplan import --replace`).
    Replace,
    /// Refuse unless the database holds no user and no project (`liveplan import`).
    MustBeEmpty,
}

/// A project of the document as rows: the project, its memberships, its records with their
/// references.
type ProjectRows = (
    ProjectRow,
    Vec<MembershipRow>,
    Vec<(RecordRow, Vec<RecordRef>)>,
    Vec<BoardRows>,
);

/// A board's updates in order, and its snapshots.
type BoardRows = (Uuid, Vec<Vec<u8>>, Vec<WhiteboardSnapshotRow>);

/// A document checked whole before anything is written.
struct Checked {
    users: Vec<UserRow>,
    projects: Vec<ProjectRows>,
    streams: Vec<(StreamKey, i64)>,
    settings: Vec<(String, String)>,
}

impl Domain {
    /// The whole database as of one moment, without attachment bytes.
    pub async fn export_all(&self) -> DomainResult<ExportDocument> {
        let mut ops = self.store.snapshot().await.or_api()?;
        let mut streams = BTreeMap::new();
        let system = StreamKey::System;
        streams.insert(system.to_text(), ops.latest_seq(system).await.or_api()?);
        let mut users = Vec::new();
        for u in ops.list_users().await.or_api()? {
            let stream = StreamKey::User(u.id);
            streams.insert(stream.to_text(), ops.latest_seq(stream).await.or_api()?);
            users.push(ExportUser {
                id: u.id,
                email: u.email,
                username: u.username,
                display_name: u.display_name,
                password_hash: u.password_hash,
                is_admin: u.is_admin,
                is_active: u.is_active,
                version: Some(u.version),
                created_at: Some(format_ts(u.created_at)),
                updated_at: Some(format_ts(u.updated_at)),
            });
        }
        let mut projects = Vec::new();
        for project in ops.list_projects().await.or_api()? {
            let stream = StreamKey::Project(project.id);
            streams.insert(stream.to_text(), ops.latest_seq(stream).await.or_api()?);
            let members = ops
                .list_memberships(project.id)
                .await
                .or_api()?
                .into_iter()
                .map(|m| ExportMember {
                    id: m.id,
                    user_id: m.user_id,
                    role: m.role,
                    version: Some(m.version),
                    created_at: Some(format_ts(m.created_at)),
                    updated_at: Some(format_ts(m.updated_at)),
                })
                .collect();
            let mut records = Vec::new();
            let mut whiteboards = Vec::new();
            for collection in collections::ALL {
                for row in ops
                    .list_records(project.id, collection.name, Page::ALL)
                    .await
                    .or_api()?
                {
                    if collection.name == "whiteboards" {
                        whiteboards.push(export_whiteboard(&mut *ops, row.id).await?);
                    }
                    records.push(ExportRecord {
                        collection: collection.name.to_owned(),
                        record: crate::records::record_json(&row),
                    });
                }
            }
            projects.push(ExportProject {
                project: crate::projects::project_json(&project, None),
                members,
                records,
                whiteboards,
            });
        }
        let mut settings = BTreeMap::new();
        for key in MOVED_SETTINGS {
            if let Some(value) = ops.get_setting(key).await.or_api()? {
                settings.insert((*key).to_owned(), value);
            }
        }
        Ok(ExportDocument {
            format: EXPORT_FORMAT.to_owned(),
            users,
            projects,
            streams,
            settings,
            attachments: Vec::new(),
        })
    }

    /// Replaces the database with `document`, in one write transaction: every project and
    /// every user goes, the document's come in as they were, seqs are raised, and
    /// `database_wiped` is emitted on the system stream.
    ///
    /// `importer`, the administrator of an HTTP import, keeps a way in: their account stays
    /// unless the document has one with their id, email or username (which then replaces
    /// theirs, password and all: they sign in with it), and their own id in the document
    /// stays an active administrator. The CLI passes `None`: everything is as in the document.
    ///
    /// It holds every project's stream and the system stream, so it can deadlock with another
    /// node's command that holds two of them the other way round: it then runs again
    /// ([`Domain::retrying`]).
    pub async fn import_document(
        &self,
        importer: Option<&Actor>,
        document: &ExportDocument,
        existing: Existing,
    ) -> DomainResult<Value> {
        self.retrying(|| self.import_document_once(importer, document, existing))
            .await
    }

    async fn import_document_once(
        &self,
        importer: Option<&Actor>,
        document: &ExportDocument,
        existing: Existing,
    ) -> DomainResult<Value> {
        let now = store::now();
        let checked = check(document, importer, now, self.limits.max_records_per_project)?;
        let mut tx = Tx::begin(self, importer).await?;
        // Projects' streams before the system stream: the order every project deletion holds
        // them in, so the two cannot deadlock.
        let listed = tx.ops().list_projects().await.or_api()?;
        for project in &listed {
            tx.hold(StreamKey::Project(project.id)).await?;
        }
        tx.hold(StreamKey::System).await?;
        let projects = tx.ops().list_projects().await.or_api()?;
        let users = tx.ops().list_users().await.or_api()?;
        if existing == Existing::MustBeEmpty && !(projects.is_empty() && users.is_empty()) {
            return Err(ApiError::conflict(format!(
                "the database already holds {} users and {} projects; an import replaces \
                 them only when asked to (--replace)",
                users.len(),
                projects.len()
            )));
        }
        for project in &projects {
            // A project made after the first listing is held now (rare; see above).
            tx.hold(StreamKey::Project(project.id)).await?;
            let ops = tx.ops();
            ops.delete_stream_events(StreamKey::Project(project.id))
                .await
                .or_api()?;
            ops.delete_project(project.id).await.or_api()?;
        }
        // The importer's own id in the document is updated in place, so their session lives on.
        let importer_id = importer.map(|actor| actor.user_id);
        let in_place = importer_id.filter(|id| {
            users.iter().any(|u| u.id == *id) && checked.users.iter().any(|u| u.id == *id)
        });
        let kept =
            importer_id.filter(|id| in_place == Some(*id) || !clashes(&users, *id, &checked.users));
        let known: HashSet<Uuid> = checked.users.iter().map(|u| u.id).chain(kept).collect();
        for (_, memberships, _, _) in &checked.projects {
            if let Some(m) = memberships.iter().find(|m| !known.contains(&m.user_id)) {
                return Err(invalid_field(
                    "members",
                    format!("membership {} names no user of the document", m.id),
                ));
            }
        }
        for user in users.iter().filter(|u| Some(u.id) != kept) {
            let ops = tx.ops();
            ops.delete_user(user.id).await.or_api()?;
            ops.delete_stream_events(StreamKey::User(user.id))
                .await
                .or_api()?;
        }
        let ops = tx.ops();
        // The Pusher app's channels start anew too (new `stream_id`s): their history is not
        // exported (it lasts a day), and what it said belongs to the replaced database.
        ops.delete_app_channels().await.or_api()?;
        // In place first: it may free an email or username another account of the document has.
        for user in checked.users.iter().filter(|u| Some(u.id) == in_place) {
            ops.update_user(user).await.or_api()?;
        }
        for user in checked.users.iter().filter(|u| Some(u.id) != in_place) {
            ops.insert_user(user).await.or_api()?;
        }
        let (mut members, mut records, mut whiteboards) = (0, 0, 0);
        for (project, memberships, rows, boards) in &checked.projects {
            ops.insert_project(project).await.or_api()?;
            for membership in memberships {
                ops.insert_membership(membership).await.or_api()?;
            }
            // A reference may point forward in the document: the reference index does not
            // need its target to exist, so each row goes in once, with its references.
            for (row, refs) in rows {
                ops.insert_record(row, refs).await.or_api()?;
            }
            for (board, updates, snapshots) in boards {
                for update in updates {
                    ops.append_whiteboard_update(*board, update, now)
                        .await
                        .or_api()?;
                }
                for snapshot in snapshots {
                    ops.insert_whiteboard_snapshot(snapshot).await.or_api()?;
                }
            }
            members += memberships.len();
            records += rows.len();
            whiteboards += boards.len();
        }
        for (key, value) in &checked.settings {
            ops.put_setting(key, value).await.or_api()?;
        }
        for (stream, seq) in &checked.streams {
            ops.raise_seq(*stream, *seq).await.or_api()?;
        }
        let summary = json!({
            "users": checked.users.len(),
            "projects": checked.projects.len(),
            "members": members,
            "records": records,
            "whiteboards": whiteboards,
        });
        tx.emit(
            StreamKey::System,
            EventType::DatabaseWiped,
            summary.clone(),
            summary.clone(),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(summary)
    }
}

/// Whether the document has an account with the email or username of the existing user `id`
/// (case-insensitively, as logins are), which then takes that user's place.
fn clashes(existing: &[UserRow], id: Uuid, incoming: &[UserRow]) -> bool {
    let Some(user) = existing.iter().find(|u| u.id == id) else {
        return true;
    };
    let names = |u: &UserRow| {
        let mut names = vec![u.email.to_lowercase()];
        names.extend(u.username.as_deref().map(str::to_lowercase));
        names
    };
    let theirs = names(user);
    incoming
        .iter()
        .any(|other| names(other).iter().any(|name| theirs.contains(name)))
}

/// Whether an import of `document` would be refused, and why, without writing anything: the
/// checks [`Domain::import_document`] runs first (the fuzz target `import_document` calls it).
pub fn check_import(
    document: &ExportDocument,
    importer: Option<&Actor>,
    now: Timestamp,
    max_records_per_project: i64,
) -> DomainResult<()> {
    check(document, importer, now, max_records_per_project).map(drop)
}

/// Turns the document into rows, or says what is wrong with it, before anything is written.
fn check(
    document: &ExportDocument,
    importer: Option<&Actor>,
    now: Timestamp,
    max_records_per_project: i64,
) -> DomainResult<Checked> {
    if document.format != EXPORT_FORMAT {
        return Err(invalid_field(
            "format",
            format!(
                "this liveplan reads {EXPORT_FORMAT} documents, not {:?} (one written by a \
                 newer liveplan needs that version to import it)",
                document.format
            ),
        ));
    }
    // The same rules as the API's, over the whole document, before anything is written.
    crate::transfer_check::check_document(
        document,
        importer.map(|a| a.user_id),
        max_records_per_project,
    )?;
    let mut users = Vec::new();
    for u in &document.users {
        let is_importer = importer.is_some_and(|a| a.user_id == u.id);
        users.push(UserRow {
            id: u.id,
            email: u.email.clone(),
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            password_hash: u.password_hash.clone(),
            is_admin: u.is_admin || is_importer,
            is_active: u.is_active || is_importer,
            version: version(u.version)?,
            created_at: timestamp("created_at", u.created_at.as_deref(), now)?,
            updated_at: timestamp("updated_at", u.updated_at.as_deref(), now)?,
        });
    }
    let mut projects = Vec::new();
    for entry in &document.projects {
        let project = project_row(&entry.project, now)?;
        let mut memberships = Vec::new();
        for m in &entry.members {
            if Role::from_level(m.role).is_none() {
                return Err(invalid_field(
                    "role",
                    "must be one of 1, 100, 200, 300, 400",
                ));
            }
            memberships.push(MembershipRow {
                id: m.id,
                project_id: project.id,
                user_id: m.user_id,
                role: m.role,
                version: version(m.version)?,
                created_at: timestamp("created_at", m.created_at.as_deref(), now)?,
                updated_at: timestamp("updated_at", m.updated_at.as_deref(), now)?,
            });
        }
        let mut rows = Vec::new();
        for record in &entry.records {
            let spec = collections::by_name(&record.collection).ok_or_else(|| {
                invalid_field(
                    "collection",
                    format!("unknown collection {}", record.collection),
                )
            })?;
            let row = record_row(spec.name, project.id, &record.record, now)?;
            let refs = crate::records::store_refs(spec, &row.body);
            rows.push((row, refs));
        }
        let boards = whiteboard_rows(entry, &rows, now)?;
        projects.push((project, memberships, rows, boards));
    }
    let mut streams = Vec::new();
    for (text, seq) in &document.streams {
        let stream = StreamKey::parse(text)
            .ok_or_else(|| invalid_field("streams", format!("{text:?} is not a stream")))?;
        if *seq < 0 {
            return Err(invalid_field(
                "streams",
                format!("{text}: a seq is never below 0"),
            ));
        }
        streams.push((stream, *seq));
    }
    let settings = document
        .settings
        .iter()
        .filter(|(key, _)| MOVED_SETTINGS.contains(&key.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Checked {
        users,
        projects,
        streams,
        settings,
    })
}

/// A project's whiteboard documents as rows: each names a whiteboard record of the project (once),
/// and its updates and snapshots decode within the limits.
fn whiteboard_rows(
    entry: &ExportProject,
    rows: &[(RecordRow, Vec<RecordRef>)],
    now: Timestamp,
) -> DomainResult<Vec<BoardRows>> {
    let boards: HashSet<Uuid> = rows
        .iter()
        .filter(|(row, _)| row.collection == "whiteboards")
        .map(|(row, _)| row.id)
        .collect();
    let mut seen = HashSet::new();
    let mut snapshot_ids = HashSet::new();
    let mut out = Vec::new();
    for board in &entry.whiteboards {
        if !boards.contains(&board.id) {
            return Err(invalid_field(
                "whiteboards",
                format!("{} is no whiteboard of its project", board.id),
            ));
        }
        if !seen.insert(board.id) {
            return Err(invalid_field(
                "whiteboards",
                format!("whiteboard {} has two documents", board.id),
            ));
        }
        let mut total = 0;
        let mut updates = Vec::with_capacity(board.updates.len());
        for text in &board.updates {
            let update = decode_base64(text, "whiteboards.updates")?;
            total += update.len();
            if update.is_empty() || total > MAX_WHITEBOARD_BYTES {
                return Err(invalid_field(
                    "whiteboards.updates",
                    format!(
                        "whiteboard {}: updates must be non-empty and at most {MAX_WHITEBOARD_BYTES} bytes in all",
                        board.id
                    ),
                ));
            }
            updates.push(update);
        }
        if board.snapshots.len() > MAX_WHITEBOARD_SNAPSHOTS {
            return Err(invalid_field(
                "whiteboards.snapshots",
                format!("a whiteboard has at most {MAX_WHITEBOARD_SNAPSHOTS} snapshots"),
            ));
        }
        let mut snapshots = Vec::with_capacity(board.snapshots.len());
        for snapshot in &board.snapshots {
            let name = snapshot.name.trim();
            if name.is_empty() || name.chars().count() > MAX_SNAPSHOT_NAME {
                return Err(invalid_field(
                    "whiteboards.snapshots.name",
                    format!("a snapshot name is 1 to {MAX_SNAPSHOT_NAME} characters"),
                ));
            }
            if !snapshot_ids.insert(snapshot.id) {
                return Err(invalid_field(
                    "whiteboards.snapshots.id",
                    format!("two snapshots have the id {}", snapshot.id),
                ));
            }
            let state = decode_base64(&snapshot.state, "whiteboards.snapshots.state")?;
            if state.len() > MAX_WHITEBOARD_BYTES {
                return Err(invalid_field(
                    "whiteboards.snapshots.state",
                    format!("a snapshot is at most {MAX_WHITEBOARD_BYTES} bytes"),
                ));
            }
            snapshots.push(WhiteboardSnapshotRow {
                id: snapshot.id,
                board_id: board.id,
                name: name.to_owned(),
                state,
                created_at: timestamp(
                    "whiteboards.snapshots.created_at",
                    Some(&snapshot.created_at),
                    now,
                )?,
            });
        }
        out.push((board.id, updates, snapshots));
    }
    Ok(out)
}

fn decode_base64(text: &str, field: &str) -> DomainResult<Vec<u8>> {
    if text.len() > MAX_WHITEBOARD_BYTES / 3 * 4 + 4 {
        return Err(invalid_field(field, "too long"));
    }
    BASE64
        .decode(text)
        .map_err(|_| invalid_field(field, "must be base64 (standard alphabet, padded)"))
}

/// A board's stored updates and snapshots, as the document carries them.
async fn export_whiteboard(
    ops: &mut dyn store::Queries,
    board: Uuid,
) -> DomainResult<ExportWhiteboard> {
    let mut updates = Vec::new();
    let mut after = 0;
    loop {
        let page = ops
            .read_whiteboard_updates(board, after, EXPORT_PAGE)
            .await
            .or_api()?;
        let full = page.len() == EXPORT_PAGE as usize;
        for row in page {
            after = row.seq;
            updates.push(BASE64.encode(&row.update));
        }
        if !full {
            break;
        }
    }
    let mut snapshots = Vec::new();
    for info in ops.list_whiteboard_snapshots(board).await.or_api()? {
        if let Some(row) = ops.get_whiteboard_snapshot(info.id).await.or_api()? {
            snapshots.push(ExportSnapshot {
                id: row.id,
                name: row.name,
                created_at: format_ts(row.created_at),
                state: BASE64.encode(&row.state),
            });
        }
    }
    Ok(ExportWhiteboard {
        id: board,
        updates,
        snapshots,
    })
}

fn version(given: Option<i64>) -> DomainResult<i64> {
    match given {
        None => Ok(1),
        Some(v) if v >= 1 => Ok(v),
        Some(_) => Err(invalid_field("version", "must be 1 or more")),
    }
}

fn timestamp(field: &str, given: Option<&str>, now: Timestamp) -> DomainResult<Timestamp> {
    match given {
        None => Ok(now),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| t.to_utc())
            .map_err(|_| invalid_field(field, format!("{text:?} is not a timestamp"))),
    }
}

fn id_of(value: &Value) -> DomainResult<Uuid> {
    value
        .get("id")
        .and_then(Value::as_str)
        .and_then(|t| Uuid::parse_str(t).ok())
        .ok_or_else(|| invalid_field("id", "every imported record needs an id"))
}

/// The server's fields of an API object: version and timestamps (defaults for a document
/// that leaves them out).
fn server_fields(value: &Value, now: Timestamp) -> DomainResult<(i64, Timestamp, Timestamp)> {
    let version = match value.get("version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .ok_or_else(|| invalid_field("version", "must be a whole number"))?,
        ),
    };
    let text = |key: &str| -> DomainResult<Option<&str>> {
        match value.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(invalid_field(key, "must be a timestamp string")),
        }
    };
    Ok((
        self::version(version)?,
        timestamp("created_at", text("created_at")?, now)?,
        timestamp("updated_at", text("updated_at")?, now)?,
    ))
}

fn project_row(value: &Value, now: Timestamp) -> DomainResult<ProjectRow> {
    let id = id_of(value)?;
    let (version, created_at, updated_at) = server_fields(value, now)?;
    let mut body = value.as_object().cloned().unwrap_or_default();
    for key in ["id", "version", "created_at", "updated_at", "role"] {
        body.remove(key);
    }
    let name = body
        .remove("name")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let key = body
        .remove("key")
        .and_then(|v| v.as_str().map(str::to_owned));
    Ok(ProjectRow {
        id,
        key,
        name,
        body,
        version,
        created_at,
        updated_at,
    })
}

fn record_row(
    collection: &str,
    project_id: Uuid,
    value: &Value,
    now: Timestamp,
) -> DomainResult<RecordRow> {
    let id = id_of(value)?;
    let (version, created_at, updated_at) = server_fields(value, now)?;
    let mut body = value.as_object().cloned().unwrap_or_default();
    for key in collections::SERVER_FIELDS {
        body.remove(*key);
    }
    Ok(RecordRow {
        id,
        project_id,
        collection: collection.to_owned(),
        body,
        version,
        created_at,
        updated_at,
    })
}
