//! The SQL behind the phantom-id map (`phantom_ids`, migration 0002), apart from `ops` so the
//! statements of this one small table sit together.

use crate::db_error;
use crate::{StoreError, StoreResult};
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

/// The real ids of those of `phantoms` the project has mapped. One cached point query per
/// phantom: a revision names few, and an `IN (…)` list would be a new statement per length.
pub(super) fn get(
    db: &Connection,
    project_id: Uuid,
    phantoms: &[String],
) -> StoreResult<Vec<(String, Uuid)>> {
    let project = project_id.to_string();
    let mut statement = db
        .prepare_cached("SELECT record_id FROM phantom_ids WHERE project_id = ? AND phantom = ?")
        .map_err(db_error)?;
    let mut found = Vec::new();
    for phantom in phantoms {
        let record: Option<String> = statement
            .query_row(params![project, phantom], |row| row.get(0))
            .optional()
            .map_err(db_error)?;
        if let Some(record) = record {
            let id = Uuid::parse_str(&record)
                .map_err(|_| StoreError::Corrupt("phantom_ids.record_id is not a uuid".into()))?;
            found.push((phantom.clone(), id));
        }
    }
    Ok(found)
}

/// Adds the mappings after the project's newest, then drops those older than the newest
/// `keep`. `n` grows by one per mapping of the project, so the cut is one index range.
pub(super) fn put(
    db: &Connection,
    project_id: Uuid,
    mapped: &[(String, Uuid)],
    keep: u32,
) -> StoreResult<()> {
    if mapped.is_empty() {
        return Ok(());
    }
    let project = project_id.to_string();
    let mut newest: i64 = db
        .prepare_cached("SELECT COALESCE(MAX(n), 0) FROM phantom_ids WHERE project_id = ?")
        .and_then(|mut statement| statement.query_row([&project], |row| row.get(0)))
        .map_err(db_error)?;
    let mut insert = db
        .prepare_cached(
            "INSERT INTO phantom_ids (project_id, phantom, record_id, n) VALUES (?, ?, ?, ?) \
             ON CONFLICT (project_id, phantom) DO NOTHING",
        )
        .map_err(db_error)?;
    for (phantom, id) in mapped {
        let added = insert
            .execute(params![project, phantom, id.to_string(), newest + 1])
            .map_err(db_error)?;
        if added > 0 {
            newest += 1;
        }
    }
    db.prepare_cached("DELETE FROM phantom_ids WHERE project_id = ? AND n <= ?")
        .and_then(|mut statement| statement.execute(params![project, newest - i64::from(keep)]))
        .map_err(db_error)?;
    Ok(())
}
