//! The PostgreSQL backend of the store, for several liveplan nodes on one database.
//!
//! How it keeps the store's concurrency contract with writers on several nodes:
//! - Write transactions run at READ COMMITTED. A stream is held by locking its row in
//!   `streams` (an upsert, which takes the row lock and keeps it until the transaction ends):
//!   [`Queries::lock_stream`] does only that, [`Queries::append_event`] also moves the stream's
//!   counter on by one. Every other writer of the stream waits for the commit, and its next
//!   statement sees what was committed, so seqs are gap-free and in commit order.
//! - Write transactions whose first statement holds a stream share PostgreSQL transactions, one
//!   after another on one connection, each under a savepoint, with one COMMIT for all
//!   ([`group_commit`]): a commit is acknowledged only once that COMMIT is done.
//! - Snapshots are READ ONLY transactions at REPEATABLE READ: one moment, no locks.
//! - Unique rules are unique indexes (emails, usernames and keys on `lower(…)`), their
//!   violations turned into [`StoreError::Conflict`] in words ([`errors`]).
//! - Beginning a transaction is retried when it fails on a serialization failure or a deadlock
//!   ([`errors::retrying`]). Inside a write transaction such a failure ends the transaction
//!   and is reported as [`StoreError::Retryable`]: only its caller can run it again (the
//!   domain does, a few times, for commands that hold more than one stream).
//! - A database that cannot be reached (no connection within [`ACQUIRE_TIMEOUT`], a socket
//!   lost mid-statement, a server shutting down or starting) is [`StoreError::Unavailable`].
//!   The pool tests a connection when it takes it back (sqlx always does) and, when it sat
//!   idle for [`PING_AFTER_IDLE`] or longer, before lending it, so once the server is back
//!   new work gets new connections with no restart of the node.
//!
//! The migrations in `migrations/postgres` are applied when the store opens.
//!
//! Durability ([`store::Durability`]) is each connection's `synchronous_commit` (`on` or `off`);
//! [`durability`] says how a crash that lost commits made with `off` is caught.

mod app_channels;
mod durability;
mod errors;
mod group_commit;
mod nodes;
mod ops;
mod rows;
mod webhooks;
mod whiteboards;

use async_trait::async_trait;
use errors::{db_error, retrying};
use ops::{Conn, PgOps};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;
use store::sequencer::CommitSequencer;
use store::{
    Durability, NodeJoin, NodeRow, Queries, RunStart, Store, StoreError, StoreResult, WriteTx,
};
use uuid::Uuid;

/// Connections per node: enough for concurrent writers and readers, far below PostgreSQL's
/// default `max_connections` (100) so several nodes fit.
const MAX_CONNECTIONS: u32 = 16;
/// A connection idle in the pool for this long is tested (a round trip) before it is lent.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);
/// How long a caller queues for a connection before giving up with
/// [`StoreError::Unavailable`]: also how long a request waits while PostgreSQL is unreachable
/// (the pool keeps trying to connect meanwhile), so it fails in seconds instead of hanging.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// An idle connection above the minimum is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest `close` waits for connections to go; lent ones close when their handle drops.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// A statement that runs longer than this is cancelled by the server, so a stuck lock cannot
/// hold a writer forever.
const STATEMENT_TIMEOUT: &str = "60s";

pub struct PgStore {
    pool: PgPool,
    /// A writer takes its place here just before it commits, while it still holds its
    /// streams' row locks: a second writer of the same stream can only reach its commit after
    /// the first one's commit released them, so places follow commit order per stream, and
    /// on this node the `commit_then` closures (the domain's commit listener) run in that
    /// order. The commits themselves overlap, so concurrent writers share WAL flushes
    /// (PostgreSQL's group commit). Across nodes the hub orders by seq and fills gaps from
    /// the log.
    commit_order: Arc<CommitSequencer>,
    /// Write transactions that begin by holding a stream share transactions ([`group_commit`]).
    group: Arc<group_commit::GroupCommit>,
    /// What the lost-tail guard found since the store opened.
    guard: Arc<GuardState>,
}

#[derive(Default)]
struct GuardState {
    /// Set once the migrations ran (the guard's table exists from then on).
    ready: AtomicBool,
    skips: AtomicI64,
    epoch: AtomicI64,
}

impl GuardState {
    fn note(&self, checked: &durability::Checked) {
        if checked.skipped {
            self.skips.fetch_add(1, Ordering::SeqCst);
        }
        self.epoch.fetch_max(checked.epoch, Ordering::SeqCst);
    }
}

/// Opens the store a `postgres://` (or `postgresql://`) URL names and applies its migrations.
pub async fn open(url: &str) -> StoreResult<PgStore> {
    open_with(url, Durability::default()).await
}

/// [`open`] with the given durability.
pub async fn open_with(url: &str, durability: Durability) -> StoreResult<PgStore> {
    let synchronous_commit = match durability {
        Durability::Full => "on",
        Durability::Fast => "off",
    };
    let options = PgConnectOptions::from_str(url)
        .map_err(db_error)?
        .options([
            ("statement_timeout", STATEMENT_TIMEOUT),
            ("synchronous_commit", synchronous_commit),
        ])
        .log_statements(tracing::log::LevelFilter::Trace);
    let guard = Arc::new(GuardState::default());
    let hook = guard.clone();
    let pool = PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .min_connections(0)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .idle_timeout(IDLE_TIMEOUT)
        // sqlx pings every connection it takes back (so a connection that broke under a
        // statement is closed then); pinging it again when lending it only catches what
        // happened while it sat idle, which matters after a while, not within one: a busy
        // node would otherwise pay a round trip to PostgreSQL for every acquire.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .after_connect(move |conn, _| {
            let hook = hook.clone();
            Box::pin(async move {
                // Every connection after a crash of the server is a new one: check before
                // anything is written through it.
                if hook.ready.load(Ordering::SeqCst) {
                    hook.note(&durability::check(conn, durability).await?);
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(db_error)?;
    sqlx::migrate!("./migrations/postgres")
        .run(&pool)
        .await
        .map_err(|e| StoreError::Database(Box::new(e)))?;
    guard.ready.store(true, Ordering::SeqCst);
    // The connections opened before the guard's table surely existed were not checked.
    let mut conn = pool.acquire().await.map_err(db_error)?;
    guard.note(
        &durability::check(&mut conn, durability)
            .await
            .map_err(db_error)?,
    );
    drop(conn);
    Ok(PgStore {
        group: Arc::new(group_commit::GroupCommit::new(pool.clone())),
        pool,
        commit_order: Arc::default(),
        guard,
    })
}

#[async_trait]
impl Store for PgStore {
    async fn read(&self) -> StoreResult<Box<dyn Queries>> {
        let conn = self.pool.acquire().await.map_err(db_error)?;
        Ok(Box::new(PgOps::new(Conn::Plain(conn), false)))
    }

    async fn snapshot(&self) -> StoreResult<Box<dyn Queries>> {
        let tx = retrying(|| {
            self.pool
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        })
        .await?;
        Ok(Box::new(PgOps::new(Conn::Tx(tx), false)))
    }

    async fn write(&self) -> StoreResult<Box<dyn WriteTx>> {
        // The transaction begins with its first statement; a closed store refuses it now.
        if self.pool.is_closed() {
            return Err(db_error(sqlx::Error::PoolClosed));
        }
        let mut ops = PgOps::new(Conn::NotBegun(self.group.clone()), true);
        ops.commit_order = Some(self.commit_order.clone());
        Ok(Box::new(ops))
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn close(&self) {
        // Calling `close` marks the pool closed at once; awaiting it waits for every
        // connection, lent ones included, which a caller may still hold.
        drop(self.pool.close());
        let _ = tokio::time::timeout(CLOSE_WAIT, self.pool.close()).await;
    }

    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    /// The guard already ran when the store opened and runs on every new connection; this
    /// reports what it found.
    async fn begin_run(&self) -> StoreResult<RunStart> {
        Ok(RunStart {
            skipped: self.guard.skips.load(Ordering::SeqCst) > 0,
            epoch: self.guard.epoch.load(Ordering::SeqCst),
        })
    }

    async fn synchronous_setting(&self) -> StoreResult<String> {
        sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)
    }

    async fn join_nodes(
        &self,
        node: &NodeRow,
        max_age: Duration,
        admit: &store::Admit,
    ) -> StoreResult<NodeJoin> {
        nodes::join(&self.pool, node, max_age, admit).await
    }

    async fn heartbeat_node(&self, id: Uuid) -> StoreResult<bool> {
        nodes::heartbeat(&self.pool, id).await
    }

    async fn leave_nodes(&self, id: Uuid) -> StoreResult<()> {
        nodes::leave(&self.pool, id).await
    }

    async fn live_nodes(&self, max_age: Duration) -> StoreResult<Vec<NodeRow>> {
        nodes::live(&self.pool, max_age).await
    }
}

#[async_trait]
impl WriteTx for PgOps {
    async fn commit(self: Box<Self>) -> StoreResult<()> {
        match self.conn {
            Conn::Tx(tx) => tx.commit().await.map_err(db_error),
            Conn::Member(member) => member.commit().await,
            Conn::NotBegun(..) => Ok(()),
            Conn::Plain(_) => Err(StoreError::database("not a transaction")),
        }
    }

    async fn commit_then<'a>(
        self: Box<Self>,
        then: Box<dyn FnOnce() + Send + 'a>,
    ) -> StoreResult<()> {
        let ticket = self.commit_order.as_ref().map(|order| order.ticket());
        self.commit().await?;
        match ticket {
            Some(ticket) => ticket.in_turn(then).await,
            None => then(),
        }
        Ok(())
    }
}
