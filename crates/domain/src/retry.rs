//! Running a whole write transaction again when the store gave it up because of a concurrent
//! one (a deadlock or a serialization failure, [`store::StoreError::Retryable`]).
//!
//! Such a failure can come from any statement of the transaction, not only its first, so only
//! the command itself can run again: it reads afresh and decides afresh. Nothing of the failed
//! attempt committed and its events never reached the listener, so a second run is as if the
//! first never happened.

use crate::{Domain, DomainResult};
use proto::{ApiError, ErrorCode};
use std::future::Future;
use std::time::Duration;

/// The message of the 503 `unavailable` a collided transaction answers when every attempt
/// collided. Inside the domain it is the only `unavailable`, which is how [`Domain::retrying`]
/// knows it.
pub const COLLIDED: &str = "the change collided with concurrent changes; try again";

/// Runs of a command in all: the first and the ones after a collision.
pub const ATTEMPTS: u32 = 3;
/// The pause before the second run; each later pause doubles, and a jitter of up to as much
/// again keeps two colliding writers from meeting at the same moment once more.
const FIRST_PAUSE: Duration = Duration::from_millis(10);

/// Whether `error` is a transaction given up for a concurrent one, worth running again.
pub fn is_collision(error: &ApiError) -> bool {
    error.code == ErrorCode::Unavailable && error.message == COLLIDED
}

impl Domain {
    /// Runs `command` (one whole write transaction, from `Tx::begin` to its commit) and runs it
    /// again, up to [`ATTEMPTS`] times in all, while it fails on a collision with a concurrent
    /// transaction. For commands that hold more than one stream, where two writers can lock in
    /// opposite orders; any other error, or success, is returned at once.
    pub async fn retrying<T, F, Fut>(&self, mut command: F) -> DomainResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = DomainResult<T>>,
    {
        let mut pause = FIRST_PAUSE;
        let mut attempt = 1;
        loop {
            match command().await {
                Err(error) if is_collision(&error) && attempt < ATTEMPTS => {
                    tracing::debug!(attempt, "write transaction collided; running it again");
                    tokio::time::sleep(pause + jitter(pause)).await;
                    pause *= 2;
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }
}

/// Up to `pause` more, so writers that collided at the same moment do not meet again.
fn jitter(pause: Duration) -> Duration {
    pause.mul_f64(rand::random::<f64>())
}
