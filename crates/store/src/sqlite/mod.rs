//! The embedded default backend: one SQLite file in WAL mode.
//!
//! Writes go through a pool of exactly one connection and open with `BEGIN IMMEDIATE`, so a
//! transaction that reads before it writes can never fail to upgrade its lock, and seqs are
//! allocated strictly one transaction at a time. Reads use a separate read-only pool and never
//! wait for the writer (WAL).

mod ops;

use crate::{Ops, Store, StoreError, StoreResult, WriteTx};
use async_trait::async_trait;
use ops::SqliteOps;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::Path;
use std::time::Duration;

/// How long a writer waits for the file lock held by another process (e.g. `liveplan user create`
/// while a server runs) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
const READ_CONNECTIONS: u32 = 8;

pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
}

pub(crate) fn db_error(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &error
        && db.is_unique_violation()
    {
        return StoreError::Conflict {
            what: unique_rule_in_words(db.message()),
        };
    }
    StoreError::Database(Box::new(error))
}

/// Turns SQLite's "UNIQUE constraint failed: users.email" into words a client may read.
fn unique_rule_in_words(message: &str) -> String {
    let column = message.rsplit(": ").next().unwrap_or("");
    match column {
        "users.email" => "a user with this email already exists".into(),
        "users.username" => "a user with this username already exists".into(),
        "projects.key" => "a project with this key already exists".into(),
        "memberships.project_id, memberships.user_id" => {
            "the user is already a member of this project".into()
        }
        _ => "a record with the same unique value already exists".into(),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) `<dir>/liveplan.db` and applies migrations.
    pub async fn open_in_dir(dir: &Path) -> StoreResult<SqliteStore> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(Box::new(e)))?;
        SqliteStore::open_file(&dir.join("liveplan.db")).await
    }

    pub async fn open_file(path: &Path) -> StoreResult<SqliteStore> {
        let base = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        // No ping before each acquire (sqlx's default): it is a round trip to the connection's
        // worker thread, two context switches for every request, and a file database does
        // not go stale the way a network connection can; a broken one fails its query.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(base.clone().create_if_missing(true))
            .await
            .map_err(db_error)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .map_err(|e| StoreError::Database(Box::new(e)))?;
        let readers = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base.read_only(true))
            .await
            .map_err(db_error)?;
        Ok(SqliteStore { writer, readers })
    }

    pub async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn read(&self) -> StoreResult<Box<dyn Ops>> {
        let conn = self.readers.acquire().await.map_err(db_error)?;
        Ok(Box::new(SqliteOps::new(conn)))
    }

    async fn snapshot(&self) -> StoreResult<Box<dyn Ops>> {
        // A deferred read transaction in WAL mode: its first read fixes the snapshot, later
        // commits stay invisible to it, and the writer is never blocked. Dropping it rolls
        // back, which for a read only ends it.
        let tx = self.readers.begin().await.map_err(db_error)?;
        Ok(Box::new(SqliteOps::new(tx)))
    }

    async fn write(&self) -> StoreResult<Box<dyn WriteTx>> {
        let tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        Ok(Box::new(SqliteOps::new(tx)))
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.readers)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "sqlite"
    }
}

#[async_trait]
impl WriteTx for SqliteOps<sqlx::Transaction<'static, sqlx::Sqlite>> {
    async fn commit(self: Box<Self>) -> StoreResult<()> {
        self.conn.commit().await.map_err(db_error)
    }
}
