//! argon2id password hashing, always on a blocking thread: a hash costs tens of milliseconds
//! of CPU and must not stall the async workers.
//!
//! Each hash also holds 19 MiB (argon2id's default memory cost) while it runs. Unbounded, a
//! burst of failed logins, which need no account, ran one hash per request at once: 70 took
//! the process to 1.29 GB. So at most one hash per core runs; the others wait their turn for
//! at most [`QUEUE_DEADLINE`], then get 503 with `Retry-After`. Peak memory for hashing is
//! then the core count times 19 MiB, whatever arrives.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use proto::{ApiError, ErrorCode};
use std::sync::LazyLock;
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};

/// How long a request waits for a free hashing slot before it is refused.
pub const QUEUE_DEADLINE: Duration = Duration::from_secs(10);

/// The slots: one per core (at least one, at most 16). Process-wide, as the memory is.
static SLOTS: LazyLock<Semaphore> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Semaphore::new(cores.clamp(1, 16))
});

async fn slot() -> Result<SemaphorePermit<'static>, ApiError> {
    match tokio::time::timeout(QUEUE_DEADLINE, SLOTS.acquire()).await {
        Ok(Ok(permit)) => Ok(permit),
        // The semaphore is never closed; a timeout is the only real refusal.
        Ok(Err(_)) | Err(_) => Err(busy()),
    }
}

/// 503 `unavailable` with `Retry-After: 5`: every hashing slot stayed busy past the deadline.
pub fn busy() -> ApiError {
    ApiError::new(
        ErrorCode::Unavailable,
        "too many password checks at once; try again shortly",
    )
    .with_details(serde_json::json!({ "retry_after_secs": 5 }))
}

pub async fn hash(password: String) -> Result<String, ApiError> {
    let _slot = slot().await?;
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
    })
    .await
    .map_err(|_| ApiError::internal())?
    .map_err(|_| ApiError::internal())
}

/// Whether `password` matches the stored PHC string. A malformed hash never matches. `Err`
/// only when no hashing slot came free in time.
pub async fn verify(password: String, stored: String) -> Result<bool, ApiError> {
    let _slot = slot().await?;
    Ok(tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn with_every_slot_busy_past_the_deadline_a_check_is_refused_as_busy() {
        // Hold every slot, as a burst of slow hashes would.
        let held = SLOTS
            .acquire_many(SLOTS.available_permits() as u32)
            .await
            .unwrap();
        let refused = verify("password".into(), "not a hash".into()).await;
        assert_eq!(refused.unwrap_err().code, ErrorCode::Unavailable);
        assert!(hash("password".into()).await.is_err());
        drop(held);
        // Free again: a malformed stored hash simply does not match.
        assert!(
            !verify("password".into(), "not a hash".into())
                .await
                .unwrap()
        );
    }
}
