//! Counters of what the hub did, for the server's `/metrics`: plain atomics, read at scrape
//! time, so the hub needs no metrics library and its fan-out pays one relaxed add per dialect
//! per chunk of subscribers, not one per subscriber.

use std::sync::atomic::{AtomicU64, Ordering};

/// One dialect's counters ([`HubStats::dialect`]).
#[derive(Debug, Default)]
pub struct DialectStats {
    deliveries: AtomicU64,
    catch_ups: AtomicU64,
    resyncs: AtomicU64,
    overflows: AtomicU64,
}

/// What one dialect's counters read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DialectCounts {
    /// Frames handed to subscribers: by the fan-out (queued or written directly), and read
    /// from the log by replays and catch-ups.
    pub deliveries: u64,
    /// Times a subscriber left live delivery to read the log itself (queue overflows, gaps
    /// the hub could not fill for everyone). A replay of `since` is not one.
    pub catch_ups: u64,
    /// `resync_required` decisions: at subscribe time, and during catch-up.
    pub resyncs: u64,
    /// Times a subscriber's queue was full and it was moved to catch-up.
    pub overflows: u64,
}

impl DialectStats {
    pub(crate) fn add_deliveries(&self, n: u64) {
        if n > 0 {
            self.deliveries.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn add_catch_ups(&self, n: u64) {
        if n > 0 {
            self.catch_ups.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn add_overflows(&self, n: u64) {
        if n > 0 {
            self.overflows.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn resynced(&self) {
        self.resyncs.fetch_add(1, Ordering::Relaxed);
    }

    pub fn read(&self) -> DialectCounts {
        DialectCounts {
            deliveries: self.deliveries.load(Ordering::Relaxed),
            catch_ups: self.catch_ups.load(Ordering::Relaxed),
            resyncs: self.resyncs.load(Ordering::Relaxed),
            overflows: self.overflows.load(Ordering::Relaxed),
        }
    }
}

/// The hub's counters: per dialect, and for the bus and the log.
#[derive(Debug)]
pub struct HubStats {
    dialects: Vec<DialectStats>,
    bus_events: AtomicU64,
    bus_lagged: AtomicU64,
    gaps_filled: AtomicU64,
}

impl HubStats {
    pub(crate) fn new(dialects: usize) -> Self {
        Self {
            dialects: (0..dialects).map(|_| DialectStats::default()).collect(),
            bus_events: AtomicU64::new(0),
            bus_lagged: AtomicU64::new(0),
            gaps_filled: AtomicU64::new(0),
        }
    }

    /// The counters of the dialect registered `index`-th (`DialectId.0`).
    pub(crate) fn dialect(&self, index: usize) -> &DialectStats {
        &self.dialects[index]
    }

    /// Every dialect's counts, by registration order (`DialectId.0`).
    pub fn dialects(&self) -> Vec<DialectCounts> {
        self.dialects.iter().map(DialectStats::read).collect()
    }

    pub(crate) fn bus_event(&self) {
        self.bus_events.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn bus_lag(&self) {
        self.bus_lagged.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn filled(&self, n: u64) {
        if n > 0 {
            self.gaps_filled.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Events that reached this node's hub over the bus.
    pub fn bus_events(&self) -> u64 {
        self.bus_events.load(Ordering::Relaxed)
    }

    /// Times the bus said it lost messages (the hub then re-read the log).
    pub fn bus_lagged(&self) -> u64 {
        self.bus_lagged.load(Ordering::Relaxed)
    }

    /// Events the streams' pumps read from the log because the bus had not brought them
    /// (gaps, lag, a late bus).
    pub fn gaps_filled(&self) -> u64 {
        self.gaps_filled.load(Ordering::Relaxed)
    }
}
