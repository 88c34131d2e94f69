//! The store: liveplan's source of truth, including the event log.
//!
//! This crate holds only the backend-neutral interface; the backends live in crates of their
//! own (`store-sqlite`, `store-postgres`) and the behaviour every backend must show in
//! `store-conformance`.
//! - [`rows`]: the plain row types the store reads and writes.
//! - [`app_channels`]: the log of a Pusher app's own channels (rows and guarantees).
//! - [`webhooks`]: per-project webhooks, their cursors and leases, and their deliveries.
//! - [`whiteboards`]: the whiteboards' Yjs updates and snapshots (rows and guarantees).
//! - [`Store`] / [`Queries`] / [`WriteTx`]: what callers (the domain, the server) see. Nothing outside
//!   the backends and the one place that opens a store by its URL names a backend.
//!
//! # Concurrency contract
//!
//! What every backend guarantees, and all that callers may rely on. A backend may give more
//! (SQLite runs one write transaction at a time), but callers must not count on it, since a
//! PostgreSQL backend runs write transactions of several nodes side by side.
//!
//! - **Per stream.** A write transaction *holds* a stream from its first [`Queries::lock_stream`]
//!   or [`Queries::append_event`] on it until it commits or rolls back. Another transaction that
//!   locks or appends to a held stream waits until it is released, then sees everything the
//!   holder committed. Hence a stream's seqs are allocated gap-free, in commit order, never
//!   reused and never going backwards (not even after [`Queries::delete_stream_events`]), whatever
//!   the number of writers and nodes.
//! - **Per record.** Rows carry no lock of their own. Every change to a project's rows (the
//!   project, its memberships, its records) appends to the project's stream, and every change
//!   to a user to that user's stream. So a write transaction that first holds the stream and
//!   then reads rows that only transactions holding the same stream change reads their latest
//!   committed state, and nobody changes them before it ends: it may check a version, a rule
//!   across records, or whether the project still exists, and then write, without losing
//!   another writer's change. A transaction that reads before it holds gets no such promise.
//! - **Per app channel.** [`Queries::append_app_event`] holds each channel it appends to (its
//!   counter row) until the transaction ends, taking them in name order: a channel's serials
//!   are gap-free and in commit order, as a stream's seqs are ([`app_channels`]).
//! - **Uniqueness.** Unique rules (ids, emails and usernames case-insensitively, project keys,
//!   one membership per user and project) are checked by the backend across all writers; the
//!   loser gets [`StoreError::Conflict`], never a duplicate row.
//! - **Snapshots.** [`Store::snapshot`] reads as of one moment and never holds up writers.
//! - **No waiting on another writer.** While a write transaction is open, its caller must not
//!   wait for another write transaction of the same store to make progress (a barrier, a
//!   channel, a second transaction it opens itself): a backend may run the write transactions
//!   of one node one after another (SQLite has one writer; PostgreSQL's group commit runs the
//!   transactions that share a commit in turn on one connection).
//! - **Giving up.** A backend may give up a write transaction for a concurrent one (a deadlock
//!   between transactions holding streams in opposite orders): any of its calls then fails
//!   with [`StoreError::Retryable`], nothing of it commits, and the caller may run it again
//!   whole. A database out of reach is [`StoreError::Unavailable`], never a hang.

pub mod app_channels;
pub mod durability;
pub mod nodes;
pub mod retention;
pub mod rows;
pub mod sequencer;
pub mod webhooks;
pub mod whiteboards;

use async_trait::async_trait;
use proto::{Event, StreamKey};
use uuid::Uuid;

pub use app_channels::{AppChannelEventRow, AppChannelPositionRow, AppLogRetention};
pub use durability::{Durability, LOST_TAIL_SKIP, RunStart, STREAM_EPOCH_SETTING};
pub use nodes::{Admit, NodeJoin, NodeRow};
pub use retention::LogBounds;
pub use rows::*;
pub use webhooks::{DELIVERIES_KEPT, WebhookDeliveryRow, WebhookRow};
pub use whiteboards::{WhiteboardSnapshotInfo, WhiteboardSnapshotRow, WhiteboardUpdateRow};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (email taken, duplicate membership …); `what` names the rule
    /// in words fit for a client, never SQL.
    #[error("conflict: {what}")]
    Conflict { what: String },
    /// The database cannot be reached (down, restarting, the connection lost, no connection
    /// free in time). Nothing of the work that met it committed; the same work may succeed
    /// once the database is back.
    #[error("the database is unavailable")]
    Unavailable,
    /// The database gave up this transaction because of a concurrent one (a serialization
    /// failure or a deadlock). Nothing of it committed; run the whole transaction again.
    #[error("the transaction collided with a concurrent one")]
    Retryable,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// A [`StoreError::Database`] carrying a plain message.
    pub fn database(message: impl Into<String>) -> StoreError {
        StoreError::Database(message.into().into())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Every query and statement a store handle answers, the same for a read handle, a snapshot and
/// a write transaction. Methods that write are only meaningful inside a [`WriteTx`]; a read
/// handle returns an error for them.
#[async_trait]
pub trait Queries: Send {
    // settings
    async fn get_setting(&mut self, key: &str) -> StoreResult<Option<String>>;
    async fn put_setting(&mut self, key: &str, value: &str) -> StoreResult<()>;

    // users
    async fn count_users(&mut self) -> StoreResult<i64>;
    async fn get_user(&mut self, id: Uuid) -> StoreResult<Option<UserRow>>;
    /// Finds a user by email or username, case-insensitively.
    async fn find_user_by_login(&mut self, login: &str) -> StoreResult<Option<UserRow>>;
    async fn list_users(&mut self) -> StoreResult<Vec<UserRow>>;
    async fn insert_user(&mut self, user: &UserRow) -> StoreResult<()>;
    async fn update_user(&mut self, user: &UserRow) -> StoreResult<()>;
    /// Deletes the user with their sessions, tickets and memberships (an import replacing
    /// every account). Deleting no such user is not an error.
    async fn delete_user(&mut self, id: Uuid) -> StoreResult<()>;

    // sessions and tickets
    async fn insert_session(&mut self, session: &SessionRow) -> StoreResult<()>;
    async fn get_session(&mut self, id: Uuid) -> StoreResult<Option<SessionRow>>;
    /// A session and its user (`None` inside if the user row is gone). Authentication reads
    /// both on every request, so a backend should read them together; this default reads them
    /// one after the other.
    async fn get_session_with_user(
        &mut self,
        id: Uuid,
    ) -> StoreResult<Option<(SessionRow, Option<UserRow>)>> {
        let Some(session) = self.get_session(id).await? else {
            return Ok(None);
        };
        let user = self.get_user(session.user_id).await?;
        Ok(Some((session, user)))
    }
    async fn revoke_session(&mut self, id: Uuid, at: Timestamp) -> StoreResult<bool>;
    async fn revoke_user_sessions(&mut self, user_id: Uuid, at: Timestamp) -> StoreResult<u64>;
    async fn insert_ticket(&mut self, ticket: &TicketRow) -> StoreResult<()>;
    /// Marks the ticket with this hash used if it is unused and unexpired, atomically: of two
    /// concurrent consumers exactly one gets `Some`.
    async fn consume_ticket(
        &mut self,
        hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<TicketRow>>;
    async fn purge_expired_tickets(&mut self, now: Timestamp) -> StoreResult<u64>;

    // projects and memberships
    async fn get_project(&mut self, id: Uuid) -> StoreResult<Option<ProjectRow>>;
    async fn find_project_by_key(&mut self, key: &str) -> StoreResult<Option<ProjectRow>>;
    async fn list_projects(&mut self) -> StoreResult<Vec<ProjectRow>>;
    async fn list_projects_of_user(&mut self, user_id: Uuid) -> StoreResult<Vec<ProjectRow>>;
    async fn insert_project(&mut self, project: &ProjectRow) -> StoreResult<()>;
    async fn update_project(&mut self, project: &ProjectRow) -> StoreResult<()>;
    async fn delete_project(&mut self, id: Uuid) -> StoreResult<()>;
    async fn get_membership(&mut self, id: Uuid) -> StoreResult<Option<MembershipRow>>;
    async fn find_membership(
        &mut self,
        project_id: Uuid,
        user_id: Uuid,
    ) -> StoreResult<Option<MembershipRow>>;
    /// A project and `user_id`'s membership of it (`None` inside if not a member). The role
    /// check of every change reads both, so a backend should read them together; this default
    /// reads them one after the other.
    async fn get_project_with_membership(
        &mut self,
        project_id: Uuid,
        user_id: Uuid,
    ) -> StoreResult<Option<(ProjectRow, Option<MembershipRow>)>> {
        let Some(project) = self.get_project(project_id).await? else {
            return Ok(None);
        };
        let membership = self.find_membership(project_id, user_id).await?;
        Ok(Some((project, membership)))
    }
    /// [`Queries::get_project_with_membership`] and the record `record_id` (`None` inside if
    /// there is none, whatever its project). A change of a record reads all three once it
    /// holds the project's stream, so a backend whose every statement is a round trip should
    /// read them together; this default reads them one after the other.
    async fn get_project_with_membership_and_record(
        &mut self,
        project_id: Uuid,
        user_id: Uuid,
        record_id: Uuid,
    ) -> StoreResult<Option<(ProjectRow, Option<MembershipRow>, Option<RecordRow>)>> {
        let Some((project, membership)) = self
            .get_project_with_membership(project_id, user_id)
            .await?
        else {
            return Ok(None);
        };
        let record = self.get_record(record_id).await?;
        Ok(Some((project, membership, record)))
    }
    async fn list_memberships(&mut self, project_id: Uuid) -> StoreResult<Vec<MembershipRow>>;
    async fn list_memberships_of_user(&mut self, user_id: Uuid) -> StoreResult<Vec<MembershipRow>>;
    async fn insert_membership(&mut self, membership: &MembershipRow) -> StoreResult<()>;
    async fn update_membership(&mut self, membership: &MembershipRow) -> StoreResult<()>;
    async fn delete_membership(&mut self, id: Uuid) -> StoreResult<()>;

    // records of the project collections
    async fn get_record(&mut self, id: Uuid) -> StoreResult<Option<RecordRow>>;
    async fn list_records(
        &mut self,
        project_id: Uuid,
        collection: &str,
        page: Page,
    ) -> StoreResult<Vec<RecordRow>>;
    async fn count_records(&mut self, project_id: Uuid) -> StoreResult<i64>;
    /// Inserts the record and replaces its outgoing references.
    async fn insert_record(&mut self, record: &RecordRow, refs: &[RecordRef]) -> StoreResult<()>;
    async fn update_record(&mut self, record: &RecordRow, refs: &[RecordRef]) -> StoreResult<()>;
    /// Updates body, version and timestamp only, for changes that cannot touch references
    /// (scheduler outputs, sprint states, the active baseline).
    async fn update_record_body(&mut self, record: &RecordRow) -> StoreResult<()>;
    async fn delete_record(&mut self, id: Uuid) -> StoreResult<()>;
    /// The records that reference `target_id`, with the field that does.
    async fn list_referrers(&mut self, target_id: Uuid) -> StoreResult<Vec<Referrer>>;

    // the event log
    /// Holds `stream` for the rest of this write transaction (see the crate's concurrency
    /// contract): call it before reading what the transaction will check and then change.
    async fn lock_stream(&mut self, stream: StreamKey) -> StoreResult<()>;
    /// Appends an event with the next seq of its stream, holding the stream until the
    /// transaction ends. Ephemeral events are never appended.
    async fn append_event(&mut self, event: NewEvent) -> StoreResult<Event>;
    /// [`Queries::append_event`] for each of `events` in order; a backend may allocate a run
    /// of one stream's seqs at once (one statement for the run instead of one per event).
    async fn append_events(&mut self, events: Vec<NewEvent>) -> StoreResult<Vec<Event>> {
        let mut appended = Vec::with_capacity(events.len());
        for event in events {
            appended.push(self.append_event(event).await?);
        }
        Ok(appended)
    }
    async fn read_events(
        &mut self,
        stream: StreamKey,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<Event>>;
    /// The last seq allocated on the stream (0 when none ever was); deleting its events does
    /// not lower it.
    async fn latest_seq(&mut self, stream: StreamKey) -> StoreResult<i64>;
    /// The smallest seq the log still holds for the stream (`None` when it holds none).
    async fn oldest_seq(&mut self, stream: StreamKey) -> StoreResult<Option<i64>>;
    /// Drops the stream's events; its seqs go on from where they were.
    async fn delete_stream_events(&mut self, stream: StreamKey) -> StoreResult<()>;
    /// Up to `limit` streams whose name (`StreamKey::to_text`) sorts after `after`'s (from the
    /// first when `None`), in that order, each with its counter and its oldest logged event:
    /// what retention needs to tell, without counting rows, whether a stream may be over its
    /// limits.
    async fn log_bounds(
        &mut self,
        after: Option<StreamKey>,
        limit: u32,
    ) -> StoreResult<Vec<LogBounds>>;
    /// The seq of the stream's `n`-th newest logged event (1: the newest), `None` when it holds
    /// fewer. Walks `n` index entries: retention asks only when the seqs have a hole (a
    /// lost-tail skip), where the counter alone cannot say how many events a stream holds.
    async fn nth_newest_seq(&mut self, stream: StreamKey, n: u64) -> StoreResult<Option<i64>>;
    /// Deletes the stream's oldest events, in seq order, while each has a seq below
    /// `keep_from_seq` or (when given) a time before `older_than`; stops at the first that has
    /// neither, and after `limit`. What stays is one unbroken run of seqs ending at the newest
    /// event, and the stream's counter does not move. Returns how many were deleted.
    async fn prune_events(
        &mut self,
        stream: StreamKey,
        keep_from_seq: i64,
        older_than: Option<Timestamp>,
        limit: u32,
    ) -> StoreResult<u64>;
    /// Makes the stream's last seq at least `at_least`, holding the stream like
    /// [`Queries::append_event`]: the next event appended gets a seq above it. Never lowers
    /// the seq (an import moving a stream's history here, whose clients must never see a seq
    /// reused). `at_least` below 0 is an error.
    async fn raise_seq(&mut self, stream: StreamKey, at_least: i64) -> StoreResult<()>;

    // phantom ids: the temporary ids Bryntum clients give new records
    /// The real ids of those of `phantoms` the project has mapped, in no particular order.
    async fn get_phantom_ids(
        &mut self,
        project_id: Uuid,
        phantoms: &[String],
    ) -> StoreResult<Vec<(String, Uuid)>>;
    /// Maps each phantom to its real id (a phantom already mapped keeps its first id), then
    /// forgets the project's oldest mappings beyond the newest `keep`.
    async fn put_phantom_ids(
        &mut self,
        project_id: Uuid,
        mapped: &[(String, Uuid)],
        keep: u32,
    ) -> StoreResult<()>;

    // the app channels' log ([`app_channels`] says what is guaranteed)
    /// Appends one event at `at` to each of `channels` (a channel named twice gets one event),
    /// each with the next serial of its channel, then prunes those channels to `retention`.
    /// Returns the stored events in `channels` order. Call it in a write transaction of its own:
    /// it holds the channels' counter rows until the transaction ends.
    async fn append_app_event(
        &mut self,
        channels: &[String],
        event: &str,
        data: &str,
        at: Timestamp,
        retention: AppLogRetention,
    ) -> StoreResult<Vec<AppChannelEventRow>>;
    /// Up to `limit` events of `channel` with serials above `after` and times at or after
    /// `not_before`, oldest first.
    async fn read_app_events(
        &mut self,
        channel: &str,
        after: i64,
        limit: u32,
        not_before: Timestamp,
    ) -> StoreResult<Vec<AppChannelEventRow>>;
    /// The channel's stream (its oldest kept serial counts only events at or after
    /// `not_before`), or `None` when it has no counter row (never written, or forgotten).
    async fn app_channel_position(
        &mut self,
        channel: &str,
        not_before: Timestamp,
    ) -> StoreResult<Option<AppChannelPositionRow>>;
    /// Forgets up to `limit` channels last written before `idle_before`: their events and their
    /// counter rows (a later append starts at serial 1 under a new `stream_id`). Returns how
    /// many were forgotten; the caller repeats while it is `limit`.
    async fn forget_idle_app_channels(
        &mut self,
        idle_before: Timestamp,
        limit: u32,
    ) -> StoreResult<u64>;
    /// Forgets every app channel (an import replacing the database): each one starts anew
    /// under a new `stream_id`.
    async fn delete_app_channels(&mut self) -> StoreResult<()>;

    // the whiteboards' documents ([`whiteboards`] says what is guaranteed)
    /// Appends `update` to the board's updates with the next seq of the board and returns it,
    /// holding the board's counter until the transaction ends. Fails when no record `board_id`
    /// exists.
    async fn append_whiteboard_update(
        &mut self,
        board_id: Uuid,
        update: &[u8],
        at: Timestamp,
    ) -> StoreResult<i64>;
    /// Up to `limit` of the board's stored updates with seqs above `after_seq`, in seq order.
    async fn read_whiteboard_updates(
        &mut self,
        board_id: Uuid,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<WhiteboardUpdateRow>>;
    /// The last seq the board allocated (0 when none ever was).
    async fn whiteboard_latest_seq(&mut self, board_id: Uuid) -> StoreResult<i64>;
    /// Replaces the board's updates through `through_seq` by one row at `through_seq` holding
    /// `state`. Fails, changing nothing, when `through_seq` is above the board's last seq or
    /// below 1.
    async fn compact_whiteboard(
        &mut self,
        board_id: Uuid,
        through_seq: i64,
        state: &[u8],
    ) -> StoreResult<()>;
    /// Up to `limit` boards holding more than `more_than` stored rows (compaction candidates).
    async fn whiteboards_to_compact(
        &mut self,
        more_than: u32,
        limit: u32,
    ) -> StoreResult<Vec<Uuid>>;
    /// Stores a snapshot; a taken id is a [`StoreError::Conflict`], no such board an error.
    async fn insert_whiteboard_snapshot(
        &mut self,
        snapshot: &WhiteboardSnapshotRow,
    ) -> StoreResult<()>;
    /// The board's snapshots, oldest first, without their states.
    async fn list_whiteboard_snapshots(
        &mut self,
        board_id: Uuid,
    ) -> StoreResult<Vec<WhiteboardSnapshotInfo>>;
    async fn get_whiteboard_snapshot(
        &mut self,
        id: Uuid,
    ) -> StoreResult<Option<WhiteboardSnapshotRow>>;
    // per-project webhooks ([`webhooks`] says what is guaranteed)
    /// Stores a new webhook; a taken id is a [`StoreError::Conflict`], no such project an error.
    async fn insert_webhook(&mut self, webhook: &WebhookRow) -> StoreResult<()>;
    async fn get_webhook(&mut self, id: Uuid) -> StoreResult<Option<WebhookRow>>;
    /// The project's webhooks, oldest first.
    async fn list_webhooks(&mut self, project_id: Uuid) -> StoreResult<Vec<WebhookRow>>;
    /// Changes url, events, secret, active and updated_at (never the cursor or the lease);
    /// `false` when there is no such webhook.
    async fn update_webhook(&mut self, webhook: &WebhookRow) -> StoreResult<bool>;
    /// Deletes the webhook and its deliveries; `false` when there was none.
    async fn delete_webhook(&mut self, id: Uuid) -> StoreResult<bool>;
    /// Up to `limit` active webhooks with events to handle: a cursor below their project
    /// stream's last seq, no lease held by anyone at `now`, and no retry waiting past `now`.
    async fn due_webhooks(&mut self, now: Timestamp, limit: u32) -> StoreResult<Vec<WebhookRow>>;
    /// Gives `owner` the webhook's lease until `until` when it is free, expired at `now`, or
    /// already `owner`'s; `false` otherwise (or no such webhook).
    async fn take_webhook_lease(
        &mut self,
        id: Uuid,
        owner: Uuid,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<bool>;
    /// Frees `owner`'s lease (nothing when another holds it); `retry_at` makes the webhook not
    /// due before then.
    async fn release_webhook_lease(
        &mut self,
        id: Uuid,
        owner: Uuid,
        retry_at: Option<Timestamp>,
    ) -> StoreResult<()>;
    /// Moves the cursor from `from` to `to` (`to > from`) when `owner` holds the lease and the
    /// cursor is still `from`; `false` otherwise, changing nothing.
    async fn advance_webhook_cursor(
        &mut self,
        id: Uuid,
        owner: Uuid,
        from: i64,
        to: i64,
    ) -> StoreResult<bool>;
    /// The lowest cursor of the project's active webhooks (`None` when it has none): the log
    /// retention keeps every event after it.
    async fn min_webhook_cursor(&mut self, project_id: Uuid) -> StoreResult<Option<i64>>;
    /// Stores a delivery; one already stored for its (webhook, seq) is a [`StoreError::Conflict`].
    async fn insert_webhook_delivery(&mut self, delivery: &WebhookDeliveryRow) -> StoreResult<()>;
    /// The delivery of `seq` to the webhook, if one was made.
    async fn get_webhook_delivery(
        &mut self,
        webhook_id: Uuid,
        seq: i64,
    ) -> StoreResult<Option<WebhookDeliveryRow>>;
    /// Changes outcome, attempts, response_status, error and updated_at; `false` when there is
    /// no such delivery.
    async fn update_webhook_delivery(&mut self, delivery: &WebhookDeliveryRow)
    -> StoreResult<bool>;
    /// Up to `limit` of the webhook's deliveries, newest (highest seq) first.
    async fn list_webhook_deliveries(
        &mut self,
        webhook_id: Uuid,
        limit: u32,
    ) -> StoreResult<Vec<WebhookDeliveryRow>>;
    /// Deletes all but the webhook's newest `keep` deliveries; returns how many went.
    async fn prune_webhook_deliveries(&mut self, webhook_id: Uuid, keep: u32) -> StoreResult<u64>;
}

/// A write transaction: every change inside it and every event it appends commit together or
/// not at all. Dropping it without `commit` rolls back.
#[async_trait]
pub trait WriteTx: Queries {
    async fn commit(self: Box<Self>) -> StoreResult<()>;
    /// Commits, then runs `then` in commit order: after the `then` of every writer that
    /// committed before it and before that of any writer that commits after it (the domain
    /// hands the committed events to its listener here). Other writers may begin and commit
    /// meanwhile (PostgreSQL: see `store::sequencer`). `then` must be quick and must not
    /// write. Not run when the commit fails.
    async fn commit_then<'a>(
        self: Box<Self>,
        then: Box<dyn FnOnce() + Send + 'a>,
    ) -> StoreResult<()>;
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A handle for reads, outside any write transaction.
    async fn read(&self) -> StoreResult<Box<dyn Queries>>;
    /// A handle whose reads all see the database as of one moment (fixed by its first read),
    /// without holding up writers: for a reader that must combine several queries, such as
    /// a project's whole plan and the seq it is current at.
    async fn snapshot(&self) -> StoreResult<Box<dyn Queries>>;
    /// Starts a write transaction. Other write transactions may run beside it: what it may rely
    /// on is the crate's concurrency contract.
    async fn write(&self) -> StoreResult<Box<dyn WriteTx>>;
    /// Cheap liveness check for `/healthz`.
    async fn ping(&self) -> StoreResult<()>;
    /// Closes the store's connections: idle ones now, lent ones when their handle is dropped.
    /// Later calls fail.
    async fn close(&self);
    fn backend_name(&self) -> &'static str;
    /// Starts a server's run on this store (the server calls it once, before it serves; the
    /// CLI does not): if an earlier run in [`Durability::Fast`] may have lost the log's tail,
    /// every stream's counter is first moved on by [`LOST_TAIL_SKIP`] (see [`durability`]).
    async fn begin_run(&self) -> StoreResult<RunStart>;
    /// The `synchronous` setting the store's commits run with, as the database reports it
    /// (SQLite `PRAGMA synchronous`: 2 is FULL, 1 NORMAL, followed by ` + group sync` when the
    /// store syncs the log itself before acknowledging, as in its full durability; PostgreSQL
    /// `SHOW synchronous_commit`).
    async fn synchronous_setting(&self) -> StoreResult<String>;

    // the node registry ([`nodes`])
    /// In one transaction that excludes every other join: forgets the nodes whose heartbeat is
    /// older than `max_age`, reads the others (`node` itself excluded), and registers `node`
    /// (replacing a row of the same id) only when `admit` says yes of them.
    async fn join_nodes(
        &self,
        node: &NodeRow,
        max_age: std::time::Duration,
        admit: &Admit,
    ) -> StoreResult<NodeJoin>;
    /// Notes that node `id` is alive now; `false` when it is not registered (it was forgotten
    /// as gone, or never joined).
    async fn heartbeat_node(&self, id: Uuid) -> StoreResult<bool>;
    /// Removes node `id` from the registry (a clean stop). Leaving twice is not an error.
    async fn leave_nodes(&self, id: Uuid) -> StoreResult<()>;
    /// The registered nodes whose heartbeat is at most `max_age` old, oldest start first.
    async fn live_nodes(&self, max_age: std::time::Duration) -> StoreResult<Vec<NodeRow>>;
}
