//! The connections behind the SQLite backend and the handles that lend them out.
//!
//! Statements run on the calling task's own thread (rusqlite), not on a connection thread of
//! their own: a point query or a write here takes microseconds, while handing it to another
//! thread and back costs two wake-ups, which on a VM cost more than the statement (see
//! `docs/ARCHITECTURE.md`, "The SQLite backend"). Reads that can return many rows go through
//! [`heavy`] so they do not hold up the runtime's other tasks.

use crate::db_error;
use crate::group_sync::GroupSync;
use rusqlite::Connection;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use store::{StoreError, StoreResult};
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

/// How long a read queues for one of the pool's connections before giving up.
const READER_QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

fn closed() -> StoreError {
    StoreError::database("the store is closed")
}

/// Whatever lends a connection to [`crate::ops::SqliteOps`].
pub(crate) trait Lender: Send {
    fn connection(&self) -> StoreResult<&Connection>;
}

/// Runs a read that may return many rows (a whole plan, a page of the event log). On a
/// multi-threaded runtime the worker first hands its other tasks to another thread; on a
/// current-thread runtime (tests, the CLI) it simply runs.
pub(crate) fn heavy<T>(read: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(read)
        }
        _ => read(),
    }
}

/// The one write connection, behind an async lock so writers queue without blocking a thread.
pub(crate) type Writer = Arc<tokio::sync::Mutex<Option<Connection>>>;

/// The write connection, held for one transaction, and in the full durability the group sync
/// its commit waits for after releasing it.
pub(crate) struct WriteConn(
    pub(crate) OwnedMutexGuard<Option<Connection>>,
    pub(crate) Option<Arc<GroupSync>>,
);

impl Lender for WriteConn {
    fn connection(&self) -> StoreResult<&Connection> {
        self.0.as_ref().ok_or_else(closed)
    }
}

/// Read-only connections, opened when first needed and reused; at most `permits` lent at once.
pub(crate) struct ReaderPool {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    open: Box<dyn Fn() -> rusqlite::Result<Connection> + Send + Sync>,
}

impl ReaderPool {
    pub(crate) fn new(
        size: usize,
        open: impl Fn() -> rusqlite::Result<Connection> + Send + Sync + 'static,
    ) -> Arc<ReaderPool> {
        Arc::new(ReaderPool {
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Arc::new(Semaphore::new(size)),
            open: Box::new(open),
        })
    }

    pub(crate) async fn acquire(self: &Arc<Self>) -> StoreResult<Pooled> {
        let permit =
            tokio::time::timeout(READER_QUEUE_TIMEOUT, self.permits.clone().acquire_owned())
                .await
                .map_err(|_| StoreError::database("timed out waiting for a reader"))?
                .map_err(|_| closed())?;
        let reused = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match reused {
            Some(conn) => conn,
            None => (self.open)().map_err(db_error)?,
        };
        Ok(Pooled {
            conn: Some(conn),
            pool: self.clone(),
            _permit: permit,
        })
    }

    /// Closes the idle connections now and the lent ones when they come back.
    pub(crate) fn close(&self) {
        self.permits.close();
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// A reader lent from the pool; it goes back when dropped.
pub(crate) struct Pooled {
    conn: Option<Connection>,
    pool: Arc<ReaderPool>,
    _permit: OwnedSemaphorePermit,
}

impl Lender for Pooled {
    fn connection(&self) -> StoreResult<&Connection> {
        self.conn.as_ref().ok_or_else(closed)
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && !self.pool.permits.is_closed()
        {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(conn);
        }
    }
}

/// Runs a statement that returns no rows (`BEGIN IMMEDIATE`, `COMMIT`) from the connection's
/// statement cache: every transaction runs two, and parsing them anew each time
/// (`execute_batch`) was 6 % of the whiteboards' writer's time (BENCHMARKS.md, "Events in
/// rounds; a board's seq from its last update").
pub(crate) fn run_cached(conn: &Connection, sql: &'static str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// A connection inside a transaction it began; dropped without [`InTransaction::commit`], it
/// rolls back before its connection is lent again.
pub(crate) struct InTransaction<H: Lender> {
    holder: H,
    open: bool,
}

impl<H: Lender> InTransaction<H> {
    /// Begins a transaction with `begin` (`BEGIN`, `BEGIN IMMEDIATE` …) on the holder's connection.
    pub(crate) fn begin(holder: H, begin: &'static str) -> StoreResult<InTransaction<H>> {
        run_cached(holder.connection()?, begin).map_err(db_error)?;
        Ok(InTransaction::begun(holder))
    }

    pub(crate) fn holder(&self) -> &H {
        &self.holder
    }

    /// Takes over a connection whose transaction the caller has already begun.
    pub(crate) fn begun(holder: H) -> InTransaction<H> {
        InTransaction { holder, open: true }
    }

    /// Commits; the connection (and for the writer its guard) is held until `self` drops.
    pub(crate) fn commit(&mut self) -> StoreResult<()> {
        run_cached(self.connection()?, "COMMIT").map_err(db_error)?;
        self.open = false;
        Ok(())
    }
}

impl<H: Lender> Lender for InTransaction<H> {
    fn connection(&self) -> StoreResult<&Connection> {
        self.holder.connection()
    }
}

impl<H: Lender> Drop for InTransaction<H> {
    fn drop(&mut self) {
        if self.open
            && let Ok(conn) = self.holder.connection()
        {
            // A failed rollback leaves nothing to do: the connection's next BEGIN fails and
            // says so.
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
}
