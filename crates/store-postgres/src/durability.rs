//! The lost-tail guard of the PostgreSQL store (see `store::durability`).
//!
//! With `synchronous_commit=off` a commit is acknowledged before its WAL is flushed, and a crash
//! of the database server (its own or its machine's), or the promotion of an asynchronous
//! standby, may lose it. The store cannot watch the server, but it can leave something only a
//! crash removes: a row in the unlogged table `crash_sentinel`, which crash recovery empties and
//! a clean shutdown keeps. Every new connection (all of them are new after a crash) checks for
//! it, serialized by an advisory lock across nodes, before the pool lends it:
//! - the row is there: nothing was lost since it was written;
//! - it is gone: if a node in fast mode ran since it was written (the logged setting
//!   [`FAST_USED`]), every stream skips ahead; either way the row is written again.
//!
//! The guard's own transaction commits with `synchronous_commit=on`, so [`FAST_USED`] is on
//! disk before a fast node acknowledges anything.
//!
//! The same check catches a database restored from a dump (`pg_dump`, then `pg_restore` into an
//! empty database): its log ends where the dump was taken, so clients that saw later commits
//! would be shown other events under seqs they already saw. The database records which database
//! it is ([`IDENTITY`]: the cluster's system identifier and the database's oid); a restore
//! brings the old record into a database that is another, so every stream skips ahead there, as
//! a SQLite copy does on its first start.

use sqlx::{Connection, PgConnection};
use store::{Durability, LOST_TAIL_SKIP, STREAM_EPOCH_SETTING};

/// "true" while a node in fast mode may have committed since the sentinel row was written.
const FAST_USED: &str = "durability.fast_used";
/// The advisory lock that serializes the guard across nodes (any fixed number; "lpdu").
const GUARD_LOCK: i64 = 0x6c70_6475;
/// Which database wrote the rows: `{system identifier}:{database oid}`. A physical standby has
/// both of its primary's, a database made by `pg_restore` or `CREATE DATABASE … TEMPLATE` has
/// another oid, and one in another cluster another identifier.
const IDENTITY: &str = "database.identity";

/// What one check found: whether it skipped, and the skips so far.
pub(crate) struct Checked {
    pub skipped: bool,
    pub epoch: i64,
}

pub(crate) async fn check(
    conn: &mut PgConnection,
    durability: Durability,
) -> Result<Checked, sqlx::Error> {
    // Outside the transaction, so that a server which refuses `pg_control_system()` to this
    // role (some managed services might) goes without the restore check rather than failing.
    let identity: Option<String> = sqlx::query_scalar(concat!(
        "SELECT (SELECT system_identifier FROM pg_control_system())::text || ':' || ",
        "(SELECT oid FROM pg_database WHERE datname = current_database())::text"
    ))
    .fetch_one(&mut *conn)
    .await
    .inspect_err(|e| tracing::debug!(error = %e, "no database identity: restores go unnoticed"))
    .ok();
    let mut tx = conn.begin().await?;
    sqlx::query("SET LOCAL synchronous_commit = on")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(GUARD_LOCK)
        .execute(&mut *tx)
        .await?;
    let present: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM crash_sentinel)")
        .fetch_one(&mut *tx)
        .await?;
    let fast_used = setting(&mut tx, FAST_USED).await?.as_deref() == Some("true");
    let fast = durability == Durability::Fast;
    let mut skipped = false;
    if !present {
        if fast_used {
            skip_ahead(&mut tx, Skip::LostTail).await?;
            skipped = true;
        }
        sqlx::query("INSERT INTO crash_sentinel (id) VALUES (1) ON CONFLICT (id) DO NOTHING")
            .execute(&mut *tx)
            .await?;
        put_setting(&mut tx, FAST_USED, if fast { "true" } else { "false" }).await?;
    } else if fast && !fast_used {
        put_setting(&mut tx, FAST_USED, "true").await?;
    }
    if let Some(identity) = identity {
        let recorded = setting(&mut tx, IDENTITY).await?;
        if recorded.as_deref() != Some(identity.as_str()) {
            // None: a database from before this record, or a new one; nothing to skip.
            if recorded.is_some() && !skipped {
                skip_ahead(&mut tx, Skip::Restored).await?;
                skipped = true;
            }
            put_setting(&mut tx, IDENTITY, &identity).await?;
        }
    }
    let epoch = setting(&mut tx, STREAM_EPOCH_SETTING)
        .await?
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    tx.commit().await?;
    Ok(Checked { skipped, epoch })
}

/// Why every stream skips ahead.
#[derive(Clone, Copy)]
enum Skip {
    /// The database crashed while a node ran with `--durability fast`.
    LostTail,
    /// The rows were written by another database: this one was restored from a dump.
    Restored,
}

/// Moves every stream's counter on by [`LOST_TAIL_SKIP`], streams without a counter yet (every
/// user, every project, the system stream) included, gives every app channel a new
/// `stream_id` (`store::app_channels`), and counts the skip.
async fn skip_ahead(conn: &mut PgConnection, why: Skip) -> Result<(), sqlx::Error> {
    for statement in [
        "INSERT INTO streams (stream, last_seq) SELECT 'user:' || id::text, 0 FROM users ON CONFLICT (stream) DO NOTHING",
        "INSERT INTO streams (stream, last_seq) SELECT 'project:' || id::text, 0 FROM projects ON CONFLICT (stream) DO NOTHING",
        "INSERT INTO streams (stream, last_seq) VALUES ('system', 0) ON CONFLICT (stream) DO NOTHING",
    ] {
        sqlx::query(statement).execute(&mut *conn).await?;
    }
    sqlx::query("UPDATE streams SET last_seq = last_seq + $1")
        .bind(LOST_TAIL_SKIP)
        .execute(&mut *conn)
        .await?;
    // A lost tail may have taken serials of app channels that clients saw: new streams.
    sqlx::query("UPDATE app_channels SET stream_id = md5(random()::text || clock_timestamp()::text || channel)")
        .execute(&mut *conn)
        .await?;
    let epoch = setting(conn, STREAM_EPOCH_SETTING)
        .await?
        .and_then(|e| e.parse::<i64>().ok())
        .unwrap_or(0)
        + 1;
    put_setting(conn, STREAM_EPOCH_SETTING, &epoch.to_string()).await?;
    match why {
        Skip::LostTail => tracing::warn!(
            epoch,
            skip = LOST_TAIL_SKIP,
            "the database crashed while a node ran with --durability fast: every stream's seqs skip ahead, clients resync"
        ),
        Skip::Restored => tracing::warn!(
            epoch,
            skip = LOST_TAIL_SKIP,
            "the database was restored from a dump of another: every stream's seqs skip ahead, clients resync"
        ),
    }
    Ok(())
}

async fn setting(conn: &mut PgConnection, key: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
        .bind(key)
        .fetch_optional(conn)
        .await
}

async fn put_setting(conn: &mut PgConnection, key: &str, value: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind(value)
    .execute(conn)
    .await?;
    Ok(())
}
