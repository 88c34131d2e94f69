//! Group commit: the write transactions of one node that begin by holding a stream share
//! PostgreSQL transactions, several to one COMMIT.
//!
//! Why: with one change per transaction PostgreSQL spends most of a change's cost on the
//! transaction itself (its commit record, the wait for the WAL flush, waking the waiters), and
//! writers of one stream could not even share a flush, since each held the stream's row lock
//! through its own (BENCHMARKS.md, "What PostgreSQL alone can do on this machine": 3,922 one-change
//! transactions a second, 5,037–8,254 changes a second at 4–16 changes a transaction).
//!
//! How:
//! - A writer whose first statement holds a stream ([`store::Queries::lock_stream`]) joins the
//!   open batch of the stream's lane ([`LANES`], by the stream's hash), or opens one. The
//!   members of a batch run one after another on the batch's connection, inside its one
//!   transaction: each after the first under a savepoint, so a member that fails or is dropped
//!   is rolled back to it and the others keep their work.
//! - A batch commits when its last member is done; every member is acknowledged with the
//!   outcome of that one COMMIT. A batch takes no new member once it has [`MAX_MEMBERS`] or has
//!   begun to commit; the next writer opens the next batch, which runs while this one commits.
//! - A member sees what earlier members of its batch wrote, as it would after their commits, and
//!   holds what they held: writers of one stream in one batch no longer wait for each other's
//!   flush.
//! - **No waiting inside a batch.** A batch holds the streams of all its members, so a member
//!   that waited there for a stream another transaction holds would make that transaction's
//!   holders wait for all of them, and two batches (on two nodes, or with a writer of several
//!   streams) could wait for each other where no lone transaction would. So only the first
//!   member of a transaction may wait for its stream; a later one tries for at most 1 ms
//!   ([`SAVEPOINT_WITH_LATER_LOCK_WAIT`]) and, if the stream is held elsewhere, leaves the
//!   batch (its savepoint rolled back) and waits in a transaction of its own, holding nothing
//!   else. Deadlocks are then only those a lone writer of several streams could meet,
//!   PostgreSQL's to detect.
//! - If the batch's transaction breaks (the connection lost, a savepoint that cannot be rolled
//!   back to), every member of it fails, as a lone transaction would.
//!
//! Writers whose first statement is anything else run their own transaction, as before.

use crate::errors::{db_error, retrying};
use proto::StreamKey;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use store::{StoreError, StoreResult};
use tokio::sync::{OwnedMutexGuard, watch};

/// Batches that may be open at once (one per lane, plus those committing). With the pool's 16
/// connections this leaves at least half for reads and for writers of their own.
const LANES: usize = 4;
/// A later member's savepoint, and how long it then waits for its stream before it leaves the
/// batch: 1 ms. A stream held by a transaction of the same batch is no wait at all.
const SAVEPOINT_WITH_LATER_LOCK_WAIT: &str = "SAVEPOINT member; SET LOCAL lock_timeout = '1ms'";

/// Holds a stream until the transaction ends: an upsert that changes nothing still locks the
/// row.
macro_rules! hold_stream {
    () => {
        "INSERT INTO streams (stream, last_seq) VALUES ($1, 0) ON CONFLICT (stream) DO UPDATE SET last_seq = streams.last_seq"
    };
}
pub(crate) const HOLD_STREAM: &str = hold_stream!();

/// [`HOLD_STREAM`] for a later member, under the wait its savepoint set, which it lifts once the
/// stream is held so that nothing else of the transaction is cut short.
const HOLD_STREAM_THEN_WAIT_AGAIN: &str = concat!(
    "WITH held AS (",
    hold_stream!(),
    " RETURNING 1) SELECT set_config('lock_timeout', '0', true) FROM held"
);

/// PostgreSQL's "lock not available": a wait cut short by `lock_timeout`.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// Why a member could not hold its stream.
pub(crate) enum Hold {
    /// Another transaction holds it: the member must wait outside the batch.
    HeldElsewhere,
    Failed(StoreError),
}

/// The most members in one batch: bounds how long the first member waits for its answer and
/// how many subtransactions one transaction carries (PostgreSQL caches 64 per backend).
const MAX_MEMBERS: usize = 32;

pub(crate) struct GroupCommit {
    pool: PgPool,
    lanes: Vec<Mutex<Option<Arc<Batch>>>>,
}

/// What a batch's COMMIT came to, for every member (a [`StoreError`] is not `Clone`).
#[derive(Clone, Debug)]
enum Outcome {
    Committed,
    Failed(Failure),
}

#[derive(Clone, Debug)]
enum Failure {
    Unavailable,
    Retryable,
    Database(String),
}

impl Failure {
    fn of(error: &StoreError) -> Failure {
        match error {
            StoreError::Unavailable => Failure::Unavailable,
            StoreError::Retryable => Failure::Retryable,
            other => Failure::Database(other.to_string()),
        }
    }

    fn into_error(self) -> StoreError {
        match self {
            Failure::Unavailable => StoreError::Unavailable,
            Failure::Retryable => StoreError::Retryable,
            Failure::Database(message) => StoreError::database(message),
        }
    }
}

/// A lane keeps naming its last batch after it closed; the next writer finds it closed and opens
/// another.
struct Batch {
    conn: Arc<tokio::sync::Mutex<Shared>>,
    members: Mutex<Members>,
    outcome: watch::Sender<Option<Outcome>>,
}

#[derive(Default)]
struct Members {
    joined: usize,
    done: usize,
    /// Set by the last member done: nobody joins after.
    closed: bool,
}

/// The batch's transaction, lent to one member at a time.
#[derive(Default)]
struct Shared {
    tx: Option<Transaction<'static, Postgres>>,
    /// Members whose work is in `tx`, to be committed.
    kept: usize,
    /// What the last member dropped without finishing left to undo.
    undo: Undo,
    /// Set when the transaction broke: every member fails with it.
    broken: Option<Failure>,
}

#[derive(Default)]
enum Undo {
    #[default]
    Nothing,
    ToSavepoint,
    Everything,
}

impl GroupCommit {
    pub(crate) fn new(pool: PgPool) -> GroupCommit {
        GroupCommit {
            pool,
            lanes: (0..LANES).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// A transaction of the writer's own, for one whose first statement holds no stream.
    pub(crate) async fn begin_alone(&self) -> StoreResult<Transaction<'static, Postgres>> {
        begin(&self.pool).await
    }

    /// Joins (or opens) the batch of `stream`'s lane and waits for its turn on the batch's
    /// connection; the caller then holds the stream there.
    pub(crate) async fn join(&self, stream: &StreamKey) -> StoreResult<Member> {
        let lane = lane_of(stream);
        let batch = {
            let mut open = self.lanes[lane]
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let joined = open.as_ref().filter(|batch| batch.admit());
            match joined {
                Some(batch) => batch.clone(),
                None => {
                    let batch = Batch::new();
                    batch.admit();
                    *open = Some(batch.clone());
                    batch
                }
            }
        };
        // From here a dropped member counts as done, so the batch never waits for it.
        let mut member = Member {
            batch,
            turn: None,
            savepoint: false,
            finished: false,
        };
        let mut turn = member.batch.conn.clone().lock_owned().await;
        member.savepoint = prepare(&self.pool, &mut turn).await?;
        member.turn = Some(turn);
        Ok(member)
    }
}

async fn begin(pool: &PgPool) -> StoreResult<Transaction<'static, Postgres>> {
    retrying(|| pool.begin()).await
}

fn lane_of(stream: &StreamKey) -> usize {
    let mut hasher = DefaultHasher::new();
    stream.hash(&mut hasher);
    (hasher.finish() % LANES as u64) as usize
}

impl Batch {
    fn new() -> Arc<Batch> {
        Arc::new(Batch {
            conn: Arc::default(),
            members: Mutex::default(),
            outcome: watch::Sender::new(None),
        })
    }

    /// Counts one more member, unless the batch is full or closed.
    fn admit(&self) -> bool {
        let mut members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        if members.closed || members.joined >= MAX_MEMBERS {
            return false;
        }
        members.joined += 1;
        true
    }

    /// One member is done; true for the last, which closes the batch and settles it.
    fn done(&self) -> bool {
        let mut members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        members.done += 1;
        if members.done == members.joined {
            members.closed = true;
            return true;
        }
        false
    }

    /// Undoes what the last member left, then commits what the members kept (or rolls back an
    /// empty transaction), and tells every member.
    async fn settle(self: Arc<Batch>) {
        let mut shared = self.conn.lock().await;
        let outcome = match undo(&mut shared).await {
            Err(failure) => Outcome::Failed(failure),
            Ok(()) => match (shared.tx.take(), shared.kept) {
                (Some(tx), kept) if kept > 0 => match tx.commit().await {
                    Ok(()) => Outcome::Committed,
                    Err(error) => Outcome::Failed(Failure::of(&db_error(error))),
                },
                (Some(tx), _) => {
                    // Nothing kept: dropping the transaction rolls it back when the
                    // connection is next used or closed.
                    drop(tx);
                    Outcome::Committed
                }
                (None, _) => Outcome::Committed,
            },
        };
        self.outcome.send_replace(Some(outcome));
    }
}

/// Readies the batch's transaction for the next member: undoes what the previous one left,
/// begins if needed, and sets a savepoint when others' work is already in it. Returns whether
/// it set one.
async fn prepare(pool: &PgPool, shared: &mut Shared) -> StoreResult<bool> {
    undo(shared).await.map_err(Failure::into_error)?;
    let tx = match &mut shared.tx {
        Some(tx) => tx,
        None => shared.tx.insert(begin(pool).await?),
    };
    if shared.kept == 0 {
        return Ok(false);
    }
    if let Err(error) = sqlx::raw_sql(SAVEPOINT_WITH_LATER_LOCK_WAIT)
        .execute(&mut **tx)
        .await
    {
        return Err(break_batch(shared, db_error(error)));
    }
    Ok(true)
}

/// Carries out `shared.undo`; a failure breaks the batch.
async fn undo(shared: &mut Shared) -> Result<(), Failure> {
    if let Some(failure) = &shared.broken {
        return Err(failure.clone());
    }
    let undo = std::mem::take(&mut shared.undo);
    match (undo, shared.tx.as_mut()) {
        (Undo::ToSavepoint, Some(tx)) => {
            if let Err(error) = sqlx::query("ROLLBACK TO SAVEPOINT member")
                .execute(&mut **tx)
                .await
            {
                return Err(Failure::of(&break_batch(shared, db_error(error))));
            }
        }
        (Undo::Everything, Some(_)) => {
            if let Some(tx) = shared.tx.take()
                && let Err(error) = tx.rollback().await
            {
                // Nothing of anyone's is lost: no member's work was kept.
                tracing::debug!(error = %error, "rollback of a batch's transaction failed");
            }
        }
        _ => {}
    }
    Ok(())
}

/// Marks the batch broken by `error` and drops its transaction.
fn break_batch(shared: &mut Shared, error: StoreError) -> StoreError {
    shared.broken = Some(Failure::of(&error));
    shared.tx = None;
    error
}

/// One writer's place in a batch: holds the batch's connection from its turn until it commits or
/// is dropped.
pub(crate) struct Member {
    batch: Arc<Batch>,
    turn: Option<OwnedMutexGuard<Shared>>,
    /// Whether the member's work began at a savepoint (others' work came before it).
    savepoint: bool,
    finished: bool,
}

impl Member {
    pub(crate) fn connection(&mut self) -> StoreResult<&mut PgConnection> {
        self.turn
            .as_mut()
            .and_then(|shared| shared.tx.as_mut())
            .map(|tx| &mut **tx)
            .ok_or(StoreError::Unavailable)
    }

    /// Holds `stream` for the member's transaction: the member's first statement.
    pub(crate) async fn hold(&mut self, stream: &StreamKey) -> Result<(), Hold> {
        let statement = if self.savepoint {
            HOLD_STREAM_THEN_WAIT_AGAIN
        } else {
            HOLD_STREAM
        };
        let conn = self.connection().map_err(Hold::Failed)?;
        let held = sqlx::query(statement)
            .bind(stream.to_text())
            .execute(conn)
            .await;
        match held {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some(LOCK_NOT_AVAILABLE) => {
                Err(Hold::HeldElsewhere)
            }
            Err(error) => Err(Hold::Failed(db_error(error))),
        }
    }

    /// Keeps the member's work, lets the next member run, and waits for the batch's COMMIT.
    pub(crate) async fn commit(mut self) -> StoreResult<()> {
        self.finished = true;
        if let Some(mut shared) = self.turn.take() {
            shared.kept += 1;
        }
        let mut outcome = self.batch.outcome.subscribe();
        if self.batch.done() {
            self.batch.clone().settle().await;
        }
        let outcome = outcome
            .wait_for(Option::is_some)
            .await
            .map(|outcome| outcome.clone())
            .map_err(|_| StoreError::Unavailable)?;
        match outcome {
            Some(Outcome::Committed) => Ok(()),
            Some(Outcome::Failed(failure)) => Err(failure.into_error()),
            None => Err(StoreError::Unavailable),
        }
    }
}

impl Drop for Member {
    /// Dropped without committing (rolled back, failed, cancelled): its work is undone before
    /// the next member's, and the batch no longer waits for it.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some(mut shared) = self.turn.take() {
            shared.undo = if self.savepoint {
                Undo::ToSavepoint
            } else {
                Undo::Everything
            };
        }
        if self.batch.done()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(self.batch.clone().settle());
        }
    }
}

#[cfg(test)]
mod tests {
    //! The batch's mechanics against a real PostgreSQL (the server of `tests/postgres.rs`), each
    //! test on a database of its own that it drops after.

    use super::*;
    use sqlx::postgres::PgPoolOptions;
    use std::time::Duration;
    use uuid::Uuid;

    fn server_url() -> String {
        ["LIVEPLAN_TEST_POSTGRES_URL", "LIVEPLAN_TEST_DATABASE_URL"]
            .into_iter()
            .filter_map(|name| std::env::var(name).ok())
            .find(|url| url.starts_with("postgres"))
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    struct Fixture {
        group: Arc<GroupCommit>,
        pool: PgPool,
        database: String,
        table: String,
        stream: StreamKey,
    }

    async fn admin(sql: String) {
        use sqlx::Connection;
        let mut conn = PgConnection::connect(&server_url()).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }

    /// A database of its own with the store's schema, and a table of values.
    async fn fixture() -> Fixture {
        let database = format!("liveplan_test_{}", Uuid::now_v7().simple());
        admin(format!("CREATE DATABASE {database}")).await;
        let server = server_url();
        let base = server
            .rsplit_once('/')
            .map_or(server.as_str(), |(base, _)| base);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&format!("{base}/{database}"))
            .await
            .unwrap();
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .unwrap();
        let table = "kept".to_owned();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE TABLE {table} (v int)")))
            .execute(&pool)
            .await
            .unwrap();
        Fixture {
            group: Arc::new(GroupCommit::new(pool.clone())),
            pool,
            database,
            table,
            stream: StreamKey::Project(Uuid::now_v7()),
        }
    }

    impl Fixture {
        async fn insert(&self, member: &mut Member, value: i32) -> Result<(), sqlx::Error> {
            let sql = format!("INSERT INTO {} VALUES ({value})", self.table);
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(member.connection().unwrap())
                .await
                .map(drop)
        }

        /// The first member of a batch, holding the stream, with its value 1 inserted.
        async fn first_member(&self) -> Member {
            let mut first = self.group.join(&self.stream).await.unwrap();
            assert!(first.hold(&self.stream).await.is_ok());
            self.insert(&mut first, 1).await.unwrap();
            first
        }

        /// The values committed, in order.
        async fn committed(&self) -> Vec<i32> {
            let sql = format!("SELECT v FROM {} ORDER BY v", self.table);
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_all(&self.pool)
                .await
                .unwrap()
        }

        /// Waits until the open batch of the stream's lane counts `n` members.
        async fn joined(&self, n: usize) {
            for _ in 0..1_000 {
                let open = self.group.lanes[lane_of(&self.stream)]
                    .lock()
                    .unwrap()
                    .clone();
                if open.is_some_and(|batch| batch.members.lock().unwrap().joined == n) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("{n} members never joined");
        }

        async fn finish(self) {
            self.pool.close().await;
            admin(format!("DROP DATABASE {} WITH (FORCE)", self.database)).await;
        }
    }

    async fn txid(member: &mut Member) -> i64 {
        sqlx::query_scalar("SELECT txid_current()")
            .fetch_one(member.connection().unwrap())
            .await
            .unwrap()
    }

    /// A member that joins, inserts `value`, notes its transaction, then commits or is dropped.
    fn later_member(
        fixture: &Arc<Fixture>,
        value: i32,
        keep: bool,
    ) -> tokio::task::JoinHandle<StoreResult<i64>> {
        let fixture = fixture.clone();
        tokio::spawn(async move {
            let mut member = fixture.group.join(&fixture.stream).await?;
            fixture.insert(&mut member, value).await.unwrap();
            let xid = txid(&mut member).await;
            if keep {
                member.commit().await?;
            }
            Ok(xid)
        })
    }

    #[tokio::test]
    async fn members_share_one_commit_and_a_dropped_one_is_undone_alone() {
        let fixture = Arc::new(fixture().await);
        let mut first = fixture.first_member().await;
        let xid = txid(&mut first).await;
        // Three more join while the first holds its turn; the second of them is dropped.
        let later: Vec<_> = [(2, true), (3, false), (4, true)]
            .into_iter()
            .map(|(value, keep)| later_member(&fixture, value, keep))
            .collect();
        fixture.joined(4).await;
        let first = tokio::spawn(first.commit());
        for member in later {
            assert_eq!(member.await.unwrap().unwrap(), xid, "one transaction");
        }
        first.await.unwrap().unwrap();
        assert_eq!(fixture.committed().await, [1, 2, 4]);
        Arc::into_inner(fixture).unwrap().finish().await;
    }

    #[tokio::test]
    async fn a_dropped_first_member_takes_only_its_own_work_with_it() {
        let fixture = Arc::new(fixture().await);
        let mut first = fixture.first_member().await;
        let xid = txid(&mut first).await;
        let later = later_member(&fixture, 2, true);
        fixture.joined(2).await;
        drop(first);
        let later_xid = later.await.unwrap().unwrap();
        assert_ne!(
            later_xid, xid,
            "the first's transaction was rolled back whole"
        );
        assert_eq!(fixture.committed().await, [2]);
        Arc::into_inner(fixture).unwrap().finish().await;
    }

    #[tokio::test]
    async fn a_broken_transaction_fails_every_member_and_the_next_batch_works() {
        let fixture = Arc::new(fixture().await);
        let first = fixture.first_member().await;
        let fixture_for_killer = fixture.clone();
        let killer = tokio::spawn(async move {
            let mut member = fixture_for_killer
                .group
                .join(&fixture_for_killer.stream)
                .await
                .unwrap();
            // The batch's own backend goes away under the member.
            let killed = sqlx::query("SELECT pg_terminate_backend(pg_backend_pid())")
                .execute(member.connection().unwrap())
                .await;
            assert!(killed.is_err());
        });
        fixture.joined(2).await;
        let committed = first.commit().await;
        killer.await.unwrap();
        assert!(
            matches!(committed, Err(StoreError::Unavailable)),
            "{committed:?}"
        );
        let mut next = fixture.group.join(&fixture.stream).await.unwrap();
        fixture.insert(&mut next, 5).await.unwrap();
        next.commit().await.unwrap();
        assert_eq!(fixture.committed().await, [5]);
        Arc::into_inner(fixture).unwrap().finish().await;
    }

    #[tokio::test]
    async fn a_member_cancelled_while_it_waits_for_its_turn_does_not_hold_the_batch() {
        let fixture = Arc::new(fixture().await);
        let first = fixture.first_member().await;
        let waiting = later_member(&fixture, 2, true);
        fixture.joined(2).await;
        waiting.abort();
        assert!(waiting.await.unwrap_err().is_cancelled());
        tokio::time::timeout(Duration::from_secs(10), first.commit())
            .await
            .expect("the batch settles without the cancelled member")
            .unwrap();
        assert_eq!(fixture.committed().await, [1]);
        Arc::into_inner(fixture).unwrap().finish().await;
    }

    #[tokio::test]
    async fn a_later_member_whose_stream_is_held_elsewhere_leaves_the_batch_instead_of_waiting() {
        let fixture = Arc::new(fixture().await);
        // Another transaction (another node, say) holds a stream of the same lane.
        let elsewhere = std::iter::repeat_with(|| StreamKey::Project(Uuid::now_v7()))
            .find(|stream| lane_of(stream) == lane_of(&fixture.stream))
            .unwrap();
        let mut other = fixture.pool.begin().await.unwrap();
        sqlx::query(HOLD_STREAM)
            .bind(elsewhere.to_text())
            .execute(&mut *other)
            .await
            .unwrap();
        let first = fixture.first_member().await;
        let fixture_for_later = fixture.clone();
        let later = tokio::spawn(async move {
            let mut member = fixture_for_later.group.join(&elsewhere).await.unwrap();
            matches!(member.hold(&elsewhere).await, Err(Hold::HeldElsewhere))
        });
        fixture.joined(2).await;
        tokio::time::timeout(Duration::from_secs(10), first.commit())
            .await
            .expect("the batch does not wait for the other transaction")
            .unwrap();
        assert!(later.await.unwrap(), "told the stream is held elsewhere");
        assert_eq!(fixture.committed().await, [1]);
        // The first member of a batch does wait, as a lone transaction would.
        let mut waiting = fixture.group.join(&elsewhere).await.unwrap();
        let held = tokio::time::timeout(Duration::from_millis(300), waiting.hold(&elsewhere));
        assert!(held.await.is_err(), "still waiting");
        other.rollback().await.unwrap();
        drop(waiting);
        Arc::into_inner(fixture).unwrap().finish().await;
    }

    #[tokio::test]
    async fn once_it_holds_its_stream_a_later_member_waits_like_any_transaction() {
        let fixture = Arc::new(fixture().await);
        let first = fixture.first_member().await;
        let fixture_for_later = fixture.clone();
        let later = tokio::spawn(async move {
            let fixture = fixture_for_later;
            let mut member = fixture.group.join(&fixture.stream).await.unwrap();
            // Its batch holds the stream already: no wait, no timeout.
            assert!(member.hold(&fixture.stream).await.is_ok());
            // A row another transaction has locked (for 200 ms, below).
            let sql = format!("UPDATE {} SET v = 3 WHERE v = 2", fixture.table);
            let waited = sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(member.connection().unwrap())
                .await;
            member.commit().await.unwrap();
            waited.map(|done| done.rows_affected())
        });
        let sql = format!("INSERT INTO {} VALUES (2)", fixture.table);
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&fixture.pool)
            .await
            .unwrap();
        let mut other = fixture.pool.begin().await.unwrap();
        let sql = format!("UPDATE {} SET v = 20 WHERE v = 2", fixture.table);
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut *other)
            .await
            .unwrap();
        fixture.joined(2).await;
        let first = tokio::spawn(first.commit());
        tokio::time::sleep(Duration::from_millis(200)).await;
        other.commit().await.unwrap();
        // It waited for the other's commit, then found the row changed.
        assert_eq!(later.await.unwrap().unwrap(), 0);
        first.await.unwrap().unwrap();
        assert_eq!(fixture.committed().await, [1, 20]);
        Arc::into_inner(fixture).unwrap().finish().await;
    }
}
