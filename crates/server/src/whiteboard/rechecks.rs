//! Which of the node's whiteboard connections an access change concerns. A whiteboard socket is
//! not a hub subscription, so the hub's evictions cannot close it; instead every eviction the
//! hub makes (an event read on any node, a logout, a heal, a lost bus message) reaches
//! [`Rechecks`], which wakes the connections in its scope to read their access again at once.
//! Without it each connection read its session and role from the store every few seconds,
//! which at 2,000 connections cost more than relaying their updates.

use crate::live::access::AccessListener;
use hub::EvictScope;
use proto::StreamKey;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::Notify;
use uuid::Uuid;

/// Who a connection is, for matching an eviction's scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    pub user: Uuid,
    pub session: Uuid,
    pub project: Uuid,
}

impl Holder {
    fn in_scope(&self, scope: EvictScope) -> bool {
        scope.covers(
            StreamKey::Project(self.project),
            self.user,
            Some(self.session),
        )
    }
}

/// The node's open whiteboard connections, each with the signal that makes it re-check.
#[derive(Default)]
pub struct Rechecks {
    open: Mutex<HashMap<u64, (Holder, Arc<Notify>)>>,
    /// How many rechecks were asked for so far: a connection that read its access before it
    /// registered compares it, so an eviction in between is not missed.
    asked: AtomicU64,
}

impl Rechecks {
    /// Read before a connection reads its access, and given to [`Rechecks::watch`] after.
    pub fn epoch(&self) -> u64 {
        self.asked.load(Ordering::SeqCst)
    }

    /// Registers connection `conn` until the returned guard drops; the guard's signal fires
    /// when the connection must re-check its access, at once when any recheck was asked for
    /// since `epoch`.
    pub fn watch(self: &Arc<Self>, conn: u64, holder: Holder, epoch: u64) -> Watched {
        let signal = Arc::new(Notify::new());
        self.lock().insert(conn, (holder, signal.clone()));
        if self.epoch() != epoch {
            signal.notify_one();
        }
        Watched {
            rechecks: self.clone(),
            conn,
            signal,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Holder, Arc<Notify>)>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl AccessListener for Rechecks {
    fn recheck(&self, scope: EvictScope) {
        self.asked.fetch_add(1, Ordering::SeqCst);
        for (holder, signal) in self.lock().values() {
            if holder.in_scope(scope) {
                // Stored when the connection is busy: it re-checks as soon as it looks.
                signal.notify_one();
            }
        }
    }
}

/// A registered connection; dropping it unregisters.
pub struct Watched {
    rechecks: Arc<Rechecks>,
    conn: u64,
    signal: Arc<Notify>,
}

impl Watched {
    /// Resolves when an access change may concern this connection.
    pub async fn changed(&self) {
        self.signal.notified().await
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.rechecks.lock().remove(&self.conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn holder() -> Holder {
        Holder {
            user: Uuid::now_v7(),
            session: Uuid::now_v7(),
            project: Uuid::now_v7(),
        }
    }

    #[test]
    fn an_eviction_wakes_exactly_the_connections_in_its_scope() {
        let rechecks = Arc::new(Rechecks::default());
        let (a, b) = (holder(), holder());
        let watched_a = rechecks.watch(1, a, rechecks.epoch());
        let watched_b = rechecks.watch(2, b, rechecks.epoch());
        let fired = |w: &Watched| w.changed().now_or_never().is_some();
        assert!(!fired(&watched_a) && !fired(&watched_b));
        for scope in [
            EvictScope::User(a.user),
            EvictScope::Session(a.session),
            EvictScope::Project(a.project),
            EvictScope::UserInProject {
                user_id: a.user,
                project_id: a.project,
            },
        ] {
            rechecks.recheck(scope);
            assert!(fired(&watched_a), "{scope:?}");
            assert!(!fired(&watched_b), "{scope:?}");
        }
        // The same user in another project is not concerned.
        rechecks.recheck(EvictScope::UserInProject {
            user_id: a.user,
            project_id: b.project,
        });
        assert!(!fired(&watched_a));
        rechecks.recheck(EvictScope::All);
        assert!(fired(&watched_a) && fired(&watched_b));
        rechecks.recheck(EvictScope::AllProjects);
        assert!(fired(&watched_a) && fired(&watched_b));
    }

    #[test]
    fn an_eviction_between_reading_access_and_registering_is_not_missed() {
        let rechecks = Arc::new(Rechecks::default());
        let epoch = rechecks.epoch();
        rechecks.recheck(EvictScope::User(Uuid::now_v7()));
        let watched = rechecks.watch(1, holder(), epoch);
        assert!(watched.changed().now_or_never().is_some());
    }

    #[test]
    fn a_dropped_connection_is_forgotten() {
        let rechecks = Arc::new(Rechecks::default());
        let watched = rechecks.watch(7, holder(), rechecks.epoch());
        assert_eq!(rechecks.lock().len(), 1);
        drop(watched);
        assert!(rechecks.lock().is_empty());
        rechecks.recheck(EvictScope::All);
    }
}
