//! The SQL behind [`Ops`] for SQLite, shared by read handles and write transactions.

use super::db_error;
use crate::rows::*;
use crate::{Ops, StoreError, StoreResult};
use async_trait::async_trait;
use chrono::DateTime;
use proto::{Event, EventType, StreamKey};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use std::ops::DerefMut;
use uuid::Uuid;

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
    let text: String = row.try_get(column).map_err(db_error)?;
    Uuid::parse_str(&text).map_err(|_| corrupt(format!("{column} is not a uuid")))
}

fn opt_uuid_col(row: &SqliteRow, column: &str) -> StoreResult<Option<Uuid>> {
    let text: Option<String> = row.try_get(column).map_err(db_error)?;
    text.map(|t| Uuid::parse_str(&t).map_err(|_| corrupt(format!("{column} is not a uuid"))))
        .transpose()
}

fn ts_col(row: &SqliteRow, column: &str) -> StoreResult<Timestamp> {
    let text: String = row.try_get(column).map_err(db_error)?;
    parse_ts(&text)
}

fn opt_ts_col(row: &SqliteRow, column: &str) -> StoreResult<Option<Timestamp>> {
    let text: Option<String> = row.try_get(column).map_err(db_error)?;
    text.map(|t| parse_ts(&t)).transpose()
}

fn parse_ts(text: &str) -> StoreResult<Timestamp> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.to_utc())
        .map_err(|_| corrupt("bad timestamp"))
}

fn json_col(row: &SqliteRow, column: &str) -> StoreResult<serde_json::Value> {
    let text: String = row.try_get(column).map_err(db_error)?;
    serde_json::from_str(&text).map_err(|_| corrupt(format!("{column} is not JSON")))
}

fn object_col(row: &SqliteRow, column: &str) -> StoreResult<JsonObject> {
    match json_col(row, column)? {
        serde_json::Value::Object(map) => Ok(map),
        _ => Err(corrupt(format!("{column} is not a JSON object"))),
    }
}

fn get<'r, T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>>(
    row: &'r SqliteRow,
    column: &str,
) -> StoreResult<T> {
    row.try_get(column).map_err(db_error)
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
    })
}

fn json_text(object: &JsonObject) -> String {
    serde_json::Value::Object(object.clone()).to_string()
}

// Column lists are macros so queries stay `&'static str` (sqlx refuses dynamic SQL text).
macro_rules! user_columns {
    () => {
        "id, email, username, display_name, password_hash, is_admin, is_active, version, created_at, updated_at"
    };
}
macro_rules! event_columns {
    () => {
        "stream, seq, event_type, payload, data, actor_id, tab_id, ts, project_id"
    };
}

impl<C> SqliteOps<C>
where
    C: DerefMut<Target = SqliteConnection> + Send,
{
    async fn write_refs(&mut self, record: &RecordRow, refs: &[RecordRef]) -> StoreResult<()> {
        sqlx::query("DELETE FROM record_refs WHERE record_id = ?")
            .bind(record.id.to_string())
            .execute(&mut *self.conn)
            .await
            .map_err(db_error)?;
        for reference in refs {
            sqlx::query(
                "INSERT OR IGNORE INTO record_refs (record_id, field, target_id, project_id) VALUES (?, ?, ?, ?)",
            )
            .bind(record.id.to_string())
            .bind(&reference.field)
            .bind(reference.target_id.to_string())
            .bind(record.project_id.to_string())
            .execute(&mut *self.conn)
            .await
            .map_err(db_error)?;
        }
        Ok(())
    }
}

#[async_trait]
impl<C> Ops for SqliteOps<C>
where
    C: DerefMut<Target = SqliteConnection> + Send,
{
    async fn get_setting(&mut self, key: &str) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
            .bind(key)
            .fetch_optional(&mut *self.conn)
            .await
            .map_err(db_error)
    }

    async fn put_setting(&mut self, key: &str, value: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&mut *self.conn)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn count_users(&mut self) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&mut *self.conn)
            .await
            .map_err(db_error)
    }

    async fn get_user(&mut self, id: Uuid) -> StoreResult<Option<UserRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = ?"
        ))
        .bind(id.to_string())
        .fetch_optional(&mut *self.conn)
        .await
        .map_err(db_error)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn find_user_by_login(&mut self, login: &str) -> StoreResult<Option<UserRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE email = ?1 OR username = ?1 ORDER BY email = ?1 DESC LIMIT 1"
        ))
        .bind(login)
        .fetch_optional(&mut *self.conn)
        .await
        .map_err(db_error)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn list_users(&mut self) -> StoreResult<Vec<UserRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY id"
        ))
        .fetch_all(&mut *self.conn)
        .await
        .map_err(db_error)?;
        rows.iter().map(user_from).collect()
    }

    async fn insert_user(&mut self, user: &UserRow) -> StoreResult<()> {
        sqlx::query(concat!(
            "INSERT INTO users (",
            user_columns!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(user.id.to_string())
        .bind(&user.email)
        .bind(&user.username)
        .bind(&user.display_name)
        .bind(&user.password_hash)
        .bind(user.is_admin)
        .bind(user.is_active)
        .bind(user.version)
        .bind(format_ts(user.created_at))
        .bind(format_ts(user.updated_at))
        .execute(&mut *self.conn)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn update_user(&mut self, user: &UserRow) -> StoreResult<()> {
        sqlx::query(
            "UPDATE users SET email = ?, username = ?, display_name = ?, password_hash = ?, is_admin = ?, is_active = ?, version = ?, updated_at = ? WHERE id = ?",
        )
        .bind(&user.email)
        .bind(&user.username)
        .bind(&user.display_name)
        .bind(&user.password_hash)
        .bind(user.is_admin)
        .bind(user.is_active)
        .bind(user.version)
        .bind(format_ts(user.updated_at))
        .bind(user.id.to_string())
        .execute(&mut *self.conn)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn insert_session(&mut self, session: &SessionRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (id, user_id, created_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(session.id.to_string())
        .bind(session.user_id.to_string())
        .bind(format_ts(session.created_at))
        .bind(format_ts(session.expires_at))
        .bind(session.revoked_at.map(format_ts))
        .execute(&mut *self.conn)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn get_session(&mut self, id: Uuid) -> StoreResult<Option<SessionRow>> {
        let row = sqlx::query(
            "SELECT id, user_id, created_at, expires_at, revoked_at FROM sessions WHERE id = ?",
        )
        .bind(id.to_string())
        .fetch_optional(&mut *self.conn)
        .await
        .map_err(db_error)?;
        row.as_ref().map(session_from).transpose()
    }

    async fn get_session_with_user(
        &mut self,
        id: Uuid,
    ) -> StoreResult<Option<(SessionRow, Option<UserRow>)>> {
        // One statement, one round trip to the connection's thread: authentication runs it on
        // every request. The user's columns keep their names; the session's are aliased.
        let row = sqlx::query(concat!(
            "SELECT s.id AS s_id, s.user_id AS s_user_id, s.created_at AS s_created_at, ",
            "s.expires_at AS s_expires_at, s.revoked_at AS s_revoked_at, ",
            "u.id AS id, u.email AS email, u.username AS username, ",
            "u.display_name AS display_name, u.password_hash AS password_hash, ",
            "u.is_admin AS is_admin, u.is_active AS is_active, u.version AS version, ",
            "u.created_at AS created_at, u.updated_at AS updated_at ",
            "FROM sessions s LEFT JOIN users u ON u.id = s.user_id WHERE s.id = ?"
        ))
        .bind(id.to_string())
        .fetch_optional(&mut *self.conn)
        .await
        .map_err(db_error)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let session = session_in(&row, &SESSION_JOINED)?;
        let user = if joined(&row, "id")? {
            Some(user_from(&row)?)
        } else {
            None
        };
        Ok(Some((session, user)))
    }

    async fn revoke_session(&mut self, id: Uuid, at: Timestamp) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(format_ts(at))
                .bind(id.to_string())
                .execute(&mut *self.conn)
                .await
                .map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn revoke_user_sessions(&mut self, user_id: Uuid, at: Timestamp) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
        )
        .bind(format_ts(at))
        .bind(user_id.to_string())
        .execute(&mut *self.conn)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected())
    }

    async fn insert_ticket(&mut self, ticket: &TicketRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO ws_tickets (hash, user_id, session_id, expires_at, used_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&ticket.hash)
        .bind(ticket.user_id.to_string())
        .bind(ticket.session_id.to_string())
        .bind(format_ts(ticket.expires_at))
        .bind(ticket.used_at.map(format_ts))
        .execute(&mut *self.conn)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn consume_ticket(
        &mut self,
        hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<TicketRow>> {
        let now = format_ts(now);
        let row = sqlx::query(
            "UPDATE ws_tickets SET used_at = ?1 WHERE hash = ?2 AND used_at IS NULL AND expires_at > ?1 RETURNING hash, user_id, session_id, expires_at, used_at",
        )
        .bind(&now)
        .bind(hash)
        .fetch_optional(&mut *self.conn)
        .await
        .map_err(db_error)?;
        row.as_ref().map(ticket_from).transpose()
    }

    async fn purge_expired_tickets(&mut self, now: Timestamp) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM ws_tickets WHERE expires_at <= ?")
            .bind(format_ts(now))
            .execute(&mut *self.conn)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected())
    }

    async fn get_project(&mut self, id: Uuid) -> StoreResult<Option<ProjectRow>> {
        let row = sqlx::query(
            "SELECT id, key, name, body, version, created_at, updated_at FROM projects WHERE id = ?",
        )
        .bind(id.to_string())
        .fetch_optional(&mut *self.conn)
        .await
        .map_err(db_error)?;
        row.as_ref().map(project_from).transpose()
    }

    async fn find_project_by_key(&mut self, key: &str) -> StoreResult<Option<ProjectRow>> {
        let row = sqlx::query(
            "SELECT id, key, name, body, version, created_at, updated_at FROM projects WHERE key = ?",
        )
        .bind(key)
        .fetch_optional(&mut *self.conn)
        .await
        .map_err(db_error)?;
        row.as_ref().map(project_from).transpose()
    }

    async fn list_projects(&mut self) -> StoreResult<Vec<ProjectRow>> {
        let rows = sqlx::query(
            "SELECT id, key, name, body, version, created_at, updated_at FROM projects ORDER BY id",
        )
        .fetch_all(&mut *self.conn)
        .await
        .map_err(db_error)?;
        rows.iter().map(project_from).collect()
    }

    async fn list_projects_of_user(&mut self, user_id: Uuid) -> StoreResult<Vec<ProjectRow>> {
        let rows = sqlx::query(
            "SELECT p.id, p.key, p.name, p.body, p.version, p.created_at, p.updated_at FROM projects p JOIN memberships m ON m.project_id = p.id WHERE m.user_id = ? ORDER BY p.id",
        )
        .bind(user_id.to_string())
        .fetch_all(&mut *self.conn)
        .await
        .map_err(db_error)?;
        rows.iter().map(project_from).collect()
    }

    async fn insert_project(&mut self, project: &ProjectRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO projects (id, key, name, body, version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(project.id.to_string())
        .bind(&project.key)
        .bind(&project.name)
        .bind(json_text(&project.body))
        .bind(project.version)
        .bind(format_ts(project.created_at))
        .bind(format_ts(project.updated_at))
        .execute(&mut *self.conn)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn update_project(&mut self, project: &ProjectRow) -> StoreResult<()> {
        sqlx::query(
            "UPDATE projects SET key = ?, name = ?, body = ?, version = ?, updated_at = ? WHERE id = ?",
        )
        .bind(&project.key)
        .bind(&project.name)
        .bind(json_text(&project.body))
        .bind(project.version)
        .bind(format_ts(project.updated_at))
        .bind(project.id.to_string())
        .execute(&mut *self.conn)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn delete_project(&mut self, id: Uuid) -> StoreResult<()> {
        let id = id.to_string();
        // record_refs and records go by ON DELETE CASCADE; deleting explicitly keeps the
        // statement cheap to reason about and independent of the foreign_keys pragma.
        for sql in [
            "DELETE FROM record_refs WHERE project_id = ?",
            "DELETE FROM records WHERE project_id = ?",
            "DELETE FROM memberships WHERE project_id = ?",
            "DELETE FROM projects WHERE id = ?",
        ] {
            sqlx::query(sql)
                .bind(&id)
                .execute(&mut *self.conn)
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }

    async fn get_membership(&mut self, id: Uuid) -> StoreResult<Option<MembershipRow>> {
        let row = sqlx::query(
            "SELECT id, project_id, user_id, role, version, created_at, updated_at FROM memberships WHERE id = ?",
        )
        .bind(id.to_string())
        .fetch_optional(&mut *self.conn)
        .await
        .map_err(db_error)?;
        row.as_ref().map(membership_from).transpose()
    }

    async fn find_membership(
        &mut self,
        project_id: Uuid,
        user_id: Uuid,
    ) -> StoreResult<Option<MembershipRow>> {
        let row = sqlx::query(
            "SELECT id, project_id, user_id, role, version, created_at, updated_at FROM memberships WHERE project_id = ? AND user_id = ?",
        )
        .bind(project_id.to_string())
        .bind(user_id.to_string())
        .fetch_optional(&mut *self.conn)
        .await
        .map_err(db_error)?;
        row.as_ref().map(membership_from).transpose()
    }

    async fn get_project_with_membership(
        &mut self,
        project_id: Uuid,
        user_id: Uuid,
    ) -> StoreResult<Option<(ProjectRow, Option<MembershipRow>)>> {
        // One statement, one round trip: the role check of every change runs it. The project's
        // columns keep their names; the membership's are aliased.
        let row = sqlx::query(concat!(
            "SELECT p.id AS id, p.key AS key, p.name AS name, p.body AS body, ",
            "p.version AS version, p.created_at AS created_at, p.updated_at AS updated_at, ",
            "m.id AS m_id, m.project_id AS m_project_id, m.user_id AS m_user_id, ",
            "m.role AS m_role, m.version AS m_version, m.created_at AS m_created_at, ",
            "m.updated_at AS m_updated_at ",
            "FROM projects p LEFT JOIN memberships m ON m.project_id = p.id AND m.user_id = ? ",
            "WHERE p.id = ?"
        ))
        .bind(user_id.to_string())
        .bind(project_id.to_string())
        .fetch_optional(&mut *self.conn)
        .await
        .map_err(db_error)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let project = project_from(&row)?;
        let membership = if joined(&row, "m_id")? {
            Some(membership_in(&row, &MEMBERSHIP_JOINED)?)
        } else {
            None
        };
        Ok(Some((project, membership)))
    }

    async fn list_memberships(&mut self, project_id: Uuid) -> StoreResult<Vec<MembershipRow>> {
        let rows = sqlx::query(
            "SELECT id, project_id, user_id, role, version, created_at, updated_at FROM memberships WHERE project_id = ? ORDER BY id",
        )
        .bind(project_id.to_string())
        .fetch_all(&mut *self.conn)
        .await
        .map_err(db_error)?;
        rows.iter().map(membership_from).collect()
    }

    async fn list_memberships_of_user(&mut self, user_id: Uuid) -> StoreResult<Vec<MembershipRow>> {
        let rows = sqlx::query(
            "SELECT id, project_id, user_id, role, version, created_at, updated_at FROM memberships WHERE user_id = ? ORDER BY id",
        )
        .bind(user_id.to_string())
        .fetch_all(&mut *self.conn)
        .await
        .map_err(db_error)?;
        rows.iter().map(membership_from).collect()
    }

    async fn insert_membership(&mut self, m: &MembershipRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO memberships (id, project_id, user_id, role, version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(m.id.to_string())
        .bind(m.project_id.to_string())
        .bind(m.user_id.to_string())
        .bind(m.role)
        .bind(m.version)
        .bind(format_ts(m.created_at))
        .bind(format_ts(m.updated_at))
        .execute(&mut *self.conn)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn update_membership(&mut self, m: &MembershipRow) -> StoreResult<()> {
        sqlx::query("UPDATE memberships SET role = ?, version = ?, updated_at = ? WHERE id = ?")
            .bind(m.role)
            .bind(m.version)
            .bind(format_ts(m.updated_at))
            .bind(m.id.to_string())
            .execute(&mut *self.conn)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn delete_membership(&mut self, id: Uuid) -> StoreResult<()> {
        sqlx::query("DELETE FROM memberships WHERE id = ?")
            .bind(id.to_string())
            .execute(&mut *self.conn)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn get_record(&mut self, id: Uuid) -> StoreResult<Option<RecordRow>> {
        let row = sqlx::query(
            "SELECT id, project_id, collection, body, version, created_at, updated_at FROM records WHERE id = ?",
        )
        .bind(id.to_string())
        .fetch_optional(&mut *self.conn)
        .await
        .map_err(db_error)?;
        row.as_ref().map(record_from).transpose()
    }

    async fn list_records(
        &mut self,
        project_id: Uuid,
        collection: &str,
        page: Page,
    ) -> StoreResult<Vec<RecordRow>> {
        let rows = sqlx::query(
            "SELECT id, project_id, collection, body, version, created_at, updated_at FROM records WHERE project_id = ? AND collection = ? ORDER BY id LIMIT ? OFFSET ?",
        )
        .bind(project_id.to_string())
        .bind(collection)
        .bind(i64::from(page.limit))
        .bind(i64::from(page.offset))
        .fetch_all(&mut *self.conn)
        .await
        .map_err(db_error)?;
        rows.iter().map(record_from).collect()
    }

    async fn count_records(&mut self, project_id: Uuid) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT record_count FROM projects WHERE id = ?")
            .bind(project_id.to_string())
            .fetch_optional(&mut *self.conn)
            .await
            .map_err(db_error)
            .map(|count: Option<i64>| count.unwrap_or(0))
    }

    async fn insert_record(&mut self, record: &RecordRow, refs: &[RecordRef]) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO records (id, project_id, collection, body, version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(record.id.to_string())
        .bind(record.project_id.to_string())
        .bind(&record.collection)
        .bind(json_text(&record.body))
        .bind(record.version)
        .bind(format_ts(record.created_at))
        .bind(format_ts(record.updated_at))
        .execute(&mut *self.conn)
        .await
        .map_err(db_error)?;
        sqlx::query("UPDATE projects SET record_count = record_count + 1 WHERE id = ?")
            .bind(record.project_id.to_string())
            .execute(&mut *self.conn)
            .await
            .map_err(db_error)?;
        self.write_refs(record, refs).await
    }

    async fn update_record(&mut self, record: &RecordRow, refs: &[RecordRef]) -> StoreResult<()> {
        self.update_record_body(record).await?;
        self.write_refs(record, refs).await
    }

    async fn update_record_body(&mut self, record: &RecordRow) -> StoreResult<()> {
        sqlx::query("UPDATE records SET body = ?, version = ?, updated_at = ? WHERE id = ?")
            .bind(json_text(&record.body))
            .bind(record.version)
            .bind(format_ts(record.updated_at))
            .bind(record.id.to_string())
            .execute(&mut *self.conn)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn delete_record(&mut self, id: Uuid) -> StoreResult<()> {
        let id = id.to_string();
        sqlx::query("DELETE FROM record_refs WHERE record_id = ?")
            .bind(&id)
            .execute(&mut *self.conn)
            .await
            .map_err(db_error)?;
        let project: Option<String> =
            sqlx::query_scalar("DELETE FROM records WHERE id = ? RETURNING project_id")
                .bind(&id)
                .fetch_optional(&mut *self.conn)
                .await
                .map_err(db_error)?;
        if let Some(project) = project {
            sqlx::query("UPDATE projects SET record_count = record_count - 1 WHERE id = ?")
                .bind(project)
                .execute(&mut *self.conn)
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }

    async fn list_referrers(&mut self, target_id: Uuid) -> StoreResult<Vec<Referrer>> {
        let rows = sqlx::query(
            "SELECT r.record_id, x.collection, r.field FROM record_refs r JOIN records x ON x.id = r.record_id WHERE r.target_id = ? ORDER BY r.record_id, r.field",
        )
        .bind(target_id.to_string())
        .fetch_all(&mut *self.conn)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                Ok(Referrer {
                    record_id: uuid_col(row, "record_id")?,
                    collection: get(row, "collection")?,
                    field: get(row, "field")?,
                })
            })
            .collect()
    }

    async fn append_event(&mut self, event: NewEvent) -> StoreResult<Event> {
        if event.event_type.is_ephemeral() {
            return Err(corrupt("ephemeral events are never logged"));
        }
        let stream = event.stream.to_text();
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO streams (stream, last_seq) VALUES (?, 1) ON CONFLICT(stream) DO UPDATE SET last_seq = last_seq + 1 RETURNING last_seq",
        )
        .bind(&stream)
        .fetch_one(&mut *self.conn)
        .await
        .map_err(db_error)?;
        sqlx::query(concat!(
            "INSERT INTO events (",
            event_columns!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&stream)
        .bind(seq)
        .bind(event.event_type.as_str())
        .bind(event.payload.to_string())
        .bind(event.data.to_string())
        .bind(event.actor_id.map(|id| id.to_string()))
        .bind(&event.tab_id)
        .bind(format_ts(event.ts))
        .bind(event.project_id.map(|id| id.to_string()))
        .execute(&mut *self.conn)
        .await
        .map_err(db_error)?;
        Ok(Event {
            stream: event.stream,
            seq: Some(seq),
            event_type: event.event_type,
            payload: event.payload,
            data: event.data,
            actor_id: event.actor_id,
            tab_id: event.tab_id,
            ts: event.ts,
            project_id: event.project_id,
        })
    }

    async fn read_events(
        &mut self,
        stream: StreamKey,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<Event>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE stream = ? AND seq > ? ORDER BY seq LIMIT ?"
        ))
        .bind(stream.to_text())
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.conn)
        .await
        .map_err(db_error)?;
        rows.iter().map(event_from).collect()
    }

    async fn latest_seq(&mut self, stream: StreamKey) -> StoreResult<i64> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT last_seq FROM streams WHERE stream = ?")
            .bind(stream.to_text())
            .fetch_optional(&mut *self.conn)
            .await
            .map_err(db_error)?;
        Ok(seq.unwrap_or(0))
    }

    async fn oldest_seq(&mut self, stream: StreamKey) -> StoreResult<Option<i64>> {
        sqlx::query_scalar("SELECT MIN(seq) FROM events WHERE stream = ?")
            .bind(stream.to_text())
            .fetch_one(&mut *self.conn)
            .await
            .map_err(db_error)
    }

    async fn delete_stream_events(&mut self, stream: StreamKey) -> StoreResult<()> {
        sqlx::query("DELETE FROM events WHERE stream = ?")
            .bind(stream.to_text())
            .execute(&mut *self.conn)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}
