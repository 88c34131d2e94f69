//! Group commit for the full durability: the writer commits with `synchronous=NORMAL` (the
//! commit is in the write-ahead log, in the operating system's cache) and releases the writer
//! connection at once; the commit is acknowledged only after one `fdatasync` of the `-wal` file
//! made it durable. Commits that finish while a sync runs wait for the next one, which then
//! covers them all: one task (the leader) starts a sync for everything committed so far, the
//! others wait on it, so at N concurrent writers one sync serves up to N commits instead of
//! SQLite's `synchronous=FULL` syncing once per commit with the writer held throughout.
//!
//! Why syncing our own handle of `<db>-wal` is sound:
//! - `fdatasync` writes out the file's (the inode's) dirty pages and the metadata needed to
//!   read them back, whichever descriptor wrote them: the page cache belongs to the inode, not
//!   to SQLite's descriptor. Every byte SQLite `write`s to the log before the sync starts is on
//!   disk when it returns. (SQLite writes the log with `write`, never through a mapping; only
//!   the `-shm` index is mapped, and a crash drops it anyway: recovery rebuilds it from the log.)
//! - The file stays the same inode while the store is open: SQLite deletes the log only when
//!   the last connection to the database closes, and the writer connection stays open until
//!   [`crate::SqliteStore`]'s `close`; `journal_size_limit` is left at its default (-1), so the
//!   log is not even truncated.
//! - Checkpoints and log restarts: a checkpoint (run by the committing connection after COMMIT
//!   once the log passes `wal_autocheckpoint`, 1000 pages, so still under the writer lock)
//!   under `synchronous=NORMAL` syncs the log before it copies pages back and the database file
//!   after. A commit that a checkpoint overtakes before our sync is therefore durable in the
//!   log and then the database file already. When a later writer restarts the log from its
//!   start (same inode, new salts), recovery after a crash accepts only frames whose salts and
//!   checksums match the header, so stale or half-written frames are ignored and the database
//!   file holds what the checkpoint copied. Our next sync covers the new frames like any.
//!
//! A sync that fails is not retried: after a failed `fdatasync` Linux may have dropped the dirty
//! pages it could not write and marked them clean, so a second sync could "succeed" without the
//! data ever reaching the disk. Every commit waiting on it answers an error, and the store
//! refuses writes from then on ([`GroupSync::check`]); a restart of the server (which recovers
//! from what is on disk) is the way back.
//!
//! What readers see: a commit is visible to other connections from its COMMIT on, a sync
//! before it is acknowledged. Its events reach the listener (and so live clients) only after
//! the sync, in commit order (`store::sequencer`); a read in that window (a catch-up from the
//! log, `GET …/log`) may see a change that a crash of the operating system then loses, never
//! one that was acknowledged. That is why an unclean full run under another boot makes the
//! lost-tail guard skip ahead too ([`crate::durability`]).

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use store::sequencer::{CommitSequencer, Ticket};
use store::{StoreError, StoreResult};
use tokio::sync::Notify;

pub(crate) struct GroupSync {
    wal: PathBuf,
    /// Places taken right after COMMIT, under the writer: what follows each commit (the
    /// domain's listener) runs in commit order although the syncs let later commits finish
    /// waiting in any order.
    order: Arc<CommitSequencer>,
    state: Mutex<State>,
    synced_changed: Notify,
}

#[derive(Default)]
struct State {
    /// Commits made so far (the number of the last one).
    committed: u64,
    /// Every commit up to this number is on disk.
    synced: u64,
    /// A sync is running.
    syncing: bool,
    /// A sync failed: nothing is acknowledged or accepted any more.
    failed: bool,
    /// The handle on the log, opened at the first sync (the log exists once the writer wrote).
    file: Option<Arc<File>>,
}

fn sync_failed() -> StoreError {
    StoreError::database(
        "a sync of the SQLite write-ahead log failed; the store accepts no writes until the server restarts",
    )
}

impl GroupSync {
    /// The group sync of the database at `db`.
    pub(crate) fn new(db: &std::path::Path) -> Arc<GroupSync> {
        let mut wal = db.to_path_buf().into_os_string();
        wal.push("-wal");
        Arc::new(GroupSync {
            wal: wal.into(),
            order: Arc::new(CommitSequencer::default()),
            state: Mutex::new(State::default()),
            synced_changed: Notify::new(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refuses a new write once a sync failed.
    pub(crate) fn check(&self) -> StoreResult<()> {
        if self.state().failed {
            return Err(sync_failed());
        }
        Ok(())
    }

    /// Notes a commit just made: call it while still holding the writer, right after COMMIT,
    /// then release the writer and finish with [`Pending::then`].
    pub(crate) fn committed(self: &Arc<Self>) -> Pending {
        let ticket = self.order.ticket();
        let mut state = self.state();
        state.committed += 1;
        Pending {
            group: self.clone(),
            commit: state.committed,
            ticket,
        }
    }

    /// Waits until commit number `commit` is on disk, starting a sync of everything committed
    /// so far when none runs. The sync runs on a blocking thread and records its own outcome,
    /// so a caller that stops waiting (a cancelled request) never leaves the others stuck.
    async fn durable(self: &Arc<Self>, commit: u64) -> StoreResult<()> {
        loop {
            let notified = self.synced_changed.notified();
            tokio::pin!(notified);
            // Registered before the check, so a sync that ends in between is not missed.
            notified.as_mut().enable();
            {
                let mut state = self.state();
                if state.failed {
                    return Err(sync_failed());
                }
                if state.synced >= commit {
                    return Ok(());
                }
                if !state.syncing {
                    state.syncing = true;
                    let target = state.committed;
                    let file = state.file.clone();
                    let this = self.clone();
                    tokio::task::spawn_blocking(move || this.sync(file, target));
                }
            }
            notified.await;
        }
    }

    /// Syncs the log, then marks every commit up to `target` durable (or the store failed).
    fn sync(&self, file: Option<Arc<File>>, target: u64) {
        let opened = match file {
            Some(file) => Ok(file),
            None => File::open(&self.wal).map(Arc::new),
        };
        let outcome = opened.and_then(|file| file.sync_data().map(|()| file));
        let mut state = self.state();
        match outcome {
            Ok(file) => {
                state.synced = state.synced.max(target);
                state.file = Some(file);
            }
            Err(error) => {
                tracing::error!(
                    error = &error as &dyn std::error::Error,
                    "syncing the SQLite write-ahead log failed; refusing writes from now on"
                );
                state.failed = true;
            }
        }
        state.syncing = false;
        drop(state);
        self.synced_changed.notify_waiters();
    }
}

/// A commit made but not yet known to be on disk.
pub(crate) struct Pending {
    group: Arc<GroupSync>,
    commit: u64,
    ticket: Ticket,
}

impl Pending {
    /// Waits until the commit is on disk, then runs `follow_up` in commit order. On a failed
    /// sync `follow_up` never runs and the ticket gives its turn up.
    pub(crate) async fn then<R>(self, follow_up: impl FnOnce() -> R) -> StoreResult<R> {
        self.group.durable(self.commit).await?;
        Ok(self.ticket.in_turn(follow_up).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_wait_for_a_sync_and_follow_up_in_commit_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        std::fs::write(dir.path().join("x.db-wal"), b"frames").unwrap();
        let group = GroupSync::new(&db);
        let pendings: Vec<Pending> = (0..6).map(|_| group.committed()).collect();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = tokio::task::JoinSet::new();
        // The later commits start waiting first.
        for (place, pending) in pendings.into_iter().enumerate().rev() {
            let seen = seen.clone();
            tasks.spawn(async move { pending.then(|| seen.lock().unwrap().push(place)).await });
        }
        let all = async {
            while let Some(done) = tasks.join_next().await {
                done.unwrap().unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(10), all)
            .await
            .expect("every commit is synced in time");
        assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2, 3, 4, 5]);
        let state = group.state();
        assert_eq!((state.committed, state.synced), (6, 6));
        assert!(!state.syncing && !state.failed && state.file.is_some());
        drop(state);
        group.check().unwrap();
    }

    #[tokio::test]
    async fn a_failed_sync_fails_the_waiting_commits_and_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        // No log file: opening it for the sync fails, as a failed sync would.
        let group = GroupSync::new(&dir.path().join("missing.db"));
        let first = group.committed();
        let second = group.committed();
        let ran = Arc::new(Mutex::new(0));
        let counted = ran.clone();
        let error = first
            .then(move || *counted.lock().unwrap() += 1)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("accepts no writes"), "{error}");
        let counted = ran.clone();
        assert!(
            second
                .then(move || *counted.lock().unwrap() += 1)
                .await
                .is_err()
        );
        assert_eq!(
            *ran.lock().unwrap(),
            0,
            "no follow-up of an unsynced commit runs"
        );
        assert!(group.check().is_err());
        // Even once the log exists, the store does not trust a second sync.
        std::fs::write(dir.path().join("missing.db-wal"), b"frames").unwrap();
        assert!(group.committed().then(|| ()).await.is_err());
    }
}
