//! liveplan's domain: what each collection holds, who may change what, and what a change
//! implies. Every write goes through here: authorize, validate, change rows and append the
//! canonical events in one store transaction, commit, then hand the committed events to the
//! [`CommitListener`] (the bus). Handlers parse, call one function, and map the result.
//!
//! Layout:
//! - [`collections`]: the table of project collections and their fields.
//! - [`validate`]: checking client JSON against that table.
//! - [`access`]: the role rules.
//! - [`tx`]: a write transaction that collects the events it appends.
//! - [`retry`]: running a write transaction again when it collided with a concurrent one.
//! - [`batch`]: many changes across collections in one transaction (Bryntum revisions).
//! - [`bryntum`]: what the Bryntum dialect needs beyond batches: its dataset read, access
//!   questions, autosave grants, demo resets and phantom ids.
//! - [`records`], [`projects`], [`members`], [`accounts`], [`admin`]: the commands.
//! - [`webhooks`]: per-project webhooks: their rules and commands (delivery is the server's).
//! - [`transfer`]: the whole database as one document and back (export and import).

pub mod access;
pub mod accounts;
pub mod admin;
pub mod batch;
pub mod bryntum;
pub mod collections;
pub mod members;
pub mod projects;
pub mod records;
pub mod retry;
pub mod schedule;
pub mod schedule_lease;
pub mod transfer;
mod transfer_check;
pub mod tx;
pub mod validate;
pub mod webhooks;

use proto::{ApiError, ErrorCode, Event};
use std::sync::Arc;
use store::{Store, StoreError};
use uuid::Uuid;

/// Receives the events of every committed transaction, in commit order: it is called after the
/// commit and before any later commit's events are handed over (`WriteTx::commit_then`), so it
/// must be quick, must not block on I/O and must not write through the domain.
pub trait CommitListener: Send + Sync {
    fn committed(&self, events: &[Event]);
}

/// A listener that drops events, for tools (the CLI) that write without a running hub.
pub struct NoListener;

impl CommitListener for NoListener {
    fn committed(&self, _events: &[Event]) {}
}

/// Who is acting, as established by authentication.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: Uuid,
    pub is_admin: bool,
    /// The writer's browser tab (`X-Tab-Id`), carried into the events.
    pub tab_id: Option<String>,
}

/// Limits that keep one project or request from exhausting the server.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_records_per_project: i64,
    pub max_members_per_project: usize,
    pub max_log_page: u32,
    pub max_list_page: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_records_per_project: 250_000,
            max_members_per_project: 10_000,
            max_log_page: 1_000,
            max_list_page: 10_000,
        }
    }
}

#[derive(Clone)]
pub struct Domain {
    pub store: Arc<dyn Store>,
    pub listener: Arc<dyn CommitListener>,
    pub limits: Limits,
    /// Whether users without the system administrator flag may create projects.
    pub users_create_projects: bool,
    /// `--webhooks-allow-private`: webhook URLs may name internal addresses.
    pub webhooks_allow_private: bool,
}

impl Domain {
    pub fn new(store: Arc<dyn Store>, listener: Arc<dyn CommitListener>) -> Domain {
        Domain {
            store,
            listener,
            limits: Limits::default(),
            users_create_projects: false,
            webhooks_allow_private: false,
        }
    }
}

/// Maps a store failure to a client error: conflicts keep their plain words, an unreachable
/// database is 503 `store_unavailable`, a transaction that collided with another is 503
/// `unavailable` (see [`retry::COLLIDED`]; [`Domain::retrying`] runs it again first), and
/// everything else becomes an opaque 500 and is logged here, so no SQL ever reaches a client.
pub fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::Conflict { what } => ApiError::new(ErrorCode::Conflict, what),
        StoreError::Unavailable => ApiError::store_unavailable(),
        StoreError::Retryable => ApiError::new(ErrorCode::Unavailable, retry::COLLIDED),
        other => {
            tracing::error!(error = %other, "store failure");
            ApiError::internal()
        }
    }
}

pub type DomainResult<T> = Result<T, ApiError>;

/// `?`-friendly conversion of store results.
pub trait OrApi<T> {
    fn or_api(self) -> DomainResult<T>;
}

impl<T> OrApi<T> for Result<T, StoreError> {
    fn or_api(self) -> DomainResult<T> {
        self.map_err(store_error)
    }
}

/// Hands committed events to several listeners in turn (the live feed and the scheduler).
pub struct Listeners(pub Vec<Arc<dyn CommitListener>>);

impl CommitListener for Listeners {
    fn committed(&self, events: &[Event]) {
        for listener in &self.0 {
            listener.committed(events);
        }
    }
}
