//! The read behind Bryntum's `dataset`: one snapshot, so the records, the `project` object and
//! the seq agree, and no writer waits for it.

use super::{COLLECTIONS, object_setting, project_object_key};
use crate::access::project_role;
use crate::collections::Collection;
use crate::{Actor, Domain, DomainResult, OrApi};
use proto::{Role, StreamKey};
use store::{JsonObject, Page, ProjectRow, RecordRow};
use uuid::Uuid;

/// A project as a Bryntum client loads it, in liveplan rows: the dialect maps them.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub project: ProjectRow,
    /// The reader's role (every member may read, Viewers too).
    pub role: Role,
    /// The stored Bryntum `project` object; empty when no client has sent one.
    pub project_object: JsonObject,
    /// The records of each of [`COLLECTIONS`], in that order.
    pub records: Vec<(&'static Collection, Vec<RecordRow>)>,
    /// The project stream's seq the read is current at: every event up to it is in the
    /// records, none after it.
    pub seq: i64,
}

/// What a dataset holds besides its records, from a read that lists no record: the project
/// row, the reader's role, the `project` object and the seq. A node that encoded the dataset at
/// this seq from the same project row and object may send those bytes instead of reading the
/// records again (many sockets of one project load it one after another).
#[derive(Debug, Clone)]
pub struct DatasetHead {
    pub project: ProjectRow,
    /// The reader's role (every member may read, Viewers too).
    pub role: Role,
    pub project_object: JsonObject,
    pub seq: i64,
}

impl Dataset {
    /// The records of one collection (empty for a collection Bryntum has no store for).
    pub fn records_of(&self, collection: &str) -> &[RecordRow] {
        self.records
            .iter()
            .find(|(c, _)| c.name == collection)
            .map(|(_, rows)| rows.as_slice())
            .unwrap_or_default()
    }
}

impl Domain {
    /// The project's Bryntum dataset for a member (Viewer or more; 404 for anyone else).
    pub async fn bryntum_dataset(&self, actor: &Actor, project_id: Uuid) -> DomainResult<Dataset> {
        let mut ops = self.store.snapshot().await.or_api()?;
        let (project, role) = project_role(&mut *ops, project_id, actor).await?;
        let project_object = object_setting(
            ops.get_setting(&project_object_key(project_id))
                .await
                .or_api()?,
        );
        let mut records = Vec::with_capacity(COLLECTIONS.len());
        for collection in COLLECTIONS {
            let rows = ops
                .list_records(project_id, collection.name, Page::ALL)
                .await
                .or_api()?;
            records.push((collection, rows));
        }
        let seq = ops
            .latest_seq(StreamKey::Project(project_id))
            .await
            .or_api()?;
        Ok(Dataset {
            project,
            role,
            project_object,
            records,
            seq,
        })
    }

    /// [`Domain::bryntum_dataset`] without the records: the same access check on one snapshot.
    pub async fn bryntum_dataset_head(
        &self,
        actor: &Actor,
        project_id: Uuid,
    ) -> DomainResult<DatasetHead> {
        let mut ops = self.store.snapshot().await.or_api()?;
        let (project, role) = project_role(&mut *ops, project_id, actor).await?;
        let project_object = object_setting(
            ops.get_setting(&project_object_key(project_id))
                .await
                .or_api()?,
        );
        let seq = ops
            .latest_seq(StreamKey::Project(project_id))
            .await
            .or_api()?;
        Ok(DatasetHead {
            project,
            role,
            project_object,
            seq,
        })
    }

    /// The project's stored Bryntum `project` object (empty when none). View state: no role
    /// check, the caller has made one (the socket at `dataset`, the room for its units).
    pub async fn bryntum_project_object(&self, project_id: Uuid) -> DomainResult<JsonObject> {
        let mut ops = self.store.read().await.or_api()?;
        let text = ops
            .get_setting(&project_object_key(project_id))
            .await
            .or_api()?;
        Ok(object_setting(text))
    }
}
