//! The lost-tail guard of the SQLite store (see `store::durability`).
//!
//! In the fast mode (`synchronous=NORMAL`) a commit is in the write-ahead log but not yet synced:
//! the process may die and the commit survives in the operating system's cache, but a crash of
//! the operating system may lose it. Every server run therefore records, durably, in the setting
//! [`LAST_RUN`]: its durability, the boot id of the running kernel, and whether it ended cleanly
//! (set by [`crate::SqliteStore`]'s `close`, in a `synchronous=FULL` commit, which syncs the
//! whole log). The next run may have lost a tail only if the last one was fast, did not end
//! cleanly, and ran under another boot (or a boot id that cannot be read): then it skips.

use rusqlite::Connection;
use serde_json::json;
use std::path::Path;
use store::{Durability, LOST_TAIL_SKIP, STREAM_EPOCH_SETTING, StoreResult};

use crate::db_error;

/// The setting holding the last run's record.
pub(crate) const LAST_RUN: &str = "durability.last_run";
/// Where Linux says which boot this is; it changes at every boot and only then.
pub const BOOT_ID_FILE: &str = "/proc/sys/kernel/random/boot_id";

/// The current boot's id, `None` when it cannot be read (not Linux).
pub(crate) fn boot_id(file: &Path) -> Option<String> {
    std::fs::read_to_string(file)
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|id| !id.is_empty())
}

/// The last run's record, as [`record`] wrote it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LastRun {
    pub fast: bool,
    pub boot_id: Option<String>,
    pub clean: bool,
}

pub(crate) fn parse(text: &str) -> Option<LastRun> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    Some(LastRun {
        fast: value.get("durability")?.as_str()? == Durability::Fast.as_str(),
        boot_id: value
            .get("boot_id")
            .and_then(|b| b.as_str())
            .map(str::to_owned),
        clean: value.get("clean")?.as_bool()?,
    })
}

pub(crate) fn record(durability: Durability, boot_id: Option<&str>, clean: bool) -> String {
    json!({ "durability": durability.as_str(), "boot_id": boot_id, "clean": clean }).to_string()
}

/// Whether the run `last` describes may have lost commits that were acknowledged: it was fast,
/// it did not close cleanly, and the operating system may have restarted since.
pub(crate) fn may_have_lost_tail(last: Option<&LastRun>, boot_id: Option<&str>) -> bool {
    let Some(last) = last else {
        return false;
    };
    let same_boot = matches!((last.boot_id.as_deref(), boot_id), (Some(a), Some(b)) if a == b);
    last.fast && !last.clean && !same_boot
}

/// Moves every stream's counter on by [`LOST_TAIL_SKIP`], streams that have no counter yet
/// (every user, every project, the system stream) included, and counts the skip. Runs inside
/// the caller's write transaction; returns the new epoch.
pub(crate) fn skip_ahead_after_lost_tail(db: &Connection) -> StoreResult<i64> {
    db.execute_batch(
        "INSERT INTO streams (stream, last_seq) SELECT 'user:' || id, 0 FROM users WHERE true ON CONFLICT(stream) DO NOTHING;
         INSERT INTO streams (stream, last_seq) SELECT 'project:' || id, 0 FROM projects WHERE true ON CONFLICT(stream) DO NOTHING;
         INSERT INTO streams (stream, last_seq) VALUES ('system', 0) ON CONFLICT(stream) DO NOTHING;",
    )
    .map_err(db_error)?;
    db.execute(
        "UPDATE streams SET last_seq = last_seq + ?",
        [LOST_TAIL_SKIP],
    )
    .map_err(db_error)?;
    let epoch = epoch(db)? + 1;
    db.execute(
        "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [STREAM_EPOCH_SETTING, &epoch.to_string()],
    )
    .map_err(db_error)?;
    Ok(epoch)
}

/// The skips so far.
pub(crate) fn epoch(db: &Connection) -> StoreResult<i64> {
    let text: Option<String> = db
        .query_row(
            "SELECT value FROM settings WHERE key = ?",
            [STREAM_EPOCH_SETTING],
            |row| row.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(db_error(e)),
        })?;
    Ok(text.and_then(|t| t.parse().ok()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(fast: bool, boot: Option<&str>, clean: bool) -> LastRun {
        LastRun {
            fast,
            boot_id: boot.map(str::to_owned),
            clean,
        }
    }

    #[test]
    fn only_an_unclean_fast_run_under_another_boot_may_have_lost_its_tail() {
        assert!(!may_have_lost_tail(None, Some("a")));
        assert!(may_have_lost_tail(
            Some(&run(true, Some("a"), false)),
            Some("b")
        ));
        assert!(may_have_lost_tail(Some(&run(true, None, false)), Some("b")));
        assert!(may_have_lost_tail(Some(&run(true, Some("a"), false)), None));
        assert!(!may_have_lost_tail(
            Some(&run(true, Some("a"), false)),
            Some("a")
        ));
        assert!(!may_have_lost_tail(
            Some(&run(true, Some("a"), true)),
            Some("b")
        ));
        assert!(!may_have_lost_tail(
            Some(&run(false, Some("a"), false)),
            Some("b")
        ));
    }

    #[test]
    fn records_round_trip() {
        let text = record(Durability::Fast, Some("x"), false);
        assert_eq!(parse(&text), Some(run(true, Some("x"), false)));
        let text = record(Durability::Full, None, true);
        assert_eq!(parse(&text), Some(run(false, None, true)));
        assert_eq!(parse("nonsense"), None);
    }
}
