//! The scheduler worker: after a commit that changes a project's schedule inputs, recompute
//! that project off the request path and write the results with their events.
//!
//! The worker keeps the projects it computed in memory: their [`Plan`] (the inputs and the
//! outputs the tasks hold) and a `cpm::Engine` built from it. The commit listener hands it
//! every committed change of those projects, in seq order, and the worker applies them to the
//! plan and, as incremental edits, to the engine; only the tasks whose outputs moved are read
//! and written. Until the worker takes them, a record's changes collapse into its latest one
//! (each carries the whole record, and records change the plan independently of each other):
//! commits that are no schedule input (a rename) reach the feed but never make the worker take
//! it, and would otherwise pile up there for as long as the project stays cached. Whatever
//! the cache cannot follow exactly makes the worker read the project again: a gap in the seqs
//! it was handed, project fields, a project deletion, an import or a wipe, a failed write, a
//! timeout. Nothing survives a restart, so a restart reads again too.
//!
//! Bursts coalesce: a commit marks its project dirty; the worker computes at once when it is
//! idle, and when commits arrived while it computed, waits [`COALESCE`] before the next batch,
//! taking every dirty project with all its changes so far. A project marked dirty while it is
//! being computed is computed again afterwards, so the last commit always gets a schedule that
//! includes it.
//!
//! A node that shares its database with others (a cluster) computes a project only while it
//! holds the project's lease, and skips a change another node's computation already included
//! (`domain::schedule_lease`): each change gets one `cpm_complete`, not one per node. Its cache
//! follows only its own commits, so another node's commit breaks the feed and the next round
//! reads the project again.

use cpm::{CpmError, Engine, TaskSchedule};
use domain::schedule::{
    Plan, PlanChange, PlanEffect, ScheduleUpdate, WriteOutcome, describe_error, is_schedule_input,
    plan_effect,
};
use domain::{CommitListener, Domain};
use proto::{Event, StreamKey};
use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use uuid::Uuid;

/// How long the worker lets a burst gather. A commit that finds the worker idle is computed
/// at once (an edit, even one right after the previous result, should not wait); commits
/// that arrive while it computes mean a burst, and the next batch waits this long so that
/// they and the ones after them share one computation and one pair of events.
const COALESCE: Duration = Duration::from_millis(20);
/// A computation that takes longer is abandoned with `cpm_error`.
const COMPUTE_TIMEOUT: Duration = Duration::from_secs(30);
/// At most this many plans stay in memory, the least recently computed leaving first ...
const MAX_CACHED_PLANS: usize = 32;
/// ... and at most this many tasks in all of them, unless one plan alone is larger.
const MAX_CACHED_TASKS: usize = 500_000;
/// Records with a change waiting that a cached project may collect before the worker takes
/// them (and events while its snapshot is taken); past this the worker reads the project again
/// rather than hold an unbounded queue.
const MAX_QUEUED_CHANGES: usize = 50_000;
/// While the database is unreachable a project whose read or write failed is tried again
/// after a pause that doubles from the first to the longest, so its last commit still gets
/// its schedule once the database is back, without the worker spinning meanwhile.
const FIRST_STORE_RETRY: Duration = Duration::from_millis(500);
const MAX_STORE_RETRY: Duration = Duration::from_secs(30);
/// In a cluster: how long a lease on a project lasts, longer than a computation may take and
/// its write, so it only runs out when its node died; and how soon a node whose project is
/// leased to another tries again.
const LEASE_TTL: Duration = Duration::from_secs(45);
const LEASE_RETRY: Duration = Duration::from_millis(100);

/// What the listener collects for one cached project.
struct Feed {
    /// Which load of the plan this feed continues.
    token: u64,
    /// The seq of the project's next event. Events at or below the seq the plan was read at
    /// are already in it; one above this seq means an event went missing or came out of
    /// order, and only reading the project again is then safe. `None` while the plan's
    /// snapshot is not taken yet: events then wait in `early`, since the feed is registered
    /// before the snapshot so that no commit can fall between the two.
    next_seq: Option<i64>,
    early: Vec<(i64, PlanEffect)>,
    /// One change per record, its latest, with the seq it was committed at.
    changes: Vec<(i64, PlanChange)>,
    /// Where each record's change is in `changes`.
    waiting: HashMap<Record, usize>,
    /// The changes can no longer be followed: read the project again.
    broken: bool,
}

/// The record of the plan a [`PlanChange`] sets, its deletion included.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Record {
    Task(Uuid),
    Link(Uuid),
    Calendar(Uuid),
}

impl Record {
    fn of(change: &PlanChange) -> Record {
        match change {
            PlanChange::Task { id, .. } | PlanChange::TaskDeleted(id) => Record::Task(*id),
            PlanChange::Link { id, .. } | PlanChange::LinkDeleted(id) => Record::Link(*id),
            PlanChange::Calendar { id, .. } | PlanChange::CalendarDeleted(id) => {
                Record::Calendar(*id)
            }
        }
    }
}

impl Feed {
    fn awaiting_snapshot(token: u64) -> Feed {
        Feed {
            token,
            next_seq: None,
            early: Vec::new(),
            changes: Vec::new(),
            waiting: HashMap::new(),
            broken: false,
        }
    }

    /// The plan was read as of `seq`: what came before it is in the plan, the rest follows.
    fn snapshot_taken(&mut self, seq: i64) {
        self.next_seq = Some(seq + 1);
        for (seq, effect) in std::mem::take(&mut self.early) {
            self.record(seq, effect);
        }
    }

    fn break_off(&mut self) {
        self.broken = true;
        self.early = Vec::new();
        self.take_changes();
    }

    /// The changes so far, for the worker to apply; the feed starts collecting anew.
    fn take_changes(&mut self) -> Vec<(i64, PlanChange)> {
        self.waiting = HashMap::new();
        std::mem::take(&mut self.changes)
    }

    fn record(&mut self, seq: i64, effect: PlanEffect) {
        if self.broken {
            return;
        }
        let Some(next_seq) = self.next_seq else {
            self.early.push((seq, effect));
            if self.early.len() > MAX_QUEUED_CHANGES {
                self.break_off();
            }
            return;
        };
        if seq < next_seq {
            return;
        }
        if seq > next_seq {
            self.break_off();
            return;
        }
        self.next_seq = Some(next_seq + 1);
        match effect {
            // In the place of the record's first change: the plan applies each record's
            // change on its own (by id, no order between records), so only the latest counts.
            PlanEffect::Change(change) => match self.waiting.entry(Record::of(&change)) {
                Entry::Occupied(at) => self.changes[*at.get()] = (seq, change),
                Entry::Vacant(slot) => {
                    slot.insert(self.changes.len());
                    self.changes.push((seq, change));
                    if self.changes.len() > MAX_QUEUED_CHANGES {
                        self.break_off();
                    }
                }
            },
            PlanEffect::None => {}
            _ => self.break_off(),
        }
    }
}

/// Why a project is dirty: the latest of its commits on this node that changed its schedule
/// inputs, which a cluster's scheduler compares with what another node already computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// A commit at this seq of the project's stream.
    At(i64),
    /// A change outside the project's stream (`project_updated`), or one the worker made
    /// itself: compute in any case.
    Always,
}

impl Trigger {
    fn of(event: &Event) -> Trigger {
        match (event.stream, event.seq) {
            (StreamKey::Project(_), Some(seq)) => Trigger::At(seq),
            _ => Trigger::Always,
        }
    }

    fn and(self, other: Trigger) -> Trigger {
        match (self, other) {
            (Trigger::At(a), Trigger::At(b)) => Trigger::At(a.max(b)),
            _ => Trigger::Always,
        }
    }

    /// Whether a schedule computed from the project's seq `through` leaves this out.
    fn after(self, through: i64) -> bool {
        match self {
            Trigger::At(seq) => seq > through,
            Trigger::Always => true,
        }
    }
}

#[derive(Default)]
struct State {
    dirty: BTreeSet<Uuid>,
    triggers: HashMap<Uuid, Trigger>,
    feeds: HashMap<Uuid, Feed>,
    /// The worker is computing a batch of projects.
    computing: bool,
    /// A project was marked dirty while the worker was computing: commits are coming in
    /// faster than the worker finishes, so the next batch waits for more to gather.
    burst: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, the sets are still
        // usable (a lost change only breaks a feed, which reloads).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The listener half: marks projects dirty and collects the changes of cached ones. Cheap
/// and never blocks a commit.
pub struct SchedulerListener {
    shared: Arc<Shared>,
}

/// The worker half, started once the domain exists.
pub struct SchedulerWorker {
    shared: Arc<Shared>,
}

pub fn channel() -> (Arc<SchedulerListener>, SchedulerWorker) {
    let shared = Arc::new(Shared::default());
    (
        Arc::new(SchedulerListener {
            shared: shared.clone(),
        }),
        SchedulerWorker { shared },
    )
}

impl CommitListener for SchedulerListener {
    fn committed(&self, events: &[Event]) {
        let mut marked = false;
        let mut state = self.shared.lock();
        for event in events {
            let project = match event.stream {
                StreamKey::Project(id) => Some(id),
                _ => event.project_id,
            };
            if !state.feeds.is_empty() {
                follow(&mut state, event, project);
            }
            if is_schedule_input(event)
                && let Some(project) = project
            {
                let trigger = Trigger::of(event);
                state
                    .triggers
                    .entry(project)
                    .and_modify(|t| *t = t.and(trigger))
                    .or_insert(trigger);
                if state.dirty.insert(project) {
                    marked = true;
                    state.burst |= state.computing;
                }
            }
        }
        drop(state);
        if marked {
            self.shared.wake.notify_one();
        }
    }
}

/// Hands one committed event to the feed of its project, if that project is cached.
fn follow(state: &mut State, event: &Event, project: Option<Uuid>) {
    let tracked = project.filter(|p| state.feeds.contains_key(p));
    // A project stream only speaks of its own project; the system stream of projects and
    // of the whole database.
    if tracked.is_none() && matches!(event.stream, StreamKey::Project(_)) {
        return;
    }
    match plan_effect(event) {
        PlanEffect::DropAll => state.feeds.clear(),
        PlanEffect::DropProject => {
            if let Some(project) = tracked {
                state.feeds.remove(&project);
            }
        }
        effect => {
            let Some(feed) = tracked.and_then(|p| state.feeds.get_mut(&p)) else {
                return;
            };
            match (event.stream, event.seq) {
                (StreamKey::Project(_), Some(seq)) => feed.record(seq, effect),
                // `project_updated` comes on the system stream, outside the project's seqs.
                _ if effect == PlanEffect::Reload => feed.break_off(),
                _ => {}
            }
        }
    }
}

/// One project's plan and engine, between computations.
struct Cached {
    token: u64,
    plan: Plan,
    /// `None` after the plan failed to schedule (a cycle...): built again next time.
    engine: Option<Engine>,
    last_used: u64,
}

/// How one project's round ended, for the worker's retries.
#[derive(Debug, PartialEq, Eq)]
enum Round {
    /// Written, or given up on for good (the project is gone, another error was logged).
    Done,
    /// The database could not be reached: the project is tried again after a pause.
    StoreUnavailable,
    /// In a cluster, another node is computing the project: tried again shortly.
    Leased,
}

/// A plan ready to compute: the cached or freshly read plan, the changes to bring it up to
/// date, and the project seq it then stands at.
struct Taken {
    cached: Cached,
    changes: Vec<(i64, PlanChange)>,
    covered: i64,
}

impl Round {
    fn of(error: &proto::ApiError) -> Round {
        if error.code == proto::ErrorCode::StoreUnavailable {
            Round::StoreUnavailable
        } else {
            Round::Done
        }
    }
}

struct Worker {
    shared: Arc<Shared>,
    domain: Domain,
    /// This worker's name on leases, when it shares its database with other nodes.
    lease_holder: Option<Uuid>,
    cache: HashMap<Uuid, Cached>,
    /// Source of feed tokens and of the LRU clock.
    counter: u64,
}

impl SchedulerWorker {
    /// Starts the worker. `in_cluster`: other nodes share the database, so projects are
    /// computed under a lease.
    pub fn spawn(
        self,
        domain: Domain,
        in_cluster: bool,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> tokio::task::JoinHandle<()> {
        let mut worker = Worker {
            shared: self.shared,
            domain,
            lease_holder: in_cluster.then(Uuid::new_v4),
            cache: HashMap::new(),
            counter: 0,
        };
        tokio::spawn(async move {
            let mut store_retry = FIRST_STORE_RETRY;
            loop {
                worker.shared.wake.notified().await;
                loop {
                    let burst = std::mem::take(&mut worker.shared.lock().burst);
                    if burst {
                        tokio::time::sleep(COALESCE).await;
                    }
                    let batch: Vec<(Uuid, Option<Trigger>)> = {
                        let mut state = worker.shared.lock();
                        state.computing = true;
                        let dirty = std::mem::take(&mut state.dirty);
                        dirty
                            .into_iter()
                            .map(|project| (project, state.triggers.remove(&project)))
                            .collect()
                    };
                    if batch.is_empty() {
                        worker.shared.lock().computing = false;
                        break;
                    }
                    let mut unreachable = Vec::new();
                    let mut leased = Vec::new();
                    for (project, trigger) in batch {
                        let started = std::time::Instant::now();
                        let round = worker.round(project, trigger).await;
                        let outcome = match round {
                            Round::Done => "done",
                            Round::StoreUnavailable => {
                                unreachable.push(project);
                                "store_unavailable"
                            }
                            Round::Leased => {
                                leased.push(project);
                                "leased"
                            }
                        };
                        metrics.scheduler_run(outcome, started.elapsed());
                    }
                    if !unreachable.is_empty() {
                        tokio::time::sleep(store_retry).await;
                        store_retry = (store_retry * 2).min(MAX_STORE_RETRY);
                    } else {
                        store_retry = FIRST_STORE_RETRY;
                        if !leased.is_empty() {
                            tokio::time::sleep(LEASE_RETRY).await;
                        }
                    }
                    worker
                        .shared
                        .lock()
                        .dirty
                        .extend(unreachable.into_iter().chain(leased));
                }
            }
        })
    }
}

impl Worker {
    fn tick(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// The cached plan of `project` and the changes committed since it was last computed, if
    /// the cache can still follow the project.
    fn take(&mut self, project: Uuid) -> Option<Taken> {
        let cached = self.cache.remove(&project)?;
        let mut state = self.shared.lock();
        let feed = state.feeds.get_mut(&project)?;
        if feed.token != cached.token || feed.broken {
            return None;
        }
        let covered = feed.next_seq? - 1;
        let changes = feed.take_changes();
        Some(Taken {
            cached,
            changes,
            covered,
        })
    }

    /// Reads the project and starts following it. `Ok(None)`: the project does not exist.
    async fn load(&mut self, project: Uuid) -> domain::DomainResult<Option<Taken>> {
        let token = self.tick();
        let snapshot_seq = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let read_at = snapshot_seq.clone();
        // Followed from before the snapshot: a commit that lands after the snapshot reaches
        // the feed, one that landed before it is in the plan.
        self.shared
            .lock()
            .feeds
            .insert(project, Feed::awaiting_snapshot(token));
        let shared = self.shared.clone();
        let plan = self
            .domain
            .load_plan(project, move |seq| {
                read_at.store(seq, std::sync::atomic::Ordering::Relaxed);
                if let Some(feed) = shared.lock().feeds.get_mut(&project)
                    && feed.token == token
                {
                    feed.snapshot_taken(seq);
                }
            })
            .await;
        let plan = match plan {
            Ok(Some(plan)) => plan,
            other => {
                self.forget(project, token);
                return other.map(|_| None);
            }
        };
        let cached = Cached {
            token,
            plan,
            engine: None,
            last_used: 0,
        };
        // Changes committed since the read (the feed may already be broken: then the next
        // round reads again, this one still computes from a consistent read).
        let snapshot_seq = snapshot_seq.load(std::sync::atomic::Ordering::Relaxed);
        let (changes, covered) = {
            let mut state = self.shared.lock();
            match state.feeds.get_mut(&project) {
                Some(feed) if feed.token == token && !feed.broken => (
                    feed.take_changes(),
                    feed.next_seq.map_or(snapshot_seq, |next| next - 1),
                ),
                _ => (Vec::new(), snapshot_seq),
            }
        };
        Ok(Some(Taken {
            cached,
            changes,
            covered,
        }))
    }

    /// Stops following `project` if the feed is still the one of `token`.
    fn forget(&mut self, project: Uuid, token: u64) {
        self.cache.remove(&project);
        let mut state = self.shared.lock();
        if state.feeds.get(&project).is_some_and(|f| f.token == token) {
            state.feeds.remove(&project);
        }
    }

    /// Puts a plan back into the cache if its feed still follows the project, and keeps the
    /// cache within its bounds.
    fn keep(&mut self, project: Uuid, mut cached: Cached) {
        let live = self
            .shared
            .lock()
            .feeds
            .get(&project)
            .is_some_and(|f| f.token == cached.token);
        if !live {
            return;
        }
        cached.last_used = self.tick();
        self.cache.insert(project, cached);
        loop {
            let tasks: usize = self.cache.values().map(|c| c.plan.tasks.len()).sum();
            if self.cache.len() <= MAX_CACHED_PLANS && tasks <= MAX_CACHED_TASKS {
                break;
            }
            let Some((&oldest, c)) = self
                .cache
                .iter()
                .filter(|(id, _)| **id != project)
                .min_by_key(|(_, c)| c.last_used)
            else {
                break;
            };
            let token = c.token;
            self.forget(oldest, token);
        }
    }

    /// One project's turn: alone, compute it; in a cluster, compute it while holding its
    /// lease, unless another node's schedule already included what made it dirty here.
    async fn round(&mut self, project: Uuid, trigger: Option<Trigger>) -> Round {
        let Some(holder) = self.lease_holder else {
            return self.recompute(project).await;
        };
        let through = match self
            .domain
            .take_schedule_lease(project, holder, LEASE_TTL)
            .await
        {
            Ok(Some(through)) => through,
            taken => {
                if let Some(trigger) = trigger {
                    let mut state = self.shared.lock();
                    let merged = state
                        .triggers
                        .get(&project)
                        .map_or(trigger, |t| t.and(trigger));
                    state.triggers.insert(project, merged);
                }
                return match taken {
                    Err(error) => {
                        tracing::warn!(%project, error = %error.message, "could not take the schedule lease");
                        Round::of(&error)
                    }
                    _ => Round::Leased,
                };
            }
        };
        // A round the worker set itself (after a superseded write) has no trigger: compute.
        let round = if trigger.unwrap_or(Trigger::Always).after(through) {
            self.recompute(project).await
        } else {
            Round::Done
        };
        if let Err(error) = self.domain.end_schedule_lease(project, holder).await {
            // It runs out by itself; until then other nodes wait for this project.
            tracing::warn!(%project, error = %error.message, "could not give the schedule lease back");
        }
        round
    }

    /// Computes one project's schedule and writes it, or writes `cpm_error`.
    async fn recompute(&mut self, project: Uuid) -> Round {
        let taken = match self.take(project) {
            Some(taken) => Some(taken),
            None => match self.load(project).await {
                Ok(loaded) => loaded,
                Err(error) => {
                    tracing::warn!(%project, error = %error.message, "could not read the plan");
                    return Round::of(&error);
                }
            },
        };
        // The project was deleted since it was marked: nothing to do.
        let Some(Taken {
            mut cached,
            changes,
            covered,
        }) = taken
        else {
            return Round::Done;
        };
        let through = self.lease_holder.map(|_| covered);
        let token = cached.token;
        let computed = tokio::time::timeout(
            COMPUTE_TIMEOUT,
            tokio::task::spawn_blocking(move || {
                let result = advance(&mut cached, changes);
                (cached, result)
            }),
        )
        .await;
        let outcome = match computed {
            Ok(Ok((cached, Ok(update)))) => self.write(project, cached, update, through).await,
            Ok(Ok((cached, Err(error)))) => {
                self.keep(project, cached);
                let (message, details) = describe_error(&error);
                self.domain
                    .write_schedule_error(project, &message, details, through)
                    .await
            }
            Ok(Err(_)) => {
                self.forget(project, token);
                self.domain
                    .write_schedule_error(
                        project,
                        "the scheduler failed",
                        serde_json::Value::Null,
                        through,
                    )
                    .await
            }
            Err(_) => {
                // The computation goes on in its thread and takes the plan with it.
                self.forget(project, token);
                self.domain
                    .write_schedule_error(
                        project,
                        "the schedule took too long to compute",
                        serde_json::Value::Null,
                        through,
                    )
                    .await
            }
        };
        match outcome {
            Ok(()) => Round::Done,
            Err(error) => {
                tracing::warn!(%project, error = %error.message, "could not write the schedule");
                Round::of(&error)
            }
        }
    }

    async fn write(
        &mut self,
        project: Uuid,
        mut cached: Cached,
        update: ScheduleUpdate,
        through: Option<i64>,
    ) -> domain::DomainResult<()> {
        let token = cached.token;
        let shared = self.shared.clone();
        // Only a replaced or deleted project makes the write wrong; other changes since the
        // plan was taken are the next round's.
        let still_current = move || {
            shared
                .lock()
                .feeds
                .get(&project)
                .is_some_and(|f| f.token == token)
        };
        let written = self
            .domain
            .write_schedule_update(project, &update, still_current, through)
            .await;
        match written {
            Ok(WriteOutcome::Written { seq, stored }) => {
                cached.plan.mark_stored(seq, &stored);
                self.keep(project, cached);
                Ok(())
            }
            // Another node wrote a schedule of this state or a later one, so the outputs the
            // plan holds are no longer the stored ones.
            Ok(WriteOutcome::ProjectGone | WriteOutcome::AlreadyCovered) => {
                self.forget(project, token);
                Ok(())
            }
            Ok(WriteOutcome::Superseded) => {
                // Replaced or deleted under the plan: read it again (or find it gone).
                self.forget(project, token);
                self.shared.lock().dirty.insert(project);
                self.shared.wake.notify_one();
                Ok(())
            }
            Err(error) => {
                // The engine has handed out its changes: only a fresh read knows again
                // which outputs are stored.
                self.forget(project, token);
                Err(error)
            }
        }
    }
}

/// Brings the plan and its engine up to date with `changes` and works out what to write.
/// Edits the engine incrementally when every change allows it, and builds it again from the
/// plan otherwise or when an edit is refused, so the result (and any error) is the one a
/// computation from scratch gives.
fn advance(
    cached: &mut Cached,
    changes: Vec<(i64, PlanChange)>,
) -> Result<ScheduleUpdate, CpmError> {
    let mut edits = Some(Vec::new());
    for (seq, change) in changes {
        match (cached.plan.apply(seq, change), &mut edits) {
            (Some(more), Some(all)) => all.extend(more),
            _ => edits = None,
        }
    }
    let mut engine = cached.engine.take();
    let edited = match (engine.as_mut(), edits) {
        (Some(engine), Some(edits)) => edits.iter().all(|edit| engine.apply(edit).is_ok()),
        _ => false,
    };
    let engine = match engine {
        Some(engine) if edited => engine,
        _ => Engine::new(cached.plan.input())?,
    };
    let engine = cached.engine.insert(engine);
    let rechecks = cached.plan.take_rechecks();
    let differs = |t: &TaskSchedule| {
        cached
            .plan
            .tasks
            .get(&t.id)
            .is_none_or(|stored| stored.outputs.as_ref() != Some(t))
    };
    let moved: Vec<TaskSchedule> = match engine.take_changes() {
        Some(mut ids) => {
            ids.extend(rechecks);
            ids.sort_unstable();
            ids.dedup();
            ids.into_iter()
                .filter_map(|id| engine.task(id))
                .filter(|t| differs(t))
                .collect()
        }
        None => engine
            .schedule()
            .tasks
            .into_iter()
            .filter(|t| differs(t))
            .collect(),
    };
    let project_finish = engine.project_finish();
    if let Err(error) = cpm::check_dates(project_finish, &moved) {
        // Nothing of this run is written: compare these tasks again on the next one, whatever
        // the engine reports then, or the ones that moved within range would stay stale.
        cached.plan.rechecks.extend(moved.iter().map(|t| t.id));
        return Err(error);
    }
    Ok(ScheduleUpdate {
        project_finish,
        critical_path: engine.critical_path(),
        moved,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deleted(n: u128) -> PlanEffect {
        PlanEffect::Change(PlanChange::TaskDeleted(Uuid::from_u128(n)))
    }

    fn seqs(feed: &Feed) -> Vec<i64> {
        feed.changes.iter().map(|(seq, _)| *seq).collect()
    }

    #[test]
    fn events_before_the_snapshot_wait_and_only_the_later_ones_follow() {
        let mut feed = Feed::awaiting_snapshot(1);
        for seq in 5..=8 {
            feed.record(seq, deleted(seq as u128));
        }
        assert!(
            feed.changes.is_empty(),
            "nothing follows before the snapshot"
        );
        // The snapshot saw up to seq 6: 7 and 8 came after it.
        feed.snapshot_taken(6);
        assert_eq!(seqs(&feed), [7, 8]);
        assert!(!feed.broken);
        feed.record(9, PlanEffect::None);
        feed.record(10, deleted(10));
        assert_eq!(seqs(&feed), [7, 8, 10]);
        assert_eq!(feed.next_seq, Some(11));
    }

    #[test]
    fn a_gap_before_or_after_the_snapshot_breaks_the_feed() {
        let mut feed = Feed::awaiting_snapshot(1);
        feed.record(5, deleted(5));
        feed.record(7, deleted(7));
        feed.snapshot_taken(4);
        assert!(feed.broken, "6 went missing");
        assert!(feed.changes.is_empty() && feed.early.is_empty());

        let mut feed = Feed::awaiting_snapshot(2);
        feed.snapshot_taken(3);
        feed.record(4, deleted(4));
        feed.record(6, deleted(6));
        assert!(feed.broken, "5 went missing");
    }

    fn task(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn event(
        project: Uuid,
        seq: i64,
        event_type: proto::EventType,
        data: serde_json::Value,
        changed: &[&str],
    ) -> Event {
        Event {
            stream: StreamKey::Project(project),
            seq: Some(seq),
            event_type,
            payload: serde_json::json!({ "id": data["id"], "changed_fields": changed }),
            data,
            actor_id: None,
            tab_id: None,
            ts: chrono::Utc::now(),
            project_id: Some(project),
            echo: None,
        }
    }

    fn renamed(project: Uuid, seq: i64, id: Uuid) -> Event {
        let data = serde_json::json!({ "id": id, "name": format!("name {seq}"), "duration": 1 });
        event(project, seq, proto::EventType::TaskUpdated, data, &["name"])
    }

    /// Issue 20: a cached project that is only renamed is never dirty, so the worker never
    /// takes its feed; every rename used to stay queued there (about 200 bytes each, the
    /// soak's steady 4 MB an hour), up to `MAX_QUEUED_CHANGES`.
    #[test]
    fn renames_the_worker_never_takes_keep_one_change_per_task() {
        let (listener, _worker) = channel();
        let project = Uuid::now_v7();
        let mut feed = Feed::awaiting_snapshot(1);
        feed.snapshot_taken(0);
        listener.shared.lock().feeds.insert(project, feed);
        for seq in 1..=3000 {
            let event = renamed(project, seq, task(seq as u128 % 3));
            assert!(!is_schedule_input(&event), "a rename computes nothing");
            listener.committed(&[event]);
        }
        let state = listener.shared.lock();
        assert!(state.dirty.is_empty());
        let feed = &state.feeds[&project];
        assert!(!feed.broken);
        assert_eq!(feed.next_seq, Some(3001));
        assert_eq!(
            feed.changes.len(),
            3,
            "one change per task, not one per rename"
        );
        assert_eq!(seqs(feed), [3001 - 3, 3001 - 2, 3001 - 1]);
        assert_eq!(feed.waiting.len(), 3);
    }

    /// What the worker applies from a feed leaves the plan as every change one by one would.
    #[test]
    fn the_latest_change_per_record_makes_the_same_plan_as_all_of_them() {
        let project = Uuid::now_v7();
        let empty = Plan {
            start: chrono::NaiveDate::from_ymd_opt(2026, 1, 5).unwrap_or_default(),
            status_date: None,
            calendar_id: None,
            calendars: Default::default(),
            tasks: Default::default(),
            links: Default::default(),
            rechecks: Vec::new(),
        };
        let mut one_by_one = empty.clone();
        let mut feed = Feed::awaiting_snapshot(1);
        feed.snapshot_taken(0);
        let mut random = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |below: u64| {
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            random % below
        };
        for seq in 1..=2000 {
            let (a, b) = (task(next(8) as u128), task(next(8) as u128));
            let link = Uuid::from_u128(100 + next(6) as u128);
            let event = match next(5) {
                0 | 1 => {
                    let data = serde_json::json!({ "id": a, "duration": next(9), "is_milestone": next(4) == 0 });
                    event(
                        project,
                        seq,
                        proto::EventType::TaskUpdated,
                        data,
                        &["duration"],
                    )
                }
                2 => event(
                    project,
                    seq,
                    proto::EventType::TaskDeleted,
                    serde_json::json!({ "id": a }),
                    &[],
                ),
                3 => {
                    let data = serde_json::json!({ "id": link, "predecessor_id": a, "successor_id": b, "type": "SS" });
                    event(project, seq, proto::EventType::DependencyCreated, data, &[])
                }
                _ => event(
                    project,
                    seq,
                    proto::EventType::DependencyDeleted,
                    serde_json::json!({ "id": link }),
                    &[],
                ),
            };
            let effect = plan_effect(&event);
            if let PlanEffect::Change(change) = effect.clone() {
                one_by_one.apply(seq, change);
            }
            feed.record(seq, effect);
        }
        assert!(!feed.broken);
        assert!(feed.changes.len() <= 8 + 6);
        let mut latest = empty;
        for (seq, change) in feed.take_changes() {
            latest.apply(seq, change);
        }
        assert_eq!(latest.tasks, one_by_one.tasks);
        assert_eq!(latest.links, one_by_one.links);
        assert!(feed.changes.is_empty() && feed.waiting.is_empty());
    }

    #[test]
    fn what_the_plan_cannot_follow_breaks_the_feed_even_while_waiting() {
        let mut feed = Feed::awaiting_snapshot(1);
        feed.record(3, PlanEffect::Reload);
        feed.snapshot_taken(2);
        assert!(feed.broken);

        let mut feed = Feed::awaiting_snapshot(1);
        for seq in 1..=(MAX_QUEUED_CHANGES as i64 + 1) {
            feed.record(seq, PlanEffect::None);
        }
        assert!(feed.broken, "the wait is bounded");
    }
}
