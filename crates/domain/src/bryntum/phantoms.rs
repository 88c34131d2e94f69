//! Phantom ids: a Bryntum client creates records under temporary ids (`$PhantomId`) and learns
//! their real ids from the echo. A client that got no echo (its node restarted, its socket
//! dropped) sends the same phantoms again; the stored map turns them into updates of the
//! records made the first time, on whichever node and after any restart.
//!
//! The dialect looks the phantoms of a revision up ([`Domain::known_phantoms`]) before it
//! builds the revision's changes, and hands the mappings it used to the batch
//! ([`crate::batch::BatchRequest::phantoms`]), which records them in the revision's
//! transaction and refuses the revision if another writer mapped one of them meanwhile.

use crate::{Domain, DomainResult, OrApi};
use proto::ApiError;
use std::collections::{HashMap, HashSet};
use store::Queries;
use uuid::Uuid;

/// How many phantom ids a project keeps; the oldest go first. A client resends a change within
/// seconds or minutes, not after fifty thousand other new records.
pub const PHANTOMS_KEPT: u32 = 50_000;

impl Domain {
    /// The real ids of those of `candidates` the project has mapped. Pass the strings that may
    /// be phantom ids (every `$PhantomId` of a revision, and the strings that may refer to
    /// one); each costs a point read.
    pub async fn known_phantoms(
        &self,
        project_id: Uuid,
        candidates: &[String],
    ) -> DomainResult<HashMap<String, Uuid>> {
        let mut seen = HashSet::new();
        let unique: Vec<String> = candidates
            .iter()
            .filter(|c| seen.insert(c.as_str()))
            .cloned()
            .collect();
        if unique.is_empty() {
            return Ok(HashMap::new());
        }
        let mut ops = self.store.read().await.or_api()?;
        let found = ops.get_phantom_ids(project_id, &unique).await.or_api()?;
        Ok(found.into_iter().collect())
    }
}

/// Records `mapped` inside a revision's transaction. A phantom already mapped to another id
/// was created by a concurrent writer (the same revision sent to two nodes): the revision is
/// refused rather than made twice.
pub(crate) async fn record_phantoms(
    ops: &mut dyn Queries,
    project_id: Uuid,
    mapped: &[(String, Uuid)],
) -> DomainResult<()> {
    if mapped.is_empty() {
        return Ok(());
    }
    let phantoms: Vec<String> = mapped.iter().map(|(p, _)| p.clone()).collect();
    let stored: HashMap<String, Uuid> = ops
        .get_phantom_ids(project_id, &phantoms)
        .await
        .or_api()?
        .into_iter()
        .collect();
    for (phantom, id) in mapped {
        if stored.get(phantom).is_some_and(|first| first != id) {
            return Err(ApiError::conflict(format!(
                "the record {phantom} was created by another change meanwhile; load the project again"
            )));
        }
    }
    ops.put_phantom_ids(project_id, mapped, PHANTOMS_KEPT)
        .await
        .or_api()
}
