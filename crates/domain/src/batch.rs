//! A list of creates, updates and removes across a project's collections, applied in one store
//! transaction: every change commits with its events, or none does. Transports whose clients
//! send several changes as one unit (a Bryntum revision) use this instead of one request per
//! record, so a failure half way (a cycle, an unknown id, a missing role) leaves nothing behind.

use crate::access::require;
use crate::bryntum::phantoms::record_phantoms;
use crate::collections::Collection;
use crate::records::load;
use crate::tx::Tx;
use crate::validate::{self, Mode};
use crate::{Actor, Domain, DomainResult, OrApi};
use proto::{ApiError, ErrorCode, Event, Role};
use serde_json::Value;
use std::collections::HashSet;
use uuid::Uuid;

/// The most changes one batch may hold.
pub const MAX_BATCH_OPS: usize = 5_000;

/// One change of a batch.
#[derive(Debug, Clone)]
pub enum BatchOp {
    /// A new record with the id the caller chose (so references to it can be written before
    /// the batch runs).
    Create {
        collection: &'static Collection,
        id: Uuid,
        fields: Value,
    },
    /// Fields merged into an existing record.
    Update {
        collection: &'static Collection,
        id: Uuid,
        fields: Value,
    },
    /// A record removed with its cascades. Removing a record that is already gone (often
    /// because an earlier remove of the batch cascaded to it) changes nothing: clients list
    /// cascaded records too, and a delete is idempotent.
    Remove {
        collection: &'static Collection,
        id: Uuid,
    },
}

/// Where a batch failed: the index of the change and the error.
#[derive(Debug, Clone)]
pub struct BatchError {
    pub index: Option<usize>,
    pub error: ApiError,
}

impl From<ApiError> for BatchError {
    fn from(error: ApiError) -> Self {
        BatchError { index: None, error }
    }
}

/// A key/value written with the batch, outside the record tables (client view state such as
/// Bryntum's `project` object). It emits no event: it is not project data.
#[derive(Debug, Clone)]
pub struct BatchSetting {
    pub key: String,
    pub value: String,
}

fn check_size(ops: usize) -> DomainResult<()> {
    if ops > MAX_BATCH_OPS {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("a change holds at most {MAX_BATCH_OPS} records"),
        ));
    }
    Ok(())
}

/// Everything one batch writes, in one transaction.
#[derive(Debug, Clone, Default)]
pub struct BatchRequest {
    pub ops: Vec<BatchOp>,
    pub setting: Option<BatchSetting>,
    /// What the writer's client gets back, carried by the batch's first event (see
    /// [`proto::Event::echo`]); nothing carries it when the batch emits no event.
    pub echo: Option<Value>,
    /// The phantom ids the writer's client gave the batch's new records and the real ids they
    /// got, recorded in the batch's transaction (see [`crate::bryntum::phantoms`]).
    pub phantoms: Vec<(String, Uuid)>,
}

impl Domain {
    /// Applies `ops` in order in one transaction and returns the committed events; see
    /// [`Domain::apply_batch_request`].
    pub async fn apply_batch(
        &self,
        actor: &Actor,
        project_id: Uuid,
        ops: Vec<BatchOp>,
        setting: Option<BatchSetting>,
    ) -> Result<Vec<Event>, BatchError> {
        let request = BatchRequest {
            ops,
            setting,
            ..BatchRequest::default()
        };
        self.apply_batch_request(actor, project_id, request).await
    }

    /// Applies the request in one transaction and returns the committed events. A Viewer may
    /// change nothing; each change is authorized with the actor's role in the project and
    /// validated as the REST call would be; the first failure rolls everything back.
    pub async fn apply_batch_request(
        &self,
        actor: &Actor,
        project_id: Uuid,
        request: BatchRequest,
    ) -> Result<Vec<Event>, BatchError> {
        // Before taking the writer: a batch too large is refused without waiting for it.
        check_size(request.ops.len())?;
        let mut tx = Tx::begin(self, Some(actor)).await?;
        tx.set_echo(request.echo);
        let (_, role) = tx.project_role(project_id, actor).await?;
        if role < Role::Member {
            return Err(ApiError::forbidden("viewers cannot change this project").into());
        }
        record_phantoms(tx.ops(), project_id, &request.phantoms).await?;
        self.apply_ops(&mut tx, project_id, role, request.ops)
            .await?;
        if let Some(setting) = request.setting {
            tx.ops()
                .put_setting(&setting.key, &setting.value)
                .await
                .or_api()?;
        }
        Ok(tx.commit().await?)
    }

    /// Applies `ops` in order inside `tx`, as the actor with `role`.
    pub(crate) async fn apply_ops(
        &self,
        tx: &mut Tx<'_>,
        project_id: Uuid,
        role: Role,
        ops: Vec<BatchOp>,
    ) -> Result<(), BatchError> {
        check_size(ops.len())?;
        let mut removed: HashSet<Uuid> = HashSet::new();
        for (index, op) in ops.into_iter().enumerate() {
            self.apply_one(tx, project_id, role, op, &mut removed)
                .await
                .map_err(|error| BatchError {
                    index: Some(index),
                    error,
                })?;
        }
        Ok(())
    }

    async fn apply_one(
        &self,
        tx: &mut Tx<'_>,
        project_id: Uuid,
        role: Role,
        op: BatchOp,
        removed: &mut HashSet<Uuid>,
    ) -> DomainResult<()> {
        match op {
            BatchOp::Create {
                collection,
                id,
                fields,
            } => {
                require(
                    role,
                    collection.write_role,
                    &format!("creating {}", collection.name),
                )?;
                if collection.upload_only {
                    return Err(ApiError::invalid(format!(
                        "{} are created by a multipart upload",
                        collection.name
                    )));
                }
                let body = validate::validate_fields(collection, &fields, Mode::Create)?;
                if tx.ops().get_record(id).await.or_api()?.is_some() {
                    return Err(ApiError::conflict(format!(
                        "a record with id {id} already exists"
                    )));
                }
                self.insert_new_record(tx, project_id, collection, body, Some(id))
                    .await?;
            }
            BatchOp::Update {
                collection,
                id,
                fields,
            } => {
                require(
                    role,
                    collection.write_role,
                    &format!("changing {}", collection.name),
                )?;
                if !collection.patchable {
                    return Err(ApiError::invalid(format!(
                        "{} cannot be changed once made",
                        collection.name
                    )));
                }
                let body = validate::validate_fields(collection, &fields, Mode::Patch)?;
                if removed.contains(&id) {
                    return Err(ApiError::invalid(format!(
                        "{} {id} was removed earlier in this change",
                        collection.singular
                    )));
                }
                let current = load(tx.ops(), collection, project_id, id).await?;
                self.apply_update(tx, collection, current, body).await?;
            }
            BatchOp::Remove { collection, id } => {
                require(
                    role,
                    collection.write_role,
                    &format!("removing {}", collection.name),
                )?;
                let Some(current) = tx.ops().get_record(id).await.or_api()? else {
                    removed.insert(id);
                    return Ok(());
                };
                if current.project_id != project_id || current.collection != collection.name {
                    return Err(ApiError::not_found(collection.singular));
                }
                removed.insert(id);
                self.delete_with_cascade(tx, current).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoListener;
    use crate::accounts::NewUser;
    use crate::collections::{DEPENDENCIES, TASKS};
    use serde_json::json;
    use std::sync::Arc;
    use store::Page;

    async fn setup() -> (tempfile::TempDir, Domain, Actor, Uuid) {
        let dir = tempfile::tempdir().unwrap();
        let store = store_sqlite::SqliteStore::open_in_dir(dir.path())
            .await
            .unwrap();
        let domain = Domain::new(Arc::new(store), Arc::new(NoListener));
        let user = domain
            .create_user(
                None,
                NewUser {
                    email: "a@example.test".into(),
                    username: None,
                    display_name: None,
                    password_hash: "x".into(),
                    is_admin: true,
                },
            )
            .await
            .unwrap();
        let actor = Actor {
            user_id: Uuid::parse_str(user["id"].as_str().unwrap()).unwrap(),
            is_admin: true,
            tab_id: None,
        };
        let project = domain
            .create_project(&actor, &json!({"name": "P"}))
            .await
            .unwrap();
        let project_id = Uuid::parse_str(project["id"].as_str().unwrap()).unwrap();
        (dir, domain, actor, project_id)
    }

    async fn count(domain: &Domain, project: Uuid) -> (usize, i64) {
        let mut ops = domain.store.read().await.unwrap();
        let tasks = ops.list_records(project, "tasks", Page::ALL).await.unwrap();
        let seq = ops
            .latest_seq(proto::StreamKey::Project(project))
            .await
            .unwrap();
        (tasks.len(), seq)
    }

    #[tokio::test]
    async fn a_batch_commits_whole_or_not_at_all() {
        let (_dir, domain, actor, project) = setup().await;
        let (parent, child) = (proto::ids::new_id(), proto::ids::new_id());
        let events = domain
            .apply_batch(
                &actor,
                project,
                vec![
                    BatchOp::Create {
                        collection: &TASKS,
                        id: parent,
                        fields: json!({"name": "Parent"}),
                    },
                    BatchOp::Create {
                        collection: &TASKS,
                        id: child,
                        fields: json!({"name": "Child", "parent_id": parent}),
                    },
                    BatchOp::Create {
                        collection: &DEPENDENCIES,
                        id: proto::ids::new_id(),
                        fields: json!({"predecessor_id": parent, "successor_id": child}),
                    },
                ],
                None,
            )
            .await
            .unwrap();
        assert_eq!(events.len(), 3);
        let before = count(&domain, project).await;
        // A good update, then a cycle: nothing of it stays.
        let failure = domain
            .apply_batch(
                &actor,
                project,
                vec![
                    BatchOp::Update {
                        collection: &TASKS,
                        id: parent,
                        fields: json!({"name": "Renamed"}),
                    },
                    BatchOp::Create {
                        collection: &TASKS,
                        id: proto::ids::new_id(),
                        fields: json!({"name": "New"}),
                    },
                    BatchOp::Create {
                        collection: &DEPENDENCIES,
                        id: proto::ids::new_id(),
                        fields: json!({"predecessor_id": child, "successor_id": parent}),
                    },
                ],
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(failure.index, Some(2));
        assert_eq!(failure.error.code, ErrorCode::DependencyCycle);
        assert_eq!(count(&domain, project).await, before);
        // Removing a parent cascades; removing the cascaded child again is a no-op.
        domain
            .apply_batch(
                &actor,
                project,
                vec![
                    BatchOp::Remove {
                        collection: &TASKS,
                        id: parent,
                    },
                    BatchOp::Remove {
                        collection: &TASKS,
                        id: child,
                    },
                ],
                None,
            )
            .await
            .unwrap();
        assert_eq!(count(&domain, project).await.0, 0);
        // An update of a record that does not exist refuses the batch.
        let missing = domain
            .apply_batch(
                &actor,
                project,
                vec![BatchOp::Update {
                    collection: &TASKS,
                    id: child,
                    fields: json!({"name": "x"}),
                }],
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(missing.error.code, ErrorCode::NotFound);
    }
}
