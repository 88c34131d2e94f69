//! Counters and latency histograms shared by the subscriber tasks, and the arithmetic of the
//! report.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// Latencies above a minute are recorded as a minute (they mean the run is broken anyway).
const MAX_LATENCY_NS: u64 = 60_000_000_000;
/// Subscribers record into one of these by index, so two worker threads rarely meet on a lock
/// and no subscriber needs a histogram of its own (10,000 × ~40 KiB would add up).
const SHARDS: usize = 32;

static START: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the load generator started: monotonic, shared by publisher and subscribers.
pub fn now_ns() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

pub fn new_histogram() -> Histogram<u64> {
    // Three significant digits: 1 µs resolution at 1 ms, 1 ms at 1 s.
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("static bounds are valid")
}

#[derive(Default)]
pub struct Counters {
    /// Events carrying our tab id, i.e. the deliveries the latency is measured on.
    pub measured: AtomicU64,
    /// Every other message (presence, `connected`, events of other writers).
    pub other: AtomicU64,
    pub resyncs: AtomicU64,
    /// Seqs skipped or repeated, per connection.
    pub gaps: AtomicU64,
    pub duplicates: AtomicU64,
    /// Connections the server closed or broke while the run was on.
    pub dropped: AtomicU64,
}

/// Latencies by node (`--node`: each node's own shards, so each node's percentiles can be
/// reported beside the overall ones), and the counters.
pub struct Recorder {
    shards: Vec<Mutex<Histogram<u64>>>,
    nodes: usize,
    pub counters: Counters,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new(1)
    }
}

impl Recorder {
    pub fn new(nodes: usize) -> Recorder {
        let nodes = nodes.max(1);
        Recorder {
            shards: (0..SHARDS * nodes)
                .map(|_| Mutex::new(new_histogram()))
                .collect(),
            nodes,
            counters: Counters::default(),
        }
    }

    /// A delivery on node `node` (taken modulo the node count).
    pub fn record_node_latency(&self, node: usize, shard: usize, latency_ns: u64) {
        let i = (node % self.nodes) * SHARDS + shard % SHARDS;
        let mut h = self.shards[i].lock().unwrap_or_else(|e| e.into_inner());
        h.saturating_record(latency_ns.clamp(1, MAX_LATENCY_NS));
    }

    fn merge<'a>(shards: impl Iterator<Item = &'a Mutex<Histogram<u64>>>) -> Histogram<u64> {
        let mut all = new_histogram();
        for shard in shards {
            let h = shard.lock().unwrap_or_else(|e| e.into_inner());
            all.add(&*h).expect("same bounds");
        }
        all
    }

    pub fn merged(&self) -> Histogram<u64> {
        Recorder::merge(self.shards.iter())
    }

    /// Node `node`'s deliveries alone.
    pub fn merged_node(&self, node: usize) -> Histogram<u64> {
        Recorder::merge(self.shards.iter().skip(node * SHARDS).take(SHARDS))
    }

    pub fn count(&self, c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// Per-connection order check: the seqs a subscriber sees must rise by one.
#[derive(Debug, Default, Clone, Copy)]
pub struct SeqTracker {
    last: Option<i64>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SeqVerdict {
    InOrder,
    /// This many seqs were skipped.
    Gap(u64),
    Duplicate,
}

impl SeqTracker {
    pub fn observe(&mut self, seq: i64) -> SeqVerdict {
        let verdict = match self.last {
            None => SeqVerdict::InOrder,
            Some(last) if seq == last + 1 => SeqVerdict::InOrder,
            Some(last) if seq <= last => SeqVerdict::Duplicate,
            Some(last) => SeqVerdict::Gap((seq - last - 1) as u64),
        };
        if self.last.is_none_or(|last| seq > last) {
            self.last = Some(seq);
        }
        verdict
    }
}

/// Percentiles in milliseconds, for the report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e3).round() / 1e3
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: ms(h.mean() as u64),
        }
    }

    pub fn line(&self) -> String {
        format!(
            "p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  (n={})",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms, self.count
        )
    }
}

/// `a / b`, or `None` when there is nothing to divide by.
pub fn per(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// RSS growth per connection in bytes (negative growth, from the allocator returning memory,
/// is reported as it is: it says the figure is noise at this count).
pub fn rss_per_connection(before: u64, after: u64, connections: usize) -> Option<f64> {
    per(after as f64 - before as f64, connections as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_tracker_finds_gaps_and_duplicates() {
        let mut t = SeqTracker::default();
        assert_eq!(t.observe(5), SeqVerdict::InOrder);
        assert_eq!(t.observe(6), SeqVerdict::InOrder);
        assert_eq!(t.observe(9), SeqVerdict::Gap(2));
        assert_eq!(t.observe(9), SeqVerdict::Duplicate);
        assert_eq!(t.observe(7), SeqVerdict::Duplicate);
        assert_eq!(t.observe(10), SeqVerdict::InOrder);
    }

    #[test]
    fn percentiles_from_shards() {
        let r = Recorder::default();
        for i in 1..=1000u64 {
            // 1 ms … 1000 ms spread over shards
            r.record_node_latency(0, i as usize, i * 1_000_000);
        }
        r.record_node_latency(0, 0, 0); // clamped to 1 ns, not lost
        let l = Latency::of(&r.merged());
        assert_eq!(l.count, 1001);
        assert!((l.p50_ms - 500.0).abs() < 1.0, "{l:?}");
        assert!((l.p99_ms - 990.0).abs() < 1.5, "{l:?}");
        assert!((l.max_ms - 1000.0).abs() < 1.0, "{l:?}");
        let too_big = Recorder::default();
        too_big.record_node_latency(0, 3, u64::MAX);
        assert_eq!(Latency::of(&too_big.merged()).count, 1);
    }

    #[test]
    fn nodes_keep_their_own_percentiles() {
        let r = Recorder::new(2);
        for i in 0..100u64 {
            r.record_node_latency(0, i as usize, 1_000_000);
            r.record_node_latency(1, i as usize, 5_000_000);
        }
        r.record_node_latency(3, 0, 5_000_000); // node 3 of 2 is node 1
        let (a, b) = (
            Latency::of(&r.merged_node(0)),
            Latency::of(&r.merged_node(1)),
        );
        assert_eq!((a.count, b.count), (100, 101));
        assert!((a.p99_ms - 1.0).abs() < 0.01 && (b.p50_ms - 5.0).abs() < 0.01);
        assert_eq!(Latency::of(&r.merged()).count, 201);
        assert_eq!(Latency::of(&r.merged_node(2)).count, 0);
    }

    #[test]
    fn ratios() {
        assert_eq!(per(3.0, 0.0), None);
        assert_eq!(per(3.0, 2.0), Some(1.5));
        assert_eq!(rss_per_connection(1000, 5096, 1), Some(4096.0));
        assert_eq!(rss_per_connection(5000, 1000, 2), Some(-2000.0));
        assert_eq!(rss_per_connection(1, 2, 0), None);
    }
}
