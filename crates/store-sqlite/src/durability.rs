//! The lost-tail guard of the SQLite store (see `store::durability`).
//!
//! In the fast mode (`synchronous=NORMAL`) a commit is in the write-ahead log but not yet synced:
//! the process may die and the commit survives in the operating system's cache, but a crash of
//! the operating system may lose it. Every server run therefore records, durably, in the setting
//! [`LAST_RUN`]: its durability, the boot id of the running kernel, and whether it ended cleanly
//! (set by [`crate::SqliteStore`]'s `close`, in a `synchronous=FULL` commit, which syncs the
//! whole log). The next run may have lost a tail only if the last one was fast, did not end
//! cleanly, and ran under another boot (or a boot id that cannot be read): then it skips.
//!
//! The full mode's group commit (`crate::group_sync`) acknowledges nothing before it is synced,
//! but a commit is visible to readers (the hub's catch-up, `GET …/log`, webhooks) from its
//! COMMIT on, a sync before it is on disk. A client may thus have read an event that a crash
//! of the operating system then loses, and its seq would be handed out again. So a full run
//! records that it ran with the group sync, and an unclean end of such a run under another boot
//! skips too (runs of earlier versions, which committed with `synchronous=FULL`, never do).

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
    /// Readers could see commits before they were synced (the full mode's group commit).
    pub group_sync: bool,
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
        group_sync: value
            .get("group_sync")
            .and_then(|g| g.as_bool())
            .unwrap_or(false),
        clean: value.get("clean")?.as_bool()?,
    })
}

pub(crate) fn record(durability: Durability, boot_id: Option<&str>, clean: bool) -> String {
    let group_sync = matches!(durability, Durability::Full);
    json!({ "durability": durability.as_str(), "group_sync": group_sync, "boot_id": boot_id, "clean": clean })
        .to_string()
}

/// Whether the run `last` describes may have lost commits that were acknowledged (fast) or
/// read (the group sync of the full mode): it did not close cleanly, and the operating system
/// may have restarted since.
pub(crate) fn may_have_lost_tail(last: Option<&LastRun>, boot_id: Option<&str>) -> bool {
    let Some(last) = last else {
        return false;
    };
    let same_boot = matches!((last.boot_id.as_deref(), boot_id), (Some(a), Some(b)) if a == b);
    (last.fast || last.group_sync) && !last.clean && !same_boot
}

/// Moves every stream's counter on by [`LOST_TAIL_SKIP`], streams that have no counter yet
/// (every user, every project, the system stream) included, gives every app channel a new
/// `stream_id` (`store::app_channels`), and counts the skip. Runs inside
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
    crate::app_channels::renew_stream_ids(db)?;
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
            group_sync: !fast,
            boot_id: boot.map(str::to_owned),
            clean,
        }
    }

    #[test]
    fn only_an_unclean_run_under_another_boot_may_have_lost_its_tail() {
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
        // A full run with the group sync: readers may have seen an unsynced commit.
        assert!(may_have_lost_tail(
            Some(&run(false, Some("a"), false)),
            Some("b")
        ));
        assert!(!may_have_lost_tail(
            Some(&run(false, Some("a"), false)),
            Some("a")
        ));
        assert!(!may_have_lost_tail(
            Some(&run(false, Some("a"), true)),
            Some("b")
        ));
        // A full run of an earlier version (synchronous=FULL, no group sync) lost nothing.
        let before = parse(r#"{"durability":"full","boot_id":"a","clean":false}"#).unwrap();
        assert!(!before.group_sync);
        assert!(!may_have_lost_tail(Some(&before), Some("b")));
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
