//! `GET /metrics` (CONTRACT §12): one prometheus-client registry per app, never a global
//! recorder, so two servers in one process (the tests' clusters) count apart.
//!
//! What the hot paths pay: the hub counts deliveries, catch-ups, resyncs, overflows, bus
//! messages and gap fills in its own atomics ([`hub::HubStats`]), read here only at scrape
//! time ([`hub_collector`]); connections, commits, scheduler rounds, HTTP requests and
//! webhook outcomes are prometheus-client counters and gauges, themselves atomics. The
//! families are listed in README.md, "Metrics".

pub mod http;
mod hub_collector;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use proto::Event;
use std::sync::Arc;
use std::time::Duration;

/// The live dialects a connection is counted under (`dialect` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnDialect {
    NativeWs,
    Sse,
    Bryntum,
    Pusher,
    /// A dialect that does not name itself yet.
    Other,
}

impl ConnDialect {
    pub fn label(self) -> &'static str {
        match self {
            ConnDialect::NativeWs => "native_ws",
            ConnDialect::Sse => "sse",
            ConnDialect::Bryntum => "bryntum",
            ConnDialect::Pusher => "pusher",
            ConnDialect::Other => "other",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DialectLabel {
    dialect: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct WebhookLabel {
    /// `pusher`: the Pusher-format webhooks (`--pusher-webhook-url`); `project`: the
    /// per-project webhooks (`crate::webhooks`).
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HttpLabel {
    /// The matched route template (`/api/v1/projects/{project_id}`), `unmatched` for none.
    route: String,
    method: &'static str,
    status: u16,
}

/// What one webhook delivery came to (`outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// The receiver answered 2xx.
    Delivered,
    /// An attempt failed in a way worth another one (5xx, 408, 429, network, timeout).
    Retried,
    /// The receiver refused it for good (another status): not sent again.
    Refused,
    /// Retried for as long as the policy allows, then dropped.
    GaveUp,
    /// Never sent: the queue towards the receiver was full.
    Dropped,
    /// Never sent: the log retention's count limit pruned the events before their delivery
    /// (project webhooks only; one per gap).
    Skipped,
}

impl WebhookOutcome {
    const ALL: [WebhookOutcome; 6] = [
        WebhookOutcome::Delivered,
        WebhookOutcome::Retried,
        WebhookOutcome::Refused,
        WebhookOutcome::GaveUp,
        WebhookOutcome::Dropped,
        WebhookOutcome::Skipped,
    ];

    fn label(self) -> &'static str {
        match self {
            WebhookOutcome::Delivered => "delivered",
            WebhookOutcome::Retried => "retried",
            WebhookOutcome::Refused => "refused",
            WebhookOutcome::GaveUp => "gave_up",
            WebhookOutcome::Dropped => "dropped",
            WebhookOutcome::Skipped => "skipped",
        }
    }
}

/// The outcome counter of one kind of webhook, cheap to clone into senders.
#[derive(Debug, Clone)]
pub struct WebhookCounter {
    family: Family<WebhookLabel, Counter>,
    kind: &'static str,
}

impl WebhookCounter {
    /// A counter registered nowhere, for senders started outside an app (tests).
    pub fn detached(kind: &'static str) -> WebhookCounter {
        WebhookCounter {
            family: Family::default(),
            kind,
        }
    }

    pub fn record(&self, outcome: WebhookOutcome) {
        self.family
            .get_or_create(&WebhookLabel {
                kind: self.kind,
                outcome: outcome.label(),
            })
            .inc();
    }
}

/// What a scheduler round on one project came to (`outcome` label of `scheduler_runs`).
pub const SCHEDULER_OUTCOMES: [&str; 3] = ["done", "store_unavailable", "leased"];

/// One app's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    connections: Family<DialectLabel, Gauge>,
    events_committed: Counter,
    commit_latency: Histogram,
    scheduler_runs: Family<OutcomeLabel, Counter>,
    scheduler_duration: Histogram,
    http_requests: Family<HttpLabel, Counter>,
    webhooks: Family<WebhookLabel, Counter>,
    hub: Arc<hub_collector::HubCollector>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("liveplan");
        let connections = Family::<DialectLabel, Gauge>::default();
        registry.register(
            "connections",
            "Open live connections on this node, by dialect",
            connections.clone(),
        );
        let events_committed = Counter::default();
        registry.register(
            "events_committed",
            "Events committed by this node (every stream)",
            events_committed.clone(),
        );
        // 0.25 ms to ~8 s: a commit waits for the writer and, in full durability, a sync.
        let commit_latency = Histogram::new(exponential_buckets(0.000_25, 2.0, 16));
        registry.register(
            "commit_latency_seconds",
            "From a write transaction's start (the writer held) to its commit being durable and handed to delivery",
            commit_latency.clone(),
        );
        let scheduler_runs = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "scheduler_runs",
            "Scheduler rounds on one project, by outcome (done, store_unavailable, leased)",
            scheduler_runs.clone(),
        );
        let scheduler_duration = Histogram::new(exponential_buckets(0.000_5, 2.0, 16));
        registry.register(
            "scheduler_run_duration_seconds",
            "How long one scheduler round on one project took",
            scheduler_duration.clone(),
        );
        let http_requests = Family::<HttpLabel, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered by the router, by matched route template, method and status",
            http_requests.clone(),
        );
        let webhooks = Family::<WebhookLabel, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries and attempts, by kind (pusher, project) and outcome (delivered, retried, refused, gave_up, dropped, skipped)",
            webhooks.clone(),
        );
        let hub = Arc::new(hub_collector::HubCollector::default());
        registry.register_collector(Box::new(hub.clone()));
        // Every series a scrape should find from the start, at 0, rather than appearing later.
        for dialect in [
            ConnDialect::NativeWs,
            ConnDialect::Sse,
            ConnDialect::Bryntum,
            ConnDialect::Pusher,
        ] {
            drop(connections.get_or_create(&DialectLabel {
                dialect: dialect.label(),
            }));
        }
        for outcome in SCHEDULER_OUTCOMES {
            drop(scheduler_runs.get_or_create(&OutcomeLabel { outcome }));
        }
        for kind in ["pusher", "project"] {
            for outcome in WebhookOutcome::ALL {
                drop(webhooks.get_or_create(&WebhookLabel {
                    kind,
                    outcome: outcome.label(),
                }));
            }
        }
        Metrics {
            registry,
            connections,
            events_committed,
            commit_latency,
            scheduler_runs,
            scheduler_duration,
            http_requests,
            webhooks,
            hub,
        }
    }

    /// Lets the scrape read the hub's counters; `names` labels its dialects by `DialectId.0`.
    pub fn attach_hub(&self, stats: Arc<hub::HubStats>, names: Vec<&'static str>) {
        self.hub.attach(stats, names);
    }

    /// The gauge of one dialect's open connections.
    pub fn connections(&self, dialect: ConnDialect) -> Gauge {
        self.connections
            .get_or_create(&DialectLabel {
                dialect: dialect.label(),
            })
            .clone()
    }

    pub fn scheduler_run(&self, outcome: &'static str, took: Duration) {
        self.scheduler_runs
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
        self.scheduler_duration.observe(took.as_secs_f64());
    }

    pub fn webhook_counter(&self, kind: &'static str) -> WebhookCounter {
        WebhookCounter {
            family: self.webhooks.clone(),
            kind,
        }
    }

    fn http_request(&self, route: String, method: &'static str, status: u16) {
        self.http_requests
            .get_or_create(&HttpLabel {
                route,
                method,
                status,
            })
            .inc();
    }

    /// The registry in the text exposition format (OpenMetrics 1.0, which Prometheus reads).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %err, "cannot encode the metrics");
        }
        out
    }
}

/// Counts this node's commits. A listener of its own, after the hub's, so delivery never
/// waits for it (it only adds to atomics).
impl domain::CommitListener for Metrics {
    fn committed(&self, events: &[Event]) {
        self.events_committed.inc_by(events.len() as u64);
        // Every event of a transaction carries its start time (`Tx::now`, taken with the
        // writer held), so one observation per transaction.
        if let Some(first) = events.first() {
            let took = chrono::Utc::now() - first.ts;
            if let Ok(took) = took.to_std() {
                self.commit_latency.observe(took.as_secs_f64());
            }
        }
    }
}
