//! The node's one writer of whiteboard updates: a group commit across boards.
//!
//! Every open document's actor hands its accepted updates here and waits; the writer takes
//! what all actors have queued and stores it in one write transaction, so a thousand boards
//! with an update each cost one transaction (one sync) instead of a thousand. An actor is
//! answered only once the transaction committed (durably, in the full durability), so "store
//! before relay" holds as it does for one board alone.
//!
//! - **Failures.** The store unavailable, a transaction that cannot begin, or a commit that
//!   fails: every request of the transaction fails (its actor closes its clients and relays
//!   nothing, as after a failed append of its own). One board's append refused for itself (its
//!   record deleted meanwhile) fails only that board: the transaction is dropped and the others
//!   run again without it, so one deleted board does not close every board of the node.
//! - **Events.** The throttled `whiteboard_updated` (CONTRACT §11) rides the writer's
//!   transactions; the writer keeps the throttle ([`super::throttle`]), whose rounds announce
//!   the node's changed boards together at most once a second, so a round goes with the next
//!   transactions (a large one over several), and the writer wakes for it only when nothing
//!   else comes. An event that cannot be written does not fail the updates: the transaction
//!   runs again without the events (as a separate event transaction failing did not).
//! - **Lock order.** Project streams are held first, in id order, then the boards' counters
//!   in id order: every domain transaction holds its project's stream before rows (a board's
//!   deletion: the stream, then the board's rows), and two writers on two nodes take the same
//!   counters in the same order, so none of them can deadlock with this one.
//! - **Waiting for company.** The disk syncs in about a millisecond, so updates of many boards
//!   arriving one at a time would each still get a transaction and a sync of their own. Once a
//!   transaction found several boards waiting, the next one waits up to [`LINGER`] for more;
//!   one board alone never waits (its actor already batches its own updates). Up to
//!   [`IN_FLIGHT`] transactions are under way: the next is gathered and written while the one
//!   before waits for its sync.
//! - **Bounds.** At most [`MAX_GROUP`] requests and about [`MAX_GROUP_BYTES`] of updates per
//!   transaction. The queue holds at most one request per open board (an actor waits for its
//!   answer before it sends more); the throttle at most one waiting event per board, and
//!   [`MAX_PER_TRANSACTION`] events per transaction.

#[cfg(doc)]
use super::throttle::MAX_PER_TRANSACTION;
use super::throttle::Throttle;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use store::StoreError;
use tokio::sync::{Semaphore, mpsc, oneshot};
use uuid::Uuid;

/// Requests stored in one transaction at most.
pub const MAX_GROUP: usize = 256;
/// Update bytes stored in one transaction at most (a request larger than this goes alone).
pub const MAX_GROUP_BYTES: usize = 16 * 1024 * 1024;
/// How long a transaction waits for more boards' updates, once the one before found several
/// boards waiting. With one board alone (its actor batches its own updates) nothing waits.
/// Measured on `relay1000` (1,000 boards × 2 editors × 0.5 updates/s; BENCHMARKS.md, "Group
/// commit"): the disk syncs in about a millisecond, so without it nearly every update had a
/// transaction and a sync of its own.
pub const LINGER: Duration = Duration::from_millis(2);
/// Transactions under way at once: the next one is gathered and written while the one
/// before waits for its sync (SQLite's writer is free again from its COMMIT on, and the
/// store's group sync then covers both).
pub const IN_FLIGHT: usize = 2;

/// The store refused the updates: nothing of them is stored.
#[derive(Debug, PartialEq, Eq)]
pub struct Failed;

/// What a stored request gives back: its updates' first and last seq (`None` when it had
/// none), and the updates themselves.
pub type Stored = (Option<(i64, i64)>, Vec<Vec<u8>>);

/// Why one step of a transaction failed.
#[derive(Debug, PartialEq, Eq)]
pub enum StepFailed {
    /// The store as a whole (unreachable): everything in the transaction fails.
    Store,
    /// This one step (a board whose record is gone): the rest may go without it.
    This,
}

impl From<StoreError> for StepFailed {
    fn from(err: StoreError) -> StepFailed {
        match err {
            StoreError::Unavailable => StepFailed::Store,
            _ => StepFailed::This,
        }
    }
}

/// One write transaction of the writer.
#[async_trait]
pub trait GroupTx: Send {
    /// Announces a change of each of `boards` (`whiteboard_updated`, sorted, no duplicates).
    async fn announce(&mut self, boards: &[Uuid]) -> Result<(), StepFailed>;
    /// Appends one update to `board`; its seq.
    async fn append(&mut self, board: Uuid, update: &[u8]) -> Result<i64, StepFailed>;
    /// Commits; returns once it is as durable as the store's setting promises.
    async fn commit(self: Box<Self>) -> Result<(), StepFailed>;
}

/// Where the writer's transactions go (the store; a test's stand-in).
#[async_trait]
pub trait GroupTarget: Send + Sync + 'static {
    async fn begin(&self) -> Result<Box<dyn GroupTx + '_>, StepFailed>;
}

struct Request {
    board: Uuid,
    updates: Vec<Vec<u8>>,
    reply: oneshot::Sender<Result<Stored, Failed>>,
}

impl Request {
    fn bytes(&self) -> usize {
        self.updates.iter().map(Vec::len).sum()
    }

    fn answer(self, result: Result<Stored, Failed>) {
        let _ = self.reply.send(result);
    }
}

/// The way to the node's writer.
#[derive(Clone)]
pub struct Writer(mpsc::UnboundedSender<Request>);

impl Writer {
    /// Starts the writer's task; it ends when the last `Writer` is dropped.
    pub fn start(target: Arc<dyn GroupTarget>) -> Writer {
        let (sender, requests) = mpsc::unbounded_channel();
        tokio::spawn(run(target, requests));
        Writer(sender)
    }

    /// Stores `updates` of `board` (with its `whiteboard_updated` when the throttle lets one
    /// go); answers once they are durable, or failed.
    pub async fn append(&self, board: Uuid, updates: Vec<Vec<u8>>) -> Result<Stored, Failed> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            board,
            updates,
            reply,
        };
        if self.0.send(request).is_err() {
            return Err(Failed);
        }
        answer.await.unwrap_or(Err(Failed))
    }
}

async fn run(target: Arc<dyn GroupTarget>, mut requests: mpsc::UnboundedReceiver<Request>) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut throttle = Throttle::new(tokio::time::Instant::now().into_std());
    let mut contended = false;
    loop {
        // A group begins with a request, or with events due while none came.
        let first = match throttle.next_due() {
            None => match requests.recv().await {
                Some(request) => Some(request),
                None => return,
            },
            Some(due) => tokio::select! {
                request = requests.recv() => match request {
                    Some(request) => Some(request),
                    None => return,
                },
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(due)) => None,
            },
        };
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let until = tokio::time::Instant::now() + LINGER;
        let mut bytes = first.as_ref().map_or(0, Request::bytes);
        let mut group: Vec<Request> = first.into_iter().collect();
        while group.len() < MAX_GROUP && bytes < MAX_GROUP_BYTES {
            let next = match requests.try_recv() {
                Ok(request) => Some(request),
                Err(_) if !contended => None,
                Err(_) => tokio::time::timeout_at(until, requests.recv())
                    .await
                    .ok()
                    .flatten(),
            };
            let Some(request) = next else { break };
            bytes += request.bytes();
            group.push(request);
        }
        contended = group.len() > 1;
        let announced = throttle.announce(
            group.iter().map(|request| request.board),
            tokio::time::Instant::now().into_std(),
        );
        if group.is_empty() && announced.is_empty() {
            continue;
        }
        let target = target.clone();
        tokio::spawn(async move {
            store_group(&*target, group, announced).await;
            drop(permit);
        });
    }
}

/// What one attempt at a group's transaction came to.
enum Attempt {
    Committed(Vec<Option<(i64, i64)>>),
    /// Everything fails.
    Failed,
    /// The events could not be written: again without them.
    EventsFailed,
    /// Request `i`'s own append was refused: it fails, the others go again.
    Refused(usize),
}

/// Stores `group` with the `whiteboard_updated` of `announced` (sorted, no duplicates) and
/// answers every request in it.
async fn store_group(target: &dyn GroupTarget, mut group: Vec<Request>, mut announced: Vec<Uuid>) {
    // Stable: a board's requests keep their order (one actor per board has one in flight,
    // but an actor ending and its successor may overlap).
    group.sort_by_key(|request| request.board);
    loop {
        match attempt(target, &group, &announced).await {
            Attempt::Committed(seqs) => {
                for (request, seqs) in group.into_iter().zip(seqs) {
                    let Request { updates, reply, .. } = request;
                    let _ = reply.send(Ok((seqs, updates)));
                }
                return;
            }
            Attempt::Failed => {
                for request in group {
                    request.answer(Err(Failed));
                }
                return;
            }
            Attempt::EventsFailed => {
                tracing::warn!("whiteboard_updated not emitted: the updates go without it");
                announced.clear();
            }
            Attempt::Refused(i) => {
                let refused = group.remove(i);
                tracing::warn!(board = %refused.board, "the store refused a whiteboard's update");
                refused.answer(Err(Failed));
            }
        }
        if group.is_empty() && announced.is_empty() {
            return;
        }
    }
}

async fn attempt(target: &dyn GroupTarget, group: &[Request], announced: &[Uuid]) -> Attempt {
    let Ok(mut tx) = target.begin().await else {
        return Attempt::Failed;
    };
    if !announced.is_empty() {
        match tx.announce(announced).await {
            Ok(()) => {}
            Err(StepFailed::Store) => return Attempt::Failed,
            Err(StepFailed::This) => return Attempt::EventsFailed,
        }
    }
    let mut seqs = Vec::with_capacity(group.len());
    for (i, request) in group.iter().enumerate() {
        let mut range = None;
        for update in &request.updates {
            match tx.append(request.board, update).await {
                Ok(seq) => range = Some(range.map_or((seq, seq), |(first, _)| (first, seq))),
                Err(StepFailed::Store) => return Attempt::Failed,
                Err(StepFailed::This) => return Attempt::Refused(i),
            }
        }
        seqs.push(range);
    }
    match tx.commit().await {
        Ok(()) => Attempt::Committed(seqs),
        Err(_) => Attempt::Failed,
    }
}

/// The writer's transactions in the node's store, through the domain so the events reach the
/// listener (the live feed) once committed.
pub struct StoreTarget(pub domain::Domain);

struct StoreTx<'d>(domain::tx::Tx<'d>);

#[async_trait]
impl GroupTarget for StoreTarget {
    async fn begin(&self) -> Result<Box<dyn GroupTx + '_>, StepFailed> {
        match domain::tx::Tx::begin(&self.0, None).await {
            Ok(tx) => Ok(Box::new(StoreTx(tx))),
            Err(_) => Err(StepFailed::Store),
        }
    }
}

#[async_trait]
impl GroupTx for StoreTx<'_> {
    async fn announce(&mut self, boards: &[Uuid]) -> Result<(), StepFailed> {
        use proto::{EventType, StreamKey};
        // Read before the streams are held, as a single event's transaction always did: the
        // streams must be taken in one order before any board's rows.
        let mut records = Vec::with_capacity(boards.len());
        for board in boards {
            if let Some(record) = self.0.ops().get_record(*board).await? {
                records.push(record);
            }
        }
        records.sort_by_key(|record| (record.project_id, record.id));
        let mut held = None;
        let mut events = Vec::with_capacity(records.len());
        for record in records {
            let stream = StreamKey::Project(record.project_id);
            if held != Some(record.project_id) {
                self.0.hold(stream).await.map_err(api_step)?;
                held = Some(record.project_id);
            }
            events.push((
                stream,
                EventType::WhiteboardUpdated,
                serde_json::json!({ "id": record.id }),
                domain::records::record_json(&record),
                Some(record.project_id),
            ));
        }
        // Sorted by project: each project's events take their seqs in one statement.
        self.0.emit_all(events).await.map_err(api_step)
    }

    async fn append(&mut self, board: Uuid, update: &[u8]) -> Result<i64, StepFailed> {
        Ok(self
            .0
            .ops()
            .append_whiteboard_update(board, update, store::now())
            .await?)
    }

    async fn commit(self: Box<Self>) -> Result<(), StepFailed> {
        self.0.commit().await.map(|_| ()).map_err(api_step)
    }
}

fn api_step(err: proto::ApiError) -> StepFailed {
    if err.code == proto::ErrorCode::StoreUnavailable {
        StepFailed::Store
    } else {
        StepFailed::This
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// What the stand-in store does at each step.
    #[derive(Default)]
    struct Script {
        fail_commit: bool,
        fail_begin: bool,
        fail_events: bool,
        /// Boards whose appends are refused for themselves.
        refused: Vec<Uuid>,
        /// Fails the whole store at the n-th append (counted over all transactions).
        unavailable_at_append: Option<usize>,
    }

    /// A committed transaction: its (board, update) appends and its events.
    type Committed = (Vec<(Uuid, Vec<u8>)>, Vec<Uuid>);

    #[derive(Default)]
    struct Fake {
        script: Script,
        appends: Mutex<usize>,
        committed: Mutex<Vec<Committed>>,
        seqs: Mutex<std::collections::HashMap<Uuid, i64>>,
    }

    struct FakeTx<'a> {
        fake: &'a Fake,
        appends: Vec<(Uuid, Vec<u8>)>,
        events: Vec<Uuid>,
    }

    #[async_trait]
    impl GroupTarget for Fake {
        async fn begin(&self) -> Result<Box<dyn GroupTx + '_>, StepFailed> {
            if self.script.fail_begin {
                return Err(StepFailed::Store);
            }
            Ok(Box::new(FakeTx {
                fake: self,
                appends: Vec::new(),
                events: Vec::new(),
            }))
        }
    }

    #[async_trait]
    impl GroupTx for FakeTx<'_> {
        async fn announce(&mut self, boards: &[Uuid]) -> Result<(), StepFailed> {
            if self.fake.script.fail_events {
                return Err(StepFailed::This);
            }
            self.events.extend_from_slice(boards);
            Ok(())
        }

        async fn append(&mut self, board: Uuid, update: &[u8]) -> Result<i64, StepFailed> {
            let n = {
                let mut appends = self.fake.appends.lock().unwrap();
                *appends += 1;
                *appends
            };
            if self.fake.script.unavailable_at_append == Some(n) {
                return Err(StepFailed::Store);
            }
            if self.fake.script.refused.contains(&board) {
                return Err(StepFailed::This);
            }
            self.appends.push((board, update.to_vec()));
            let before = self.appends.iter().filter(|(b, _)| *b == board).count() as i64;
            let committed = *self.fake.seqs.lock().unwrap().get(&board).unwrap_or(&0);
            Ok(committed + before)
        }

        async fn commit(self: Box<Self>) -> Result<(), StepFailed> {
            if self.fake.script.fail_commit {
                return Err(StepFailed::Store);
            }
            let mut seqs = self.fake.seqs.lock().unwrap();
            for (board, _) in &self.appends {
                *seqs.entry(*board).or_default() += 1;
            }
            self.fake
                .committed
                .lock()
                .unwrap()
                .push((self.appends, self.events));
            Ok(())
        }
    }

    fn request(
        board: Uuid,
        updates: &[&[u8]],
    ) -> (Request, oneshot::Receiver<Result<Stored, Failed>>) {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            board,
            updates: updates.iter().map(|u| u.to_vec()).collect(),
            reply,
        };
        (request, answer)
    }

    /// Three boards' requests handed to the writer as one group, the first one's event with
    /// them.
    async fn group_of_three(fake: &Fake) -> (Vec<Uuid>, Vec<Result<Stored, Failed>>) {
        let boards: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        let mut group = Vec::new();
        let mut answers = Vec::new();
        for board in &boards {
            let (request, answer) = request(*board, &[b"one", b"two"]);
            group.push(request);
            answers.push(answer);
        }
        store_group(fake, group, vec![boards[0]]).await;
        let mut results = Vec::new();
        for answer in answers {
            results.push(answer.await.expect("every request is answered"));
        }
        (boards, results)
    }

    #[tokio::test]
    async fn one_transaction_stores_every_boards_updates_and_answers_each() {
        let fake = Fake::default();
        let (boards, results) = group_of_three(&fake).await;
        for result in &results {
            let (seqs, updates) = result.as_ref().expect("stored");
            assert_eq!(*seqs, Some((1, 2)));
            assert_eq!(*updates, vec![b"one".to_vec(), b"two".to_vec()]);
        }
        let committed = fake.committed.lock().unwrap();
        assert_eq!(committed.len(), 1, "one transaction for the three boards");
        assert_eq!(committed[0].0.len(), 6);
        assert_eq!(committed[0].1, vec![boards[0]]);
    }

    #[tokio::test]
    async fn a_failed_commit_fails_every_waiting_request() {
        let fake = Fake {
            script: Script {
                fail_commit: true,
                ..Script::default()
            },
            ..Fake::default()
        };
        let (_, results) = group_of_three(&fake).await;
        assert!(results.iter().all(|r| *r == Err(Failed)));
        assert!(fake.committed.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_store_failing_mid_batch_fails_every_waiting_request() {
        // The fourth append (the second board's second update) meets a store gone away.
        let fake = Fake {
            script: Script {
                unavailable_at_append: Some(4),
                ..Script::default()
            },
            ..Fake::default()
        };
        let (_, results) = group_of_three(&fake).await;
        assert!(results.iter().all(|r| *r == Err(Failed)));
        assert!(fake.committed.lock().unwrap().is_empty());
        assert_eq!(*fake.appends.lock().unwrap(), 4, "no second attempt");
    }

    #[tokio::test]
    async fn a_transaction_that_cannot_begin_fails_every_request() {
        let fake = Fake {
            script: Script {
                fail_begin: true,
                ..Script::default()
            },
            ..Fake::default()
        };
        let (_, results) = group_of_three(&fake).await;
        assert!(results.iter().all(|r| *r == Err(Failed)));
    }

    #[tokio::test]
    async fn a_board_refused_for_itself_fails_alone() {
        let refused = Uuid::new_v4();
        let fake = Fake {
            script: Script {
                refused: vec![refused],
                ..Script::default()
            },
            ..Fake::default()
        };
        let kept = Uuid::new_v4();
        let (a, answer_refused) = request(refused, &[b"x"]);
        let (b, answer_kept) = request(kept, &[b"y"]);
        store_group(&fake, vec![a, b], Vec::new()).await;
        assert_eq!(answer_refused.await.unwrap(), Err(Failed));
        let (seqs, _) = answer_kept
            .await
            .unwrap()
            .expect("the other board is stored");
        assert_eq!(seqs, Some((1, 1)));
        let committed = fake.committed.lock().unwrap();
        assert_eq!(committed.len(), 1);
        assert_eq!(committed[0].0, vec![(kept, b"y".to_vec())]);
    }

    #[tokio::test]
    async fn events_that_fail_do_not_fail_the_updates() {
        let fake = Fake {
            script: Script {
                fail_events: true,
                ..Script::default()
            },
            ..Fake::default()
        };
        let (_, results) = group_of_three(&fake).await;
        assert!(results.iter().all(Result::is_ok));
        let committed = fake.committed.lock().unwrap();
        assert_eq!(committed.len(), 1);
        assert!(committed[0].1.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_writer_announces_a_boards_second_once_and_its_end_alone() {
        let fake = Arc::new(Fake::default());
        let writer = Writer::start(fake.clone());
        let board = Uuid::new_v4();
        let stored = writer.append(board, vec![b"u1".to_vec()]).await;
        assert_eq!(stored.unwrap().0, Some((1, 1)));
        for update in [b"u2", b"u3"] {
            writer.append(board, vec![update.to_vec()]).await.unwrap();
        }
        let events = |fake: &Fake| -> Vec<usize> {
            let committed = fake.committed.lock().unwrap();
            committed.iter().map(|(_, events)| events.len()).collect()
        };
        assert_eq!(
            events(&fake),
            vec![1, 0, 0],
            "the first change at once, then none"
        );
        // Nothing else comes: the writer wakes when the second is over for the one event of
        // the two changes that waited.
        tokio::time::sleep(super::super::throttle::EVENT_EVERY + LINGER).await;
        assert_eq!(events(&fake), vec![1, 0, 0, 1]);
        let committed = fake.committed.lock().unwrap();
        assert!(committed[3].0.is_empty(), "an event alone");
        assert_eq!(committed[3].1, vec![board]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_larger_than_a_transaction_goes_out_over_the_next_ones_each_board_once() {
        use super::super::throttle::{EVENT_EVERY, MAX_PER_TRANSACTION};
        let fake = Arc::new(Fake::default());
        let writer = Writer::start(fake.clone());
        let mut boards: Vec<Uuid> = (0..MAX_PER_TRANSACTION * 2 + 10)
            .map(|_| Uuid::new_v4())
            .collect();
        let appends = boards
            .iter()
            .map(|board| writer.append(*board, vec![b"u".to_vec()]));
        for stored in futures::future::join_all(appends).await {
            assert_eq!(stored.unwrap().0, Some((1, 1)));
        }
        // Nothing else comes: the writer wakes for the rest of the round, and for the next.
        tokio::time::sleep(EVENT_EVERY * 2 + LINGER).await;
        let committed = fake.committed.lock().unwrap();
        assert!(
            committed
                .iter()
                .all(|(_, events)| events.len() <= MAX_PER_TRANSACTION),
            "at most {MAX_PER_TRANSACTION} events a transaction"
        );
        let mut announced: Vec<Uuid> = committed
            .iter()
            .flat_map(|(_, events)| events.iter().copied())
            .collect();
        announced.sort_unstable();
        boards.sort_unstable();
        assert_eq!(announced, boards, "each board once");
    }
}
