//! The counter rows that number a log: a stream's `streams.last_seq`, advanced inside the write
//! transaction that appends to the log. (A whiteboard's updates number themselves: its last
//! seq is its last row's, see `whiteboards.rs`.)
//!
//! An `UPDATE`, then a point `SELECT` of the same row (an `INSERT` the first time), instead of
//! one `INSERT … ON CONFLICT DO UPDATE … RETURNING`: SQLite gathers a `RETURNING` statement's
//! rows in an ephemeral table, opened on every run, and that made the counter cost 1.6–1.7 µs a
//! call against 1.0–1.1 µs (BENCHMARKS.md, "Counters without RETURNING"). It runs for every
//! transaction that appends events. SQLite's one writer makes the two statements one step.

use crate::db_error;
use rusqlite::{Connection, OptionalExtension, params};
use store::StoreResult;

/// Advances `stream`'s counter by `by` (a new counter starts at `by`); its new value. Call it
/// inside a write transaction.
pub(crate) fn advance_stream(db: &Connection, stream: &str, by: i64) -> StoreResult<i64> {
    let changed = db
        .prepare_cached("UPDATE streams SET last_seq = last_seq + ?2 WHERE stream = ?1")
        .and_then(|mut s| s.execute(params![stream, by]))
        .map_err(db_error)?;
    if changed == 0 {
        db.prepare_cached("INSERT INTO streams (stream, last_seq) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![stream, by]))
            .map_err(db_error)?;
        return Ok(by);
    }
    stream_seq(db, stream)
}

/// `stream`'s last seq: 0 before its first event.
pub(crate) fn stream_seq(db: &Connection, stream: &str) -> StoreResult<i64> {
    let value: Option<i64> = db
        .prepare_cached("SELECT last_seq FROM streams WHERE stream = ?1")
        .and_then(|mut s| s.query_row([stream], |row| row.get(0)).optional())
        .map_err(db_error)?;
    Ok(value.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let db = Connection::open_in_memory().unwrap();
        db.execute_batch(
            "CREATE TABLE streams (stream TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);",
        )
        .unwrap();
        db
    }

    #[test]
    fn a_stream_counter_starts_at_its_first_step_and_adds_each_next_one() {
        let db = db();
        assert_eq!(stream_seq(&db, "project:a").unwrap(), 0);
        assert_eq!(advance_stream(&db, "project:a", 3).unwrap(), 3);
        assert_eq!(advance_stream(&db, "project:a", 1).unwrap(), 4);
        assert_eq!(advance_stream(&db, "project:b", 1).unwrap(), 1);
        assert_eq!(advance_stream(&db, "project:a", 2).unwrap(), 6);
        assert_eq!(stream_seq(&db, "project:a").unwrap(), 6);
        let rows: i64 = db
            .query_row("SELECT count(*) FROM streams", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 2);
    }
}
