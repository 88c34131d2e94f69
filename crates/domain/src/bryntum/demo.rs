//! Demo mode: a project's records when a Bryntum client first opened it are stored, and a
//! reset puts them back (same ids) in one transaction with its events. When to reset (a
//! client's `reset`, or the server after the project sat idle) is the server's to decide.

use crate::batch::{BatchError, BatchOp};
use crate::collections::{ASSIGNMENTS, CALENDARS, Collection, DEPENDENCIES, RESOURCES, TASKS};
use crate::tx::Tx;
use crate::{Actor, Domain, DomainResult, OrApi};
use proto::{ApiError, Event, Role, StreamKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use store::{JsonObject, Page, Queries, RecordRow};
use uuid::Uuid;

/// The collections a demo snapshot holds (versions are the clients' own history, kept).
pub static DEMO_COLLECTIONS: [&Collection; 5] =
    [&CALENDARS, &RESOURCES, &TASKS, &DEPENDENCIES, &ASSIGNMENTS];

fn snapshot_key(project_id: Uuid) -> String {
    format!("bryntum.demo.{project_id}")
}

/// One record of a demo snapshot, as stored (JSON in a setting).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DemoRecord {
    id: Uuid,
    collection: String,
    body: JsonObject,
}

async fn current_records(ops: &mut dyn Queries, project_id: Uuid) -> DomainResult<Vec<DemoRecord>> {
    let mut records = Vec::new();
    for collection in DEMO_COLLECTIONS {
        let rows = ops
            .list_records(project_id, collection.name, Page::ALL)
            .await
            .or_api()?;
        records.extend(rows.into_iter().map(|row: RecordRow| DemoRecord {
            id: row.id,
            collection: row.collection,
            body: row.body,
        }));
    }
    Ok(records)
}

async fn stored_snapshot(
    ops: &mut dyn Queries,
    project_id: Uuid,
) -> DomainResult<Option<Vec<DemoRecord>>> {
    let Some(text) = ops.get_setting(&snapshot_key(project_id)).await.or_api()? else {
        return Ok(None);
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        tracing::error!(project = %project_id, error = %e, "unreadable demo snapshot");
        ApiError::internal()
    })
}

/// Whether two record sets hold the same records (ids, collections and bodies), in any order.
fn same_records(a: &[DemoRecord], b: &[DemoRecord]) -> bool {
    let keyed = |records: &[DemoRecord]| -> BTreeMap<Uuid, (String, Value)> {
        records
            .iter()
            .map(|r| (r.id, (r.collection.clone(), Value::Object(r.body.clone()))))
            .collect()
    };
    a.len() == b.len() && keyed(a) == keyed(b)
}

/// The changes that turn `current` into `snapshot`: remove every task, resource and calendar
/// (dependencies and assignments go with them), then create the snapshot's records with their
/// ids, references first and parent tasks before their children.
fn reset_ops(current: &[DemoRecord], snapshot: &[DemoRecord]) -> Vec<BatchOp> {
    let mut ops = Vec::new();
    for collection in [&TASKS, &RESOURCES, &CALENDARS] {
        for record in current.iter().filter(|r| r.collection == collection.name) {
            ops.push(BatchOp::Remove {
                collection,
                id: record.id,
            });
        }
    }
    for collection in DEMO_COLLECTIONS {
        let records: Vec<&DemoRecord> = snapshot
            .iter()
            .filter(|r| r.collection == collection.name)
            .collect();
        let records = if collection.name == TASKS.name {
            parents_first(records)
        } else {
            records
        };
        for record in records {
            ops.push(BatchOp::Create {
                collection,
                id: record.id,
                fields: Value::Object(record.body.clone()),
            });
        }
    }
    ops
}

/// Tasks ordered so each parent of the list comes before its children; a loop keeps its
/// members at the end (the domain then refuses it).
fn parents_first(tasks: Vec<&DemoRecord>) -> Vec<&DemoRecord> {
    let ids: HashSet<String> = tasks.iter().map(|t| t.id.to_string()).collect();
    let mut placed: HashSet<String> = HashSet::new();
    let mut out = Vec::with_capacity(tasks.len());
    let mut rest = tasks;
    while !rest.is_empty() {
        let (ready, waiting): (Vec<&DemoRecord>, Vec<&DemoRecord>) =
            rest.into_iter().partition(|t| {
                t.body
                    .get("parent_id")
                    .and_then(Value::as_str)
                    .is_none_or(|p| !ids.contains(p) || placed.contains(p))
            });
        if ready.is_empty() {
            out.extend(waiting);
            break;
        }
        for task in ready {
            placed.insert(task.id.to_string());
            out.push(task);
        }
        rest = waiting;
    }
    out
}

impl Domain {
    /// Stores the project's records as its demo snapshot unless it has one; `true` when this
    /// call stored it. The first caller of any node wins; later ones keep what it stored.
    pub async fn remember_demo_snapshot(&self, project_id: Uuid) -> DomainResult<bool> {
        {
            let mut ops = self.store.read().await.or_api()?;
            if ops
                .get_setting(&snapshot_key(project_id))
                .await
                .or_api()?
                .is_some()
            {
                return Ok(false);
            }
        }
        // Read and stored in one write transaction, so the snapshot is one moment's records
        // and two nodes cannot both store one.
        let mut tx = self.store.write().await.or_api()?;
        // Held so that on PostgreSQL a second node's transaction waits and then sees this one.
        tx.lock_stream(StreamKey::Project(project_id))
            .await
            .or_api()?;
        if tx
            .get_setting(&snapshot_key(project_id))
            .await
            .or_api()?
            .is_some()
        {
            return Ok(false);
        }
        if tx.get_project(project_id).await.or_api()?.is_none() {
            return Err(ApiError::not_found("project"));
        }
        let records = current_records(&mut *tx, project_id).await?;
        let text = serde_json::to_string(&records).map_err(|_| ApiError::internal())?;
        tx.put_setting(&snapshot_key(project_id), &text)
            .await
            .or_api()?;
        tx.commit().await.or_api()?;
        Ok(true)
    }

    /// Whether the project's records differ from its demo snapshot; `None` when it has none.
    /// Read from one snapshot of the store.
    pub async fn demo_drifted(&self, project_id: Uuid) -> DomainResult<Option<bool>> {
        let mut ops = self.store.snapshot().await.or_api()?;
        let Some(snapshot) = stored_snapshot(&mut *ops, project_id).await? else {
            return Ok(None);
        };
        let current = current_records(&mut *ops, project_id).await?;
        Ok(Some(!same_records(&snapshot, &current)))
    }

    /// Puts the project's demo snapshot back, in one transaction with its events, the first
    /// of which carries `echo` (how the dialect tells every socket the reset happened and who
    /// made it). Needs Member or more (and, for each record, the role its collection asks).
    pub async fn reset_demo(
        &self,
        actor: &Actor,
        project_id: Uuid,
        echo: Option<Value>,
    ) -> Result<Vec<Event>, BatchError> {
        let mut tx = Tx::begin(self, Some(actor)).await?;
        tx.set_echo(echo);
        let (_, role) = tx.project_role(project_id, actor).await?;
        if role < Role::Member {
            return Err(ApiError::forbidden("viewers cannot reset this project").into());
        }
        let snapshot = stored_snapshot(tx.ops(), project_id)
            .await?
            .ok_or_else(|| ApiError::invalid("this project has no demo data to go back to"))?;
        let current = current_records(tx.ops(), project_id).await?;
        let ops = reset_ops(&current, &snapshot);
        self.apply_ops(&mut tx, project_id, role, ops).await?;
        Ok(tx.commit().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(id: u128, parent: Option<u128>) -> DemoRecord {
        let mut body = json!({"name": format!("t{id}")});
        if let Some(parent) = parent {
            body["parent_id"] = json!(Uuid::from_u128(parent));
        }
        DemoRecord {
            id: Uuid::from_u128(id),
            collection: "tasks".into(),
            body: body.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn children_come_after_their_parents() {
        let (grandchild, child, parent, other) = (
            task(4, Some(3)),
            task(3, Some(1)),
            task(1, None),
            task(2, Some(99)),
        );
        let order = parents_first(vec![&grandchild, &child, &parent, &other]);
        let ids: Vec<u128> = order.iter().map(|t| t.id.as_u128()).collect();
        assert_eq!(ids, [1, 2, 3, 4]);
    }

    #[test]
    fn same_records_ignores_order_but_not_bodies() {
        let (a, b) = (task(1, None), task(2, Some(1)));
        assert!(same_records(
            &[a.clone(), b.clone()],
            &[b.clone(), a.clone()]
        ));
        let mut renamed = b.clone();
        renamed.body.insert("name".into(), json!("other"));
        assert!(!same_records(&[a.clone(), b], &[a.clone(), renamed]));
        assert!(!same_records(
            std::slice::from_ref(&a),
            &[a.clone(), a.clone()]
        ));
    }
}
