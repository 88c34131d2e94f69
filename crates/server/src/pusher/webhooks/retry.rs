//! When a delivery is done, final, or tried again, and when: Pusher retries "with exponential
//! backoff, for 5 minutes" on failure. Here: 2xx is delivered; 5xx, 408, 429 and a network
//! error or timeout are retried; every other status (other 4xx, and 3xx, since redirects are
//! not followed) is final.

use std::time::Duration;

/// What one attempt's answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Worth another attempt later.
    Retry,
    /// The receiver refused it; another attempt would be refused too.
    Refused,
}

/// `status` is the HTTP status, `None` for a network error or a timeout.
pub fn verdict(status: Option<u16>) -> Verdict {
    match status {
        None => Verdict::Retry,
        Some(200..=299) => Verdict::Delivered,
        Some(408 | 429 | 500..=599) => Verdict::Retry,
        Some(_) => Verdict::Refused,
    }
}

/// The pauses between attempts: doubling from `first` up to `max`, each with "equal jitter"
/// (half fixed, half random) so that many nodes retrying one receiver spread out, and none
/// once `give_up_after` would be passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub first: Duration,
    pub max: Duration,
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            first: Duration::from_secs(1),
            max: Duration::from_secs(60),
            give_up_after: Duration::from_secs(5 * 60),
        }
    }
}

impl RetryPolicy {
    /// The pause after the `failures`-th failed attempt (1 for the first); `jitter` in [0, 1].
    pub fn pause(&self, failures: u32, jitter: f64) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        let full = self.first.saturating_mul(1 << doublings).min(self.max);
        let half = full / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// The pause before the next attempt, or `None` when the delivery gives up: `elapsed` is
    /// the time since its first attempt began.
    pub fn next(&self, failures: u32, elapsed: Duration, jitter: f64) -> Option<Duration> {
        let pause = self.pause(failures, jitter);
        (elapsed + pause <= self.give_up_after).then_some(pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_delivered_retried_or_refused() {
        assert_eq!(verdict(Some(200)), Verdict::Delivered);
        assert_eq!(verdict(Some(204)), Verdict::Delivered);
        for status in [500, 502, 503, 599, 408, 429] {
            assert_eq!(verdict(Some(status)), Verdict::Retry, "{status}");
        }
        assert_eq!(verdict(None), Verdict::Retry, "network error");
        for status in [400, 401, 403, 404, 410, 413, 301, 302, 307, 100] {
            assert_eq!(verdict(Some(status)), Verdict::Refused, "{status}");
        }
    }

    #[test]
    fn pauses_double_up_to_the_cap_with_half_of_them_jittered() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.pause(1, 0.0), Duration::from_millis(500));
        assert_eq!(policy.pause(1, 1.0), Duration::from_secs(1));
        assert_eq!(policy.pause(2, 1.0), Duration::from_secs(2));
        assert_eq!(policy.pause(4, 0.5), Duration::from_secs(6));
        assert_eq!(policy.pause(7, 1.0), Duration::from_secs(60), "capped");
        assert_eq!(
            policy.pause(1_000, 1.0),
            Duration::from_secs(60),
            "no overflow"
        );
        assert_eq!(policy.pause(0, 1.0), Duration::from_secs(1));
        assert_eq!(
            policy.pause(1, 7.0),
            Duration::from_secs(1),
            "jitter clamped"
        );
    }

    #[test]
    fn retries_stop_after_five_minutes() {
        let policy = RetryPolicy::default();
        let mut elapsed = Duration::ZERO;
        let mut attempts = 1;
        while let Some(pause) = policy.next(attempts, elapsed, 1.0) {
            elapsed += pause;
            attempts += 1;
            assert!(attempts < 100, "bounded");
        }
        assert!(elapsed <= Duration::from_secs(300));
        assert!(
            elapsed > Duration::from_secs(240),
            "keeps trying for most of 5 minutes"
        );
        // 1+2+4+8+16+32 = 63 s, then 60 s pauses: 63 + 4 × 60 = 303 > 300, so 3 of them.
        assert_eq!(attempts, 10);
        assert_eq!(policy.next(1, Duration::from_secs(300), 0.0), None);
    }
}
