//! The SQL behind the app channels' log (`app_channels`, `app_channel_events`, migration 0005;
//! `store::app_channels`). An append's upsert of a channel's counter row takes the row lock and
//! keeps it until the transaction ends, so appends to one channel from every node are
//! serialized and its serials gap-free; channels are locked in name order, so two appends to
//! the same channels cannot deadlock.

use crate::errors::db_error;
use crate::rows::get;
use sqlx::PgConnection;
use store::app_channels::{EXPIRED_DROPPED_PER_APPEND, in_caller_order, lock_order, new_stream_id};
use store::{AppChannelEventRow, AppChannelPositionRow, AppLogRetention, StoreResult, Timestamp};

pub(crate) async fn append(
    db: &mut PgConnection,
    channels: &[String],
    event: &str,
    data: &str,
    at: Timestamp,
    retention: AppLogRetention,
) -> StoreResult<Vec<AppChannelEventRow>> {
    let keep = i64::from(retention.keep_events.max(1));
    let mut appended = Vec::new();
    for channel in lock_order(channels) {
        let serial: i64 = sqlx::query_scalar(
            "INSERT INTO app_channels (channel, stream_id, last_serial, last_at) VALUES ($1, $2, 1, $3) \
             ON CONFLICT (channel) DO UPDATE SET last_serial = app_channels.last_serial + 1, \
             last_at = GREATEST(app_channels.last_at, excluded.last_at) RETURNING last_serial",
        )
        .bind(channel)
        .bind(new_stream_id())
        .bind(at)
        .fetch_one(&mut *db)
        .await
        .map_err(db_error)?;
        sqlx::query(
            "INSERT INTO app_channel_events (channel, serial, event, data, at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(channel)
        .bind(serial)
        .bind(event)
        .bind(data)
        .bind(at)
        .execute(&mut *db)
        .await
        .map_err(db_error)?;
        sqlx::query("DELETE FROM app_channel_events WHERE channel = $1 AND serial <= $2")
            .bind(channel)
            .bind(serial - keep)
            .execute(&mut *db)
            .await
            .map_err(db_error)?;
        sqlx::query(
            "DELETE FROM app_channel_events WHERE channel = $1 AND at < $2 AND serial IN \
             (SELECT serial FROM app_channel_events WHERE channel = $1 ORDER BY serial LIMIT $3)",
        )
        .bind(channel)
        .bind(retention.keep_since)
        .bind(i64::from(EXPIRED_DROPPED_PER_APPEND))
        .execute(&mut *db)
        .await
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

pub(crate) async fn after(
    db: &mut PgConnection,
    channel: &str,
    after: i64,
    limit: u32,
    not_before: Timestamp,
) -> StoreResult<Vec<AppChannelEventRow>> {
    let rows = sqlx::query(
        "SELECT serial, event, data, at FROM app_channel_events \
         WHERE channel = $1 AND serial > $2 AND at >= $3 ORDER BY serial LIMIT $4",
    )
    .bind(channel)
    .bind(after)
    .bind(not_before)
    .bind(i64::from(limit))
    .fetch_all(db)
    .await
    .map_err(db_error)?;
    rows.iter()
        .map(|row| {
            Ok(AppChannelEventRow {
                channel: channel.to_owned(),
                serial: get(row, "serial")?,
                event: get(row, "event")?,
                data: get(row, "data")?,
                at: get(row, "at")?,
            })
        })
        .collect()
}

pub(crate) async fn position(
    db: &mut PgConnection,
    channel: &str,
    not_before: Timestamp,
) -> StoreResult<Option<AppChannelPositionRow>> {
    // One statement, so the counter and the oldest event are read as of one moment.
    let row = sqlx::query(
        "SELECT c.stream_id, c.last_serial, \
         (SELECT MIN(e.serial) FROM app_channel_events e WHERE e.channel = c.channel AND e.at >= $2) AS first_serial \
         FROM app_channels c WHERE c.channel = $1",
    )
    .bind(channel)
    .bind(not_before)
    .fetch_optional(db)
    .await
    .map_err(db_error)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let last_serial: i64 = get(&row, "last_serial")?;
    let first: Option<i64> = get(&row, "first_serial")?;
    Ok(Some(AppChannelPositionRow {
        stream_id: get(&row, "stream_id")?,
        first_serial: first.unwrap_or(last_serial + 1),
        last_serial,
    }))
}

pub(crate) async fn forget_idle(
    db: &mut PgConnection,
    idle_before: Timestamp,
    limit: u32,
) -> StoreResult<u64> {
    // A channel an append holds is skipped (it is not idle); one appended to meanwhile fails
    // the second `last_at` test, checked again once its row is locked.
    let forgotten: Vec<String> = sqlx::query_scalar(
        "DELETE FROM app_channels WHERE channel IN \
         (SELECT channel FROM app_channels WHERE last_at < $1 ORDER BY last_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
         AND last_at < $1 RETURNING channel",
    )
    .bind(idle_before)
    .bind(i64::from(limit))
    .fetch_all(&mut *db)
    .await
    .map_err(db_error)?;
    sqlx::query("DELETE FROM app_channel_events WHERE channel = ANY($1)")
        .bind(&forgotten)
        .execute(&mut *db)
        .await
        .map_err(db_error)?;
    Ok(forgotten.len() as u64)
}

pub(crate) async fn delete_all(db: &mut PgConnection) -> StoreResult<()> {
    for statement in ["DELETE FROM app_channels", "DELETE FROM app_channel_events"] {
        sqlx::query(statement)
            .execute(&mut *db)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}
