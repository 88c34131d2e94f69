//! The server's clock: where the live side reads the time and waits for it.
//!
//! Four behaviours depend on time passing: the WebSocket ping sweep (and the session expiry it
//! enforces, with the hub's delivery checks), the SSE `: keepalive`, and the Bryntum demo's
//! idle reset. They read and wait through a [`Clock`] in [`crate::Config`], so a test can run a
//! [`Clock::manual`] one and move it with [`Clock::advance`] instead of waiting. Tokio's paused
//! clock was not enough: it also stops the database pool's timers, and it only works when the
//! server runs on the test's one thread.
//!
//! The manual clock stands still unless advanced, and advances only what reads it: the store's
//! own times (a commit's timestamp, a session's `expires_at` when it is created) stay on the
//! system clock. So a manual clock moved by 12 h finds sessions created just before expired.
//! Timeouts of single writes and handshakes keep tokio's timers: they bound I/O, not behaviour.

use chrono::{DateTime, Utc};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

/// The system clock (the default), or a manual one a test moves.
#[derive(Clone, Default)]
pub struct Clock {
    manual: Option<Arc<Manual>>,
}

struct Manual {
    wall_at_start: DateTime<Utc>,
    instant_at_start: Instant,
    /// How far the clock was advanced; sleepers watch it.
    advanced: watch::Sender<Duration>,
}

impl Clock {
    pub fn system() -> Clock {
        Clock::default()
    }

    /// A clock that starts at the present and moves only by [`Clock::advance`].
    pub fn manual() -> Clock {
        Clock {
            manual: Some(Arc::new(Manual {
                wall_at_start: Utc::now(),
                instant_at_start: Instant::now(),
                advanced: watch::channel(Duration::ZERO).0,
            })),
        }
    }

    /// Moves a manual clock forward and wakes what waits for the new time.
    ///
    /// # Panics
    /// On the system clock, which no one moves.
    pub fn advance(&self, by: Duration) {
        let manual = self.manual.as_ref().expect("only a manual clock advances");
        manual.advanced.send_modify(|advanced| *advanced += by);
    }

    /// The time of day.
    pub fn wall(&self) -> DateTime<Utc> {
        match &self.manual {
            None => Utc::now(),
            Some(manual) => manual.wall_at_start + *manual.advanced.borrow(),
        }
    }

    /// The monotonic time, for measuring how long something lasted.
    pub fn now(&self) -> Instant {
        match &self.manual {
            None => Instant::now(),
            Some(manual) => manual.instant_at_start + *manual.advanced.borrow(),
        }
    }

    /// Resolves once [`Clock::now`] reached `deadline`. Cancel-safe.
    pub async fn sleep_until(&self, deadline: Instant) {
        let Some(manual) = &self.manual else {
            return tokio::time::sleep_until(deadline).await;
        };
        let mut moved = manual.advanced.subscribe();
        while self.now() < deadline {
            if moved.changed().await.is_err() {
                // Unreachable while `self` holds the sender; stand still as time does.
                std::future::pending::<()>().await;
            }
        }
    }

    pub async fn sleep(&self, duration: Duration) {
        self.sleep_until(self.now() + duration).await
    }

    /// A tick every `period`, the first one `period` from now.
    pub fn ticker(&self, period: Duration) -> Ticker {
        let next = self.now() + period;
        Ticker {
            sleep: self
                .manual
                .is_none()
                .then(|| Box::pin(tokio::time::sleep_until(next))),
            clock: self.clone(),
            period,
            next,
        }
    }

    /// The hub's view of this clock, for session expiries.
    pub fn for_hub(&self) -> hub::WallClock {
        let clock = self.clone();
        hub::WallClock::new(move || clock.wall())
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.manual {
            None => "Clock::system",
            Some(_) => "Clock::manual",
        })
    }
}

/// Periodic ticks on a [`Clock`]. A late tick is not repeated: the next one comes a period
/// after it, and [`Ticker::tick`] says how many periods it stands for.
pub struct Ticker {
    clock: Clock,
    period: Duration,
    next: Instant,
    /// The system clock's timer, kept between ticks (`None` on a manual clock).
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Ticker {
    /// Resolves at the next tick with the number of whole periods since the one before
    /// (at least 1; more when the tick came late or the clock jumped). Cancel-safe.
    pub async fn tick(&mut self) -> u32 {
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().await,
            None => self.clock.sleep_until(self.next).await,
        }
        let late = self.clock.now().saturating_duration_since(self.next);
        let periods = late.as_nanos() / self.period.as_nanos().max(1) + 1;
        self.reset();
        u32::try_from(periods).unwrap_or(u32::MAX)
    }

    /// The next tick comes a whole period from now.
    pub fn reset(&mut self) {
        self.next = self.clock.now() + self.period;
        if let Some(sleep) = &mut self.sleep {
            sleep.as_mut().reset(self.next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let clock = Clock::manual();
        let (wall, now) = (clock.wall(), clock.now());
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!((clock.wall(), clock.now()), (wall, now));
        clock.advance(Duration::from_secs(3600));
        assert_eq!(clock.wall() - wall, chrono::Duration::hours(1));
        assert_eq!(clock.now() - now, Duration::from_secs(3600));
    }

    #[tokio::test]
    async fn a_manual_sleep_ends_when_the_clock_reaches_it() {
        let clock = Clock::manual();
        let mut sleep = Box::pin(clock.sleep(Duration::from_secs(10)));
        assert!(sleep.as_mut().now_or_never().is_none());
        clock.advance(Duration::from_secs(9));
        assert!(sleep.as_mut().now_or_never().is_none());
        clock.advance(Duration::from_secs(1));
        assert!(sleep.as_mut().now_or_never().is_some());
    }

    #[tokio::test]
    async fn a_ticker_counts_the_periods_a_jump_covers() {
        let clock = Clock::manual();
        let mut ticker = clock.ticker(Duration::from_secs(1));
        assert!(Box::pin(ticker.tick()).now_or_never().is_none());
        clock.advance(Duration::from_secs(1));
        assert_eq!(ticker.tick().now_or_never(), Some(1));
        clock.advance(Duration::from_millis(3500));
        assert_eq!(ticker.tick().now_or_never(), Some(3));
        // The next tick is a period after the late one, not on the old schedule.
        clock.advance(Duration::from_millis(999));
        assert!(Box::pin(ticker.tick()).now_or_never().is_none());
        clock.advance(Duration::from_millis(1));
        assert_eq!(ticker.tick().now_or_never(), Some(1));
    }

    #[tokio::test]
    async fn reset_postpones_the_tick() {
        let clock = Clock::manual();
        let mut ticker = clock.ticker(Duration::from_secs(2));
        clock.advance(Duration::from_secs(1));
        ticker.reset();
        clock.advance(Duration::from_secs(1));
        assert!(Box::pin(ticker.tick()).now_or_never().is_none());
        clock.advance(Duration::from_secs(1));
        assert_eq!(ticker.tick().now_or_never(), Some(1));
    }
}
