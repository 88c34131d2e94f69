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

pub(crate) fn db_error(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &error
        && db.code().as_deref() == Some(UNIQUE_VIOLATION)
    {
        return StoreError::Conflict {
            what: unique_rule_in_words(db.constraint().unwrap_or("")),
        };
    }
    StoreError::Database(Box::new(error))
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
