//! The SQL behind the whiteboards' documents (`whiteboard_docs`, `whiteboard_updates`,
//! `whiteboard_snapshots`, migration 0006; `store::whiteboards`). An append's upsert of the
//! board's counter row takes the row lock and keeps it until the transaction ends, so appends
//! to one board from every node commit in seq order; a compaction takes the same lock.

use crate::errors::db_error;
use crate::rows::get;
use sqlx::PgConnection;
use store::{
    StoreError, StoreResult, Timestamp, WhiteboardSnapshotInfo, WhiteboardSnapshotRow,
    WhiteboardUpdateRow,
};
use uuid::Uuid;

pub(crate) async fn append(
    db: &mut PgConnection,
    board_id: Uuid,
    update: &[u8],
    at: Timestamp,
) -> StoreResult<i64> {
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO whiteboard_docs (board_id, last_seq) VALUES ($1, 1) \
         ON CONFLICT (board_id) DO UPDATE SET last_seq = whiteboard_docs.last_seq + 1 \
         RETURNING last_seq",
    )
    .bind(board_id)
    .fetch_one(&mut *db)
    .await
    .map_err(db_error)?;
    sqlx::query("INSERT INTO whiteboard_updates (board_id, seq, data, at) VALUES ($1, $2, $3, $4)")
        .bind(board_id)
        .bind(seq)
        .bind(update)
        .bind(at)
        .execute(&mut *db)
        .await
        .map_err(db_error)?;
    Ok(seq)
}

pub(crate) async fn after(
    db: &mut PgConnection,
    board_id: Uuid,
    after_seq: i64,
    limit: u32,
) -> StoreResult<Vec<WhiteboardUpdateRow>> {
    let rows = sqlx::query(
        "SELECT seq, data, at FROM whiteboard_updates WHERE board_id = $1 AND seq > $2 \
         ORDER BY seq LIMIT $3",
    )
    .bind(board_id)
    .bind(after_seq)
    .bind(i64::from(limit))
    .fetch_all(db)
    .await
    .map_err(db_error)?;
    rows.iter()
        .map(|row| {
            Ok(WhiteboardUpdateRow {
                board_id,
                seq: get(row, "seq")?,
                update: get(row, "data")?,
                at: get(row, "at")?,
            })
        })
        .collect()
}

pub(crate) async fn latest_seq(db: &mut PgConnection, board_id: Uuid) -> StoreResult<i64> {
    let seq: Option<i64> =
        sqlx::query_scalar("SELECT last_seq FROM whiteboard_docs WHERE board_id = $1")
            .bind(board_id)
            .fetch_optional(db)
            .await
            .map_err(db_error)?;
    Ok(seq.unwrap_or(0))
}

pub(crate) async fn compact(
    db: &mut PgConnection,
    board_id: Uuid,
    through_seq: i64,
    state: &[u8],
) -> StoreResult<()> {
    let last: Option<i64> =
        sqlx::query_scalar("SELECT last_seq FROM whiteboard_docs WHERE board_id = $1 FOR UPDATE")
            .bind(board_id)
            .fetch_optional(&mut *db)
            .await
            .map_err(db_error)?;
    if through_seq < 1 || through_seq > last.unwrap_or(0) {
        return Err(StoreError::database(
            "a compaction must end at a seq the board has",
        ));
    }
    let at: Option<Timestamp> =
        sqlx::query_scalar("SELECT at FROM whiteboard_updates WHERE board_id = $1 AND seq = $2")
            .bind(board_id)
            .bind(through_seq)
            .fetch_optional(&mut *db)
            .await
            .map_err(db_error)?;
    sqlx::query("DELETE FROM whiteboard_updates WHERE board_id = $1 AND seq <= $2")
        .bind(board_id)
        .bind(through_seq)
        .execute(&mut *db)
        .await
        .map_err(db_error)?;
    sqlx::query("INSERT INTO whiteboard_updates (board_id, seq, data, at) VALUES ($1, $2, $3, $4)")
        .bind(board_id)
        .bind(through_seq)
        .bind(state)
        .bind(at.unwrap_or_else(store::now))
        .execute(&mut *db)
        .await
        .map_err(db_error)?;
    Ok(())
}

pub(crate) async fn to_compact(
    db: &mut PgConnection,
    more_than: u32,
    limit: u32,
) -> StoreResult<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT board_id FROM whiteboard_updates GROUP BY board_id HAVING COUNT(*) > $1 \
         ORDER BY board_id LIMIT $2",
    )
    .bind(i64::from(more_than))
    .bind(i64::from(limit))
    .fetch_all(db)
    .await
    .map_err(db_error)
}

pub(crate) async fn insert_snapshot(
    db: &mut PgConnection,
    snapshot: &WhiteboardSnapshotRow,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO whiteboard_snapshots (id, board_id, name, state, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(snapshot.id)
    .bind(snapshot.board_id)
    .bind(&snapshot.name)
    .bind(&snapshot.state)
    .bind(snapshot.created_at)
    .execute(db)
    .await
    .map_err(db_error)?;
    Ok(())
}

pub(crate) async fn list_snapshots(
    db: &mut PgConnection,
    board_id: Uuid,
) -> StoreResult<Vec<WhiteboardSnapshotInfo>> {
    let rows = sqlx::query(
        "SELECT id, name, created_at FROM whiteboard_snapshots WHERE board_id = $1 \
         ORDER BY created_at, id",
    )
    .bind(board_id)
    .fetch_all(db)
    .await
    .map_err(db_error)?;
    rows.iter()
        .map(|row| {
            Ok(WhiteboardSnapshotInfo {
                id: get(row, "id")?,
                board_id,
                name: get(row, "name")?,
                created_at: get(row, "created_at")?,
            })
        })
        .collect()
}

pub(crate) async fn get_snapshot(
    db: &mut PgConnection,
    id: Uuid,
) -> StoreResult<Option<WhiteboardSnapshotRow>> {
    let row = sqlx::query(
        "SELECT board_id, name, state, created_at FROM whiteboard_snapshots WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
    .map_err(db_error)?;
    row.map(|row| {
        Ok(WhiteboardSnapshotRow {
            id,
            board_id: get(&row, "board_id")?,
            name: get(&row, "name")?,
            state: get(&row, "state")?,
            created_at: get(&row, "created_at")?,
        })
    })
    .transpose()
}
