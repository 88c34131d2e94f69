//! The SQL behind per-project webhooks (`webhooks`, `webhook_deliveries`, migration 0006;
//! `store::webhooks`). Every lease and cursor change is one conditional UPDATE; SQLite's one
//! writer orders them, and processes sharing the file (never two servers: the node registry
//! refuses it) see each other's through the file lock.

use crate::db_error;
use rusqlite::{Connection, OptionalExtension, Row, params};
use store::{StoreError, StoreResult, Timestamp, WebhookDeliveryRow, WebhookRow, format_ts};
use uuid::Uuid;

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("webhooks: bad {what}"))
}

fn parse_ts(text: &str) -> StoreResult<Timestamp> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.to_utc())
        .map_err(|_| corrupt("timestamp"))
}

fn parse_id(text: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(text).map_err(|_| corrupt("id"))
}

const WEBHOOK_COLUMNS: &str =
    "id, project_id, url, events, secret, active, cursor, created_at, updated_at";

type RawWebhook = (
    String,
    String,
    String,
    String,
    String,
    bool,
    i64,
    String,
    String,
);

fn raw_webhook(row: &Row) -> rusqlite::Result<RawWebhook> {
    RawWebhook::try_from(row)
}

fn webhook(raw: RawWebhook) -> StoreResult<WebhookRow> {
    let (id, project_id, url, events, secret, active, cursor, created_at, updated_at) = raw;
    Ok(WebhookRow {
        id: parse_id(&id)?,
        project_id: parse_id(&project_id)?,
        url,
        events: serde_json::from_str(&events).map_err(|_| corrupt("events"))?,
        secret,
        active,
        cursor,
        created_at: parse_ts(&created_at)?,
        updated_at: parse_ts(&updated_at)?,
    })
}

fn events_text(events: &[String]) -> String {
    serde_json::to_string(events).unwrap_or_else(|_| "[]".into())
}

fn many(db: &Connection, sql: &str, args: impl rusqlite::Params) -> StoreResult<Vec<WebhookRow>> {
    let raws = db
        .prepare_cached(sql)
        .and_then(|mut s| {
            s.query_map(args, raw_webhook)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db_error)?;
    raws.into_iter().map(webhook).collect()
}

pub(crate) fn insert(db: &Connection, w: &WebhookRow) -> StoreResult<()> {
    db.prepare_cached(
        "INSERT INTO webhooks (id, project_id, url, events, secret, active, cursor, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .and_then(|mut s| {
        s.execute(params![
            w.id.to_string(),
            w.project_id.to_string(),
            w.url,
            events_text(&w.events),
            w.secret,
            w.active,
            w.cursor,
            format_ts(w.created_at),
            format_ts(w.updated_at)
        ])
    })
    .map_err(db_error)?;
    Ok(())
}

pub(crate) fn get(db: &Connection, id: Uuid) -> StoreResult<Option<WebhookRow>> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?");
    Ok(many(db, &sql, [id.to_string()])?.pop())
}

pub(crate) fn list(db: &Connection, project_id: Uuid) -> StoreResult<Vec<WebhookRow>> {
    let sql = format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE project_id = ? ORDER BY created_at, id"
    );
    many(db, &sql, [project_id.to_string()])
}

pub(crate) fn update(db: &Connection, w: &WebhookRow) -> StoreResult<bool> {
    let changed = db
        .prepare_cached(
            "UPDATE webhooks SET url = ?, events = ?, secret = ?, active = ?, updated_at = ? WHERE id = ?",
        )
        .and_then(|mut s| {
            s.execute(params![
                w.url,
                events_text(&w.events),
                w.secret,
                w.active,
                format_ts(w.updated_at),
                w.id.to_string()
            ])
        })
        .map_err(db_error)?;
    Ok(changed > 0)
}

pub(crate) fn delete(db: &Connection, id: Uuid) -> StoreResult<bool> {
    let id = id.to_string();
    db.prepare_cached("DELETE FROM webhook_deliveries WHERE webhook_id = ?")
        .and_then(|mut s| s.execute([&id]))
        .map_err(db_error)?;
    let deleted = db
        .prepare_cached("DELETE FROM webhooks WHERE id = ?")
        .and_then(|mut s| s.execute([&id]))
        .map_err(db_error)?;
    Ok(deleted > 0)
}

/// The project's webhooks and their deliveries (a project's deletion, which must not count on
/// the foreign_keys pragma).
pub(crate) fn delete_of_project(db: &Connection, project_id: &str) -> StoreResult<()> {
    for sql in [
        "DELETE FROM webhook_deliveries WHERE webhook_id IN (SELECT id FROM webhooks WHERE project_id = ?)",
        "DELETE FROM webhooks WHERE project_id = ?",
    ] {
        db.prepare_cached(sql)
            .and_then(|mut s| s.execute([project_id]))
            .map_err(db_error)?;
    }
    Ok(())
}

pub(crate) fn due(db: &Connection, now: Timestamp, limit: u32) -> StoreResult<Vec<WebhookRow>> {
    let sql = format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks w WHERE active \
         AND (lease_until IS NULL OR lease_until < ?1) AND (retry_at IS NULL OR retry_at <= ?1) \
         AND cursor < COALESCE((SELECT last_seq FROM streams WHERE stream = 'project:' || w.project_id), 0) \
         ORDER BY id LIMIT ?2"
    );
    many(db, &sql, params![format_ts(now), limit])
}

pub(crate) fn take_lease(
    db: &Connection,
    id: Uuid,
    owner: Uuid,
    now: Timestamp,
    until: Timestamp,
) -> StoreResult<bool> {
    let owner = owner.to_string();
    let taken = db
        .prepare_cached(
            "UPDATE webhooks SET lease_owner = ?1, lease_until = ?2 WHERE id = ?3 \
             AND (lease_owner IS NULL OR lease_owner = ?1 OR lease_until IS NULL OR lease_until < ?4)",
        )
        .and_then(|mut s| {
            s.execute(params![
                owner,
                format_ts(until),
                id.to_string(),
                format_ts(now)
            ])
        })
        .map_err(db_error)?;
    Ok(taken > 0)
}

pub(crate) fn release_lease(
    db: &Connection,
    id: Uuid,
    owner: Uuid,
    retry_at: Option<Timestamp>,
) -> StoreResult<()> {
    db.prepare_cached(
        "UPDATE webhooks SET lease_owner = NULL, lease_until = NULL, retry_at = ? \
         WHERE id = ? AND lease_owner = ?",
    )
    .and_then(|mut s| {
        s.execute(params![
            retry_at.map(format_ts),
            id.to_string(),
            owner.to_string()
        ])
    })
    .map_err(db_error)?;
    Ok(())
}

pub(crate) fn advance(
    db: &Connection,
    id: Uuid,
    owner: Uuid,
    from: i64,
    to: i64,
) -> StoreResult<bool> {
    if to <= from {
        return Err(StoreError::database(
            "a webhook's cursor only moves forward",
        ));
    }
    let moved = db
        .prepare_cached(
            "UPDATE webhooks SET cursor = ?, retry_at = NULL WHERE id = ? AND lease_owner = ? AND cursor = ?",
        )
        .and_then(|mut s| s.execute(params![to, id.to_string(), owner.to_string(), from]))
        .map_err(db_error)?;
    Ok(moved > 0)
}

pub(crate) fn min_cursor(db: &Connection, project_id: Uuid) -> StoreResult<Option<i64>> {
    db.prepare_cached("SELECT MIN(cursor) FROM webhooks WHERE project_id = ? AND active")
        .and_then(|mut s| s.query_row([project_id.to_string()], |r| r.get(0)))
        .map_err(db_error)
}

const DELIVERY_COLUMNS: &str =
    "id, webhook_id, seq, event, outcome, attempts, response_status, error, created_at, updated_at";

type RawDelivery = (
    String,
    String,
    i64,
    String,
    String,
    i32,
    Option<i32>,
    Option<String>,
    String,
    String,
);

fn raw_delivery(row: &Row) -> rusqlite::Result<RawDelivery> {
    RawDelivery::try_from(row)
}

fn delivery(raw: RawDelivery) -> StoreResult<WebhookDeliveryRow> {
    let (id, webhook_id, seq, event, outcome, attempts, response_status, error, created, updated) =
        raw;
    Ok(WebhookDeliveryRow {
        id: parse_id(&id)?,
        webhook_id: parse_id(&webhook_id)?,
        seq,
        event,
        outcome,
        attempts,
        response_status,
        error,
        created_at: parse_ts(&created)?,
        updated_at: parse_ts(&updated)?,
    })
}

pub(crate) fn insert_delivery(db: &Connection, d: &WebhookDeliveryRow) -> StoreResult<()> {
    db.prepare_cached(
        "INSERT INTO webhook_deliveries (id, webhook_id, seq, event, outcome, attempts, response_status, error, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .and_then(|mut s| {
        s.execute(params![
            d.id.to_string(),
            d.webhook_id.to_string(),
            d.seq,
            d.event,
            d.outcome,
            d.attempts,
            d.response_status,
            d.error,
            format_ts(d.created_at),
            format_ts(d.updated_at)
        ])
    })
    .map_err(db_error)?;
    Ok(())
}

pub(crate) fn get_delivery(
    db: &Connection,
    webhook_id: Uuid,
    seq: i64,
) -> StoreResult<Option<WebhookDeliveryRow>> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = ? AND seq = ?"
    );
    let raw = db
        .prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_row(params![webhook_id.to_string(), seq], raw_delivery)
                .optional()
        })
        .map_err(db_error)?;
    raw.map(delivery).transpose()
}

pub(crate) fn update_delivery(db: &Connection, d: &WebhookDeliveryRow) -> StoreResult<bool> {
    let changed = db
        .prepare_cached(
            "UPDATE webhook_deliveries SET outcome = ?, attempts = ?, response_status = ?, error = ?, updated_at = ? \
             WHERE id = ?",
        )
        .and_then(|mut s| {
            s.execute(params![
                d.outcome,
                d.attempts,
                d.response_status,
                d.error,
                format_ts(d.updated_at),
                d.id.to_string()
            ])
        })
        .map_err(db_error)?;
    Ok(changed > 0)
}

pub(crate) fn list_deliveries(
    db: &Connection,
    webhook_id: Uuid,
    limit: u32,
) -> StoreResult<Vec<WebhookDeliveryRow>> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = ? ORDER BY seq DESC LIMIT ?"
    );
    let raws = db
        .prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_map(params![webhook_id.to_string(), limit], raw_delivery)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db_error)?;
    raws.into_iter().map(delivery).collect()
}

pub(crate) fn prune_deliveries(db: &Connection, webhook_id: Uuid, keep: u32) -> StoreResult<u64> {
    let id = webhook_id.to_string();
    let cut: Option<i64> = db
        .prepare_cached(
            "SELECT seq FROM webhook_deliveries WHERE webhook_id = ? ORDER BY seq DESC LIMIT 1 OFFSET ?",
        )
        .and_then(|mut s| s.query_row(params![id, keep], |r| r.get(0)).optional())
        .map_err(db_error)?;
    let Some(cut) = cut else {
        return Ok(0);
    };
    let deleted = db
        .prepare_cached("DELETE FROM webhook_deliveries WHERE webhook_id = ? AND seq <= ?")
        .and_then(|mut s| s.execute(params![id, cut]))
        .map_err(db_error)?;
    Ok(deleted as u64)
}
