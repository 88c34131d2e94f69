//! PostgreSQL's errors in the store's terms, and the retry of what may be retried.

use std::future::Future;
use std::time::Duration;
use store::{StoreError, StoreResult};

/// Attempts at a statement that failed on a serialization failure or a deadlock.
const ATTEMPTS: u32 = 5;
const FIRST_PAUSE: Duration = Duration::from_millis(5);

/// SQLSTATEs after which the same work, run again, may well succeed.
const SERIALIZATION_FAILURE: &str = "40001";
const DEADLOCK_DETECTED: &str = "40P01";
const UNIQUE_VIOLATION: &str = "23505";
/// Class 08: the connection failed or was lost.
const CONNECTION_EXCEPTION_CLASS: &str = "08";
/// The server is shutting down, crashed, or cannot take connections yet (still starting up).
const ADMIN_SHUTDOWN: &str = "57P01";
const CRASH_SHUTDOWN: &str = "57P02";
const CANNOT_CONNECT_NOW: &str = "57P03";

/// The store's error for what sqlx reports. Only the kind is kept for the unavailable and the
/// retryable cases (their detail is logged here); the rest keeps sqlx's error for the log,
/// and the domain never shows it to a client.
pub(crate) fn db_error(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &error
        && db.code().as_deref() == Some(UNIQUE_VIOLATION)
    {
        return StoreError::Conflict {
            what: unique_rule_in_words(db.constraint().unwrap_or("")),
        };
    }
    if is_transient(&error) {
        tracing::debug!(error = %error, "transaction collided with a concurrent one");
        return StoreError::Retryable;
    }
    if is_unreachable(&error) {
        tracing::warn!(error = %error, "PostgreSQL is unavailable");
        return StoreError::Unavailable;
    }
    StoreError::Database(Box::new(error))
}

/// Whether `error` says the database cannot be reached now, rather than that the work was
/// wrong: the pool found no connection in time, the socket failed or closed under a statement
/// (a dead peer often shows as a protocol error, the stream ending mid-message), or the server
/// is shutting down or still starting.
fn is_unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with(CONNECTION_EXCEPTION_CLASS)
                || matches!(
                    code.as_ref(),
                    ADMIN_SHUTDOWN | CRASH_SHUTDOWN | CANNOT_CONNECT_NOW
                )
        }),
        _ => false,
    }
}

fn is_transient(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if matches!(db.code().as_deref(), Some(SERIALIZATION_FAILURE | DEADLOCK_DETECTED)))
}

/// The words for a broken unique rule, by the name the migration gave it: the same words as
/// the SQLite backend's.
fn unique_rule_in_words(constraint: &str) -> String {
    match constraint {
        "users_email_unique" => "a user with this email already exists".into(),
        "users_username_unique" => "a user with this username already exists".into(),
        "projects_key_unique" => "a project with this key already exists".into(),
        "memberships_project_user_unique" => "the user is already a member of this project".into(),
        _ => "a record with the same unique value already exists".into(),
    }
}

/// Runs `attempt` again, after a growing pause, while it fails on a serialization failure or a
/// deadlock: only for work that stands alone (a statement outside a transaction, a BEGIN).
pub(crate) async fn retrying<T, F, Fut>(mut attempt: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let mut pause = FIRST_PAUSE;
    for _ in 1..ATTEMPTS {
        match attempt().await {
            Err(error) if is_transient(&error) => {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            other => return other.map_err(db_error),
        }
    }
    attempt().await.map_err(db_error)
}
