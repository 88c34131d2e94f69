//! Create, read, update and delete of the project collections, with the rules each collection
//! adds: references inside the project, task hierarchy without loops, dependency cycles,
//! uniqueness of links, cascades on delete, and the events of every change.
//!
//! Over 800 lines on purpose: create, update and delete share private rules (reference checks,
//! hierarchy, cycles, cascades) that must not be callable from elsewhere in the crate; the
//! collection table and validation already live apart (`collections`, `validate`).

use crate::access::{project_role, require};
use crate::collections::{self, Collection, Kind, OnDelete};
use crate::tx::Tx;
use crate::validate::{self, JsonObject, Mode, invalid_field};
use crate::{Actor, Domain, DomainResult, OrApi};
use proto::{ApiError, ErrorCode, EventType, Role, StreamKey};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use store::{Page, Queries, RecordRef, RecordRow, format_ts};
use uuid::Uuid;

/// The most tasks walked when checking the hierarchy for loops.
const MAX_TREE_DEPTH: usize = 1_000;

/// The JSON of a record as clients see it.
pub fn record_json(row: &RecordRow) -> Value {
    let mut object = row.body.clone();
    object.insert("id".into(), json!(row.id));
    object.insert("project_id".into(), json!(row.project_id));
    object.insert("version".into(), json!(row.version));
    object.insert("created_at".into(), json!(format_ts(row.created_at)));
    object.insert("updated_at".into(), json!(format_ts(row.updated_at)));
    Value::Object(object)
}

/// Checks `If-Match` against the stored version.
pub fn check_version(expected: Option<i64>, actual: i64) -> DomainResult<()> {
    match expected {
        Some(expected) if expected != actual => Err(ApiError::new(
            ErrorCode::VersionMismatch,
            format!("the record is at version {actual}, not {expected}"),
        )
        .with_details(json!({ "version": actual }))),
        _ => Ok(()),
    }
}

fn defaults(collection: &Collection) -> Vec<(&'static str, Value)> {
    match collection.name {
        "dependencies" => vec![("type", json!("FS")), ("lag", json!(0))],
        "assignments" => vec![("units", json!(100))],
        "calendars" => vec![
            ("working_days", json!([1, 2, 3, 4, 5])),
            ("exceptions", json!([])),
        ],
        "sprints" => vec![("state", json!("planned"))],
        "baselines" => vec![("is_active", json!(false))],
        _ => vec![],
    }
}

/// Loads a record of `collection` in `project_id`, or 404.
pub async fn load(
    ops: &mut dyn Queries,
    collection: &Collection,
    project_id: Uuid,
    id: Uuid,
) -> DomainResult<RecordRow> {
    let found = ops.get_record(id).await.or_api()?;
    in_project(found, collection, project_id)
}

/// The record found if it is one of `collection` in `project_id`, or [`load`]'s 404.
pub fn in_project(
    found: Option<RecordRow>,
    collection: &Collection,
    project_id: Uuid,
) -> DomainResult<RecordRow> {
    found
        .filter(|row| row.project_id == project_id && row.collection == collection.name)
        .ok_or_else(|| ApiError::not_found(collection.singular))
}

impl Domain {
    pub async fn list_records(
        &self,
        actor: &Actor,
        project_id: Uuid,
        collection: &Collection,
        page: Page,
    ) -> DomainResult<Vec<Value>> {
        let mut ops = self.store.read().await.or_api()?;
        project_role(&mut *ops, project_id, actor).await?;
        let page = Page {
            limit: page.limit.min(self.limits.max_list_page),
            offset: page.offset,
        };
        let rows = ops
            .list_records(project_id, collection.name, page)
            .await
            .or_api()?;
        Ok(rows.iter().map(record_json).collect())
    }

    pub async fn get_record(
        &self,
        actor: &Actor,
        project_id: Uuid,
        collection: &Collection,
        id: Uuid,
    ) -> DomainResult<RecordRow> {
        let mut ops = self.store.read().await.or_api()?;
        project_role(&mut *ops, project_id, actor).await?;
        load(&mut *ops, collection, project_id, id).await
    }

    pub async fn create_record(
        &self,
        actor: &Actor,
        project_id: Uuid,
        collection: &'static Collection,
        input: &Value,
    ) -> DomainResult<Value> {
        if collection.upload_only {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!("{} are created by a multipart upload", collection.name),
            ));
        }
        let mut tx = Tx::begin(self, Some(actor)).await?;
        let (_, role) = tx.project_role(project_id, actor).await?;
        require(
            role,
            collection.write_role,
            &format!("creating {}", collection.name),
        )?;
        // After the role: one who may not write learns that, not what is wrong with the body.
        let fields = validate::validate_fields(collection, input, Mode::Create)?;
        let row = self
            .insert_new_record(&mut tx, project_id, collection, fields, None)
            .await?;
        tx.commit().await?;
        Ok(record_json(&row))
    }

    /// Inserts a validated record (defaults, collection rules, references) and emits its
    /// events. Shared by the REST create, uploads and the demo seed.
    pub async fn insert_new_record(
        &self,
        tx: &mut Tx<'_>,
        project_id: Uuid,
        collection: &'static Collection,
        mut body: JsonObject,
        id: Option<Uuid>,
    ) -> DomainResult<RecordRow> {
        let count = tx.ops().count_records(project_id).await.or_api()?;
        if count >= self.limits.max_records_per_project {
            return Err(ApiError::invalid(format!(
                "a project holds at most {} records",
                self.limits.max_records_per_project
            )));
        }
        for (name, value) in defaults(collection) {
            body.entry(name).or_insert(value);
        }
        let id = id.unwrap_or_else(proto::ids::new_id);
        match collection.name {
            "comments" | "attachments" => {
                body.insert("author_id".into(), json!(tx.actor_id));
            }
            "baselines" => {
                let snapshot = baseline_snapshot(tx.ops(), project_id).await?;
                body.insert("tasks".into(), snapshot);
            }
            _ => {}
        }
        check_body_size(collection, &body)?;
        let refs = check_references(tx.ops(), project_id, collection, id, &body).await?;
        check_collection_rules(tx.ops(), project_id, collection, id, &body, None).await?;
        let row = RecordRow {
            id,
            project_id,
            collection: collection.name.to_owned(),
            body,
            version: 1,
            created_at: tx.now,
            updated_at: tx.now,
        };
        tx.ops().insert_record(&row, &refs).await.or_api()?;
        let data = record_json(&row);
        tx.emit(
            StreamKey::Project(project_id),
            collection.events.created,
            json!({ "id": id }),
            data,
            Some(project_id),
        )
        .await?;
        if collection.name == "tasks"
            && let Some(sprint) = row.body.get("sprint_id").filter(|v| !v.is_null())
        {
            emit_scope_change(tx, project_id, sprint, id, "added").await?;
        }
        Ok(row)
    }

    pub async fn update_record(
        &self,
        actor: &Actor,
        project_id: Uuid,
        collection: &'static Collection,
        id: Uuid,
        input: &Value,
        if_match: Option<i64>,
    ) -> DomainResult<Value> {
        let mut tx = Tx::begin(self, Some(actor)).await?;
        let (_, role, found) = tx.project_role_and_record(project_id, actor, id).await?;
        if !collection.patchable {
            return Err(ApiError::new(
                ErrorCode::MethodNotAllowed,
                format!("{} cannot be changed once made", collection.name),
            ));
        }
        let current = in_project(found, collection, project_id)?;
        authorize_change(collection, role, actor, &current)?;
        let fields = validate::validate_fields(collection, input, Mode::Patch)?;
        check_version(if_match, current.version)?;
        let row = self
            .apply_update(&mut tx, collection, current, fields)
            .await?;
        tx.commit().await?;
        Ok(record_json(&row))
    }

    /// Merges `fields` into `current`, checks the result and writes it with its events. A
    /// change that changes nothing writes nothing.
    pub async fn apply_update(
        &self,
        tx: &mut Tx<'_>,
        collection: &'static Collection,
        current: RecordRow,
        fields: JsonObject,
    ) -> DomainResult<RecordRow> {
        let mut body = current.body.clone();
        let mut changed = Vec::new();
        for (name, value) in fields {
            if body.get(&name) != Some(&value) {
                changed.push(name.clone());
                body.insert(name, value);
            }
        }
        if changed.is_empty() {
            return Ok(current);
        }
        for field in collection
            .fields
            .iter()
            .filter(|f| f.required && !f.read_only)
        {
            if body.get(field.name).is_none_or(Value::is_null) {
                return Err(invalid_field(field.name, "is required"));
            }
        }
        check_body_size(collection, &body)?;
        let project_id = current.project_id;
        let refs = check_references(tx.ops(), project_id, collection, current.id, &body).await?;
        check_collection_rules(
            tx.ops(),
            project_id,
            collection,
            current.id,
            &body,
            Some(&current),
        )
        .await?;
        let row = RecordRow {
            body,
            version: current.version + 1,
            updated_at: tx.now,
            ..current.clone()
        };
        tx.ops().update_record(&row, &refs).await.or_api()?;
        self.emit_updated(tx, collection, &row, &changed).await?;
        if collection.name == "tasks" && changed.iter().any(|f| f == "sprint_id") {
            let old = current
                .body
                .get("sprint_id")
                .cloned()
                .unwrap_or(Value::Null);
            let new = row.body.get("sprint_id").cloned().unwrap_or(Value::Null);
            if !old.is_null() {
                emit_scope_change(tx, project_id, &old, row.id, "removed").await?;
            }
            if !new.is_null() {
                emit_scope_change(tx, project_id, &new, row.id, "added").await?;
            }
        }
        Ok(row)
    }

    async fn emit_updated(
        &self,
        tx: &mut Tx<'_>,
        collection: &Collection,
        row: &RecordRow,
        changed: &[String],
    ) -> DomainResult<()> {
        let Some(event) = collection.events.updated else {
            return Ok(());
        };
        let payload = if event == EventType::TaskUpdated {
            json!({
                "id": row.id,
                "changed_fields": changed,
                "version": row.version,
                "actor_id": tx.actor_id,
                "ts": format_ts(tx.now),
            })
        } else {
            json!({ "id": row.id })
        };
        tx.emit(
            StreamKey::Project(row.project_id),
            event,
            payload,
            record_json(row),
            Some(row.project_id),
        )
        .await
    }

    pub async fn delete_record(
        &self,
        actor: &Actor,
        project_id: Uuid,
        collection: &'static Collection,
        id: Uuid,
        if_match: Option<i64>,
    ) -> DomainResult<Vec<Uuid>> {
        let mut tx = Tx::begin(self, Some(actor)).await?;
        let (_, role, found) = tx.project_role_and_record(project_id, actor, id).await?;
        let current = in_project(found, collection, project_id)?;
        authorize_change(collection, role, actor, &current)?;
        check_version(if_match, current.version)?;
        let removed_files = self.delete_with_cascade(&mut tx, current).await?;
        tx.commit().await?;
        Ok(removed_files)
    }

    /// Deletes a record and everything that depends on it, clearing optional references to
    /// it. Dependents' events come before the record's own. Returns the ids of deleted
    /// attachments, whose bytes the caller removes after the commit.
    pub async fn delete_with_cascade(
        &self,
        tx: &mut Tx<'_>,
        root: RecordRow,
    ) -> DomainResult<Vec<Uuid>> {
        let mut doomed: Vec<RecordRow> = Vec::new();
        let mut doomed_ids: HashSet<Uuid> = HashSet::new();
        let mut clears: Vec<(Uuid, String, Uuid)> = Vec::new();
        let mut queue = VecDeque::from([root]);
        while let Some(row) = queue.pop_front() {
            if !doomed_ids.insert(row.id) {
                continue;
            }
            for referrer in tx.ops().list_referrers(row.id).await.or_api()? {
                let Some(spec) = collections::by_name(&referrer.collection) else {
                    continue;
                };
                let on_delete = match spec.field(&referrer.field).map(|f| f.kind) {
                    Some(Kind::Ref { on_delete, .. }) => on_delete,
                    _ => OnDelete::Clear,
                };
                match on_delete {
                    OnDelete::Cascade => {
                        if let Some(dependent) =
                            tx.ops().get_record(referrer.record_id).await.or_api()?
                        {
                            queue.push_back(dependent);
                        }
                    }
                    OnDelete::Clear => clears.push((referrer.record_id, referrer.field, row.id)),
                }
            }
            doomed.push(row);
        }
        // Clear references held by records that survive.
        let mut clears_by_record: HashMap<Uuid, Vec<(String, Uuid)>> = HashMap::new();
        for (record_id, field, target) in clears {
            if !doomed_ids.contains(&record_id) {
                clears_by_record
                    .entry(record_id)
                    .or_default()
                    .push((field, target));
            }
        }
        for (record_id, fields) in clears_by_record {
            let Some(current) = tx.ops().get_record(record_id).await.or_api()? else {
                continue;
            };
            let Some(spec) = collections::by_name(&current.collection) else {
                continue;
            };
            let mut changes = JsonObject::new();
            for (field, target) in fields {
                let value = current.body.get(&field).cloned().unwrap_or(Value::Null);
                let cleared = match value {
                    Value::Array(items) => Value::Array(
                        items
                            .into_iter()
                            .filter(|item| item.as_str() != Some(&target.to_string()))
                            .collect(),
                    ),
                    _ => Value::Null,
                };
                changes.insert(field, cleared);
            }
            self.apply_update(tx, spec, current, changes).await?;
        }
        // Dependents first: the reverse of discovery order.
        let mut removed_files = Vec::new();
        for row in doomed.into_iter().rev() {
            let spec = collections::by_name(&row.collection).ok_or_else(ApiError::internal)?;
            tx.ops().delete_record(row.id).await.or_api()?;
            if spec.name == "attachments" {
                removed_files.push(row.id);
            }
            if spec.name == "tasks"
                && let Some(sprint) = row.body.get("sprint_id").filter(|v| !v.is_null())
            {
                emit_scope_change(tx, row.project_id, sprint, row.id, "removed").await?;
            }
            tx.emit(
                StreamKey::Project(row.project_id),
                spec.events.deleted,
                json!({ "id": row.id }),
                json!({ "id": row.id }),
                Some(row.project_id),
            )
            .await?;
        }
        Ok(removed_files)
    }

    /// Sprint lifecycle: `activate`, `close`, `cancel`.
    pub async fn sprint_action(
        &self,
        actor: &Actor,
        project_id: Uuid,
        id: Uuid,
        action: &str,
    ) -> DomainResult<Value> {
        let spec = &collections::SPRINTS;
        let (from, to, event): (&[&str], &str, EventType) = match action {
            "activate" => (&["planned"], "active", EventType::SprintActivated),
            "close" => (&["active"], "closed", EventType::SprintClosed),
            "cancel" => (
                &["planned", "active"],
                "cancelled",
                EventType::SprintCancelled,
            ),
            _ => return Err(ApiError::not_found("action")),
        };
        let mut tx = Tx::begin(self, Some(actor)).await?;
        let (_, role) = tx.project_role(project_id, actor).await?;
        require(role, spec.write_role, "changing a sprint")?;
        let current = load(tx.ops(), spec, project_id, id).await?;
        let state = current
            .body
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or("planned");
        if !from.contains(&state) {
            return Err(ApiError::conflict(format!(
                "a {state} sprint cannot be {to}"
            )));
        }
        if to == "active" {
            let sprints = tx
                .ops()
                .list_records(project_id, "sprints", Page::ALL)
                .await
                .or_api()?;
            if sprints
                .iter()
                .any(|s| s.body.get("state") == Some(&json!("active")))
            {
                return Err(ApiError::conflict("another sprint is already active"));
            }
        }
        let mut row = current.clone();
        row.body.insert("state".into(), json!(to));
        row.version += 1;
        row.updated_at = tx.now;
        tx.ops().update_record_body(&row).await.or_api()?;
        let data = record_json(&row);
        tx.emit(
            StreamKey::Project(project_id),
            event,
            json!({ "id": id }),
            data.clone(),
            Some(project_id),
        )
        .await?;
        tx.commit().await?;
        Ok(data)
    }

    /// Makes one baseline the project's active one.
    pub async fn activate_baseline(
        &self,
        actor: &Actor,
        project_id: Uuid,
        id: Uuid,
    ) -> DomainResult<Value> {
        let spec = &collections::BASELINES;
        let mut tx = Tx::begin(self, Some(actor)).await?;
        let (_, role) = tx.project_role(project_id, actor).await?;
        require(role, spec.write_role, "activating a baseline")?;
        load(tx.ops(), spec, project_id, id).await?;
        let mut activated = None;
        for mut row in tx
            .ops()
            .list_records(project_id, "baselines", Page::ALL)
            .await
            .or_api()?
        {
            let active = row.id == id;
            if row.body.get("is_active") != Some(&json!(active)) {
                row.body.insert("is_active".into(), json!(active));
                row.version += 1;
                row.updated_at = tx.now;
                tx.ops().update_record_body(&row).await.or_api()?;
            }
            if active {
                activated = Some(record_json(&row));
            }
        }
        let data = activated.ok_or_else(|| ApiError::not_found("baseline"))?;
        tx.emit(
            StreamKey::Project(project_id),
            EventType::BaselineActivated,
            json!({ "id": id }),
            data.clone(),
            Some(project_id),
        )
        .await?;
        tx.commit().await?;
        Ok(data)
    }

    /// Records an uploaded attachment whose bytes the caller has already stored under `id`.
    pub async fn create_attachment(
        &self,
        actor: &Actor,
        project_id: Uuid,
        id: Uuid,
        meta: JsonObject,
    ) -> DomainResult<Value> {
        let spec = &collections::ATTACHMENTS;
        let mut tx = Tx::begin(self, Some(actor)).await?;
        let (_, role) = tx.project_role(project_id, actor).await?;
        require(role, spec.write_role, "uploading attachments")?;
        let row = self
            .insert_new_record(&mut tx, project_id, spec, meta, Some(id))
            .await?;
        tx.commit().await?;
        Ok(record_json(&row))
    }
}

/// Comments may be changed by their author or by an Admin; everything else by the collection's
/// write role.
fn authorize_change(
    collection: &Collection,
    role: Role,
    actor: &Actor,
    current: &RecordRow,
) -> DomainResult<()> {
    if matches!(collection.name, "comments" | "attachments") {
        require(
            role,
            collection.write_role,
            &format!("changing {}", collection.name),
        )?;
        let author = current.body.get("author_id").and_then(Value::as_str);
        if author == Some(actor.user_id.to_string().as_str()) {
            return Ok(());
        }
        return require(
            role,
            Role::Admin,
            &format!("changing others' {}", collection.name),
        );
    }
    require(
        role,
        collection.write_role,
        &format!("changing {}", collection.name),
    )
}

pub fn check_body_size(collection: &Collection, body: &JsonObject) -> DomainResult<()> {
    let size = serde_json::to_vec(body)
        .map(|b| b.len())
        .unwrap_or(usize::MAX);
    if size > collection.max_body_bytes && collection.name != "baselines" {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "a {} is at most {} bytes",
                collection.singular, collection.max_body_bytes
            ),
        ));
    }
    Ok(())
}

/// The references of a body in the form the store indexes them.
pub fn store_refs(collection: &Collection, body: &JsonObject) -> Vec<RecordRef> {
    validate::references(collection, body)
        .into_iter()
        .filter(|(_, _, target)| target.is_some())
        .map(|(field, target_id, _)| RecordRef {
            field: field.to_owned(),
            target_id,
        })
        .collect()
}

/// Every reference must name a record of the right collection in the same project, and every
/// user reference a member of the project.
async fn check_references(
    ops: &mut dyn Queries,
    project_id: Uuid,
    collection: &Collection,
    self_id: Uuid,
    body: &JsonObject,
) -> DomainResult<Vec<RecordRef>> {
    let mut refs = Vec::new();
    for (field, target_id, target) in validate::references(collection, body) {
        match target {
            Some(target) => {
                if target_id == self_id {
                    return Err(invalid_field(field, "a record cannot refer to itself"));
                }
                let found = ops.get_record(target_id).await.or_api()?;
                let ok = found
                    .as_ref()
                    .is_some_and(|r| r.project_id == project_id && r.collection == target);
                if !ok {
                    return Err(invalid_field(
                        field,
                        format!("no {target} record with id {target_id} in this project"),
                    ));
                }
                refs.push(RecordRef {
                    field: field.to_owned(),
                    target_id,
                });
            }
            None => {
                if ops
                    .find_membership(project_id, target_id)
                    .await
                    .or_api()?
                    .is_none()
                {
                    return Err(invalid_field(field, "must be a member of this project"));
                }
            }
        }
    }
    Ok(refs)
}

async fn check_collection_rules(
    ops: &mut dyn Queries,
    project_id: Uuid,
    collection: &Collection,
    id: Uuid,
    body: &JsonObject,
    previous: Option<&RecordRow>,
) -> DomainResult<()> {
    match collection.name {
        "tasks" => check_task(ops, id, body, previous).await,
        "dependencies" => check_dependency(ops, project_id, id, body).await,
        "assignments" => {
            let task = body.get("task_id");
            let resource = body.get("resource_id");
            let others = ops
                .list_records(project_id, "assignments", Page::ALL)
                .await
                .or_api()?;
            if others.iter().any(|a| {
                a.id != id && a.body.get("task_id") == task && a.body.get("resource_id") == resource
            }) {
                return Err(ApiError::conflict(
                    "this resource is already assigned to this task",
                ));
            }
            Ok(())
        }
        "sprints" => {
            let start = body
                .get("start_date")
                .and_then(Value::as_str)
                .and_then(validate::parse_date);
            let end = body
                .get("end_date")
                .and_then(Value::as_str)
                .and_then(validate::parse_date);
            if let (Some(start), Some(end)) = (start, end)
                && end < start
            {
                return Err(invalid_field("end_date", "is before start_date"));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

async fn check_task(
    ops: &mut dyn Queries,
    id: Uuid,
    body: &JsonObject,
    previous: Option<&RecordRow>,
) -> DomainResult<()> {
    if body.get("is_milestone") == Some(&json!(true))
        && body
            .get("duration")
            .and_then(Value::as_f64)
            .is_some_and(|d| d > 0.0)
    {
        return Err(invalid_field("duration", "a milestone has duration 0"));
    }
    let parent_changed = previous.is_none_or(|p| p.body.get("parent_id") != body.get("parent_id"));
    let Some(mut cursor) = body
        .get("parent_id")
        .and_then(Value::as_str)
        .and_then(|t| Uuid::parse_str(t).ok())
    else {
        return Ok(());
    };
    if !parent_changed {
        return Ok(());
    }
    // Walk up from the new parent: meeting this task means the move would make a loop.
    for _ in 0..MAX_TREE_DEPTH {
        if cursor == id {
            return Err(invalid_field(
                "parent_id",
                "a task cannot be moved under itself or its own subtask",
            ));
        }
        let Some(parent) = ops.get_record(cursor).await.or_api()? else {
            return Ok(());
        };
        match parent
            .body
            .get("parent_id")
            .and_then(Value::as_str)
            .and_then(|t| Uuid::parse_str(t).ok())
        {
            Some(next) => cursor = next,
            None => return Ok(()),
        }
    }
    Err(invalid_field("parent_id", "the task tree is too deep"))
}

async fn check_dependency(
    ops: &mut dyn Queries,
    project_id: Uuid,
    id: Uuid,
    body: &JsonObject,
) -> DomainResult<()> {
    let task = |name: &str| {
        body.get(name)
            .and_then(Value::as_str)
            .and_then(|t| Uuid::parse_str(t).ok())
            .ok_or_else(|| invalid_field(name, "is required"))
    };
    let from = task("predecessor_id")?;
    let to = task("successor_id")?;
    if from == to {
        return Err(invalid_field(
            "successor_id",
            "a task cannot depend on itself",
        ));
    }
    let links = ops
        .list_records(project_id, "dependencies", Page::ALL)
        .await
        .or_api()?;
    let mut successors: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for link in links.iter().filter(|l| l.id != id) {
        let p = link
            .body
            .get("predecessor_id")
            .and_then(Value::as_str)
            .and_then(|t| Uuid::parse_str(t).ok());
        let s = link
            .body
            .get("successor_id")
            .and_then(Value::as_str)
            .and_then(|t| Uuid::parse_str(t).ok());
        if let (Some(p), Some(s)) = (p, s) {
            if p == from && s == to {
                return Err(ApiError::conflict("these tasks are already linked"));
            }
            successors.entry(p).or_default().push(s);
        }
    }
    // The new link from -> to closes a cycle when `from` is reachable from `to`; that path
    // lists each task of the cycle once, in link order.
    if let Some(cycle) = find_path(&successors, to, from) {
        return Err(ApiError::new(
            ErrorCode::DependencyCycle,
            "the dependency would make a cycle",
        )
        .with_details(json!({ "cycle": cycle })));
    }
    Ok(())
}

/// A path from `start` to `goal` along `edges`, if any (breadth first, so the shortest).
pub(crate) fn find_path(
    edges: &HashMap<Uuid, Vec<Uuid>>,
    start: Uuid,
    goal: Uuid,
) -> Option<Vec<Uuid>> {
    let mut came_from: HashMap<Uuid, Uuid> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    let mut seen = HashSet::from([start]);
    while let Some(node) = queue.pop_front() {
        if node == goal {
            let mut path = vec![node];
            let mut cursor = node;
            while let Some(&previous) = came_from.get(&cursor) {
                path.push(previous);
                cursor = previous;
            }
            path.reverse();
            return Some(path);
        }
        for &next in edges.get(&node).into_iter().flatten() {
            if seen.insert(next) {
                came_from.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    None
}

async fn emit_scope_change(
    tx: &mut Tx<'_>,
    project_id: Uuid,
    sprint: &Value,
    task_id: Uuid,
    action: &str,
) -> DomainResult<()> {
    tx.emit(
        StreamKey::Project(project_id),
        EventType::SprintScopeChanged,
        json!({ "id": sprint, "task_id": task_id, "action": action }),
        json!({ "id": sprint, "task_id": task_id, "action": action }),
        Some(project_id),
    )
    .await
}

/// Every task's dates at this moment, keyed by task id.
async fn baseline_snapshot(ops: &mut dyn Queries, project_id: Uuid) -> DomainResult<Value> {
    let tasks = ops
        .list_records(project_id, "tasks", Page::ALL)
        .await
        .or_api()?;
    let mut snapshot = serde_json::Map::new();
    for task in tasks {
        let mut dates = serde_json::Map::new();
        for field in [
            "start_date",
            "duration",
            "scheduled_start",
            "scheduled_finish",
            "early_start",
            "early_finish",
            "late_start",
            "late_finish",
            "percent_complete",
        ] {
            if let Some(value) = task.body.get(field) {
                dates.insert(field.into(), value.clone());
            }
        }
        snapshot.insert(task.id.to_string(), Value::Object(dates));
    }
    Ok(Value::Object(snapshot))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cycle_path() {
        let [a, b, c] = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
        let edges = HashMap::from([(a, vec![b]), (b, vec![c])]);
        assert_eq!(find_path(&edges, a, c), Some(vec![a, b, c]));
        assert_eq!(find_path(&edges, c, a), None);
    }
}
