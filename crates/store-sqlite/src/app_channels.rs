//! The SQL behind the app channels' log (`app_channels`, `app_channel_events`, migration 0004;
//! `store::app_channels`). SQLite's one writer orders every append, so the counter row needs no
//! lock of its own. Timestamps are `format_ts` text, which sorts as time does.

use crate::db_error;
use rusqlite::{Connection, OptionalExtension, params};
use store::app_channels::{EXPIRED_DROPPED_PER_APPEND, in_caller_order, lock_order, new_stream_id};
use store::{
    AppChannelEventRow, AppChannelPositionRow, AppLogRetention, StoreError, StoreResult, Timestamp,
    format_ts,
};

fn parse_ts(text: &str) -> StoreResult<Timestamp> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.to_utc())
        .map_err(|_| StoreError::Corrupt("app_channel_events: bad timestamp".into()))
}

pub(crate) fn append(
    db: &Connection,
    channels: &[String],
    event: &str,
    data: &str,
    at: Timestamp,
    retention: AppLogRetention,
) -> StoreResult<Vec<AppChannelEventRow>> {
    let at_text = format_ts(at);
    let since = format_ts(retention.keep_since);
    let keep = i64::from(retention.keep_events.max(1));
    let mut appended = Vec::new();
    for channel in lock_order(channels) {
        let serial: i64 = db
            .prepare_cached(
                "INSERT INTO app_channels (channel, stream_id, last_serial, last_at) VALUES (?, ?, 1, ?) \
                 ON CONFLICT(channel) DO UPDATE SET last_serial = last_serial + 1, last_at = max(last_at, excluded.last_at) \
                 RETURNING last_serial",
            )
            .and_then(|mut s| s.query_row(params![channel, new_stream_id(), at_text], |r| r.get(0)))
            .map_err(db_error)?;
        db.prepare_cached(
            "INSERT INTO app_channel_events (channel, serial, event, data, at) VALUES (?, ?, ?, ?, ?)",
        )
        .and_then(|mut s| s.execute(params![channel, serial, event, data, at_text]))
        .map_err(db_error)?;
        db.prepare_cached("DELETE FROM app_channel_events WHERE channel = ? AND serial <= ?")
            .and_then(|mut s| s.execute(params![channel, serial - keep]))
            .map_err(db_error)?;
        db.prepare_cached(
            "DELETE FROM app_channel_events WHERE channel = ?1 AND at < ?2 AND serial IN \
             (SELECT serial FROM app_channel_events WHERE channel = ?1 ORDER BY serial LIMIT ?3)",
        )
        .and_then(|mut s| s.execute(params![channel, since, EXPIRED_DROPPED_PER_APPEND]))
        .map_err(db_error)?;
        appended.push(AppChannelEventRow {
            channel: channel.to_owned(),
            serial,
            event: event.to_owned(),
            data: data.to_owned(),
            at,
        });
    }
    Ok(in_caller_order(channels, appended))
}

pub(crate) fn after(
    db: &Connection,
    channel: &str,
    after: i64,
    limit: u32,
    not_before: Timestamp,
) -> StoreResult<Vec<AppChannelEventRow>> {
    let mut statement = db
        .prepare_cached(
            "SELECT serial, event, data, at FROM app_channel_events \
             WHERE channel = ? AND serial > ? AND at >= ? ORDER BY serial LIMIT ?",
        )
        .map_err(db_error)?;
    let rows = statement
        .query_map(
            params![channel, after, format_ts(not_before), limit],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                ))
            },
        )
        .map_err(db_error)?;
    let mut events = Vec::new();
    for row in rows {
        let (serial, event, data, at) = row.map_err(db_error)?;
        events.push(AppChannelEventRow {
            channel: channel.to_owned(),
            serial,
            event,
            data,
            at: parse_ts(&at)?,
        });
    }
    Ok(events)
}

pub(crate) fn position(
    db: &Connection,
    channel: &str,
    not_before: Timestamp,
) -> StoreResult<Option<AppChannelPositionRow>> {
    // One statement, so the counter and the oldest event are read as of one moment.
    let found: Option<(String, i64, Option<i64>)> = db
        .prepare_cached(
            "SELECT c.stream_id, c.last_serial, \
             (SELECT MIN(e.serial) FROM app_channel_events e WHERE e.channel = c.channel AND e.at >= ?2) \
             FROM app_channels c WHERE c.channel = ?1",
        )
        .and_then(|mut s| {
            s.query_row(params![channel, format_ts(not_before)], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .optional()
        })
        .map_err(db_error)?;
    Ok(
        found.map(|(stream_id, last_serial, first)| AppChannelPositionRow {
            stream_id,
            first_serial: first.unwrap_or(last_serial + 1),
            last_serial,
        }),
    )
}

pub(crate) fn forget_idle(db: &Connection, idle_before: Timestamp, limit: u32) -> StoreResult<u64> {
    let idle: Vec<String> = db
        .prepare_cached(
            "SELECT channel FROM app_channels WHERE last_at < ? ORDER BY last_at LIMIT ?",
        )
        .and_then(|mut s| {
            s.query_map(params![format_ts(idle_before), limit], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .map_err(db_error)?;
    for channel in &idle {
        for sql in [
            "DELETE FROM app_channel_events WHERE channel = ?",
            "DELETE FROM app_channels WHERE channel = ?",
        ] {
            db.prepare_cached(sql)
                .and_then(|mut s| s.execute([channel]))
                .map_err(db_error)?;
        }
    }
    Ok(idle.len() as u64)
}

pub(crate) fn delete_all(db: &Connection) -> StoreResult<()> {
    db.execute_batch("DELETE FROM app_channel_events; DELETE FROM app_channels;")
        .map_err(db_error)
}

/// After a possibly lost tail (`crate::durability`): every channel gets a new `stream_id`.
pub(crate) fn renew_stream_ids(db: &Connection) -> StoreResult<()> {
    db.execute(
        "UPDATE app_channels SET stream_id = lower(hex(randomblob(16)))",
        [],
    )
    .map_err(db_error)?;
    Ok(())
}
