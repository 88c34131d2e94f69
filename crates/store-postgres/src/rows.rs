//! PostgreSQL rows into the store's row types.

use proto::{Event, EventType, StreamKey};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{Decode, Postgres, Row, Type};
use store::StoreError;
use store::StoreResult;
use store::rows::*;

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub(crate) fn get<'r, T: Decode<'r, Postgres> + Type<Postgres>>(
    row: &'r PgRow,
    column: &str,
) -> StoreResult<T> {
    row.try_get(column)
        .map_err(|e| corrupt(format!("{column}: {e}")))
}

pub(crate) fn object_col(row: &PgRow, column: &str) -> StoreResult<JsonObject> {
    match get::<Value>(row, column)? {
        Value::Object(map) => Ok(map),
        _ => Err(corrupt(format!("{column} is not a JSON object"))),
    }
}

pub(crate) fn object(map: &JsonObject) -> Value {
    Value::Object(map.clone())
}

/// The column names of a row type in a result: as they are, or with a prefix where a join puts
/// them beside another table's.
pub(crate) fn col(prefix: &str, name: &'static str) -> std::borrow::Cow<'static, str> {
    if prefix.is_empty() {
        name.into()
    } else {
        format!("{prefix}{name}").into()
    }
}

/// The row a LEFT JOIN put under prefix `p`, read with `read`; `None` when the join found none
/// (its id is NULL).
pub(crate) fn joined<T>(
    row: &PgRow,
    p: &str,
    read: impl Fn(&PgRow, &str) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    match get::<Option<uuid::Uuid>>(row, &col(p, "id"))? {
        Some(_) => read(row, p).map(Some),
        None => Ok(None),
    }
}

pub(crate) fn user_in(row: &PgRow, p: &str) -> StoreResult<UserRow> {
    Ok(UserRow {
        id: get(row, &col(p, "id"))?,
        email: get(row, &col(p, "email"))?,
        username: get(row, &col(p, "username"))?,
        display_name: get(row, &col(p, "display_name"))?,
        password_hash: get(row, &col(p, "password_hash"))?,
        is_admin: get(row, &col(p, "is_admin"))?,
        is_active: get(row, &col(p, "is_active"))?,
        version: get(row, &col(p, "version"))?,
        created_at: get(row, &col(p, "created_at"))?,
        updated_at: get(row, &col(p, "updated_at"))?,
    })
}

pub(crate) fn user_from(row: &PgRow) -> StoreResult<UserRow> {
    user_in(row, "")
}

pub(crate) fn session_in(row: &PgRow, p: &str) -> StoreResult<SessionRow> {
    Ok(SessionRow {
        id: get(row, &col(p, "id"))?,
        user_id: get(row, &col(p, "user_id"))?,
        created_at: get(row, &col(p, "created_at"))?,
        expires_at: get(row, &col(p, "expires_at"))?,
        revoked_at: get(row, &col(p, "revoked_at"))?,
    })
}

pub(crate) fn session_from(row: &PgRow) -> StoreResult<SessionRow> {
    session_in(row, "")
}

pub(crate) fn ticket_from(row: &PgRow) -> StoreResult<TicketRow> {
    Ok(TicketRow {
        hash: get(row, "hash")?,
        user_id: get(row, "user_id")?,
        session_id: get(row, "session_id")?,
        expires_at: get(row, "expires_at")?,
        used_at: get(row, "used_at")?,
    })
}

pub(crate) fn project_from(row: &PgRow) -> StoreResult<ProjectRow> {
    Ok(ProjectRow {
        id: get(row, "id")?,
        key: get(row, "key")?,
        name: get(row, "name")?,
        body: object_col(row, "body")?,
        version: get(row, "version")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

pub(crate) fn membership_in(row: &PgRow, p: &str) -> StoreResult<MembershipRow> {
    Ok(MembershipRow {
        id: get(row, &col(p, "id"))?,
        project_id: get(row, &col(p, "project_id"))?,
        user_id: get(row, &col(p, "user_id"))?,
        role: get(row, &col(p, "role"))?,
        version: get(row, &col(p, "version"))?,
        created_at: get(row, &col(p, "created_at"))?,
        updated_at: get(row, &col(p, "updated_at"))?,
    })
}

pub(crate) fn membership_from(row: &PgRow) -> StoreResult<MembershipRow> {
    membership_in(row, "")
}

pub(crate) fn record_in(row: &PgRow, p: &str) -> StoreResult<RecordRow> {
    Ok(RecordRow {
        id: get(row, &col(p, "id"))?,
        project_id: get(row, &col(p, "project_id"))?,
        collection: get(row, &col(p, "collection"))?,
        body: object_col(row, &col(p, "body"))?,
        version: get(row, &col(p, "version"))?,
        created_at: get(row, &col(p, "created_at"))?,
        updated_at: get(row, &col(p, "updated_at"))?,
    })
}

pub(crate) fn record_from(row: &PgRow) -> StoreResult<RecordRow> {
    record_in(row, "")
}

pub(crate) fn event_from(row: &PgRow) -> StoreResult<Event> {
    let stream: String = get(row, "stream")?;
    let event_type: String = get(row, "event_type")?;
    Ok(Event {
        stream: StreamKey::parse(&stream).ok_or_else(|| corrupt("bad stream key"))?,
        seq: Some(get(row, "seq")?),
        event_type: EventType::parse(&event_type).ok_or_else(|| corrupt("unknown event type"))?,
        payload: get(row, "payload")?,
        data: get(row, "data")?,
        actor_id: get(row, "actor_id")?,
        tab_id: get(row, "tab_id")?,
        ts: get(row, "ts")?,
        project_id: get(row, "project_id")?,
        echo: get(row, "echo")?,
    })
}

pub(crate) fn all<T>(
    rows: Vec<PgRow>,
    map: impl Fn(&PgRow) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    rows.iter().map(map).collect()
}

pub(crate) fn one<T>(
    row: Option<PgRow>,
    map: impl Fn(&PgRow) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    row.as_ref().map(map).transpose()
}
