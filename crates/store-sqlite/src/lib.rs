//! The embedded default backend of the store: one SQLite file in WAL mode.
//!
//! Writes go through exactly one connection and open with `BEGIN IMMEDIATE`, so a transaction
//! that reads before it writes can never fail to upgrade its lock, and seqs are allocated
//! strictly one transaction at a time. That is more than the store's concurrency contract asks
//! (every stream and record is held by the one writer), so [`Queries::lock_stream`] has nothing
//! left to do here. Reads use separate read-only connections and never wait for the writer
//! (WAL).
//!
//! Statements run through rusqlite on the calling task's thread ([`conns`] says why); sqlx
//! only applies the migrations when the store opens, so databases made by earlier versions
//! keep their migration history.

mod app_channels;
pub mod backup;
mod conns;
mod counter;
pub mod durability;
mod group_sync;
mod nodes;
mod ops;
mod phantom_ids;
mod webhooks;
mod whiteboards;

use async_trait::async_trait;
use conns::{InTransaction, Lender, Pooled, ReaderPool, WriteConn, Writer};
use group_sync::GroupSync;
use ops::SqliteOps;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use store::{
    Durability, NodeJoin, NodeRow, Queries, RunStart, Store, StoreError, StoreResult, WriteTx,
};
use uuid::Uuid;

/// How long a writer waits for the file lock held by another process (e.g. `liveplan user create`
/// while a server runs) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest pause between two attempts to take the write lock from another process.
const BUSY_RETRY_MAX: Duration = Duration::from_millis(50);
/// How long a write transaction queues behind this process's other writers before giving up.
const WRITER_QUEUE_TIMEOUT: Duration = Duration::from_secs(60);
const READ_CONNECTIONS: usize = 8;
/// Prepared statements kept per connection: every statement `ops` has, with room to spare.
const STATEMENT_CACHE: usize = 96;

pub struct SqliteStore {
    writer: Writer,
    /// In the full durability, what makes commits durable after they release the writer
    /// ([`group_sync`]); `None` in the fast mode.
    group_sync: Option<Arc<GroupSync>>,
    readers: Arc<ReaderPool>,
    options: SqliteOptions,
    /// Whether a run began ([`Store::begin_run`]), so that `close` records its clean end.
    running: AtomicBool,
}

/// How a [`SqliteStore`] is opened beyond its file.
#[derive(Debug, Clone, Default)]
pub struct SqliteOptions {
    pub durability: Durability,
    /// Where the boot id is read ([`durability::BOOT_ID_FILE`] when `None`). Tests name a file of
    /// their own to simulate a restart of the operating system.
    pub boot_id_file: Option<PathBuf>,
}

impl SqliteOptions {
    /// Both modes commit with `synchronous=NORMAL`; the full one then syncs the log itself, for
    /// many commits at once ([`group_sync`]), where `FULL` would sync once per commit with the
    /// one writer held.
    fn synchronous(&self) -> &'static str {
        "NORMAL"
    }
}

pub(crate) fn db_error(error: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(code, Some(message)) = &error
        && matches!(
            code.extended_code,
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        )
    {
        return StoreError::Conflict {
            what: unique_rule_in_words(message),
        };
    }
    StoreError::Database(Box::new(error))
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy)
    )
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

/// Settings every connection gets. `busy_timeout` blocks the calling thread, so it is kept for
/// readers (in WAL they wait only while another process recovers the log); the writer waits
/// for another process's lock asynchronously instead, in [`SqliteStore::write`].
fn open_connection(
    path: &Path,
    access: OpenFlags,
    busy_timeout: Duration,
    synchronous: &str,
) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, access | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(busy_timeout)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    // The query planner's stability guarantee: without it SQLite (3.51) marks a bound LIMIT
    // (and a bound value it could compare against statistics) as part of the plan, and every
    // new binding of it expires the statement, so each cached `... LIMIT ?` was compiled again
    // on every run (7 % of a Pusher publish's CPU, in the history trim). The store keeps no
    // statistics (no ANALYZE), so no plan depends on a bound value anyway.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Opens the store a `sqlite:` URL names (`sqlite:PATH`, `sqlite://PATH`, with or without
/// `?query`), creating the file if needed and applying migrations.
pub async fn open(url: &str) -> StoreResult<SqliteStore> {
    open_with(url, SqliteOptions::default()).await
}

/// [`open`] with `options`.
pub async fn open_with(url: &str, options: SqliteOptions) -> StoreResult<SqliteStore> {
    let path =
        path_of_url(url).ok_or_else(|| StoreError::database("a sqlite: URL names no file"))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(Box::new(e)))?;
    }
    SqliteStore::open_file_with(&path, options).await
}

/// The file a `sqlite:` URL names.
pub fn path_of_url(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty()).then(|| std::path::PathBuf::from(path))
}

impl SqliteStore {
    /// Opens (creating if needed) `<dir>/liveplan.db` and applies migrations.
    pub async fn open_in_dir(dir: &Path) -> StoreResult<SqliteStore> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(Box::new(e)))?;
        SqliteStore::open_file(&dir.join("liveplan.db")).await
    }

    /// Opens the file with the default options (full durability).
    pub async fn open_file(path: &Path) -> StoreResult<SqliteStore> {
        SqliteStore::open_file_with(path, SqliteOptions::default()).await
    }

    pub async fn open_file_with(path: &Path, options: SqliteOptions) -> StoreResult<SqliteStore> {
        migrate(path).await?;
        let synchronous = options.synchronous();
        let writer = open_connection(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE,
            Duration::ZERO,
            synchronous,
        )
        .map_err(db_error)?;
        let group_sync = match options.durability {
            Durability::Full => Some(GroupSync::new(path)),
            Durability::Fast => None,
        };
        let path = path.to_owned();
        let readers = ReaderPool::new(READ_CONNECTIONS, move || {
            open_connection(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY,
                BUSY_TIMEOUT,
                synchronous,
            )
        });
        Ok(SqliteStore {
            writer: Arc::new(tokio::sync::Mutex::new(Some(writer))),
            group_sync,
            readers,
            options,
            running: AtomicBool::new(false),
        })
    }

    /// Begins a write transaction on the writer, waiting for another process's lock.
    /// `synchronous`, when given, is the writer's setting from now on (the caller sets it back).
    async fn begin_write(
        &self,
        synchronous: Option<&str>,
    ) -> StoreResult<SqliteOps<InTransaction<WriteConn>>> {
        if let Some(group_sync) = &self.group_sync {
            group_sync.check()?;
        }
        let conn = tokio::time::timeout(WRITER_QUEUE_TIMEOUT, self.writer.clone().lock_owned())
            .await
            .map_err(|_| StoreError::database("timed out waiting for the writer"))?;
        let conn = WriteConn(conn, self.group_sync.clone());
        if let Some(synchronous) = synchronous {
            conn.connection()?
                .pragma_update(None, "synchronous", synchronous)
                .map_err(db_error)?;
        }
        // Another process (the CLI) may hold the file's write lock: wait for it here, asleep,
        // instead of in SQLite's busy handler, which would block this thread.
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            let began = conns::run_cached(conn.connection()?, "BEGIN IMMEDIATE");
            match began {
                Ok(()) => break,
                Err(error) if is_busy(&error) && started.elapsed() < BUSY_TIMEOUT => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(BUSY_RETRY_MAX);
                }
                Err(error) => return Err(db_error(error)),
            }
        }
        Ok(SqliteOps::new(InTransaction::begun(conn)))
    }

    /// Runs `change` in a write transaction committed with `synchronous=FULL`, which syncs the
    /// whole write-ahead log, so this commit and every one before it are on disk when it returns.
    async fn write_synced<T>(
        &self,
        change: impl FnOnce(&Connection) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut tx = self.begin_write(Some("FULL")).await?;
        let result = change(tx.conn.connection()?);
        let result = match result {
            Ok(value) => tx.conn.commit().map(|()| value),
            Err(error) => Err(error),
        };
        tx.conn
            .connection()?
            .pragma_update(None, "synchronous", self.options.synchronous())
            .map_err(db_error)?;
        result
    }

    /// One write transaction of the node registry. Its rows need no durability (a lost
    /// heartbeat is sent again in seconds), so it commits like any other write.
    async fn registry_write<T>(
        &self,
        change: impl FnOnce(&Connection) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let tx = self.begin_write(None).await?;
        let value = change(tx.conn.connection()?)?;
        Box::new(tx).commit().await?;
        Ok(value)
    }

    /// The boot id this run records.
    fn boot_id(&self) -> Option<String> {
        let file = self
            .options
            .boot_id_file
            .as_deref()
            .unwrap_or(Path::new(durability::BOOT_ID_FILE));
        durability::boot_id(file)
    }
}

/// Creates the file (in WAL mode) and applies the migrations with sqlx's migrator, on a
/// connection of its own that is closed before the store's connections open.
async fn migrate(path: &Path) -> StoreResult<()> {
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true)
        .connect()
        .await
        .map_err(|e| StoreError::Database(Box::new(e)))?;
    let migrated = sqlx::migrate!("./migrations/sqlite").run(&mut conn).await;
    let closed = sqlx::Connection::close(conn).await;
    migrated.map_err(|e| StoreError::Database(Box::new(e)))?;
    closed.map_err(|e| StoreError::Database(Box::new(e)))
}

#[async_trait]
impl Store for SqliteStore {
    async fn read(&self) -> StoreResult<Box<dyn Queries>> {
        Ok(Box::new(SqliteOps::new(self.readers.acquire().await?)))
    }

    async fn snapshot(&self) -> StoreResult<Box<dyn Queries>> {
        // A deferred read transaction in WAL mode: its first read fixes the snapshot, later
        // commits stay invisible to it, and the writer is never blocked. Dropping it rolls
        // back, which for a read only ends it.
        let conn: Pooled = self.readers.acquire().await?;
        Ok(Box::new(SqliteOps::new(InTransaction::begin(
            conn, "BEGIN",
        )?)))
    }

    async fn write(&self) -> StoreResult<Box<dyn WriteTx>> {
        Ok(Box::new(self.begin_write(None).await?))
    }

    async fn ping(&self) -> StoreResult<()> {
        let conn = self.readers.acquire().await?;
        conn.connection()?
            .query_row("SELECT 1", [], |_| Ok(()))
            .map_err(db_error)
    }

    async fn close(&self) {
        if self.running.swap(false, Ordering::SeqCst) {
            // The run ends cleanly: everything it committed is synced with this record.
            let clean =
                durability::record(self.options.durability, self.boot_id().as_deref(), true);
            let recorded = self
                .write_synced(|db| {
                    db.execute(
                        "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        [durability::LAST_RUN, &clean],
                    )
                    .map_err(db_error)
                })
                .await;
            if let Err(error) = recorded {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "could not record the clean end of the run"
                );
            }
        }
        self.readers.close();
        self.writer.lock().await.take();
    }

    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    async fn begin_run(&self) -> StoreResult<RunStart> {
        let boot_id = self.boot_id();
        let this_run = durability::record(self.options.durability, boot_id.as_deref(), false);
        // Synced before this run acknowledges anything, so an unclean end of it is never
        // mistaken for a clean one.
        let start = self
            .write_synced(|db| {
                let last: Option<String> = db
                    .query_row(
                        "SELECT value FROM settings WHERE key = ?",
                        [durability::LAST_RUN],
                        |row| row.get(0),
                    )
                    .map(Some)
                    .or_else(|e| match e {
                        rusqlite::Error::QueryReturnedNoRows => Ok(None),
                        e => Err(db_error(e)),
                    })?;
                let last = last.as_deref().and_then(durability::parse);
                let skipped = durability::may_have_lost_tail(last.as_ref(), boot_id.as_deref());
                let epoch = if skipped {
                    durability::skip_ahead_after_lost_tail(db)?
                } else {
                    durability::epoch(db)?
                };
                db.execute(
                    "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    [durability::LAST_RUN, &this_run],
                )
                .map_err(db_error)?;
                Ok(RunStart { skipped, epoch })
            })
            .await?;
        self.running.store(true, Ordering::SeqCst);
        Ok(start)
    }

    async fn synchronous_setting(&self) -> StoreResult<String> {
        let guard = self.writer.lock().await;
        let conn = guard
            .as_ref()
            .ok_or_else(|| StoreError::database("the store is closed"))?;
        let value: i64 = conn
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .map_err(db_error)?;
        // The full mode's commits are NORMAL ones made durable by the group sync.
        Ok(match self.group_sync {
            Some(_) => format!("{value} + group sync"),
            None => value.to_string(),
        })
    }

    async fn join_nodes(
        &self,
        node: &NodeRow,
        max_age: Duration,
        admit: &store::Admit,
    ) -> StoreResult<NodeJoin> {
        self.registry_write(|db| nodes::join(db, node, max_age, admit))
            .await
    }

    async fn heartbeat_node(&self, id: Uuid) -> StoreResult<bool> {
        self.registry_write(|db| nodes::heartbeat(db, id)).await
    }

    async fn leave_nodes(&self, id: Uuid) -> StoreResult<()> {
        self.registry_write(|db| nodes::leave(db, id)).await
    }

    async fn live_nodes(&self, max_age: Duration) -> StoreResult<Vec<NodeRow>> {
        let conn = self.readers.acquire().await?;
        nodes::live(conn.connection()?, max_age)
    }
}

#[async_trait]
impl WriteTx for SqliteOps<InTransaction<WriteConn>> {
    async fn commit(self: Box<Self>) -> StoreResult<()> {
        self.commit_then(Box::new(|| ())).await
    }

    async fn commit_then<'a>(
        mut self: Box<Self>,
        then: Box<dyn FnOnce() + Send + 'a>,
    ) -> StoreResult<()> {
        self.conn.commit()?;
        match self.conn.holder().1.clone() {
            Some(group_sync) => {
                // Placed in commit order while the writer is still held; the writer goes to
                // the next transaction before this one waits for its sync.
                let pending = group_sync.committed();
                drop(self);
                pending.then(then).await
            }
            None => {
                // The writer's guard is released only when `self` drops, after `then`.
                then();
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::StatementStatus;

    #[test]
    fn a_cached_statement_with_a_bound_limit_is_compiled_once() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_connection(
            &dir.path().join("t.db"),
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            Duration::from_secs(1),
            "NORMAL",
        )
        .unwrap();
        conn.execute_batch(
            "CREATE TABLE t (channel TEXT NOT NULL, serial INTEGER NOT NULL, at TEXT NOT NULL, \
             PRIMARY KEY (channel, serial)); \
             INSERT INTO t VALUES ('a', 1, '1'), ('a', 2, '2'), ('a', 3, '3');",
        )
        .unwrap();
        // The shape of the history trim and of every paged read: a bound LIMIT, a bound range.
        let sql = "SELECT count(*) FROM t WHERE channel = ?1 AND serial > ?2 AND serial IN \
                   (SELECT serial FROM t WHERE channel = ?1 ORDER BY serial LIMIT ?3)";
        for (after, limit, expected) in [(0, 1, 1), (0, 2, 2), (1, 3, 2), (2, 7, 1)] {
            let mut statement = conn.prepare_cached(sql).unwrap();
            let count: i64 = statement
                .query_row(rusqlite::params!["a", after, limit], |row| row.get(0))
                .unwrap();
            assert_eq!(count, expected);
            assert_eq!(
                statement.get_status(StatementStatus::RePrepare),
                0,
                "compiled again for new bindings"
            );
        }
    }
}
