//! The SQL behind [`Queries`] for SQLite, shared by read handles and write transactions.
//!
//! Over 800 lines on purpose: it is the one `impl Queries` of the backend, and a trait's impl is
//! one block; each method keeps its SQL next to its bindings. The phantom-id statements live
//! apart in `phantom_ids.rs`, the app channels' log in `app_channels.rs`.

use crate::app_channels;
use crate::conns::{Lender, heavy};
use crate::counter;
use crate::db_error;
use crate::phantom_ids;
use crate::webhooks;
use crate::whiteboards;
use async_trait::async_trait;
use chrono::DateTime;
use proto::{Event, EventType, StreamKey};
use rusqlite::types::FromSql;
use rusqlite::{Connection, Params, Row as SqliteRow, params};
use store::rows::*;
use store::{
    AppChannelEventRow, AppChannelPositionRow, AppLogRetention, LogBounds, Queries, StoreError,
    StoreResult, WebhookDeliveryRow, WebhookRow, WhiteboardSnapshotInfo, WhiteboardSnapshotRow,
    WhiteboardUpdateRow,
};
use uuid::Uuid;

/// Channels of one app event appended in place; more go through [`heavy`].
const INLINE_APP_CHANNELS: usize = 8;

pub(crate) struct SqliteOps<C> {
    pub(crate) conn: C,
}

impl<C> SqliteOps<C> {
    pub(crate) fn new(conn: C) -> Self {
        SqliteOps { conn }
    }
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn uuid_col(row: &SqliteRow, column: &str) -> StoreResult<Uuid> {
    let text: String = get(row, column)?;
    Uuid::parse_str(&text).map_err(|_| corrupt(format!("{column} is not a uuid")))
}

fn opt_uuid_col(row: &SqliteRow, column: &str) -> StoreResult<Option<Uuid>> {
    let text: Option<String> = get(row, column)?;
    text.map(|t| Uuid::parse_str(&t).map_err(|_| corrupt(format!("{column} is not a uuid"))))
        .transpose()
}

fn ts_col(row: &SqliteRow, column: &str) -> StoreResult<Timestamp> {
    let text: String = get(row, column)?;
    parse_ts(&text)
}

fn opt_ts_col(row: &SqliteRow, column: &str) -> StoreResult<Option<Timestamp>> {
    let text: Option<String> = get(row, column)?;
    text.map(|t| parse_ts(&t)).transpose()
}

fn parse_ts(text: &str) -> StoreResult<Timestamp> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.to_utc())
        .map_err(|_| corrupt("bad timestamp"))
}

fn json_col(row: &SqliteRow, column: &str) -> StoreResult<serde_json::Value> {
    let text: String = get(row, column)?;
    serde_json::from_str(&text).map_err(|_| corrupt(format!("{column} is not JSON")))
}

fn object_col(row: &SqliteRow, column: &str) -> StoreResult<JsonObject> {
    match json_col(row, column)? {
        serde_json::Value::Object(map) => Ok(map),
        _ => Err(corrupt(format!("{column} is not a JSON object"))),
    }
}

fn get<T: FromSql>(row: &SqliteRow, column: &str) -> StoreResult<T> {
    row.get(column).map_err(db_error)
}

/// The first row of `sql`, mapped, if there is one.
fn fetch_optional<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    map: impl FnOnce(&SqliteRow) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    let mut statement = conn.prepare_cached(sql).map_err(db_error)?;
    let mut rows = statement.query(params).map_err(db_error)?;
    match rows.next().map_err(db_error)? {
        Some(row) => map(row).map(Some),
        None => Ok(None),
    }
}

/// Every row of `sql`, mapped.
fn fetch_all<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    map: impl Fn(&SqliteRow) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut statement = conn.prepare_cached(sql).map_err(db_error)?;
    let mut rows = statement.query(params).map_err(db_error)?;
    let mut mapped = Vec::new();
    while let Some(row) = rows.next().map_err(db_error)? {
        mapped.push(map(row)?);
    }
    Ok(mapped)
}

/// Runs a statement that returns no rows; the number of rows it changed.
fn execute(conn: &Connection, sql: &str, params: impl Params) -> StoreResult<usize> {
    conn.prepare_cached(sql)
        .and_then(|mut statement| statement.execute(params))
        .map_err(db_error)
}

/// The first column of the first row of `sql`.
fn scalar<T: FromSql>(conn: &Connection, sql: &str, params: impl Params) -> StoreResult<Option<T>> {
    fetch_optional(conn, sql, params, |row| row.get(0).map_err(db_error))
}

fn user_from(row: &SqliteRow) -> StoreResult<UserRow> {
    Ok(UserRow {
        id: uuid_col(row, "id")?,
        email: get(row, "email")?,
        username: get(row, "username")?,
        display_name: get(row, "display_name")?,
        password_hash: get(row, "password_hash")?,
        is_admin: get(row, "is_admin")?,
        is_active: get(row, "is_active")?,
        version: get(row, "version")?,
        created_at: ts_col(row, "created_at")?,
        updated_at: ts_col(row, "updated_at")?,
    })
}

/// The names of a session's columns in a result: as they are, or aliased (`s_…`) where a
/// join puts them beside another table's.
struct SessionColumns {
    id: &'static str,
    user_id: &'static str,
    created_at: &'static str,
    expires_at: &'static str,
    revoked_at: &'static str,
}

const SESSION: SessionColumns = SessionColumns {
    id: "id",
    user_id: "user_id",
    created_at: "created_at",
    expires_at: "expires_at",
    revoked_at: "revoked_at",
};

const SESSION_JOINED: SessionColumns = SessionColumns {
    id: "s_id",
    user_id: "s_user_id",
    created_at: "s_created_at",
    expires_at: "s_expires_at",
    revoked_at: "s_revoked_at",
};

fn session_from(row: &SqliteRow) -> StoreResult<SessionRow> {
    session_in(row, &SESSION)
}

fn session_in(row: &SqliteRow, c: &SessionColumns) -> StoreResult<SessionRow> {
    Ok(SessionRow {
        id: uuid_col(row, c.id)?,
        user_id: uuid_col(row, c.user_id)?,
        created_at: ts_col(row, c.created_at)?,
        expires_at: ts_col(row, c.expires_at)?,
        revoked_at: opt_ts_col(row, c.revoked_at)?,
    })
}

fn ticket_from(row: &SqliteRow) -> StoreResult<TicketRow> {
    Ok(TicketRow {
        hash: get(row, "hash")?,
        user_id: uuid_col(row, "user_id")?,
        session_id: uuid_col(row, "session_id")?,
        expires_at: ts_col(row, "expires_at")?,
        used_at: opt_ts_col(row, "used_at")?,
    })
}

fn project_from(row: &SqliteRow) -> StoreResult<ProjectRow> {
    Ok(ProjectRow {
        id: uuid_col(row, "id")?,
        key: get(row, "key")?,
        name: get(row, "name")?,
        body: object_col(row, "body")?,
        version: get(row, "version")?,
        created_at: ts_col(row, "created_at")?,
        updated_at: ts_col(row, "updated_at")?,
    })
}

/// The names of a membership's columns in a result: as they are, or aliased (`m_…`) where a
/// join puts them beside another table's.
struct MembershipColumns {
    id: &'static str,
    project_id: &'static str,
    user_id: &'static str,
    role: &'static str,
    version: &'static str,
    created_at: &'static str,
    updated_at: &'static str,
}

const MEMBERSHIP: MembershipColumns = MembershipColumns {
    id: "id",
    project_id: "project_id",
    user_id: "user_id",
    role: "role",
    version: "version",
    created_at: "created_at",
    updated_at: "updated_at",
};

const MEMBERSHIP_JOINED: MembershipColumns = MembershipColumns {
    id: "m_id",
    project_id: "m_project_id",
    user_id: "m_user_id",
    role: "m_role",
    version: "m_version",
    created_at: "m_created_at",
    updated_at: "m_updated_at",
};

fn membership_from(row: &SqliteRow) -> StoreResult<MembershipRow> {
    membership_in(row, &MEMBERSHIP)
}

fn membership_in(row: &SqliteRow, c: &MembershipColumns) -> StoreResult<MembershipRow> {
    Ok(MembershipRow {
        id: uuid_col(row, c.id)?,
        project_id: uuid_col(row, c.project_id)?,
        user_id: uuid_col(row, c.user_id)?,
        role: get(row, c.role)?,
        version: get(row, c.version)?,
        created_at: ts_col(row, c.created_at)?,
        updated_at: ts_col(row, c.updated_at)?,
    })
}

/// Whether a `LEFT JOIN`ed side of `row` is there: its key column is not NULL.
fn joined(row: &SqliteRow, key: &str) -> StoreResult<bool> {
    let key: Option<String> = get(row, key)?;
    Ok(key.is_some())
}

fn record_from(row: &SqliteRow) -> StoreResult<RecordRow> {
    Ok(RecordRow {
        id: uuid_col(row, "id")?,
        project_id: uuid_col(row, "project_id")?,
        collection: get(row, "collection")?,
        body: object_col(row, "body")?,
        version: get(row, "version")?,
        created_at: ts_col(row, "created_at")?,
        updated_at: ts_col(row, "updated_at")?,
    })
}

fn event_from(row: &SqliteRow) -> StoreResult<Event> {
    let stream: String = get(row, "stream")?;
    let event_type: String = get(row, "event_type")?;
    Ok(Event {
        stream: StreamKey::parse(&stream).ok_or_else(|| corrupt("bad stream key"))?,
        seq: Some(get(row, "seq")?),
        event_type: EventType::parse(&event_type).ok_or_else(|| corrupt("unknown event type"))?,
        payload: json_col(row, "payload")?,
        data: json_col(row, "data")?,
        actor_id: opt_uuid_col(row, "actor_id")?,
        tab_id: get(row, "tab_id")?,
        ts: ts_col(row, "ts")?,
        project_id: opt_uuid_col(row, "project_id")?,
        echo: get::<Option<String>>(row, "echo")?
            .map(|text| serde_json::from_str(&text).map_err(|_| corrupt("echo is not JSON")))
            .transpose()?,
    })
}

fn json_text(object: &JsonObject) -> String {
    serde_json::Value::Object(object.clone()).to_string()
}

// Column lists are macros so each query stays one literal, written once beside its statement
// (`concat!`).
macro_rules! user_columns {
    () => {
        "id, email, username, display_name, password_hash, is_admin, is_active, version, created_at, updated_at"
    };
}
macro_rules! event_columns {
    () => {
        "stream, seq, event_type, payload, data, actor_id, tab_id, ts, project_id, echo"
    };
}

/// Writes `event` as `seq` of `stream` (its text form), allocated by the caller.
fn insert_event(db: &Connection, stream: &str, seq: i64, event: &NewEvent) -> StoreResult<usize> {
    execute(
        db,
        concat!(
            "INSERT INTO events (",
            event_columns!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ),
        params![
            stream,
            seq,
            event.event_type.as_str(),
            event.payload.to_string(),
            event.data.to_string(),
            event.actor_id.map(|id| id.to_string()),
            event.tab_id,
            format_ts(event.ts),
            event.project_id.map(|id| id.to_string()),
            event.echo.as_ref().map(|echo| echo.to_string())
        ],
    )
}

impl<C: Lender> SqliteOps<C> {
    fn db(&self) -> StoreResult<&Connection> {
        self.conn.connection()
    }

    fn write_refs(&self, record: &RecordRow, refs: &[RecordRef]) -> StoreResult<()> {
        let db = self.db()?;
        let record_id = record.id.to_string();
        execute(
            db,
            "DELETE FROM record_refs WHERE record_id = ?",
            [&record_id],
        )?;
        let project_id = record.project_id.to_string();
        for reference in refs {
            execute(
                db,
                "INSERT OR IGNORE INTO record_refs (record_id, field, target_id, project_id) VALUES (?, ?, ?, ?)",
                params![
                    record_id,
                    reference.field,
                    reference.target_id.to_string(),
                    project_id
                ],
            )?;
        }
        Ok(())
    }

    fn update_body(&self, record: &RecordRow) -> StoreResult<()> {
        execute(
            self.db()?,
            "UPDATE records SET body = ?, version = ?, updated_at = ? WHERE id = ?",
            params![
                json_text(&record.body),
                record.version,
                format_ts(record.updated_at),
                record.id.to_string()
            ],
        )?;
        Ok(())
    }
}

// Every method runs its statements on the calling thread, without a hand-off (see `conns`).
// Each first spends a unit of the task's cooperative budget: a transaction of thousands of
// statements (an import) then yields to the runtime's other tasks every 128 of them, as it did
// when each statement was a round trip.
#[async_trait]
impl<C: Lender> Queries for SqliteOps<C> {
    async fn get_setting(&mut self, key: &str) -> StoreResult<Option<String>> {
        tokio::task::consume_budget().await;
        scalar(
            self.db()?,
            "SELECT value FROM settings WHERE key = ?",
            [key],
        )
    }

    async fn put_setting(&mut self, key: &str, value: &str) -> StoreResult<()> {
        tokio::task::consume_budget().await;
        execute(
            self.db()?,
            "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [key, value],
        )?;
        Ok(())
    }

    async fn count_users(&mut self) -> StoreResult<i64> {
        tokio::task::consume_budget().await;
        Ok(scalar(self.db()?, "SELECT COUNT(*) FROM users", [])?.unwrap_or(0))
    }

    async fn get_user(&mut self, id: Uuid) -> StoreResult<Option<UserRow>> {
        tokio::task::consume_budget().await;
        fetch_optional(
            self.db()?,
            concat!("SELECT ", user_columns!(), " FROM users WHERE id = ?"),
            [id.to_string()],
            user_from,
        )
    }

    async fn find_user_by_login(&mut self, login: &str) -> StoreResult<Option<UserRow>> {
        tokio::task::consume_budget().await;
        fetch_optional(
            self.db()?,
            concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE email = ?1 COLLATE NOCASE OR username = ?1 COLLATE NOCASE",
                " ORDER BY email = ?1 COLLATE NOCASE DESC LIMIT 1"
            ),
            [login],
            user_from,
        )
    }

    async fn list_users(&mut self) -> StoreResult<Vec<UserRow>> {
        tokio::task::consume_budget().await;
        let db = self.db()?;
        heavy(|| {
            fetch_all(
                db,
                concat!("SELECT ", user_columns!(), " FROM users ORDER BY id"),
                [],
                user_from,
            )
        })
    }

    async fn insert_user(&mut self, user: &UserRow) -> StoreResult<()> {
        tokio::task::consume_budget().await;
        execute(
            self.db()?,
            concat!(
                "INSERT INTO users (",
                user_columns!(),
                ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            params![
                user.id.to_string(),
                user.email,
                user.username,
                user.display_name,
                user.password_hash,
                user.is_admin,
                user.is_active,
                user.version,
                format_ts(user.created_at),
                format_ts(user.updated_at)
            ],
        )?;
        Ok(())
    }

    async fn update_user(&mut self, user: &UserRow) -> StoreResult<()> {
        tokio::task::consume_budget().await;
        execute(
            self.db()?,
            "UPDATE users SET email = ?, username = ?, display_name = ?, password_hash = ?, is_admin = ?, is_active = ?, version = ?, updated_at = ? WHERE id = ?",
            params![
                user.email,
                user.username,
                user.display_name,
                user.password_hash,
                user.is_admin,
                user.is_active,
                user.version,
                format_ts(user.updated_at),
                user.id.to_string()
            ],
        )?;
        Ok(())
    }

    async fn delete_user(&mut self, id: Uuid) -> StoreResult<()> {
        tokio::task::consume_budget().await;
        let db = self.db()?;
        let id = id.to_string();
        // The cascades would do it; explicit deletes keep it independent of the foreign_keys
        // pragma, as in `delete_project`.
        for sql in [
            "DELETE FROM ws_tickets WHERE user_id = ?",
            "DELETE FROM sessions WHERE user_id = ?",
            "DELETE FROM memberships WHERE user_id = ?",
            "DELETE FROM users WHERE id = ?",
        ] {
            execute(db, sql, [&id])?;
        }
        Ok(())
    }

    async fn insert_session(&mut self, session: &SessionRow) -> StoreResult<()> {
        tokio::task::consume_budget().await;
        execute(
            self.db()?,
            "INSERT INTO sessions (id, user_id, created_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?)",
            params![
                session.id.to_string(),
                session.user_id.to_string(),
                format_ts(session.created_at),
                format_ts(session.expires_at),
                session.revoked_at.map(format_ts)
            ],
        )?;
        Ok(())
    }

    async fn get_session(&mut self, id: Uuid) -> StoreResult<Option<SessionRow>> {
        tokio::task::consume_budget().await;
        fetch_optional(
            self.db()?,
            "SELECT id, user_id, created_at, expires_at, revoked_at FROM sessions WHERE id = ?",
            [id.to_string()],
            session_from,
        )
    }

    async fn get_session_with_user(
        &mut self,
        id: Uuid,
    ) -> StoreResult<Option<(SessionRow, Option<UserRow>)>> {
        tokio::task::consume_budget().await;
        // One statement: authentication runs it on every request. The user's columns keep
        // their names; the session's are aliased.
        fetch_optional(
            self.db()?,
            concat!(
                "SELECT s.id AS s_id, s.user_id AS s_user_id, s.created_at AS s_created_at, ",
                "s.expires_at AS s_expires_at, s.revoked_at AS s_revoked_at, ",
                "u.id AS id, u.email AS email, u.username AS username, ",
                "u.display_name AS display_name, u.password_hash AS password_hash, ",
                "u.is_admin AS is_admin, u.is_active AS is_active, u.version AS version, ",
                "u.created_at AS created_at, u.updated_at AS updated_at ",
                "FROM sessions s LEFT JOIN users u ON u.id = s.user_id WHERE s.id = ?"
            ),
            [id.to_string()],
            |row| {
                let session = session_in(row, &SESSION_JOINED)?;
                let user = if joined(row, "id")? {
                    Some(user_from(row)?)
                } else {
                    None
                };
                Ok((session, user))
            },
        )
    }

    async fn revoke_session(&mut self, id: Uuid, at: Timestamp) -> StoreResult<bool> {
        tokio::task::consume_budget().await;
        let changed = execute(
            self.db()?,
            "UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            [format_ts(at), id.to_string()],
        )?;
        Ok(changed > 0)
    }

    async fn revoke_user_sessions(&mut self, user_id: Uuid, at: Timestamp) -> StoreResult<u64> {
        tokio::task::consume_budget().await;
        let changed = execute(
            self.db()?,
            "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
            [format_ts(at), user_id.to_string()],
        )?;
        Ok(changed as u64)
    }

    async fn insert_ticket(&mut self, ticket: &TicketRow) -> StoreResult<()> {
        tokio::task::consume_budget().await;
        execute(
            self.db()?,
            "INSERT INTO ws_tickets (hash, user_id, session_id, expires_at, used_at) VALUES (?, ?, ?, ?, ?)",
            params![
                ticket.hash,
                ticket.user_id.to_string(),
                ticket.session_id.to_string(),
                format_ts(ticket.expires_at),
                ticket.used_at.map(format_ts)
            ],
        )?;
        Ok(())
    }

    async fn consume_ticket(
        &mut self,
        hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<TicketRow>> {
        tokio::task::consume_budget().await;
        fetch_optional(
            self.db()?,
            "UPDATE ws_tickets SET used_at = ?1 WHERE hash = ?2 AND used_at IS NULL AND expires_at > ?1 RETURNING hash, user_id, session_id, expires_at, used_at",
            params![format_ts(now), hash],
            ticket_from,
        )
    }

    async fn purge_expired_tickets(&mut self, now: Timestamp) -> StoreResult<u64> {
        tokio::task::consume_budget().await;
        let changed = execute(
            self.db()?,
            "DELETE FROM ws_tickets WHERE expires_at <= ?",
            [format_ts(now)],
        )?;
        Ok(changed as u64)
    }

    async fn get_project(&mut self, id: Uuid) -> StoreResult<Option<ProjectRow>> {
        tokio::task::consume_budget().await;
        fetch_optional(
            self.db()?,
            "SELECT id, key, name, body, version, created_at, updated_at FROM projects WHERE id = ?",
            [id.to_string()],
            project_from,
        )
    }

    async fn find_project_by_key(&mut self, key: &str) -> StoreResult<Option<ProjectRow>> {
        tokio::task::consume_budget().await;
        fetch_optional(
            self.db()?,
            "SELECT id, key, name, body, version, created_at, updated_at FROM projects WHERE key = ?",
            [key],
            project_from,
        )
    }

    async fn list_projects(&mut self) -> StoreResult<Vec<ProjectRow>> {
        tokio::task::consume_budget().await;
        let db = self.db()?;
        heavy(|| {
            fetch_all(
                db,
                "SELECT id, key, name, body, version, created_at, updated_at FROM projects ORDER BY id",
                [],
                project_from,
            )
        })
    }

    async fn list_projects_of_user(&mut self, user_id: Uuid) -> StoreResult<Vec<ProjectRow>> {
        tokio::task::consume_budget().await;
        fetch_all(
            self.db()?,
            "SELECT p.id, p.key, p.name, p.body, p.version, p.created_at, p.updated_at FROM projects p JOIN memberships m ON m.project_id = p.id WHERE m.user_id = ? ORDER BY p.id",
            [user_id.to_string()],
            project_from,
        )
    }

    async fn insert_project(&mut self, project: &ProjectRow) -> StoreResult<()> {
        tokio::task::consume_budget().await;
        execute(
            self.db()?,
            "INSERT INTO projects (id, key, name, body, version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            params![
                project.id.to_string(),
                project.key,
                project.name,
                json_text(&project.body),
                project.version,
                format_ts(project.created_at),
                format_ts(project.updated_at)
            ],
        )?;
        Ok(())
    }

    async fn update_project(&mut self, project: &ProjectRow) -> StoreResult<()> {
        tokio::task::consume_budget().await;
        execute(
            self.db()?,
            "UPDATE projects SET key = ?, name = ?, body = ?, version = ?, updated_at = ? WHERE id = ?",
            params![
                project.key,
                project.name,
                json_text(&project.body),
                project.version,
                format_ts(project.updated_at),
                project.id.to_string()
            ],
        )?;
        Ok(())
    }

    async fn delete_project(&mut self, id: Uuid) -> StoreResult<()> {
        tokio::task::consume_budget().await;
        let db = self.db()?;
        let id = id.to_string();
        // record_refs and records go by ON DELETE CASCADE; deleting explicitly keeps the
        // statement cheap to reason about and independent of the foreign_keys pragma.
        heavy(|| {
            for sql in [
                "DELETE FROM record_refs WHERE project_id = ?",
                "DELETE FROM records WHERE project_id = ?",
                "DELETE FROM memberships WHERE project_id = ?",
                "DELETE FROM phantom_ids WHERE project_id = ?",
            ] {
                execute(db, sql, [&id])?;
            }
            webhooks::delete_of_project(db, &id)?;
            execute(db, "DELETE FROM projects WHERE id = ?", [&id])?;
            Ok(())
        })
    }

    async fn get_membership(&mut self, id: Uuid) -> StoreResult<Option<MembershipRow>> {
        tokio::task::consume_budget().await;
        fetch_optional(
            self.db()?,
            "SELECT id, project_id, user_id, role, version, created_at, updated_at FROM memberships WHERE id = ?",
            [id.to_string()],
            membership_from,
        )
    }

    async fn find_membership(
        &mut self,
        project_id: Uuid,
        user_id: Uuid,
    ) -> StoreResult<Option<MembershipRow>> {
        tokio::task::consume_budget().await;
        fetch_optional(
            self.db()?,
            "SELECT id, project_id, user_id, role, version, created_at, updated_at FROM memberships WHERE project_id = ? AND user_id = ?",
            [project_id.to_string(), user_id.to_string()],
            membership_from,
        )
    }

    async fn get_project_with_membership(
        &mut self,
        project_id: Uuid,
        user_id: Uuid,
    ) -> StoreResult<Option<(ProjectRow, Option<MembershipRow>)>> {
        tokio::task::consume_budget().await;
        // One statement: the role check of every change runs it. The project's columns keep
        // their names; the membership's are aliased.
        fetch_optional(
            self.db()?,
            concat!(
                "SELECT p.id AS id, p.key AS key, p.name AS name, p.body AS body, ",
                "p.version AS version, p.created_at AS created_at, p.updated_at AS updated_at, ",
                "m.id AS m_id, m.project_id AS m_project_id, m.user_id AS m_user_id, ",
                "m.role AS m_role, m.version AS m_version, m.created_at AS m_created_at, ",
                "m.updated_at AS m_updated_at ",
                "FROM projects p LEFT JOIN memberships m ON m.project_id = p.id AND m.user_id = ? ",
                "WHERE p.id = ?"
            ),
            [user_id.to_string(), project_id.to_string()],
            |row| {
                let project = project_from(row)?;
                let membership = if joined(row, "m_id")? {
                    Some(membership_in(row, &MEMBERSHIP_JOINED)?)
                } else {
                    None
                };
                Ok((project, membership))
            },
        )
    }

    async fn list_memberships(&mut self, project_id: Uuid) -> StoreResult<Vec<MembershipRow>> {
        tokio::task::consume_budget().await;
        fetch_all(
            self.db()?,
            "SELECT id, project_id, user_id, role, version, created_at, updated_at FROM memberships WHERE project_id = ? ORDER BY id",
            [project_id.to_string()],
            membership_from,
        )
    }

    async fn list_memberships_of_user(&mut self, user_id: Uuid) -> StoreResult<Vec<MembershipRow>> {
        tokio::task::consume_budget().await;
        fetch_all(
            self.db()?,
            "SELECT id, project_id, user_id, role, version, created_at, updated_at FROM memberships WHERE user_id = ? ORDER BY id",
            [user_id.to_string()],
            membership_from,
        )
    }

    async fn insert_membership(&mut self, m: &MembershipRow) -> StoreResult<()> {
        tokio::task::consume_budget().await;
        execute(
            self.db()?,
            "INSERT INTO memberships (id, project_id, user_id, role, version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            params![
                m.id.to_string(),
                m.project_id.to_string(),
                m.user_id.to_string(),
                m.role,
                m.version,
                format_ts(m.created_at),
                format_ts(m.updated_at)
            ],
        )?;
        Ok(())
    }

    async fn update_membership(&mut self, m: &MembershipRow) -> StoreResult<()> {
        tokio::task::consume_budget().await;
        execute(
            self.db()?,
            "UPDATE memberships SET role = ?, version = ?, updated_at = ? WHERE id = ?",
            params![m.role, m.version, format_ts(m.updated_at), m.id.to_string()],
        )?;
        Ok(())
    }

    async fn delete_membership(&mut self, id: Uuid) -> StoreResult<()> {
        tokio::task::consume_budget().await;
        execute(
            self.db()?,
            "DELETE FROM memberships WHERE id = ?",
            [id.to_string()],
        )?;
        Ok(())
    }

    async fn get_record(&mut self, id: Uuid) -> StoreResult<Option<RecordRow>> {
        tokio::task::consume_budget().await;
        fetch_optional(
            self.db()?,
            "SELECT id, project_id, collection, body, version, created_at, updated_at FROM records WHERE id = ?",
            [id.to_string()],
            record_from,
        )
    }

    async fn list_records(
        &mut self,
        project_id: Uuid,
        collection: &str,
        page: Page,
    ) -> StoreResult<Vec<RecordRow>> {
        tokio::task::consume_budget().await;
        let db = self.db()?;
        heavy(|| {
            fetch_all(
                db,
                "SELECT id, project_id, collection, body, version, created_at, updated_at FROM records WHERE project_id = ? AND collection = ? ORDER BY id LIMIT ? OFFSET ?",
                params![
                    project_id.to_string(),
                    collection,
                    i64::from(page.limit),
                    i64::from(page.offset)
                ],
                record_from,
            )
        })
    }

    async fn count_records(&mut self, project_id: Uuid) -> StoreResult<i64> {
        tokio::task::consume_budget().await;
        let count = scalar(
            self.db()?,
            "SELECT record_count FROM projects WHERE id = ?",
            [project_id.to_string()],
        )?;
        Ok(count.unwrap_or(0))
    }

    async fn insert_record(&mut self, record: &RecordRow, refs: &[RecordRef]) -> StoreResult<()> {
        tokio::task::consume_budget().await;
        let db = self.db()?;
        execute(
            db,
            "INSERT INTO records (id, project_id, collection, body, version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            params![
                record.id.to_string(),
                record.project_id.to_string(),
                record.collection,
                json_text(&record.body),
                record.version,
                format_ts(record.created_at),
                format_ts(record.updated_at)
            ],
        )?;
        execute(
            db,
            "UPDATE projects SET record_count = record_count + 1 WHERE id = ?",
            [record.project_id.to_string()],
        )?;
        self.write_refs(record, refs)
    }

    async fn update_record(&mut self, record: &RecordRow, refs: &[RecordRef]) -> StoreResult<()> {
        tokio::task::consume_budget().await;
        self.update_body(record)?;
        self.write_refs(record, refs)
    }

    async fn update_record_body(&mut self, record: &RecordRow) -> StoreResult<()> {
        tokio::task::consume_budget().await;
        self.update_body(record)
    }

    async fn delete_record(&mut self, id: Uuid) -> StoreResult<()> {
        tokio::task::consume_budget().await;
        let db = self.db()?;
        let id = id.to_string();
        execute(db, "DELETE FROM record_refs WHERE record_id = ?", [&id])?;
        let project: Option<String> = scalar(
            db,
            "DELETE FROM records WHERE id = ? RETURNING project_id",
            [&id],
        )?;
        if let Some(project) = project {
            execute(
                db,
                "UPDATE projects SET record_count = record_count - 1 WHERE id = ?",
                [project],
            )?;
        }
        Ok(())
    }

    async fn list_referrers(&mut self, target_id: Uuid) -> StoreResult<Vec<Referrer>> {
        tokio::task::consume_budget().await;
        fetch_all(
            self.db()?,
            "SELECT r.record_id, x.collection, r.field FROM record_refs r JOIN records x ON x.id = r.record_id WHERE r.target_id = ? ORDER BY r.record_id, r.field",
            [target_id.to_string()],
            |row| {
                Ok(Referrer {
                    record_id: uuid_col(row, "record_id")?,
                    collection: get(row, "collection")?,
                    field: get(row, "field")?,
                })
            },
        )
    }

    async fn lock_stream(&mut self, _stream: StreamKey) -> StoreResult<()> {
        tokio::task::consume_budget().await;
        // The one writer already holds every stream (see the crate's doc); a reader holds none.
        if self
            .db()?
            .is_readonly(rusqlite::MAIN_DB)
            .map_err(db_error)?
        {
            return Err(StoreError::database("a read handle cannot hold a stream"));
        }
        Ok(())
    }

    async fn append_event(&mut self, event: NewEvent) -> StoreResult<Event> {
        let mut appended = self.append_events(vec![event]).await?;
        appended.pop().ok_or_else(|| corrupt("no event appended"))
    }

    async fn append_events(&mut self, events: Vec<NewEvent>) -> StoreResult<Vec<Event>> {
        tokio::task::consume_budget().await;
        if events.iter().any(|event| event.event_type.is_ephemeral()) {
            return Err(corrupt("ephemeral events are never logged"));
        }
        let db = self.db()?;
        let mut appended = Vec::with_capacity(events.len());
        let mut events = events.into_iter().peekable();
        while let Some(first) = events.next() {
            // A run of one stream's events takes its seqs with one statement.
            let mut run = vec![first];
            while let Some(next) = events.next_if(|next| next.stream == run[0].stream) {
                run.push(next);
            }
            let stream = run[0].stream.to_text();
            let count = run.len() as i64;
            let last = counter::advance_stream(db, &stream, count)?;
            for (seq, event) in (last - count + 1..).zip(run) {
                insert_event(db, &stream, seq, &event)?;
                appended.push(event.logged_as(seq));
            }
        }
        Ok(appended)
    }

    async fn read_events(
        &mut self,
        stream: StreamKey,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<Event>> {
        tokio::task::consume_budget().await;
        let db = self.db()?;
        heavy(|| {
            fetch_all(
                db,
                concat!(
                    "SELECT ",
                    event_columns!(),
                    " FROM events WHERE stream = ? AND seq > ? ORDER BY seq LIMIT ?"
                ),
                params![stream.to_text(), after_seq, i64::from(limit)],
                event_from,
            )
        })
    }

    async fn latest_seq(&mut self, stream: StreamKey) -> StoreResult<i64> {
        tokio::task::consume_budget().await;
        counter::stream_seq(self.db()?, &stream.to_text())
    }

    async fn oldest_seq(&mut self, stream: StreamKey) -> StoreResult<Option<i64>> {
        tokio::task::consume_budget().await;
        // MIN over no rows is one row holding NULL.
        Ok(scalar::<Option<i64>>(
            self.db()?,
            "SELECT MIN(seq) FROM events WHERE stream = ?",
            [stream.to_text()],
        )?
        .flatten())
    }

    async fn delete_stream_events(&mut self, stream: StreamKey) -> StoreResult<()> {
        tokio::task::consume_budget().await;
        let db = self.db()?;
        heavy(|| {
            execute(
                db,
                "DELETE FROM events WHERE stream = ?",
                [stream.to_text()],
            )
        })?;
        Ok(())
    }

    async fn log_bounds(
        &mut self,
        after: Option<StreamKey>,
        limit: u32,
    ) -> StoreResult<Vec<LogBounds>> {
        tokio::task::consume_budget().await;
        let db = self.db()?;
        let after = after.map(|s| s.to_text()).unwrap_or_default();
        heavy(|| {
            fetch_all(
                db,
                "SELECT s.stream, s.last_seq, e.seq, e.ts FROM streams s \
                 LEFT JOIN events e ON e.stream = s.stream \
                 AND e.seq = (SELECT MIN(seq) FROM events WHERE stream = s.stream) \
                 WHERE s.stream > ? ORDER BY s.stream LIMIT ?",
                params![after, i64::from(limit)],
                |row| {
                    let stream: String = get(row, "stream")?;
                    Ok(LogBounds {
                        stream: StreamKey::parse(&stream)
                            .ok_or_else(|| corrupt("bad stream key"))?,
                        latest_seq: get(row, "last_seq")?,
                        oldest_seq: get(row, "seq")?,
                        oldest_ts: opt_ts_col(row, "ts")?,
                    })
                },
            )
        })
    }

    async fn nth_newest_seq(&mut self, stream: StreamKey, n: u64) -> StoreResult<Option<i64>> {
        tokio::task::consume_budget().await;
        let Some(offset) = n.checked_sub(1).and_then(|o| i64::try_from(o).ok()) else {
            return Ok(None);
        };
        let db = self.db()?;
        heavy(|| {
            scalar(
                db,
                "SELECT seq FROM events WHERE stream = ? ORDER BY seq DESC LIMIT 1 OFFSET ?",
                params![stream.to_text(), offset],
            )
        })
    }

    async fn prune_events(
        &mut self,
        stream: StreamKey,
        keep_from_seq: i64,
        older_than: Option<Timestamp>,
        limit: u32,
    ) -> StoreResult<u64> {
        tokio::task::consume_budget().await;
        let db = self.db()?;
        let key = stream.to_text();
        heavy(|| {
            let oldest = fetch_all(
                db,
                "SELECT seq, ts FROM events WHERE stream = ? ORDER BY seq LIMIT ?",
                params![key, i64::from(limit)],
                |row| Ok((get::<i64>(row, "seq")?, ts_col(row, "ts")?)),
            )?;
            let Some(through) =
                store::retention::prunable_prefix(&oldest, keep_from_seq, older_than)
            else {
                return Ok(0);
            };
            let deleted = execute(
                db,
                "DELETE FROM events WHERE stream = ? AND seq <= ?",
                params![key, through],
            )?;
            Ok(deleted as u64)
        })
    }

    async fn raise_seq(&mut self, stream: StreamKey, at_least: i64) -> StoreResult<()> {
        tokio::task::consume_budget().await;
        if at_least < 0 {
            return Err(corrupt("a seq is never below 0"));
        }
        execute(
            self.db()?,
            "INSERT INTO streams (stream, last_seq) VALUES (?1, ?2) ON CONFLICT(stream) DO UPDATE SET last_seq = MAX(last_seq, ?2)",
            params![stream.to_text(), at_least],
        )?;
        Ok(())
    }

    async fn get_phantom_ids(
        &mut self,
        project_id: Uuid,
        phantoms: &[String],
    ) -> StoreResult<Vec<(String, Uuid)>> {
        tokio::task::consume_budget().await;
        let db = self.db()?;
        heavy(|| phantom_ids::get(db, project_id, phantoms))
    }

    async fn put_phantom_ids(
        &mut self,
        project_id: Uuid,
        mapped: &[(String, Uuid)],
        keep: u32,
    ) -> StoreResult<()> {
        tokio::task::consume_budget().await;
        phantom_ids::put(self.db()?, project_id, mapped, keep)
    }
    async fn append_app_event(
        &mut self,
        channels: &[String],
        event: &str,
        data: &str,
        at: Timestamp,
        retention: AppLogRetention,
    ) -> StoreResult<Vec<AppChannelEventRow>> {
        tokio::task::consume_budget().await;
        let db = self.db()?;
        // Four statements a channel: a few channels are a few point writes, run in place like
        // every other write (handing the worker's other tasks to another thread cost more than
        // the statements, measured on a Pusher publish); up to 100 channels are not.
        if channels.len() <= INLINE_APP_CHANNELS {
            app_channels::append(db, channels, event, data, at, retention)
        } else {
            heavy(|| app_channels::append(db, channels, event, data, at, retention))
        }
    }

    async fn read_app_events(
        &mut self,
        channel: &str,
        after: i64,
        limit: u32,
        not_before: Timestamp,
    ) -> StoreResult<Vec<AppChannelEventRow>> {
        tokio::task::consume_budget().await;
        let db = self.db()?;
        heavy(|| app_channels::after(db, channel, after, limit, not_before))
    }

    async fn app_channel_position(
        &mut self,
        channel: &str,
        not_before: Timestamp,
    ) -> StoreResult<Option<AppChannelPositionRow>> {
        tokio::task::consume_budget().await;
        app_channels::position(self.db()?, channel, not_before)
    }

    async fn forget_idle_app_channels(
        &mut self,
        idle_before: Timestamp,
        limit: u32,
    ) -> StoreResult<u64> {
        tokio::task::consume_budget().await;
        let db = self.db()?;
        heavy(|| app_channels::forget_idle(db, idle_before, limit))
    }

    async fn delete_app_channels(&mut self) -> StoreResult<()> {
        tokio::task::consume_budget().await;
        let db = self.db()?;
        heavy(|| app_channels::delete_all(db))
    }

    async fn append_whiteboard_update(
        &mut self,
        board_id: Uuid,
        update: &[u8],
        at: Timestamp,
    ) -> StoreResult<i64> {
        tokio::task::consume_budget().await;
        whiteboards::append(self.db()?, board_id, update, at)
    }

    async fn read_whiteboard_updates(
        &mut self,
        board_id: Uuid,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<WhiteboardUpdateRow>> {
        tokio::task::consume_budget().await;
        let db = self.db()?;
        heavy(|| whiteboards::after(db, board_id, after_seq, limit))
    }

    async fn whiteboard_latest_seq(&mut self, board_id: Uuid) -> StoreResult<i64> {
        tokio::task::consume_budget().await;
        whiteboards::latest_seq(self.db()?, board_id)
    }

    async fn compact_whiteboard(
        &mut self,
        board_id: Uuid,
        through_seq: i64,
        state: &[u8],
    ) -> StoreResult<()> {
        tokio::task::consume_budget().await;
        let db = self.db()?;
        heavy(|| whiteboards::compact(db, board_id, through_seq, state))
    }

    async fn whiteboards_to_compact(
        &mut self,
        more_than: u32,
        limit: u32,
    ) -> StoreResult<Vec<Uuid>> {
        tokio::task::consume_budget().await;
        let db = self.db()?;
        heavy(|| whiteboards::to_compact(db, more_than, limit))
    }

    async fn insert_whiteboard_snapshot(
        &mut self,
        snapshot: &WhiteboardSnapshotRow,
    ) -> StoreResult<()> {
        tokio::task::consume_budget().await;
        whiteboards::insert_snapshot(self.db()?, snapshot)
    }

    async fn list_whiteboard_snapshots(
        &mut self,
        board_id: Uuid,
    ) -> StoreResult<Vec<WhiteboardSnapshotInfo>> {
        tokio::task::consume_budget().await;
        whiteboards::list_snapshots(self.db()?, board_id)
    }

    async fn get_whiteboard_snapshot(
        &mut self,
        id: Uuid,
    ) -> StoreResult<Option<WhiteboardSnapshotRow>> {
        tokio::task::consume_budget().await;
        let db = self.db()?;
        heavy(|| whiteboards::get_snapshot(db, id))
    }

    async fn insert_webhook(&mut self, webhook: &WebhookRow) -> StoreResult<()> {
        tokio::task::consume_budget().await;
        webhooks::insert(self.db()?, webhook)
    }

    async fn get_webhook(&mut self, id: Uuid) -> StoreResult<Option<WebhookRow>> {
        tokio::task::consume_budget().await;
        webhooks::get(self.db()?, id)
    }

    async fn list_webhooks(&mut self, project_id: Uuid) -> StoreResult<Vec<WebhookRow>> {
        tokio::task::consume_budget().await;
        webhooks::list(self.db()?, project_id)
    }

    async fn update_webhook(&mut self, webhook: &WebhookRow) -> StoreResult<bool> {
        tokio::task::consume_budget().await;
        webhooks::update(self.db()?, webhook)
    }

    async fn delete_webhook(&mut self, id: Uuid) -> StoreResult<bool> {
        tokio::task::consume_budget().await;
        webhooks::delete(self.db()?, id)
    }

    async fn due_webhooks(&mut self, now: Timestamp, limit: u32) -> StoreResult<Vec<WebhookRow>> {
        tokio::task::consume_budget().await;
        webhooks::due(self.db()?, now, limit)
    }

    async fn take_webhook_lease(
        &mut self,
        id: Uuid,
        owner: Uuid,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<bool> {
        tokio::task::consume_budget().await;
        webhooks::take_lease(self.db()?, id, owner, now, until)
    }

    async fn release_webhook_lease(
        &mut self,
        id: Uuid,
        owner: Uuid,
        retry_at: Option<Timestamp>,
    ) -> StoreResult<()> {
        tokio::task::consume_budget().await;
        webhooks::release_lease(self.db()?, id, owner, retry_at)
    }

    async fn advance_webhook_cursor(
        &mut self,
        id: Uuid,
        owner: Uuid,
        from: i64,
        to: i64,
    ) -> StoreResult<bool> {
        tokio::task::consume_budget().await;
        webhooks::advance(self.db()?, id, owner, from, to)
    }

    async fn min_webhook_cursor(&mut self, project_id: Uuid) -> StoreResult<Option<i64>> {
        tokio::task::consume_budget().await;
        webhooks::min_cursor(self.db()?, project_id)
    }

    async fn insert_webhook_delivery(&mut self, delivery: &WebhookDeliveryRow) -> StoreResult<()> {
        tokio::task::consume_budget().await;
        webhooks::insert_delivery(self.db()?, delivery)
    }

    async fn get_webhook_delivery(
        &mut self,
        webhook_id: Uuid,
        seq: i64,
    ) -> StoreResult<Option<WebhookDeliveryRow>> {
        tokio::task::consume_budget().await;
        webhooks::get_delivery(self.db()?, webhook_id, seq)
    }

    async fn update_webhook_delivery(
        &mut self,
        delivery: &WebhookDeliveryRow,
    ) -> StoreResult<bool> {
        tokio::task::consume_budget().await;
        webhooks::update_delivery(self.db()?, delivery)
    }

    async fn list_webhook_deliveries(
        &mut self,
        webhook_id: Uuid,
        limit: u32,
    ) -> StoreResult<Vec<WebhookDeliveryRow>> {
        tokio::task::consume_budget().await;
        let db = self.db()?;
        heavy(|| webhooks::list_deliveries(db, webhook_id, limit))
    }

    async fn prune_webhook_deliveries(&mut self, webhook_id: Uuid, keep: u32) -> StoreResult<u64> {
        tokio::task::consume_budget().await;
        webhooks::prune_deliveries(self.db()?, webhook_id, keep)
    }
}
