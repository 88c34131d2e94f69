//! Durability (CONTRACT §12): how far a commit is on disk before it is acknowledged, and what
//! a store does when a run in the fast mode may have lost the log's tail.
//!
//! In [`Durability::Fast`] an operating-system crash (SQLite) or a database crash (PostgreSQL)
//! may lose the last commits, events included, after clients saw them. The seqs of those
//! events would then be handed out again to different events, and a client resuming from one of
//! them would silently skip the new ones. So when a store finds at the start of a run (SQLite)
//! or of a connection (PostgreSQL) that such a loss may have happened, it first moves every
//! stream's counter on by [`LOST_TAIL_SKIP`] and counts the skip in the setting
//! [`STREAM_EPOCH_SETTING`]. A client whose position lies in the lost range, or at the durable
//! head, then asks for a seq the log does not hold (and more than the hub's replay limit behind
//! the head) and is told `resync_required`; nobody gets a new event under a seq they saw.

/// How far a commit is on disk before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Acknowledged only once on disk: SQLite `synchronous=NORMAL` commits synced by the
    /// store's group sync, PostgreSQL `synchronous_commit=on`. The default.
    #[default]
    Full,
    /// May be lost by a crash of the operating system (SQLite `synchronous=NORMAL`) or of the
    /// database server (PostgreSQL `synchronous_commit=off`); the store then skips every
    /// stream's seqs ahead at its next start.
    Fast,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Full => "full",
            Durability::Fast => "fast",
        }
    }

    pub fn parse(text: &str) -> Option<Durability> {
        match text {
            "full" => Some(Durability::Full),
            "fast" => Some(Durability::Fast),
            _ => None,
        }
    }
}

/// How far every stream's counter jumps after a possible loss of the log's tail. It must be
/// larger than any tail that can be lost, and larger than the hub's replay limit (1,000), so
/// that every position in the lost range is answered `resync_required`:
/// - SQLite, `synchronous=NORMAL`: the write-ahead log is synced at every checkpoint, which runs
///   once it holds 1,000 pages (the default `wal_autocheckpoint`), so at most about 1,000 pages
///   of commits plus the one that crossed the mark are unsynced; an event takes at least ~60
///   bytes of a 4 KiB page, so well under 100,000 events.
/// - PostgreSQL, `synchronous_commit=off`: at most three `wal_writer_delay`s of commits are
///   unflushed (at most 30 s by that setting's upper bound), which at this server's measured
///   write rates (BENCHMARKS.md, "Write throughput") is under a million events.
///
/// 10^9 leaves three orders of magnitude beyond both; seqs stay below 2^53 (exact in a
/// JavaScript number) for nine million such skips.
pub const LOST_TAIL_SKIP: i64 = 1_000_000_000;

/// The setting that counts the skips so far ("0" or absent: never). The Pusher dialect exposes
/// it as part of its `stream_id`.
pub const STREAM_EPOCH_SETTING: &str = "stream_epoch";

/// What [`crate::Store::begin_run`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunStart {
    /// Whether every stream's counter was moved on by [`LOST_TAIL_SKIP`] at this start.
    pub skipped: bool,
    /// The skips so far, this one included.
    pub epoch: i64,
}
