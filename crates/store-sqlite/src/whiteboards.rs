//! The SQL behind the whiteboards' documents (`whiteboard_docs`, `whiteboard_updates`,
//! `whiteboard_snapshots`, migrations 0005 and 0007; `store::whiteboards`).
//!
//! A board's last seq is its last update row's (a compaction keeps the row of the seq it ends
//! at), read with one seek into the page the append writes anyway; SQLite's one writer orders
//! every append. A counter row per board (`whiteboard_docs.last_seq` before migration 0007)
//! made every append dirty one more page, in a table whose rows lie in no order the appends
//! follow: a thousand boards' updates wrote about one more page each to the write-ahead log
//! and its sync (BENCHMARKS.md, "Events in rounds; a board's seq from its last update").
//! `whiteboard_docs` keeps one row per board with a document, the parent its updates go with.

use crate::db_error;
use rusqlite::{Connection, OptionalExtension, params};
use store::{
    StoreError, StoreResult, Timestamp, WhiteboardSnapshotInfo, WhiteboardSnapshotRow,
    WhiteboardUpdateRow, format_ts,
};
use uuid::Uuid;

fn parse_ts(text: &str) -> StoreResult<Timestamp> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.to_utc())
        .map_err(|_| StoreError::Corrupt("whiteboards: bad timestamp".into()))
}

fn parse_id(text: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(text).map_err(|_| StoreError::Corrupt("whiteboards: bad id".into()))
}

pub(crate) fn append(
    db: &Connection,
    board_id: Uuid,
    update: &[u8],
    at: Timestamp,
) -> StoreResult<i64> {
    let board = board_id.to_string();
    let last = last_seq(db, &board)?;
    if last == 0 {
        db.prepare_cached("INSERT OR IGNORE INTO whiteboard_docs (board_id) VALUES (?)")
            .and_then(|mut s| s.execute([&board]))
            .map_err(db_error)?;
    }
    let seq = last + 1;
    db.prepare_cached(
        "INSERT INTO whiteboard_updates (board_id, seq, data, at) VALUES (?, ?, ?, ?)",
    )
    .and_then(|mut s| s.execute(params![board, seq, update, format_ts(at)]))
    .map_err(db_error)?;
    Ok(seq)
}

pub(crate) fn after(
    db: &Connection,
    board_id: Uuid,
    after_seq: i64,
    limit: u32,
) -> StoreResult<Vec<WhiteboardUpdateRow>> {
    let rows = db
        .prepare_cached(
            "SELECT seq, data, at FROM whiteboard_updates WHERE board_id = ? AND seq > ? \
             ORDER BY seq LIMIT ?",
        )
        .and_then(|mut s| {
            s.query_map(params![board_id.to_string(), after_seq, limit], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db_error)?;
    rows.into_iter()
        .map(|(seq, update, at)| {
            Ok(WhiteboardUpdateRow {
                board_id,
                seq,
                update,
                at: parse_ts(&at)?,
            })
        })
        .collect()
}

pub(crate) fn latest_seq(db: &Connection, board_id: Uuid) -> StoreResult<i64> {
    last_seq(db, &board_id.to_string())
}

/// The seq of `board`'s last update row: 0 before its first.
fn last_seq(db: &Connection, board: &str) -> StoreResult<i64> {
    let last: Option<i64> = db
        .prepare_cached("SELECT max(seq) FROM whiteboard_updates WHERE board_id = ?")
        .and_then(|mut s| s.query_row([board], |row| row.get(0)))
        .map_err(db_error)?;
    Ok(last.unwrap_or(0))
}

pub(crate) fn compact(
    db: &Connection,
    board_id: Uuid,
    through_seq: i64,
    state: &[u8],
) -> StoreResult<()> {
    let last = latest_seq(db, board_id)?;
    if through_seq < 1 || through_seq > last {
        return Err(StoreError::database(
            "a compaction must end at a seq the board has",
        ));
    }
    let board = board_id.to_string();
    let at: Option<String> = db
        .prepare_cached("SELECT at FROM whiteboard_updates WHERE board_id = ? AND seq = ?")
        .and_then(|mut s| {
            s.query_row(params![board, through_seq], |r| r.get(0))
                .optional()
        })
        .map_err(db_error)?;
    let at = at.unwrap_or_else(|| format_ts(store::now()));
    db.prepare_cached("DELETE FROM whiteboard_updates WHERE board_id = ? AND seq <= ?")
        .and_then(|mut s| s.execute(params![board, through_seq]))
        .map_err(db_error)?;
    db.prepare_cached(
        "INSERT INTO whiteboard_updates (board_id, seq, data, at) VALUES (?, ?, ?, ?)",
    )
    .and_then(|mut s| s.execute(params![board, through_seq, state, at]))
    .map_err(db_error)?;
    Ok(())
}

pub(crate) fn to_compact(db: &Connection, more_than: u32, limit: u32) -> StoreResult<Vec<Uuid>> {
    let boards = db
        .prepare_cached(
            "SELECT board_id FROM whiteboard_updates GROUP BY board_id HAVING COUNT(*) > ? \
             ORDER BY board_id LIMIT ?",
        )
        .and_then(|mut s| {
            s.query_map(params![more_than, limit], |row| row.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db_error)?;
    boards.iter().map(|b| parse_id(b)).collect()
}

pub(crate) fn insert_snapshot(
    db: &Connection,
    snapshot: &WhiteboardSnapshotRow,
) -> StoreResult<()> {
    db.prepare_cached(
        "INSERT INTO whiteboard_snapshots (id, board_id, name, state, created_at) VALUES (?, ?, ?, ?, ?)",
    )
    .and_then(|mut s| {
        s.execute(params![
            snapshot.id.to_string(),
            snapshot.board_id.to_string(),
            snapshot.name,
            snapshot.state,
            format_ts(snapshot.created_at)
        ])
    })
    .map_err(db_error)?;
    Ok(())
}

pub(crate) fn list_snapshots(
    db: &Connection,
    board_id: Uuid,
) -> StoreResult<Vec<WhiteboardSnapshotInfo>> {
    let rows = db
        .prepare_cached(
            "SELECT id, name, created_at FROM whiteboard_snapshots WHERE board_id = ? \
             ORDER BY created_at, id",
        )
        .and_then(|mut s| {
            s.query_map([board_id.to_string()], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db_error)?;
    rows.into_iter()
        .map(|(id, name, created_at)| {
            Ok(WhiteboardSnapshotInfo {
                id: parse_id(&id)?,
                board_id,
                name,
                created_at: parse_ts(&created_at)?,
            })
        })
        .collect()
}

pub(crate) fn get_snapshot(
    db: &Connection,
    id: Uuid,
) -> StoreResult<Option<WhiteboardSnapshotRow>> {
    let row: Option<(String, String, Vec<u8>, String)> = db
        .prepare_cached(
            "SELECT board_id, name, state, created_at FROM whiteboard_snapshots WHERE id = ?",
        )
        .and_then(|mut s| {
            s.query_row([id.to_string()], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .optional()
        })
        .map_err(db_error)?;
    row.map(|(board, name, state, created_at)| {
        Ok(WhiteboardSnapshotRow {
            id,
            board_id: parse_id(&board)?,
            name,
            state,
            created_at: parse_ts(&created_at)?,
        })
    })
    .transpose()
}
