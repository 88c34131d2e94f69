//! The SQL of the node registry (`nodes`, migration 0003; `store::nodes`). SQLite has one
//! writer, so a join is exclusive by running in a write transaction; ages are measured by this
//! machine's clock (every process on one SQLite file runs on one machine).

use crate::db_error;
use rusqlite::{Connection, params};
use std::time::Duration;
use store::{NodeJoin, NodeRow, StoreError, StoreResult, Timestamp, format_ts};
use uuid::Uuid;

fn cutoff(max_age: Duration) -> String {
    let age = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
    format_ts(
        store::now()
            .checked_sub_signed(age)
            .unwrap_or(Timestamp::MIN_UTC),
    )
}

fn parse_ts(text: &str) -> StoreResult<Timestamp> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.to_utc())
        .map_err(|_| StoreError::Corrupt("nodes: bad timestamp".into()))
}

fn node_from(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, bool, String, String, String)> {
    row.try_into()
}

pub(crate) fn live(db: &Connection, max_age: Duration) -> StoreResult<Vec<NodeRow>> {
    let mut statement = db
        .prepare_cached(
            "SELECT id, has_redis, address, started_at, heartbeat_at FROM nodes WHERE heartbeat_at >= ? ORDER BY started_at, id",
        )
        .map_err(db_error)?;
    let rows = statement
        .query_map([cutoff(max_age)], node_from)
        .map_err(db_error)?;
    let mut nodes = Vec::new();
    for row in rows {
        let (id, has_redis, address, started_at, heartbeat_at) = row.map_err(db_error)?;
        nodes.push(NodeRow {
            id: Uuid::parse_str(&id)
                .map_err(|_| StoreError::Corrupt("nodes.id is not a uuid".into()))?,
            has_redis,
            address,
            started_at: parse_ts(&started_at)?,
            heartbeat_at: parse_ts(&heartbeat_at)?,
        });
    }
    Ok(nodes)
}

/// Runs inside the write transaction the caller holds.
pub(crate) fn join(
    db: &Connection,
    node: &NodeRow,
    max_age: Duration,
    admit: &store::Admit,
) -> StoreResult<NodeJoin> {
    db.execute(
        "DELETE FROM nodes WHERE heartbeat_at < ?",
        [cutoff(max_age)],
    )
    .map_err(db_error)?;
    let others: Vec<NodeRow> = live(db, max_age)?
        .into_iter()
        .filter(|other| other.id != node.id)
        .collect();
    let admitted = admit(&others);
    if admitted {
        db.execute(
            "INSERT INTO nodes (id, has_redis, address, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT(id) DO UPDATE SET has_redis = excluded.has_redis, address = excluded.address, \
             started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at",
            params![
                node.id.to_string(),
                node.has_redis,
                node.address,
                format_ts(node.started_at),
                format_ts(store::now())
            ],
        )
        .map_err(db_error)?;
    }
    Ok(NodeJoin { admitted, others })
}

pub(crate) fn heartbeat(db: &Connection, id: Uuid) -> StoreResult<bool> {
    let changed = db
        .execute(
            "UPDATE nodes SET heartbeat_at = ? WHERE id = ?",
            params![format_ts(store::now()), id.to_string()],
        )
        .map_err(db_error)?;
    Ok(changed > 0)
}

pub(crate) fn leave(db: &Connection, id: Uuid) -> StoreResult<()> {
    db.execute("DELETE FROM nodes WHERE id = ?", [id.to_string()])
        .map_err(db_error)?;
    Ok(())
}
