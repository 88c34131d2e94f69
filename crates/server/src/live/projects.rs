//! The set of projects a user belongs to, kept current for the filter of a stream shared by all
//! projects (the `system` stream behind `/api/v1/projects/events`).
//!
//! Memberships change on project streams (`member_added`, `member_removed`), which such a
//! subscriber does not read, so the commit listener applies each change to every open set of
//! that user before the commit's events are published. A set is registered *before* it is
//! loaded from the store: changes that arrive while loading are kept and replayed over the
//! loaded rows, so a commit racing the load is never lost whichever side of the read it fell.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use uuid::Uuid;

/// Membership changes remembered while a set loads. A load takes one store read; more changes
/// than this for one user in that time means something is wrong, and the set then refuses
/// everything rather than guess (the stream stays safe, the client reconnects to fix it).
const MAX_PENDING: usize = 4096;

#[derive(Default)]
struct SetState {
    loaded: bool,
    poisoned: bool,
    projects: HashSet<Uuid>,
    pending: Vec<(Uuid, bool)>,
}

#[derive(Default)]
pub struct ProjectSet {
    state: Mutex<SetState>,
}

impl ProjectSet {
    fn state(&self) -> std::sync::MutexGuard<'_, SetState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn contains(&self, project: Uuid) -> bool {
        let state = self.state();
        !state.poisoned && state.loaded && state.projects.contains(&project)
    }

    fn apply(&self, project: Uuid, member: bool) {
        let mut state = self.state();
        if !state.loaded {
            if state.pending.len() >= MAX_PENDING {
                state.poisoned = true;
            } else {
                state.pending.push((project, member));
            }
            return;
        }
        if member {
            state.projects.insert(project);
        } else {
            state.projects.remove(&project);
        }
    }

    /// Installs the memberships read from the store, then the changes seen meanwhile.
    pub fn load(&self, projects: impl IntoIterator<Item = Uuid>) {
        let mut state = self.state();
        state.projects = projects.into_iter().collect();
        for (project, member) in std::mem::take(&mut state.pending) {
            if member {
                state.projects.insert(project);
            } else {
                state.projects.remove(&project);
            }
        }
        state.loaded = true;
    }
}

/// Every open project set, by user.
#[derive(Default)]
pub struct ProjectSets {
    by_user: Mutex<HashMap<Uuid, Vec<Weak<ProjectSet>>>>,
}

impl ProjectSets {
    fn sets(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Vec<Weak<ProjectSet>>>> {
        self.by_user.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new, not yet loaded set for `user`; it follows membership changes from now on.
    pub fn register(self: &Arc<Self>, user: Uuid) -> ProjectWatch {
        let set = Arc::new(ProjectSet::default());
        self.sets()
            .entry(user)
            .or_default()
            .push(Arc::downgrade(&set));
        ProjectWatch {
            sets: Arc::downgrade(self),
            user,
            set,
        }
    }

    /// Users with an open set.
    pub fn users(&self) -> Vec<Uuid> {
        self.sets().keys().copied().collect()
    }

    /// Drops from `user`'s sets every project not in `kept` (a heal after missed removals).
    pub fn retain_only(&self, user: Uuid, kept: &HashSet<Uuid>) {
        let sets = self.sets();
        if let Some(list) = sets.get(&user) {
            for set in list.iter().filter_map(Weak::upgrade) {
                let mut state = set.state();
                if state.loaded {
                    state.projects.retain(|p| kept.contains(p));
                }
            }
        }
    }

    pub fn membership_changed(&self, user: Uuid, project: Uuid, member: bool) {
        let sets = self.sets();
        if let Some(list) = sets.get(&user) {
            for set in list.iter().filter_map(Weak::upgrade) {
                set.apply(project, member);
            }
        }
    }
}

/// An open project set; dropping it unregisters it.
pub struct ProjectWatch {
    sets: Weak<ProjectSets>,
    user: Uuid,
    set: Arc<ProjectSet>,
}

impl ProjectWatch {
    pub fn set(&self) -> Arc<ProjectSet> {
        self.set.clone()
    }
}

impl Drop for ProjectWatch {
    fn drop(&mut self) {
        let Some(sets) = self.sets.upgrade() else {
            return;
        };
        let mut by_user = sets.sets();
        if let Some(list) = by_user.get_mut(&self.user) {
            list.retain(|w| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), &*self.set));
            if list.is_empty() {
                by_user.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_during_a_load_win_over_the_loaded_rows() {
        let sets = Arc::new(ProjectSets::default());
        let user = Uuid::now_v7();
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let watch = sets.register(user);
        assert!(!watch.set().contains(a), "nothing passes before the load");
        sets.membership_changed(user, b, true);
        sets.membership_changed(user, a, false);
        watch.set().load([a, c]);
        let set = watch.set();
        assert!(!set.contains(a) && set.contains(b) && set.contains(c));
        sets.membership_changed(user, c, false);
        assert!(!set.contains(c));
        drop(watch);
        assert!(sets.sets().is_empty());
    }
}
