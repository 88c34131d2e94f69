//! The SQL of the node registry (`nodes`, migration 0004; `store::nodes`). A join locks the
//! table against other joins for its transaction, so two nodes starting at once cannot both
//! see an empty registry; heartbeats (row updates) are not held up by it for longer than a
//! join. Ages are measured by the database's `now()`, one clock for every node.

use crate::errors::db_error;
use sqlx::{PgPool, Row};
use std::time::Duration;
use store::{NodeJoin, NodeRow, StoreError, StoreResult};
use uuid::Uuid;

const COLUMNS: &str = "id, has_redis, address, started_at, heartbeat_at";

fn millis(max_age: Duration) -> f64 {
    max_age.as_secs_f64() * 1000.0
}

fn node_from(row: &sqlx::postgres::PgRow) -> StoreResult<NodeRow> {
    let corrupt = |e: sqlx::Error| StoreError::Corrupt(format!("nodes: {e}"));
    Ok(NodeRow {
        id: row.try_get("id").map_err(corrupt)?,
        has_redis: row.try_get("has_redis").map_err(corrupt)?,
        address: row.try_get("address").map_err(corrupt)?,
        started_at: row.try_get("started_at").map_err(corrupt)?,
        heartbeat_at: row.try_get("heartbeat_at").map_err(corrupt)?,
    })
}

async fn live_on(db: &mut sqlx::PgConnection, max_age: Duration) -> StoreResult<Vec<NodeRow>> {
    let query = format!(
        "SELECT {COLUMNS} FROM nodes WHERE heartbeat_at >= now() - make_interval(secs => $1 / 1000.0) ORDER BY started_at, id"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(query))
        .bind(millis(max_age))
        .fetch_all(db)
        .await
        .map_err(db_error)?;
    rows.iter().map(node_from).collect()
}

pub(crate) async fn live(pool: &PgPool, max_age: Duration) -> StoreResult<Vec<NodeRow>> {
    let mut conn = pool.acquire().await.map_err(db_error)?;
    live_on(&mut conn, max_age).await
}

pub(crate) async fn join(
    pool: &PgPool,
    node: &NodeRow,
    max_age: Duration,
    admit: &store::Admit,
) -> StoreResult<NodeJoin> {
    let mut tx = pool.begin().await.map_err(db_error)?;
    // SHARE ROW EXCLUSIVE conflicts with itself and with row changes: one join at a time,
    // and no heartbeat lands between its read and its insert.
    sqlx::query("LOCK TABLE nodes IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    sqlx::query(
        "DELETE FROM nodes WHERE heartbeat_at < now() - make_interval(secs => $1 / 1000.0)",
    )
    .bind(millis(max_age))
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    let others: Vec<NodeRow> = live_on(&mut tx, max_age)
        .await?
        .into_iter()
        .filter(|other| other.id != node.id)
        .collect();
    let admitted = admit(&others);
    if admitted {
        sqlx::query(
            "INSERT INTO nodes (id, has_redis, address, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, now()) \
             ON CONFLICT (id) DO UPDATE SET has_redis = excluded.has_redis, address = excluded.address, \
             started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at",
        )
        .bind(node.id)
        .bind(node.has_redis)
        .bind(&node.address)
        .bind(node.started_at)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    }
    tx.commit().await.map_err(db_error)?;
    Ok(NodeJoin { admitted, others })
}

pub(crate) async fn heartbeat(pool: &PgPool, id: Uuid) -> StoreResult<bool> {
    let done = sqlx::query("UPDATE nodes SET heartbeat_at = now() WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .map_err(db_error)?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn leave(pool: &PgPool, id: Uuid) -> StoreResult<()> {
    sqlx::query("DELETE FROM nodes WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .map_err(db_error)?;
    Ok(())
}
