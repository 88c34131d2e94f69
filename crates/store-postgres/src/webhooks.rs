//! The SQL behind per-project webhooks (`webhooks`, `webhook_deliveries`, migration 0007;
//! `store::webhooks`). A lease is taken by one conditional UPDATE, which PostgreSQL runs under
//! the row's lock and re-checks against the committed row: of nodes racing for a free or
//! expired lease, exactly one updates a row. The cursor moves the same way, only for the lease's
//! owner and only from the value it read.

use crate::errors::db_error;
use crate::rows::{corrupt, get};
use serde_json::Value;
use sqlx::PgConnection;
use sqlx::postgres::PgRow;
use store::{StoreError, StoreResult, Timestamp, WebhookDeliveryRow, WebhookRow};
use uuid::Uuid;

macro_rules! webhook_columns {
    () => {
        "id, project_id, url, events, secret, active, cursor, created_at, updated_at"
    };
}

fn webhook(row: &PgRow) -> StoreResult<WebhookRow> {
    let events: Value = get(row, "events")?;
    Ok(WebhookRow {
        id: get(row, "id")?,
        project_id: get(row, "project_id")?,
        url: get(row, "url")?,
        events: serde_json::from_value(events).map_err(|_| corrupt("webhooks: bad events"))?,
        secret: get(row, "secret")?,
        active: get(row, "active")?,
        cursor: get(row, "cursor")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

fn events_json(events: &[String]) -> Value {
    Value::Array(events.iter().cloned().map(Value::String).collect())
}

pub(crate) async fn insert(db: &mut PgConnection, w: &WebhookRow) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO webhooks (id, project_id, url, events, secret, active, cursor, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(w.id)
    .bind(w.project_id)
    .bind(&w.url)
    .bind(events_json(&w.events))
    .bind(&w.secret)
    .bind(w.active)
    .bind(w.cursor)
    .bind(w.created_at)
    .bind(w.updated_at)
    .execute(db)
    .await
    .map_err(db_error)?;
    Ok(())
}

pub(crate) async fn get_one(db: &mut PgConnection, id: Uuid) -> StoreResult<Option<WebhookRow>> {
    let sql = concat!(
        "SELECT ",
        webhook_columns!(),
        " FROM webhooks WHERE id = $1"
    );
    let row = sqlx::query(sql)
        .bind(id)
        .fetch_optional(db)
        .await
        .map_err(db_error)?;
    row.as_ref().map(webhook).transpose()
}

pub(crate) async fn list(db: &mut PgConnection, project_id: Uuid) -> StoreResult<Vec<WebhookRow>> {
    let sql = concat!(
        "SELECT ",
        webhook_columns!(),
        " FROM webhooks WHERE project_id = $1 ORDER BY created_at, id"
    );
    let rows = sqlx::query(sql)
        .bind(project_id)
        .fetch_all(db)
        .await
        .map_err(db_error)?;
    rows.iter().map(webhook).collect()
}

pub(crate) async fn update(db: &mut PgConnection, w: &WebhookRow) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE webhooks SET url = $1, events = $2, secret = $3, active = $4, updated_at = $5 WHERE id = $6",
    )
    .bind(&w.url)
    .bind(events_json(&w.events))
    .bind(&w.secret)
    .bind(w.active)
    .bind(w.updated_at)
    .bind(w.id)
    .execute(db)
    .await
    .map_err(db_error)?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn delete(db: &mut PgConnection, id: Uuid) -> StoreResult<bool> {
    sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
        .bind(id)
        .execute(&mut *db)
        .await
        .map_err(db_error)?;
    let done = sqlx::query("DELETE FROM webhooks WHERE id = $1")
        .bind(id)
        .execute(db)
        .await
        .map_err(db_error)?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn due(
    db: &mut PgConnection,
    now: Timestamp,
    limit: u32,
) -> StoreResult<Vec<WebhookRow>> {
    let sql = concat!(
        "SELECT ",
        webhook_columns!(),
        " FROM webhooks w WHERE active \
         AND (lease_until IS NULL OR lease_until < $1) AND (retry_at IS NULL OR retry_at <= $1) \
         AND cursor < COALESCE((SELECT last_seq FROM streams WHERE stream = 'project:' || w.project_id::text), 0) \
         ORDER BY id LIMIT $2"
    );
    let rows = sqlx::query(sql)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(db)
        .await
        .map_err(db_error)?;
    rows.iter().map(webhook).collect()
}

pub(crate) async fn take_lease(
    db: &mut PgConnection,
    id: Uuid,
    owner: Uuid,
    now: Timestamp,
    until: Timestamp,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE webhooks SET lease_owner = $1, lease_until = $2 WHERE id = $3 \
         AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until IS NULL OR lease_until < $4)",
    )
    .bind(owner)
    .bind(until)
    .bind(id)
    .bind(now)
    .execute(db)
    .await
    .map_err(db_error)?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn release_lease(
    db: &mut PgConnection,
    id: Uuid,
    owner: Uuid,
    retry_at: Option<Timestamp>,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE webhooks SET lease_owner = NULL, lease_until = NULL, retry_at = $1 \
         WHERE id = $2 AND lease_owner = $3",
    )
    .bind(retry_at)
    .bind(id)
    .bind(owner)
    .execute(db)
    .await
    .map_err(db_error)?;
    Ok(())
}

pub(crate) async fn advance(
    db: &mut PgConnection,
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
    let done = sqlx::query(
        "UPDATE webhooks SET cursor = $1, retry_at = NULL WHERE id = $2 AND lease_owner = $3 AND cursor = $4",
    )
    .bind(to)
    .bind(id)
    .bind(owner)
    .bind(from)
    .execute(db)
    .await
    .map_err(db_error)?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn min_cursor(
    db: &mut PgConnection,
    project_id: Uuid,
) -> StoreResult<Option<i64>> {
    sqlx::query_scalar("SELECT MIN(cursor) FROM webhooks WHERE project_id = $1 AND active")
        .bind(project_id)
        .fetch_one(db)
        .await
        .map_err(db_error)
}

macro_rules! delivery_columns {
    () => {
        "id, webhook_id, seq, event, outcome, attempts, response_status, error, created_at, updated_at"
    };
}

fn delivery(row: &PgRow) -> StoreResult<WebhookDeliveryRow> {
    Ok(WebhookDeliveryRow {
        id: get(row, "id")?,
        webhook_id: get(row, "webhook_id")?,
        seq: get(row, "seq")?,
        event: get(row, "event")?,
        outcome: get(row, "outcome")?,
        attempts: get(row, "attempts")?,
        response_status: get(row, "response_status")?,
        error: get(row, "error")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

pub(crate) async fn insert_delivery(
    db: &mut PgConnection,
    d: &WebhookDeliveryRow,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, webhook_id, seq, event, outcome, attempts, response_status, error, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(d.id)
    .bind(d.webhook_id)
    .bind(d.seq)
    .bind(&d.event)
    .bind(&d.outcome)
    .bind(d.attempts)
    .bind(d.response_status)
    .bind(&d.error)
    .bind(d.created_at)
    .bind(d.updated_at)
    .execute(db)
    .await
    .map_err(db_error)?;
    Ok(())
}

pub(crate) async fn get_delivery(
    db: &mut PgConnection,
    webhook_id: Uuid,
    seq: i64,
) -> StoreResult<Option<WebhookDeliveryRow>> {
    let sql = concat!(
        "SELECT ",
        delivery_columns!(),
        " FROM webhook_deliveries WHERE webhook_id = $1 AND seq = $2"
    );
    let row = sqlx::query(sql)
        .bind(webhook_id)
        .bind(seq)
        .fetch_optional(db)
        .await
        .map_err(db_error)?;
    row.as_ref().map(delivery).transpose()
}

pub(crate) async fn update_delivery(
    db: &mut PgConnection,
    d: &WebhookDeliveryRow,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET outcome = $1, attempts = $2, response_status = $3, error = $4, updated_at = $5 \
         WHERE id = $6",
    )
    .bind(&d.outcome)
    .bind(d.attempts)
    .bind(d.response_status)
    .bind(&d.error)
    .bind(d.updated_at)
    .bind(d.id)
    .execute(db)
    .await
    .map_err(db_error)?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn list_deliveries(
    db: &mut PgConnection,
    webhook_id: Uuid,
    limit: u32,
) -> StoreResult<Vec<WebhookDeliveryRow>> {
    let sql = concat!(
        "SELECT ",
        delivery_columns!(),
        " FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY seq DESC LIMIT $2"
    );
    let rows = sqlx::query(sql)
        .bind(webhook_id)
        .bind(i64::from(limit))
        .fetch_all(db)
        .await
        .map_err(db_error)?;
    rows.iter().map(delivery).collect()
}

pub(crate) async fn prune_deliveries(
    db: &mut PgConnection,
    webhook_id: Uuid,
    keep: u32,
) -> StoreResult<u64> {
    let done = sqlx::query(
        "DELETE FROM webhook_deliveries WHERE webhook_id = $1 AND seq <= \
         (SELECT seq FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY seq DESC LIMIT 1 OFFSET $2)",
    )
    .bind(webhook_id)
    .bind(i64::from(keep))
    .execute(db)
    .await
    .map_err(db_error)?;
    Ok(done.rows_affected())
}
