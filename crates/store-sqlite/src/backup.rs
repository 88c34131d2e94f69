//! `liveplan backup` (CONTRACT §12): a consistent copy of the SQLite database while servers
//! write to it.
//!
//! `VACUUM INTO` copies the database as one read transaction sees it: in WAL mode that read
//! waits for no writer and holds none up, and the copy is every commit up to one moment and
//! nothing after it. The copy is written beside the target under a temporary name, synced,
//! then renamed, so `--out` is either absent or complete.
//!
//! The copy is then made ready to serve from: the node registry is emptied (the nodes it lists
//! run on the original, not on the copy), and its last run is recorded as one that may have
//! lost its tail. The first server started on the copy therefore moves every stream's seqs on
//! (`store::durability`): clients that saw commits made after the backup are told
//! `resync_required` instead of being handed different events under seqs they saw.

use crate::db_error;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;
use store::{Durability, StoreError, StoreResult};

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    pub bytes: u64,
}

fn io(what: &str, path: &Path, error: std::io::Error) -> StoreError {
    StoreError::database(format!("{what} {}: {error}", path.display()))
}

/// Copies the database at `source` to `out`, which must not exist yet.
pub fn backup_to(source: &Path, out: &Path) -> StoreResult<BackupSummary> {
    if !source.is_file() {
        return Err(StoreError::database(format!(
            "no SQLite database at {}",
            source.display()
        )));
    }
    if out.exists() {
        return Err(StoreError::database(format!(
            "{} exists already; the backup writes a new file",
            out.display()
        )));
    }
    let partial = partial_name(out)?;
    let made = copy(source, &partial).and_then(|()| prepare_copy(&partial));
    if let Err(err) = made {
        let _ = std::fs::remove_file(&partial);
        return Err(err);
    }
    let bytes = std::fs::metadata(&partial)
        .map_err(|e| io("cannot read", &partial, e))?
        .len();
    std::fs::File::open(&partial)
        .and_then(|file| file.sync_all())
        .map_err(|e| io("cannot sync", &partial, e))?;
    std::fs::rename(&partial, out).map_err(|e| io("cannot move the backup to", out, e))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename is durable once the directory is.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(BackupSummary { bytes })
}

/// A name beside `out` that no one else uses.
fn partial_name(out: &Path) -> StoreResult<PathBuf> {
    let name = out
        .file_name()
        .ok_or_else(|| StoreError::database(format!("{} names no file", out.display())))?;
    let mut partial = name.to_os_string();
    partial.push(format!(".{}.partial", std::process::id()));
    Ok(out.with_file_name(partial))
}

fn copy(source: &Path, partial: &Path) -> StoreResult<()> {
    // Not created if missing, and never written: VACUUM INTO only reads its source.
    let db = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db_error)?;
    // Only while another process recovers the log; a WAL read does not wait for writers.
    db.busy_timeout(Duration::from_secs(10)).map_err(db_error)?;
    let target = partial
        .to_str()
        .ok_or_else(|| StoreError::database("the backup path is not UTF-8"))?;
    db.execute("VACUUM INTO ?1", [target]).map_err(db_error)?;
    Ok(())
}

fn prepare_copy(partial: &Path) -> StoreResult<()> {
    let db = Connection::open_with_flags(
        partial,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db_error)?;
    let last_run = crate::durability::record(Durability::Fast, None, false);
    db.execute_batch("PRAGMA synchronous=FULL; BEGIN IMMEDIATE;")
        .map_err(db_error)?;
    db.execute("DELETE FROM nodes", []).map_err(db_error)?;
    db.execute(
        "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [crate::durability::LAST_RUN, last_run.as_str()],
    )
    .map_err(db_error)?;
    db.execute_batch("COMMIT;").map_err(db_error)?;
    Ok(())
}
