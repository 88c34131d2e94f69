//! Projects: creating one makes the caller its Owner; lifecycle events go on the `system`
//! stream, calendar changes on the project's own.

use crate::access::{project_role, require};
use crate::collections::Kind;
use crate::records::check_version;
use crate::tx::Tx;
use crate::validate::{JsonObject, as_object, check_kind, invalid_field};
use crate::{Actor, Domain, DomainResult, OrApi};
use proto::{ApiError, EventType, Role, StreamKey};
use serde_json::{Value, json};
use store::{MembershipRow, ProjectRow, Queries, format_ts};
use uuid::Uuid;

/// The project's own fields; anything else a client sends is kept as sent.
pub const PROJECT_FIELDS: &[(&str, Kind)] = &[
    ("name", Kind::Text { min: 1, max: 200 }),
    ("key", Kind::Text { min: 1, max: 32 }),
    (
        "description",
        Kind::Text {
            min: 0,
            max: 100_000,
        },
    ),
    ("start_date", Kind::Date),
    ("status_date", Kind::Date),
    (
        "calendar_id",
        Kind::Ref {
            collection: "calendars",
            on_delete: crate::collections::OnDelete::Clear,
        },
    ),
];
const SERVER_WRITTEN: &[&str] = &["id", "version", "created_at", "updated_at", "role"];
/// What `validate_project` accepts as a key (which also may not parse as a UUID, so a path
/// segment is never both), for the API document.
pub const KEY_PATTERN: &str = "^[A-Za-z][A-Za-z0-9_-]*$";
/// A project keeps at most this many fields, its own included.
pub const MAX_PROJECT_FIELDS: usize = 200;

pub fn project_json(row: &ProjectRow, role: Option<Role>) -> Value {
    let mut object = row.body.clone();
    object.insert("id".into(), json!(row.id));
    object.insert("name".into(), json!(row.name));
    object.insert("key".into(), json!(row.key));
    object.insert("version".into(), json!(row.version));
    object.insert("created_at".into(), json!(format_ts(row.created_at)));
    object.insert("updated_at".into(), json!(format_ts(row.updated_at)));
    if let Some(role) = role {
        object.insert("role".into(), json!(role.level()));
    }
    Value::Object(object)
}

pub fn validate_project(input: &Value, creating: bool) -> DomainResult<JsonObject> {
    let object = as_object(input)?;
    let mut out = JsonObject::new();
    for (name, value) in object {
        if SERVER_WRITTEN.contains(&name.as_str()) {
            continue;
        }
        if let Some((_, kind)) = PROJECT_FIELDS.iter().find(|(n, _)| n == name) {
            let nullable = !matches!(name.as_str(), "name");
            if value.is_null() {
                if !nullable {
                    return Err(invalid_field(name, "may not be null"));
                }
            } else {
                check_kind(name, *kind, value)?;
            }
            if name == "key"
                && let Some(key) = value.as_str()
            {
                let ok = key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    && key.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && Uuid::parse_str(key).is_err();
                if !ok {
                    return Err(invalid_field(
                        "key",
                        "letters, digits, - and _, starting with a letter",
                    ));
                }
            }
        } else if name.is_empty() || name.chars().count() > crate::validate::MAX_FIELD_NAME {
            return Err(invalid_field(name, "field names are 1 to 100 characters"));
        }
        out.insert(name.clone(), value.clone());
    }
    if creating && out.get("name").is_none_or(Value::is_null) {
        return Err(invalid_field("name", "is required"));
    }
    if out.len() > MAX_PROJECT_FIELDS {
        return Err(ApiError::invalid("too many fields"));
    }
    if serde_json::to_vec(&out)
        .map(|b| b.len())
        .unwrap_or(usize::MAX)
        > 256 * 1024
    {
        return Err(ApiError::new(
            proto::ErrorCode::PayloadTooLarge,
            "a project is at most 256 KiB",
        ));
    }
    Ok(out)
}

fn split_columns(row: &mut ProjectRow, fields: JsonObject) {
    for (name, value) in fields {
        match name.as_str() {
            "name" => row.name = value.as_str().unwrap_or_default().to_owned(),
            "key" => row.key = value.as_str().map(str::to_owned),
            _ => {
                row.body.insert(name, value);
            }
        }
    }
}

impl Domain {
    pub async fn list_projects(&self, actor: &Actor) -> DomainResult<Vec<Value>> {
        let mut ops = self.store.read().await.or_api()?;
        let memberships = ops.list_memberships_of_user(actor.user_id).await.or_api()?;
        let projects = ops.list_projects_of_user(actor.user_id).await.or_api()?;
        Ok(projects
            .iter()
            .map(|p| {
                let role = memberships
                    .iter()
                    .find(|m| m.project_id == p.id)
                    .and_then(|m| Role::from_level(m.role));
                project_json(p, role)
            })
            .collect())
    }

    pub async fn get_project(&self, actor: &Actor, project_id: Uuid) -> DomainResult<Value> {
        let mut ops = self.store.read().await.or_api()?;
        let (project, role) = project_role(&mut *ops, project_id, actor).await?;
        Ok(project_json(&project, Some(role)))
    }

    /// Resolves a project id or key (the `/api/projects/{id_or_key}` aliases).
    pub async fn resolve_project(&self, id_or_key: &str) -> DomainResult<Option<Uuid>> {
        if let Ok(id) = Uuid::parse_str(id_or_key) {
            return Ok(Some(id));
        }
        let mut ops = self.store.read().await.or_api()?;
        Ok(ops
            .find_project_by_key(id_or_key)
            .await
            .or_api()?
            .map(|p| p.id))
    }

    pub async fn create_project(&self, actor: &Actor, input: &Value) -> DomainResult<Value> {
        if !actor.is_admin && !self.users_create_projects {
            return Err(ApiError::forbidden(
                "only system administrators may create projects",
            ));
        }
        let fields = validate_project(input, true)?;
        if fields.get("calendar_id").is_some_and(|v| !v.is_null()) {
            return Err(invalid_field(
                "calendar_id",
                "set the calendar after creating its calendar",
            ));
        }
        // The system stream, then the new project's: see `Domain::retrying`.
        let fields = &fields;
        self.retrying(|| async move {
            let mut tx = Tx::begin(self, Some(actor)).await?;
            let row = create_project_in(&mut tx, actor.user_id, fields.clone()).await?;
            tx.commit().await?;
            Ok(project_json(&row, Some(Role::Owner)))
        })
        .await
    }

    pub async fn update_project(
        &self,
        actor: &Actor,
        project_id: Uuid,
        input: &Value,
        if_match: Option<i64>,
    ) -> DomainResult<Value> {
        let fields = validate_project(input, false)?;
        // The project's stream, then the system stream: see `Domain::retrying`.
        self.retrying(|| self.update_project_once(actor, project_id, fields.clone(), if_match))
            .await
    }

    async fn update_project_once(
        &self,
        actor: &Actor,
        project_id: Uuid,
        fields: JsonObject,
        if_match: Option<i64>,
    ) -> DomainResult<Value> {
        let mut tx = Tx::begin(self, Some(actor)).await?;
        let (current, role) = tx.project_role(project_id, actor).await?;
        require(role, Role::Admin, "changing the project")?;
        check_version(if_match, current.version)?;
        if let Some(calendar) = fields.get("calendar_id").and_then(Value::as_str) {
            let found = Uuid::parse_str(calendar)
                .ok()
                .map(|id| tx.ops().get_record(id));
            let found = match found {
                Some(fut) => fut.await.or_api()?,
                None => None,
            };
            if !found.is_some_and(|r| r.project_id == project_id && r.collection == "calendars") {
                return Err(invalid_field(
                    "calendar_id",
                    "no calendar with this id in this project",
                ));
            }
        }
        let mut row = current.clone();
        split_columns(&mut row, fields);
        if row == current {
            return Ok(project_json(&current, Some(role)));
        }
        row.version += 1;
        row.updated_at = tx.now;
        tx.ops().update_project(&row).await.or_api()?;
        let data = project_json(&row, None);
        tx.emit(
            StreamKey::System,
            EventType::ProjectUpdated,
            json!({ "id": project_id }),
            data.clone(),
            Some(project_id),
        )
        .await?;
        if row.body.get("calendar_id") != current.body.get("calendar_id") {
            tx.emit(
                StreamKey::Project(project_id),
                EventType::ProjectCalendarChanged,
                json!({ "id": project_id, "calendar_id": row.body.get("calendar_id") }),
                data,
                Some(project_id),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(project_json(&row, Some(role)))
    }

    pub async fn delete_project(
        &self,
        actor: &Actor,
        project_id: Uuid,
        if_match: Option<i64>,
    ) -> DomainResult<()> {
        // The project's stream, then the system stream: see `Domain::retrying`.
        self.retrying(|| async move {
            let mut tx = Tx::begin(self, Some(actor)).await?;
            let (current, role) = tx.project_role(project_id, actor).await?;
            require(role, Role::Owner, "deleting the project")?;
            check_version(if_match, current.version)?;
            delete_project_in(&mut tx, project_id).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }
}

/// Creates a project with `owner` as its Owner. Shared with the demo seed.
pub async fn create_project_in(
    tx: &mut Tx<'_>,
    owner: Uuid,
    fields: JsonObject,
) -> DomainResult<ProjectRow> {
    let mut row = ProjectRow {
        id: proto::ids::new_id(),
        key: None,
        name: String::new(),
        body: JsonObject::new(),
        version: 1,
        created_at: tx.now,
        updated_at: tx.now,
    };
    split_columns(&mut row, fields);
    tx.ops().insert_project(&row).await.or_api()?;
    let membership = MembershipRow {
        id: proto::ids::new_id(),
        project_id: row.id,
        user_id: owner,
        role: Role::Owner.level(),
        version: 1,
        created_at: tx.now,
        updated_at: tx.now,
    };
    tx.ops().insert_membership(&membership).await.or_api()?;
    tx.emit(
        StreamKey::System,
        EventType::ProjectCreated,
        json!({ "id": row.id }),
        project_json(&row, None),
        Some(row.id),
    )
    .await?;
    let member = crate::members::membership_payload(&membership);
    tx.emit(
        StreamKey::Project(row.id),
        EventType::MemberAdded,
        member.clone(),
        member,
        Some(row.id),
    )
    .await?;
    Ok(row)
}

/// Removes a project, its records, memberships and its event log.
pub async fn delete_project_in(tx: &mut Tx<'_>, project_id: Uuid) -> DomainResult<()> {
    // Its writers wait until the project is gone, then find it so.
    tx.hold(StreamKey::Project(project_id)).await?;
    let ops: &mut dyn Queries = tx.ops();
    ops.delete_stream_events(StreamKey::Project(project_id))
        .await
        .or_api()?;
    ops.delete_project(project_id).await.or_api()?;
    tx.emit(
        StreamKey::System,
        EventType::ProjectDeleted,
        json!({ "id": project_id }),
        json!({ "id": project_id }),
        Some(project_id),
    )
    .await
}
