//! The SQL behind [`Queries`] for PostgreSQL, shared by read handles, snapshots and write
//! transactions.
//!
//! Over 800 lines on purpose: it is the one `impl Queries for PgOps`, and a trait's impl is one
//! block; each method keeps its SQL next to its bindings. Rows are decoded in `rows.rs`.

use crate::app_channels;
use crate::errors::db_error;
use crate::group_commit::{GroupCommit, HOLD_STREAM, Hold, Member};
use crate::rows::*;
use crate::webhooks;
use crate::whiteboards;
use async_trait::async_trait;
use proto::{Event, StreamKey};
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, Postgres, Transaction};
use std::sync::Arc;
use store::rows::*;
use store::{
    AppChannelEventRow, AppChannelPositionRow, AppLogRetention, LogBounds, Queries, StoreError,
    StoreResult, WebhookDeliveryRow, WebhookRow, WhiteboardSnapshotInfo, WhiteboardSnapshotRow,
    WhiteboardUpdateRow,
};
use uuid::Uuid;

/// A connection on its own (each statement commits by itself) or inside a transaction.
pub(crate) enum Conn {
    Plain(PoolConnection<Postgres>),
    Tx(Transaction<'static, Postgres>),
    /// A write transaction before its first statement: it joins a batch if that statement
    /// holds a stream ([`Queries::lock_stream`]), else begins a transaction of its own.
    NotBegun(Arc<GroupCommit>),
    /// A write transaction in a batch's transaction ([`group_commit`]).
    Member(Member),
}

pub(crate) struct PgOps {
    pub(crate) conn: Conn,
    writable: bool,
    /// A writer's place in the node's commit order (see `PgStore::commit_order` in lib.rs).
    pub(crate) commit_order: Option<Arc<store::sequencer::CommitSequencer>>,
}

impl PgOps {
    pub(crate) fn new(conn: Conn, writable: bool) -> PgOps {
        PgOps {
            conn,
            writable,
            commit_order: None,
        }
    }

    async fn db(&mut self) -> StoreResult<&mut PgConnection> {
        if let Conn::NotBegun(group) = &self.conn {
            let tx = group.begin_alone().await?;
            self.conn = Conn::Tx(tx);
        }
        match &mut self.conn {
            Conn::Plain(conn) => Ok(conn),
            Conn::Tx(tx) => Ok(tx),
            Conn::Member(member) => member.connection(),
            Conn::NotBegun(..) => Err(StoreError::database("no transaction began")),
        }
    }

    /// The connection, for a statement that writes: refused outside a write transaction.
    async fn writer(&mut self) -> StoreResult<&mut PgConnection> {
        if !self.writable {
            return Err(StoreError::database("a read handle cannot write"));
        }
        self.db().await
    }

    async fn update_body(&mut self, record: &RecordRow) -> StoreResult<()> {
        sqlx::query("UPDATE records SET body = $1, version = $2, updated_at = $3 WHERE id = $4")
            .bind(object(&record.body))
            .bind(record.version)
            .bind(record.updated_at)
            .bind(record.id)
            .execute(self.writer().await?)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}

/// A record's references as two arrays, fields and targets, for `unnest` in one statement:
/// however many references a record has, writing them costs one round trip.
fn ref_arrays(refs: &[RecordRef]) -> (Vec<&str>, Vec<Uuid>) {
    refs.iter().map(|r| (r.field.as_str(), r.target_id)).unzip()
}

// Column lists are macros so each query stays one literal (`concat!`).
macro_rules! user_columns {
    () => {
        "id, email, username, display_name, password_hash, is_admin, is_active, version, created_at, updated_at"
    };
}
macro_rules! project_columns {
    () => {
        "id, key, name, body, version, created_at, updated_at"
    };
}
macro_rules! membership_columns {
    () => {
        "id, project_id, user_id, role, version, created_at, updated_at"
    };
}
/// A project's columns as they are and its membership's for the user `$1` under `m_`; with
/// [`from_project_and_membership`], for the reads every change's role check makes.
macro_rules! project_and_membership {
    () => {
        concat!(
            "SELECT p.id, p.key, p.name, p.body, p.version, p.created_at, p.updated_at, ",
            "m.id AS m_id, m.project_id AS m_project_id, m.user_id AS m_user_id, ",
            "m.role AS m_role, m.version AS m_version, m.created_at AS m_created_at, ",
            "m.updated_at AS m_updated_at"
        )
    };
}
macro_rules! from_project_and_membership {
    () => {
        "FROM projects p LEFT JOIN memberships m ON m.project_id = p.id AND m.user_id = $1"
    };
}
macro_rules! record_columns {
    () => {
        "id, project_id, collection, body, version, created_at, updated_at"
    };
}
macro_rules! event_columns {
    () => {
        "stream, seq, event_type, payload, data, actor_id, tab_id, ts, project_id, echo"
    };
}

#[async_trait]
impl Queries for PgOps {
    async fn get_setting(&mut self, key: &str) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(self.db().await?)
            .await
            .map_err(db_error)
    }

    async fn put_setting(&mut self, key: &str, value: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(self.writer().await?)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn count_users(&mut self) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(self.db().await?)
            .await
            .map_err(db_error)
    }

    async fn get_user(&mut self, id: Uuid) -> StoreResult<Option<UserRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.db().await?)
        .await
        .map_err(db_error)?;
        one(row, user_from)
    }

    async fn find_user_by_login(&mut self, login: &str) -> StoreResult<Option<UserRow>> {
        // The same expressions as the unique indexes, so the lookup uses them.
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE lower(email) = lower($1) OR lower(username) = lower($1)",
            " ORDER BY lower(email) = lower($1) DESC LIMIT 1"
        ))
        .bind(login)
        .fetch_optional(self.db().await?)
        .await
        .map_err(db_error)?;
        one(row, user_from)
    }

    async fn list_users(&mut self) -> StoreResult<Vec<UserRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY id"
        ))
        .fetch_all(self.db().await?)
        .await
        .map_err(db_error)?;
        all(rows, user_from)
    }

    async fn insert_user(&mut self, user: &UserRow) -> StoreResult<()> {
        sqlx::query(concat!(
            "INSERT INTO users (",
            user_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(user.id)
        .bind(&user.email)
        .bind(&user.username)
        .bind(&user.display_name)
        .bind(&user.password_hash)
        .bind(user.is_admin)
        .bind(user.is_active)
        .bind(user.version)
        .bind(user.created_at)
        .bind(user.updated_at)
        .execute(self.writer().await?)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn update_user(&mut self, user: &UserRow) -> StoreResult<()> {
        sqlx::query(
            "UPDATE users SET email = $1, username = $2, display_name = $3, password_hash = $4, is_admin = $5, is_active = $6, version = $7, updated_at = $8 WHERE id = $9",
        )
        .bind(&user.email)
        .bind(&user.username)
        .bind(&user.display_name)
        .bind(&user.password_hash)
        .bind(user.is_admin)
        .bind(user.is_active)
        .bind(user.version)
        .bind(user.updated_at)
        .bind(user.id)
        .execute(self.writer().await?)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn delete_user(&mut self, id: Uuid) -> StoreResult<()> {
        let db = self.writer().await?;
        for sql in [
            "DELETE FROM ws_tickets WHERE user_id = $1",
            "DELETE FROM sessions WHERE user_id = $1",
            "DELETE FROM memberships WHERE user_id = $1",
            "DELETE FROM users WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(id)
                .execute(&mut *db)
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }

    async fn insert_session(&mut self, session: &SessionRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (id, user_id, created_at, expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(session.id)
        .bind(session.user_id)
        .bind(session.created_at)
        .bind(session.expires_at)
        .bind(session.revoked_at)
        .execute(self.writer().await?)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn get_session(&mut self, id: Uuid) -> StoreResult<Option<SessionRow>> {
        let row = sqlx::query(
            "SELECT id, user_id, created_at, expires_at, revoked_at FROM sessions WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.db().await?)
        .await
        .map_err(db_error)?;
        one(row, session_from)
    }

    async fn get_session_with_user(
        &mut self,
        id: Uuid,
    ) -> StoreResult<Option<(SessionRow, Option<UserRow>)>> {
        // One statement: authentication runs it on every request.
        let row = sqlx::query(concat!(
            "SELECT s.id AS s_id, s.user_id AS s_user_id, s.created_at AS s_created_at, ",
            "s.expires_at AS s_expires_at, s.revoked_at AS s_revoked_at, ",
            "u.id, u.email, u.username, u.display_name, u.password_hash, u.is_admin, ",
            "u.is_active, u.version, u.created_at, u.updated_at ",
            "FROM sessions s LEFT JOIN users u ON u.id = s.user_id WHERE s.id = $1"
        ))
        .bind(id)
        .fetch_optional(self.db().await?)
        .await
        .map_err(db_error)?;
        one(row, |row| {
            let session = session_in(row, "s_")?;
            let user = match get::<Option<Uuid>>(row, "id")? {
                Some(_) => Some(user_from(row)?),
                None => None,
            };
            Ok((session, user))
        })
    }

    async fn revoke_session(&mut self, id: Uuid, at: Timestamp) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(at)
                .bind(id)
                .execute(self.writer().await?)
                .await
                .map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn revoke_user_sessions(&mut self, user_id: Uuid, at: Timestamp) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(user_id)
        .execute(self.writer().await?)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected())
    }

    async fn insert_ticket(&mut self, ticket: &TicketRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO ws_tickets (hash, user_id, session_id, expires_at, used_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&ticket.hash)
        .bind(ticket.user_id)
        .bind(ticket.session_id)
        .bind(ticket.expires_at)
        .bind(ticket.used_at)
        .execute(self.writer().await?)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn consume_ticket(
        &mut self,
        hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<TicketRow>> {
        // A second consumer waits on the row lock, then finds `used_at` set: no row.
        let row = sqlx::query(
            "UPDATE ws_tickets SET used_at = $1 WHERE hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING hash, user_id, session_id, expires_at, used_at",
        )
        .bind(now)
        .bind(hash)
        .fetch_optional(self.writer().await?)
        .await
        .map_err(db_error)?;
        one(row, ticket_from)
    }

    async fn purge_expired_tickets(&mut self, now: Timestamp) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM ws_tickets WHERE expires_at <= $1")
            .bind(now)
            .execute(self.writer().await?)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected())
    }

    async fn get_project(&mut self, id: Uuid) -> StoreResult<Option<ProjectRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            project_columns!(),
            " FROM projects WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.db().await?)
        .await
        .map_err(db_error)?;
        one(row, project_from)
    }

    async fn find_project_by_key(&mut self, key: &str) -> StoreResult<Option<ProjectRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            project_columns!(),
            " FROM projects WHERE lower(key) = lower($1)"
        ))
        .bind(key)
        .fetch_optional(self.db().await?)
        .await
        .map_err(db_error)?;
        one(row, project_from)
    }

    async fn list_projects(&mut self) -> StoreResult<Vec<ProjectRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            project_columns!(),
            " FROM projects ORDER BY id"
        ))
        .fetch_all(self.db().await?)
        .await
        .map_err(db_error)?;
        all(rows, project_from)
    }

    async fn list_projects_of_user(&mut self, user_id: Uuid) -> StoreResult<Vec<ProjectRow>> {
        let rows = sqlx::query(
            "SELECT p.id, p.key, p.name, p.body, p.version, p.created_at, p.updated_at FROM projects p JOIN memberships m ON m.project_id = p.id WHERE m.user_id = $1 ORDER BY p.id",
        )
        .bind(user_id)
        .fetch_all(self.db().await?)
        .await
        .map_err(db_error)?;
        all(rows, project_from)
    }

    async fn insert_project(&mut self, project: &ProjectRow) -> StoreResult<()> {
        sqlx::query(concat!(
            "INSERT INTO projects (",
            project_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(project.id)
        .bind(&project.key)
        .bind(&project.name)
        .bind(object(&project.body))
        .bind(project.version)
        .bind(project.created_at)
        .bind(project.updated_at)
        .execute(self.writer().await?)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn update_project(&mut self, project: &ProjectRow) -> StoreResult<()> {
        sqlx::query(
            "UPDATE projects SET key = $1, name = $2, body = $3, version = $4, updated_at = $5 WHERE id = $6",
        )
        .bind(&project.key)
        .bind(&project.name)
        .bind(object(&project.body))
        .bind(project.version)
        .bind(project.updated_at)
        .bind(project.id)
        .execute(self.writer().await?)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn delete_project(&mut self, id: Uuid) -> StoreResult<()> {
        let db = self.writer().await?;
        for sql in [
            "DELETE FROM record_refs WHERE project_id = $1",
            "DELETE FROM phantom_ids WHERE project_id = $1",
            "DELETE FROM records WHERE project_id = $1",
            "DELETE FROM memberships WHERE project_id = $1",
            "DELETE FROM webhook_deliveries WHERE webhook_id IN (SELECT id FROM webhooks WHERE project_id = $1)",
            "DELETE FROM webhooks WHERE project_id = $1",
            "DELETE FROM projects WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(id)
                .execute(&mut *db)
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }

    async fn get_membership(&mut self, id: Uuid) -> StoreResult<Option<MembershipRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            membership_columns!(),
            " FROM memberships WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.db().await?)
        .await
        .map_err(db_error)?;
        one(row, membership_from)
    }

    async fn find_membership(
        &mut self,
        project_id: Uuid,
        user_id: Uuid,
    ) -> StoreResult<Option<MembershipRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            membership_columns!(),
            " FROM memberships WHERE project_id = $1 AND user_id = $2"
        ))
        .bind(project_id)
        .bind(user_id)
        .fetch_optional(self.db().await?)
        .await
        .map_err(db_error)?;
        one(row, membership_from)
    }

    async fn get_project_with_membership(
        &mut self,
        project_id: Uuid,
        user_id: Uuid,
    ) -> StoreResult<Option<(ProjectRow, Option<MembershipRow>)>> {
        // One statement: the role check of every change runs it.
        let row = sqlx::query(concat!(
            project_and_membership!(),
            " ",
            from_project_and_membership!(),
            " WHERE p.id = $2"
        ))
        .bind(user_id)
        .bind(project_id)
        .fetch_optional(self.db().await?)
        .await
        .map_err(db_error)?;
        one(row, |row| {
            Ok((project_from(row)?, joined(row, "m_", membership_in)?))
        })
    }

    async fn get_project_with_membership_and_record(
        &mut self,
        project_id: Uuid,
        user_id: Uuid,
        record_id: Uuid,
    ) -> StoreResult<Option<(ProjectRow, Option<MembershipRow>, Option<RecordRow>)>> {
        // One statement: every change of a record runs it, right after holding the stream.
        let row = sqlx::query(concat!(
            project_and_membership!(),
            ", r.id AS r_id, r.project_id AS r_project_id, r.collection AS r_collection, ",
            "r.body AS r_body, r.version AS r_version, r.created_at AS r_created_at, ",
            "r.updated_at AS r_updated_at ",
            from_project_and_membership!(),
            " LEFT JOIN records r ON r.id = $3 WHERE p.id = $2"
        ))
        .bind(user_id)
        .bind(project_id)
        .bind(record_id)
        .fetch_optional(self.db().await?)
        .await
        .map_err(db_error)?;
        one(row, |row| {
            Ok((
                project_from(row)?,
                joined(row, "m_", membership_in)?,
                joined(row, "r_", record_in)?,
            ))
        })
    }

    async fn list_memberships(&mut self, project_id: Uuid) -> StoreResult<Vec<MembershipRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            membership_columns!(),
            " FROM memberships WHERE project_id = $1 ORDER BY id"
        ))
        .bind(project_id)
        .fetch_all(self.db().await?)
        .await
        .map_err(db_error)?;
        all(rows, membership_from)
    }

    async fn list_memberships_of_user(&mut self, user_id: Uuid) -> StoreResult<Vec<MembershipRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            membership_columns!(),
            " FROM memberships WHERE user_id = $1 ORDER BY id"
        ))
        .bind(user_id)
        .fetch_all(self.db().await?)
        .await
        .map_err(db_error)?;
        all(rows, membership_from)
    }

    async fn insert_membership(&mut self, m: &MembershipRow) -> StoreResult<()> {
        sqlx::query(concat!(
            "INSERT INTO memberships (",
            membership_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(m.id)
        .bind(m.project_id)
        .bind(m.user_id)
        .bind(m.role)
        .bind(m.version)
        .bind(m.created_at)
        .bind(m.updated_at)
        .execute(self.writer().await?)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn update_membership(&mut self, m: &MembershipRow) -> StoreResult<()> {
        sqlx::query(
            "UPDATE memberships SET role = $1, version = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(m.role)
        .bind(m.version)
        .bind(m.updated_at)
        .bind(m.id)
        .execute(self.writer().await?)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn delete_membership(&mut self, id: Uuid) -> StoreResult<()> {
        sqlx::query("DELETE FROM memberships WHERE id = $1")
            .bind(id)
            .execute(self.writer().await?)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn get_record(&mut self, id: Uuid) -> StoreResult<Option<RecordRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            record_columns!(),
            " FROM records WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.db().await?)
        .await
        .map_err(db_error)?;
        one(row, record_from)
    }

    async fn list_records(
        &mut self,
        project_id: Uuid,
        collection: &str,
        page: Page,
    ) -> StoreResult<Vec<RecordRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            record_columns!(),
            " FROM records WHERE project_id = $1 AND collection = $2 ORDER BY id LIMIT $3 OFFSET $4"
        ))
        .bind(project_id)
        .bind(collection)
        .bind(i64::from(page.limit))
        .bind(i64::from(page.offset))
        .fetch_all(self.db().await?)
        .await
        .map_err(db_error)?;
        all(rows, record_from)
    }

    async fn count_records(&mut self, project_id: Uuid) -> StoreResult<i64> {
        let count: Option<i64> =
            sqlx::query_scalar("SELECT record_count FROM projects WHERE id = $1")
                .bind(project_id)
                .fetch_optional(self.db().await?)
                .await
                .map_err(db_error)?;
        Ok(count.unwrap_or(0))
    }

    async fn insert_record(&mut self, record: &RecordRow, refs: &[RecordRef]) -> StoreResult<()> {
        // One statement: the row, the project's count and the references (a new record has
        // none yet to replace: `record_refs` rows go with their record). The references'
        // foreign key is checked at the end of the statement, when the row is there.
        let (fields, targets) = ref_arrays(refs);
        sqlx::query(concat!(
            "WITH inserted AS (INSERT INTO records (",
            record_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7)), ",
            "counted AS (UPDATE projects SET record_count = record_count + 1 WHERE id = $2) ",
            "INSERT INTO record_refs (record_id, field, target_id, project_id) ",
            "SELECT $1, field, target_id, $2 FROM unnest($8::text[], $9::uuid[]) AS w(field, target_id) ",
            "ON CONFLICT DO NOTHING"
        ))
        .bind(record.id)
        .bind(record.project_id)
        .bind(&record.collection)
        .bind(object(&record.body))
        .bind(record.version)
        .bind(record.created_at)
        .bind(record.updated_at)
        .bind(fields)
        .bind(targets)
        .execute(self.writer().await?)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn update_record(&mut self, record: &RecordRow, refs: &[RecordRef]) -> StoreResult<()> {
        // One statement for the row and its references, so a change costs one round trip
        // whatever it refers to: the references no longer made go, the new ones are added,
        // the ones kept stay untouched (the two sets are disjoint, so the sub-statements,
        // which all see the same snapshot, never touch the same row).
        let (fields, targets) = ref_arrays(refs);
        sqlx::query(concat!(
            "WITH wanted AS (SELECT * FROM unnest($5::text[], $6::uuid[]) AS w(field, target_id)), ",
            "dropped AS (DELETE FROM record_refs r WHERE r.record_id = $4 AND NOT EXISTS ",
            "(SELECT 1 FROM wanted w WHERE w.field = r.field AND w.target_id = r.target_id)), ",
            "added AS (INSERT INTO record_refs (record_id, field, target_id, project_id) ",
            "SELECT $4, field, target_id, $7 FROM wanted ON CONFLICT DO NOTHING) ",
            "UPDATE records SET body = $1, version = $2, updated_at = $3 WHERE id = $4"
        ))
        .bind(object(&record.body))
        .bind(record.version)
        .bind(record.updated_at)
        .bind(record.id)
        .bind(fields)
        .bind(targets)
        .bind(record.project_id)
        .execute(self.writer().await?)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn update_record_body(&mut self, record: &RecordRow) -> StoreResult<()> {
        self.update_body(record).await
    }

    async fn delete_record(&mut self, id: Uuid) -> StoreResult<()> {
        let db = self.writer().await?;
        sqlx::query("DELETE FROM record_refs WHERE record_id = $1")
            .bind(id)
            .execute(&mut *db)
            .await
            .map_err(db_error)?;
        let project: Option<Uuid> =
            sqlx::query_scalar("DELETE FROM records WHERE id = $1 RETURNING project_id")
                .bind(id)
                .fetch_optional(&mut *db)
                .await
                .map_err(db_error)?;
        if let Some(project) = project {
            sqlx::query("UPDATE projects SET record_count = record_count - 1 WHERE id = $1")
                .bind(project)
                .execute(&mut *db)
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }

    async fn list_referrers(&mut self, target_id: Uuid) -> StoreResult<Vec<Referrer>> {
        let rows = sqlx::query(
            "SELECT r.record_id, x.collection, r.field FROM record_refs r JOIN records x ON x.id = r.record_id WHERE r.target_id = $1 ORDER BY r.record_id, r.field",
        )
        .bind(target_id)
        .fetch_all(self.db().await?)
        .await
        .map_err(db_error)?;
        all(rows, |row| {
            Ok(Referrer {
                record_id: get(row, "record_id")?,
                collection: get(row, "collection")?,
                field: get(row, "field")?,
            })
        })
    }

    async fn lock_stream(&mut self, stream: StreamKey) -> StoreResult<()> {
        if let Conn::NotBegun(group) = &self.conn {
            let group = group.clone();
            let mut member = group.join(&stream).await?;
            match member.hold(&stream).await {
                Ok(()) => {
                    self.conn = Conn::Member(member);
                    return Ok(());
                }
                Err(Hold::Failed(error)) => {
                    self.conn = Conn::Member(member);
                    return Err(error);
                }
                // Another transaction holds the stream: wait for it in a transaction of this
                // writer's own, which holds nothing else meanwhile (see `group_commit`).
                Err(Hold::HeldElsewhere) => {
                    drop(member);
                    self.conn = Conn::Tx(group.begin_alone().await?);
                }
            }
        }
        sqlx::query(HOLD_STREAM)
            .bind(stream.to_text())
            .execute(self.writer().await?)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn append_event(&mut self, event: NewEvent) -> StoreResult<Event> {
        if event.event_type.is_ephemeral() {
            return Err(corrupt("ephemeral events are never logged"));
        }
        let db = self.writer().await?;
        let stream = event.stream.to_text();
        // One statement, one round trip: the upsert moves the stream's counter on and takes
        // (or, after waiting for another writer's commit, retakes) its row lock, which holds
        // the stream until this transaction ends (see the crate's doc); the event gets the
        // seq the upsert returned. Either both rows are written or neither.
        let seq: i64 = sqlx::query_scalar(concat!(
            "WITH counter AS (INSERT INTO streams (stream, last_seq) VALUES ($1, 1) ",
            "ON CONFLICT (stream) DO UPDATE SET last_seq = streams.last_seq + 1 RETURNING last_seq) ",
            "INSERT INTO events (",
            event_columns!(),
            ") SELECT $1, counter.last_seq, $2, $3, $4, $5, $6, $7, $8, $9 FROM counter RETURNING seq"
        ))
        .bind(&stream)
        .bind(event.event_type.as_str())
        .bind(&event.payload)
        .bind(&event.data)
        .bind(event.actor_id)
        .bind(&event.tab_id)
        .bind(event.ts)
        .bind(event.project_id)
        .bind(&event.echo)
        .fetch_one(&mut *db)
        .await
        .map_err(db_error)?;
        Ok(event.logged_as(seq))
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
            " FROM events WHERE stream = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        ))
        .bind(stream.to_text())
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(self.db().await?)
        .await
        .map_err(db_error)?;
        all(rows, event_from)
    }

    async fn latest_seq(&mut self, stream: StreamKey) -> StoreResult<i64> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT last_seq FROM streams WHERE stream = $1")
            .bind(stream.to_text())
            .fetch_optional(self.db().await?)
            .await
            .map_err(db_error)?;
        Ok(seq.unwrap_or(0))
    }

    async fn oldest_seq(&mut self, stream: StreamKey) -> StoreResult<Option<i64>> {
        sqlx::query_scalar("SELECT MIN(seq) FROM events WHERE stream = $1")
            .bind(stream.to_text())
            .fetch_one(self.db().await?)
            .await
            .map_err(db_error)
    }

    async fn delete_stream_events(&mut self, stream: StreamKey) -> StoreResult<()> {
        sqlx::query("DELETE FROM events WHERE stream = $1")
            .bind(stream.to_text())
            .execute(self.writer().await?)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn log_bounds(
        &mut self,
        after: Option<StreamKey>,
        limit: u32,
    ) -> StoreResult<Vec<LogBounds>> {
        let rows = sqlx::query(
            "SELECT s.stream, s.last_seq, e.seq, e.ts FROM streams s \
             LEFT JOIN events e ON e.stream = s.stream \
             AND e.seq = (SELECT MIN(seq) FROM events WHERE stream = s.stream) \
             WHERE s.stream > $1 ORDER BY s.stream LIMIT $2",
        )
        .bind(after.map(|s| s.to_text()).unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(self.db().await?)
        .await
        .map_err(db_error)?;
        all(rows, |row| {
            let stream: String = get(row, "stream")?;
            Ok(LogBounds {
                stream: StreamKey::parse(&stream).ok_or_else(|| corrupt("bad stream key"))?,
                latest_seq: get(row, "last_seq")?,
                oldest_seq: get(row, "seq")?,
                oldest_ts: get(row, "ts")?,
            })
        })
    }

    async fn nth_newest_seq(&mut self, stream: StreamKey, n: u64) -> StoreResult<Option<i64>> {
        let Some(offset) = n.checked_sub(1).and_then(|o| i64::try_from(o).ok()) else {
            return Ok(None);
        };
        sqlx::query_scalar(
            "SELECT seq FROM events WHERE stream = $1 ORDER BY seq DESC LIMIT 1 OFFSET $2",
        )
        .bind(stream.to_text())
        .bind(offset)
        .fetch_optional(self.db().await?)
        .await
        .map_err(db_error)
    }

    async fn prune_events(
        &mut self,
        stream: StreamKey,
        keep_from_seq: i64,
        older_than: Option<Timestamp>,
        limit: u32,
    ) -> StoreResult<u64> {
        let key = stream.to_text();
        let oldest: Vec<(i64, Timestamp)> =
            sqlx::query_as("SELECT seq, ts FROM events WHERE stream = $1 ORDER BY seq LIMIT $2")
                .bind(&key)
                .bind(i64::from(limit))
                .fetch_all(self.db().await?)
                .await
                .map_err(db_error)?;
        let Some(through) = store::retention::prunable_prefix(&oldest, keep_from_seq, older_than)
        else {
            return Ok(0);
        };
        let deleted = sqlx::query("DELETE FROM events WHERE stream = $1 AND seq <= $2")
            .bind(&key)
            .bind(through)
            .execute(self.writer().await?)
            .await
            .map_err(db_error)?;
        Ok(deleted.rows_affected())
    }

    async fn raise_seq(&mut self, stream: StreamKey, at_least: i64) -> StoreResult<()> {
        if at_least < 0 {
            return Err(corrupt("a seq is never below 0"));
        }
        // Taking the counter's row lock holds the stream, as `append_event` does.
        sqlx::query(
            "INSERT INTO streams (stream, last_seq) VALUES ($1, $2) ON CONFLICT (stream) DO UPDATE SET last_seq = GREATEST(streams.last_seq, EXCLUDED.last_seq)",
        )
        .bind(stream.to_text())
        .bind(at_least)
        .execute(self.writer().await?)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn get_phantom_ids(
        &mut self,
        project_id: Uuid,
        phantoms: &[String],
    ) -> StoreResult<Vec<(String, Uuid)>> {
        if phantoms.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_as(
            "SELECT phantom, record_id FROM phantom_ids WHERE project_id = $1 AND phantom = ANY($2)",
        )
        .bind(project_id)
        .bind(phantoms)
        .fetch_all(self.db().await?)
        .await
        .map_err(db_error)
    }

    async fn put_phantom_ids(
        &mut self,
        project_id: Uuid,
        mapped: &[(String, Uuid)],
        keep: u32,
    ) -> StoreResult<()> {
        if mapped.is_empty() {
            return Ok(());
        }
        let db = self.writer().await?;
        let mut newest: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(n), 0)::bigint FROM phantom_ids WHERE project_id = $1",
        )
        .bind(project_id)
        .fetch_one(&mut *db)
        .await
        .map_err(db_error)?;
        for (phantom, id) in mapped {
            let added = sqlx::query(
                "INSERT INTO phantom_ids (project_id, phantom, record_id, n) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (project_id, phantom) DO NOTHING",
            )
            .bind(project_id)
            .bind(phantom)
            .bind(id)
            .bind(newest + 1)
            .execute(&mut *db)
            .await
            .map_err(db_error)?
            .rows_affected();
            if added > 0 {
                newest += 1;
            }
        }
        sqlx::query("DELETE FROM phantom_ids WHERE project_id = $1 AND n <= $2")
            .bind(project_id)
            .bind(newest - i64::from(keep))
            .execute(&mut *db)
            .await
            .map_err(db_error)?;
        Ok(())
    }
    async fn append_app_event(
        &mut self,
        channels: &[String],
        event: &str,
        data: &str,
        at: Timestamp,
        retention: AppLogRetention,
    ) -> StoreResult<Vec<AppChannelEventRow>> {
        app_channels::append(self.writer().await?, channels, event, data, at, retention).await
    }

    async fn read_app_events(
        &mut self,
        channel: &str,
        after: i64,
        limit: u32,
        not_before: Timestamp,
    ) -> StoreResult<Vec<AppChannelEventRow>> {
        app_channels::after(self.db().await?, channel, after, limit, not_before).await
    }

    async fn app_channel_position(
        &mut self,
        channel: &str,
        not_before: Timestamp,
    ) -> StoreResult<Option<AppChannelPositionRow>> {
        app_channels::position(self.db().await?, channel, not_before).await
    }

    async fn forget_idle_app_channels(
        &mut self,
        idle_before: Timestamp,
        limit: u32,
    ) -> StoreResult<u64> {
        app_channels::forget_idle(self.writer().await?, idle_before, limit).await
    }

    async fn delete_app_channels(&mut self) -> StoreResult<()> {
        app_channels::delete_all(self.writer().await?).await
    }

    async fn append_whiteboard_update(
        &mut self,
        board_id: Uuid,
        update: &[u8],
        at: Timestamp,
    ) -> StoreResult<i64> {
        whiteboards::append(self.writer().await?, board_id, update, at).await
    }

    async fn read_whiteboard_updates(
        &mut self,
        board_id: Uuid,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<WhiteboardUpdateRow>> {
        whiteboards::after(self.db().await?, board_id, after_seq, limit).await
    }

    async fn whiteboard_latest_seq(&mut self, board_id: Uuid) -> StoreResult<i64> {
        whiteboards::latest_seq(self.db().await?, board_id).await
    }

    async fn compact_whiteboard(
        &mut self,
        board_id: Uuid,
        through_seq: i64,
        state: &[u8],
    ) -> StoreResult<()> {
        whiteboards::compact(self.writer().await?, board_id, through_seq, state).await
    }

    async fn whiteboards_to_compact(
        &mut self,
        more_than: u32,
        limit: u32,
    ) -> StoreResult<Vec<Uuid>> {
        whiteboards::to_compact(self.db().await?, more_than, limit).await
    }

    async fn insert_whiteboard_snapshot(
        &mut self,
        snapshot: &WhiteboardSnapshotRow,
    ) -> StoreResult<()> {
        whiteboards::insert_snapshot(self.writer().await?, snapshot).await
    }

    async fn list_whiteboard_snapshots(
        &mut self,
        board_id: Uuid,
    ) -> StoreResult<Vec<WhiteboardSnapshotInfo>> {
        whiteboards::list_snapshots(self.db().await?, board_id).await
    }

    async fn get_whiteboard_snapshot(
        &mut self,
        id: Uuid,
    ) -> StoreResult<Option<WhiteboardSnapshotRow>> {
        whiteboards::get_snapshot(self.db().await?, id).await
    }

    async fn insert_webhook(&mut self, webhook: &WebhookRow) -> StoreResult<()> {
        webhooks::insert(self.writer().await?, webhook).await
    }

    async fn get_webhook(&mut self, id: Uuid) -> StoreResult<Option<WebhookRow>> {
        webhooks::get_one(self.db().await?, id).await
    }

    async fn list_webhooks(&mut self, project_id: Uuid) -> StoreResult<Vec<WebhookRow>> {
        webhooks::list(self.db().await?, project_id).await
    }

    async fn update_webhook(&mut self, webhook: &WebhookRow) -> StoreResult<bool> {
        webhooks::update(self.writer().await?, webhook).await
    }

    async fn delete_webhook(&mut self, id: Uuid) -> StoreResult<bool> {
        webhooks::delete(self.writer().await?, id).await
    }

    async fn due_webhooks(&mut self, now: Timestamp, limit: u32) -> StoreResult<Vec<WebhookRow>> {
        webhooks::due(self.db().await?, now, limit).await
    }

    async fn take_webhook_lease(
        &mut self,
        id: Uuid,
        owner: Uuid,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<bool> {
        webhooks::take_lease(self.writer().await?, id, owner, now, until).await
    }

    async fn release_webhook_lease(
        &mut self,
        id: Uuid,
        owner: Uuid,
        retry_at: Option<Timestamp>,
    ) -> StoreResult<()> {
        webhooks::release_lease(self.writer().await?, id, owner, retry_at).await
    }

    async fn advance_webhook_cursor(
        &mut self,
        id: Uuid,
        owner: Uuid,
        from: i64,
        to: i64,
    ) -> StoreResult<bool> {
        webhooks::advance(self.writer().await?, id, owner, from, to).await
    }

    async fn min_webhook_cursor(&mut self, project_id: Uuid) -> StoreResult<Option<i64>> {
        webhooks::min_cursor(self.db().await?, project_id).await
    }

    async fn insert_webhook_delivery(&mut self, delivery: &WebhookDeliveryRow) -> StoreResult<()> {
        webhooks::insert_delivery(self.writer().await?, delivery).await
    }

    async fn get_webhook_delivery(
        &mut self,
        webhook_id: Uuid,
        seq: i64,
    ) -> StoreResult<Option<WebhookDeliveryRow>> {
        webhooks::get_delivery(self.db().await?, webhook_id, seq).await
    }

    async fn update_webhook_delivery(
        &mut self,
        delivery: &WebhookDeliveryRow,
    ) -> StoreResult<bool> {
        webhooks::update_delivery(self.writer().await?, delivery).await
    }

    async fn list_webhook_deliveries(
        &mut self,
        webhook_id: Uuid,
        limit: u32,
    ) -> StoreResult<Vec<WebhookDeliveryRow>> {
        webhooks::list_deliveries(self.db().await?, webhook_id, limit).await
    }

    async fn prune_webhook_deliveries(&mut self, webhook_id: Uuid, keep: u32) -> StoreResult<u64> {
        webhooks::prune_deliveries(self.writer().await?, webhook_id, keep).await
    }
}
