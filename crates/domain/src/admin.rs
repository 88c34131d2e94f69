//! System administration: the project log, export, import and wipes.

use crate::access::{project_role, require_system_admin};
use crate::projects::delete_project_in;
use crate::tx::Tx;
use crate::validate::invalid_field;
use crate::{Actor, Domain, DomainResult, OrApi, collections};
use proto::{ApiError, Event, EventType, StreamKey};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use store::{MembershipRow, Page, ProjectRow, RecordRow, UserRow, format_ts};
use uuid::Uuid;

pub fn log_entry(event: &Event) -> Value {
    json!({
        "seq": event.seq,
        "event_type": event.event_type,
        "payload": event.payload,
        "data": event.data,
        "actor_id": event.actor_id,
        "tab_id": event.tab_id,
        "ts": format_ts(event.ts),
    })
}

/// The whole database as one document (`GET /api/v1/admin/export`).
#[derive(Debug, Serialize, Deserialize)]
pub struct ExportDocument {
    pub format: String,
    pub users: Vec<ExportUser>,
    pub projects: Vec<ExportProject>,
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
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExportProject {
    pub project: Value,
    pub members: Vec<ExportMember>,
    pub records: Vec<ExportRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExportMember {
    pub id: Uuid,
    pub user_id: Uuid,
    pub role: i64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExportRecord {
    pub collection: String,
    pub record: Value,
}

pub const EXPORT_FORMAT: &str = "liveplan-export-1";

impl Domain {
    pub async fn read_log(
        &self,
        actor: &Actor,
        project_id: Uuid,
        since: i64,
        limit: u32,
    ) -> DomainResult<Value> {
        let mut ops = self.store.read().await.or_api()?;
        project_role(&mut *ops, project_id, actor).await?;
        let stream = StreamKey::Project(project_id);
        let limit = limit.clamp(1, self.limits.max_log_page);
        let events = ops
            .read_events(stream, since.max(0), limit)
            .await
            .or_api()?;
        let latest = ops.latest_seq(stream).await.or_api()?;
        Ok(json!({
            "events": events.iter().map(log_entry).collect::<Vec<_>>(),
            "latest_seq": latest,
        }))
    }

    pub async fn export(&self, actor: &Actor) -> DomainResult<ExportDocument> {
        require_system_admin(actor)?;
        let mut ops = self.store.read().await.or_api()?;
        let users = ops
            .list_users()
            .await
            .or_api()?
            .into_iter()
            .map(|u| ExportUser {
                id: u.id,
                email: u.email,
                username: u.username,
                display_name: u.display_name,
                password_hash: u.password_hash,
                is_admin: u.is_admin,
                is_active: u.is_active,
            })
            .collect();
        let mut projects = Vec::new();
        for project in ops.list_projects().await.or_api()? {
            let members = ops
                .list_memberships(project.id)
                .await
                .or_api()?
                .into_iter()
                .map(|m| ExportMember {
                    id: m.id,
                    user_id: m.user_id,
                    role: m.role,
                })
                .collect();
            let mut records = Vec::new();
            for collection in collections::ALL {
                for row in ops
                    .list_records(project.id, collection.name, Page::ALL)
                    .await
                    .or_api()?
                {
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
            });
        }
        Ok(ExportDocument {
            format: EXPORT_FORMAT.to_owned(),
            users,
            projects,
        })
    }

    /// Replaces every project with the document's; users in the document are added or
    /// updated (never removed, so the importing administrator keeps their account). Emits
    /// `database_wiped`. Records are written as given: the document came from an export.
    pub async fn import(&self, actor: &Actor, document: Value) -> DomainResult<Value> {
        require_system_admin(actor)?;
        let document: ExportDocument = serde_json::from_value(document)
            .map_err(|e| ApiError::invalid(format!("not an export document: {e}")))?;
        if document.format != EXPORT_FORMAT {
            return Err(invalid_field("format", format!("must be {EXPORT_FORMAT}")));
        }
        let mut tx = Tx::begin(self, Some(actor)).await?;
        for project in tx.ops().list_projects().await.or_api()? {
            // Held before the project goes, so none of its writers is midway (see `Tx::hold`).
            tx.hold(StreamKey::Project(project.id)).await?;
            tx.ops()
                .delete_stream_events(StreamKey::Project(project.id))
                .await
                .or_api()?;
            tx.ops().delete_project(project.id).await.or_api()?;
        }
        // Users change on the system stream: held before they are read.
        tx.hold(StreamKey::System).await?;
        let now = tx.now;
        for user in &document.users {
            let existing = tx.ops().get_user(user.id).await.or_api()?;
            let row = UserRow {
                id: user.id,
                email: user.email.clone(),
                username: user.username.clone(),
                display_name: user.display_name.clone(),
                password_hash: user.password_hash.clone(),
                is_admin: user.is_admin || user.id == actor.user_id,
                is_active: user.is_active || user.id == actor.user_id,
                version: existing.as_ref().map_or(1, |u| u.version + 1),
                created_at: existing.as_ref().map_or(now, |u| u.created_at),
                updated_at: now,
            };
            if existing.is_some() {
                tx.ops().update_user(&row).await.or_api()?;
            } else {
                tx.ops().insert_user(&row).await.or_api()?;
            }
        }
        let (mut project_count, mut record_count) = (0, 0);
        for entry in &document.projects {
            let project = import_project(&entry.project, now)?;
            tx.ops().insert_project(&project).await.or_api()?;
            project_count += 1;
            for member in &entry.members {
                if proto::Role::from_level(member.role).is_none() {
                    return Err(invalid_field(
                        "role",
                        "must be one of 1, 100, 200, 300, 400",
                    ));
                }
                tx.ops()
                    .insert_membership(&MembershipRow {
                        id: member.id,
                        project_id: project.id,
                        user_id: member.user_id,
                        role: member.role,
                        version: 1,
                        created_at: now,
                        updated_at: now,
                    })
                    .await
                    .or_api()?;
            }
            // References may point forward in the document, so rows go in first and their
            // reference index after.
            let mut rows = Vec::new();
            for record in &entry.records {
                let spec = collections::by_name(&record.collection).ok_or_else(|| {
                    invalid_field(
                        "collection",
                        format!("unknown collection {}", record.collection),
                    )
                })?;
                let row = import_record(spec.name, project.id, &record.record, now)?;
                tx.ops().insert_record(&row, &[]).await.or_api()?;
                rows.push((spec, row));
                record_count += 1;
            }
            for (spec, row) in rows {
                let refs = crate::records::store_refs(spec, &row.body);
                tx.ops().update_record(&row, &refs).await.or_api()?;
            }
        }
        let summary = json!({ "projects": project_count, "records": record_count, "users": document.users.len() });
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

    /// Removes every project (`DELETE /api/v1/admin/projects`).
    pub async fn wipe_projects(&self, actor: &Actor) -> DomainResult<Value> {
        require_system_admin(actor)?;
        let mut tx = Tx::begin(self, Some(actor)).await?;
        let projects = tx.ops().list_projects().await.or_api()?;
        for project in &projects {
            tx.hold(StreamKey::Project(project.id)).await?;
            tx.ops()
                .delete_stream_events(StreamKey::Project(project.id))
                .await
                .or_api()?;
            tx.ops().delete_project(project.id).await.or_api()?;
        }
        let summary = json!({ "projects": projects.len() });
        tx.emit(
            StreamKey::System,
            EventType::DatabaseProjectsWiped,
            summary.clone(),
            summary.clone(),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(summary)
    }

    /// Deletes one project as part of administration, with its events.
    pub async fn admin_delete_project(&self, actor: &Actor, project_id: Uuid) -> DomainResult<()> {
        require_system_admin(actor)?;
        // The project's stream, then the system stream: see `Domain::retrying`.
        self.retrying(|| async move {
            let mut tx = Tx::begin(self, Some(actor)).await?;
            delete_project_in(&mut tx, project_id).await?;
            tx.commit().await
        })
        .await?;
        Ok(())
    }
}

fn id_of(value: &Value) -> DomainResult<Uuid> {
    value
        .get("id")
        .and_then(Value::as_str)
        .and_then(|t| Uuid::parse_str(t).ok())
        .ok_or_else(|| invalid_field("id", "every imported record needs an id"))
}

fn import_project(value: &Value, now: store::Timestamp) -> DomainResult<ProjectRow> {
    let id = id_of(value)?;
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
        version: 1,
        created_at: now,
        updated_at: now,
    })
}

fn import_record(
    collection: &str,
    project_id: Uuid,
    value: &Value,
    now: store::Timestamp,
) -> DomainResult<RecordRow> {
    let id = id_of(value)?;
    let mut body = value.as_object().cloned().unwrap_or_default();
    for key in collections::SERVER_FIELDS {
        body.remove(*key);
    }
    Ok(RecordRow {
        id,
        project_id,
        collection: collection.to_owned(),
        body,
        version: 1,
        created_at: now,
        updated_at: now,
    })
}
