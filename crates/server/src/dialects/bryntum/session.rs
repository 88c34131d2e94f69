//! One Bryntum client's rules, without I/O: which commands its state allows, how a message
//! names a project, what a revision asks the domain to do and what its echo is, what a
//! dataset looks like. The command glue (`commands.rs`) fetches what these need from the
//! domain and sends what they return. The rules that are not about Bryntum's wire (roles,
//! autosave grants, demo resets, phantom storage) are the domain's (`domain::bryntum`).

use super::mapping::{self, BryntumStore, Object, STORES, Units};
use super::phantoms::Resolution;
use super::protocol::Command;
use domain::batch::{BatchError, BatchOp};
use serde_json::{Value, json};
use std::collections::HashMap;
use store::RecordRow;
use uuid::Uuid;

/// The most revisions one `project_change` message may carry.
pub const MAX_REVISIONS: usize = 100;

/// Why a command is refused in the client's state, before anything is read.
pub fn refusal(command: Command, logged_in: bool) -> Option<&'static str> {
    match command {
        Command::Login | Command::Version => None,
        _ if !logged_in => Some("log in first"),
        _ => None,
    }
}

/// How a message names a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectName {
    Id(Uuid),
    /// The n-th project (1-based) of the user's `projects` list, as the demo server numbers.
    Index(usize),
    Key(String),
}

/// The project a message's `project` names; `Err` is what the client is told.
pub fn project_name(label: &Value) -> Result<ProjectName, &'static str> {
    const UNKNOWN: &str = "no such project";
    match label {
        Value::String(text) => Ok(match Uuid::parse_str(text) {
            Ok(id) => ProjectName::Id(id),
            Err(_) => match text.parse::<usize>() {
                Ok(index) => ProjectName::Index(index),
                Err(_) => ProjectName::Key(text.clone()),
            },
        }),
        Value::Number(n) => n
            .as_u64()
            .and_then(|i| usize::try_from(i).ok())
            .map(ProjectName::Index)
            .ok_or(UNKNOWN),
        Value::Null => Err("project is required"),
        _ => Err(UNKNOWN),
    }
}

/// The project at 1-based `index` of a `projects` list.
pub fn project_at(projects: &[(Uuid, String)], index: usize) -> Option<Uuid> {
    index
        .checked_sub(1)
        .and_then(|i| projects.get(i))
        .map(|(id, _)| *id)
}

/// The name a user goes by in `login`, `join` and `users`: the username, else the email.
pub fn user_name(username: Option<&str>, email: &str) -> String {
    username
        .filter(|n| !n.is_empty())
        .unwrap_or(email)
        .to_owned()
}

/// The record ids whose stored body the revision's mapping needs: records a repeated phantom
/// names again (they become updates), and updates of a duration or a lag (converted with the
/// stored unit).
pub fn ids_needing_current(changes: &Value, resolution: &Resolution) -> Vec<(BryntumStore, Uuid)> {
    let mut ids = Vec::new();
    for store in STORES {
        let Some(section) = changes.get(store.key()).and_then(Value::as_object) else {
            continue;
        };
        let records = |key: &str| {
            section
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_object)
        };
        for record in records("added") {
            let repeated = record
                .get("$PhantomId")
                .and_then(Value::as_str)
                .is_some_and(|p| resolution.repeated.iter().any(|r| r == p));
            if repeated && let Ok(id) = record_id(record, store) {
                ids.push((*store, id));
            }
        }
        for record in records("updated") {
            if ["duration", "lag"].iter().any(|k| record.contains_key(*k))
                && let Ok(id) = record_id(record, store)
            {
                ids.push((*store, id));
            }
        }
    }
    ids
}

/// The domain changes of one revision (phantoms already resolved): creates (references
/// first), then updates, then removes. `current` holds the stored bodies
/// [`ids_needing_current`] named.
pub fn revision_ops(
    changes: &Value,
    resolution: &Resolution,
    units: &Units,
    current: &HashMap<Uuid, Object>,
) -> Result<Vec<BatchOp>, String> {
    let mut creates = Vec::new();
    let mut updates = Vec::new();
    let mut removes = Vec::new();
    for store in STORES {
        let Some(section) = changes.get(store.key()) else {
            continue;
        };
        let section = section
            .as_object()
            .ok_or_else(|| format!("{} must be an object", store.key()))?;
        let collection = store.collection();
        let list = |key: &str| -> Result<Vec<&Object>, String> {
            match section.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|item| {
                        item.as_object()
                            .ok_or_else(|| format!("{}.{key} must hold objects", store.key()))
                    })
                    .collect(),
                Some(_) => Err(format!("{}.{key} must be an array", store.key())),
            }
        };
        let mut added = list("added")?;
        if *store == BryntumStore::Tasks {
            added = parents_first(added);
        }
        for record in added {
            let id = record_id(record, store)?;
            let Some(phantom) = record.get("$PhantomId") else {
                return Err(format!("{}: added records need a $PhantomId", store.key()));
            };
            let repeated = phantom
                .as_str()
                .is_some_and(|p| resolution.repeated.iter().any(|r| r == p));
            if repeated {
                let fields = mapping::to_liveplan(*store, record, units, current.get(&id))?;
                updates.push(BatchOp::Update {
                    collection,
                    id,
                    fields: Value::Object(fields),
                });
            } else {
                let fields = mapping::to_liveplan(*store, record, units, None)?;
                creates.push(BatchOp::Create {
                    collection,
                    id,
                    fields: Value::Object(fields),
                });
            }
        }
        for record in list("updated")? {
            let id = record_id(record, store)?;
            let fields = mapping::to_liveplan(*store, record, units, current.get(&id))?;
            updates.push(BatchOp::Update {
                collection,
                id,
                fields: Value::Object(fields),
            });
        }
        for record in list("removed")? {
            let id = record_id(record, store)?;
            removes.push(BatchOp::Remove { collection, id });
        }
    }
    // Dependents before what they depend on, so a cascade never races an explicit remove.
    removes.reverse();
    creates.extend(updates);
    creates.extend(removes);
    Ok(creates)
}

/// The stored `project` object with a revision's `changes.project` merged in.
pub fn merged_project(stored: &Object, update: &Object) -> Object {
    let mut merged = stored.clone();
    for (key, value) in update {
        merged.insert(key.clone(), value.clone());
    }
    merged
}

/// A revision as every socket of the project gets it (its `revision` is filled in by the seq
/// of its first event).
pub fn echo(revision: &Object, client: &str, changes: Value) -> Value {
    let mut echo = json!({
        "revision": null,
        "localRevision": revision.get("revision").cloned().unwrap_or(Value::Null),
        "client": client,
        "changes": changes,
    });
    if let Some(conflict) = revision.get("conflictResolutionFor")
        && let Some(object) = echo.as_object_mut()
    {
        object.insert("conflictResolutionFor".into(), conflict.clone());
    }
    echo
}

/// The record id of an added (after phantom resolution) or updated/removed record.
fn record_id(record: &Object, store: &BryntumStore) -> Result<Uuid, String> {
    match record.get("id") {
        Some(Value::String(text)) => {
            Uuid::parse_str(text).map_err(|_| format!("{}: unknown id {text}", store.key()))
        }
        Some(other) => Err(format!("{}: unknown id {other}", store.key())),
        None => Err(format!("{}: a record needs an id", store.key())),
    }
}

/// Added tasks ordered so a new parent is created before its new children.
fn parents_first(tasks: Vec<&Object>) -> Vec<&Object> {
    let ids: Vec<Option<&str>> = tasks
        .iter()
        .map(|t| t.get("id").and_then(Value::as_str))
        .collect();
    let mut placed = vec![false; tasks.len()];
    let mut out = Vec::with_capacity(tasks.len());
    // Each pass places every task whose parent is not an unplaced task of this list.
    for _ in 0..=tasks.len() {
        let mut progress = false;
        for (i, task) in tasks.iter().enumerate() {
            if placed[i] {
                continue;
            }
            let parent = task.get("parentId").and_then(Value::as_str);
            let waits = parent.is_some_and(|p| {
                ids.iter()
                    .enumerate()
                    .any(|(j, id)| *id == Some(p) && !placed[j] && j != i)
            });
            if !waits {
                placed[i] = true;
                out.push(*task);
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    // A loop among new tasks: keep them; the domain refuses it.
    for (i, task) in tasks.iter().enumerate() {
        if !placed[i] {
            out.push(*task);
        }
    }
    out
}

/// A refused batch as a plain message.
pub fn describe(failure: BatchError) -> String {
    let error = failure.error;
    match error.code {
        proto::ErrorCode::DependencyCycle => "the change would make a dependency cycle".into(),
        _ => error.message,
    }
}

/// The `dataset` of a project: its records in Bryntum stores (`rows` per store, in
/// [`STORES`] order) and its `project` object.
pub fn dataset(
    project_name: &str,
    project_body: &Object,
    stored: Object,
    rows: Vec<(BryntumStore, &[RecordRow])>,
) -> Value {
    let units = Units::from_project(&stored);
    let mut dataset = serde_json::Map::new();
    for (store, rows) in rows {
        let records: Vec<Object> = rows
            .iter()
            .map(|row| mapping::to_bryntum(store, &row.id.to_string(), &row.body, &units))
            .collect();
        let value = if store == BryntumStore::Tasks {
            Value::Array(mapping::task_tree(records))
        } else {
            Value::Array(records.into_iter().map(Value::Object).collect())
        };
        dataset.insert(store.dataset_key().into(), value);
    }
    let mut project_object = units.project_fields();
    if let Some(start) = project_body.get("start_date") {
        project_object.insert("startDate".into(), start.clone());
    }
    project_object.insert("name".into(), json!(project_name));
    for (key, value) in stored {
        project_object.insert(key, value);
    }
    dataset.insert("project".into(), Value::Object(project_object));
    Value::Object(dataset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(value: Value) -> Object {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn only_login_and_version_before_login() {
        assert_eq!(refusal(Command::Projects, false), Some("log in first"));
        assert_eq!(refusal(Command::Version, false), None);
        assert_eq!(refusal(Command::Login, false), None);
        assert_eq!(refusal(Command::Dataset, true), None);
    }

    #[test]
    fn projects_are_named_by_id_number_or_key() {
        let id = Uuid::from_u128(7);
        assert_eq!(
            project_name(&json!(id.to_string())),
            Ok(ProjectName::Id(id))
        );
        assert_eq!(project_name(&json!(2)), Ok(ProjectName::Index(2)));
        assert_eq!(project_name(&json!("2")), Ok(ProjectName::Index(2)));
        assert_eq!(
            project_name(&json!("PLAN")),
            Ok(ProjectName::Key("PLAN".into()))
        );
        assert_eq!(project_name(&Value::Null), Err("project is required"));
        assert_eq!(project_name(&json!(-1)), Err("no such project"));
        let list = vec![(Uuid::from_u128(1), "a".into()), (id, "b".into())];
        assert_eq!(project_at(&list, 2), Some(id));
        assert_eq!(project_at(&list, 0), None);
        assert_eq!(project_at(&list, 3), None);
    }

    #[test]
    fn a_revision_creates_parents_first_then_updates_then_removes() {
        let parent = Uuid::from_u128(1);
        let child = Uuid::from_u128(2);
        let gone = Uuid::from_u128(3);
        let changes = json!({"tasks": {
            "added": [
                {"$PhantomId": "_c", "id": child.to_string(), "name": "Child", "parentId": parent.to_string()},
                {"$PhantomId": "_p", "id": parent.to_string(), "name": "Parent"},
            ],
            "updated": [{"id": gone.to_string(), "name": "Renamed"}],
            "removed": [{"id": gone.to_string()}],
        }});
        let ops = revision_ops(
            &changes,
            &Resolution::default(),
            &Units::default(),
            &HashMap::new(),
        )
        .unwrap();
        let kinds: Vec<(&str, Uuid)> = ops
            .iter()
            .map(|op| match op {
                BatchOp::Create { id, .. } => ("create", *id),
                BatchOp::Update { id, .. } => ("update", *id),
                BatchOp::Remove { id, .. } => ("remove", *id),
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("create", parent),
                ("create", child),
                ("update", gone),
                ("remove", gone)
            ]
        );
        let no_phantom = json!({"tasks": {"added": [{"id": parent.to_string()}]}});
        assert_eq!(
            revision_ops(
                &no_phantom,
                &Resolution::default(),
                &Units::default(),
                &HashMap::new()
            )
            .unwrap_err(),
            "tasks: added records need a $PhantomId"
        );
    }

    #[test]
    fn a_repeated_phantom_is_an_update_of_the_first_record() {
        let id = Uuid::from_u128(9);
        let changes = json!({"tasks": {"added": [{"$PhantomId": "_t", "id": id.to_string(), "name": "Again"}]}});
        let resolution = Resolution {
            ids: HashMap::from([("_t".to_owned(), id)]),
            repeated: vec!["_t".into()],
        };
        assert_eq!(
            ids_needing_current(&changes, &resolution),
            vec![(BryntumStore::Tasks, id)]
        );
        let current = HashMap::from([(id, obj(json!({"name": "First"})))]);
        let ops = revision_ops(&changes, &resolution, &Units::default(), &current).unwrap();
        assert!(matches!(ops.as_slice(), [BatchOp::Update { id: found, .. }] if *found == id));
    }

    #[test]
    fn the_echo_keeps_the_local_revision_and_conflict() {
        let revision =
            obj(json!({"revision": "l-2", "conflictResolutionFor": "l-1", "changes": {}}));
        let echo = echo(&revision, "client-3", json!({"tasks": {}}));
        assert_eq!(
            echo,
            json!({"revision": null, "localRevision": "l-2", "client": "client-3", "changes": {"tasks": {}}, "conflictResolutionFor": "l-1"})
        );
        let merged = merged_project(
            &obj(json!({"hoursPerDay": 8, "x": 1})),
            &obj(json!({"hoursPerDay": 6})),
        );
        assert_eq!(Value::Object(merged), json!({"hoursPerDay": 6, "x": 1}));
    }

    #[test]
    fn a_dataset_has_every_store_and_the_project_object() {
        let rows = STORES.iter().map(|s| (*s, &[][..])).collect();
        let dataset = dataset(
            "Plan",
            &obj(json!({"start_date": "2026-03-02"})),
            obj(json!({"hoursPerDay": 6})),
            rows,
        );
        assert_eq!(dataset["tasksData"], json!([]));
        assert_eq!(dataset["versionsData"], json!([]));
        assert_eq!(dataset["project"]["name"], "Plan");
        assert_eq!(dataset["project"]["startDate"], "2026-03-02");
        assert_eq!(dataset["project"]["hoursPerDay"], json!(6));
    }
}
