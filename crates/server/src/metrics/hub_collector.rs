//! The hub's counters ([`hub::HubStats`]) read at scrape time: the hub keeps plain atomics,
//! and only a scrape turns them into families.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use std::sync::{Arc, OnceLock};

#[derive(Debug, Default)]
pub(super) struct HubCollector {
    hub: OnceLock<(Arc<hub::HubStats>, Vec<&'static str>)>,
}

impl HubCollector {
    pub(super) fn attach(&self, stats: Arc<hub::HubStats>, names: Vec<&'static str>) {
        let _ = self.hub.set((stats, names));
    }
}

type Pick = fn(&hub::DialectCounts) -> u64;

/// The per-dialect families: name, help, which count.
const PER_DIALECT: [(&str, &str, Pick); 4] = [
    (
        "deliveries",
        "Frames handed to subscribers, by dialect: live fan-out (queued or written directly) and read from the log by replays and catch-ups",
        |c| c.deliveries,
    ),
    (
        "catch_ups",
        "Times a subscriber left live delivery to read the log itself (overflow, unfilled gap), by dialect",
        |c| c.catch_ups,
    ),
    (
        "resyncs",
        "resync_required sent to a subscriber (position not in the retained log, too far behind), by dialect",
        |c| c.resyncs,
    ),
    (
        "queue_overflows",
        "Times a subscriber's bounded queue was full and it was moved to catch-up, by dialect",
        |c| c.overflows,
    ),
];

impl Collector for HubCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some((stats, names)) = self.hub.get() else {
            return Ok(());
        };
        let counts = stats.dialects();
        for (name, help, pick) in PER_DIALECT {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (index, count) in counts.iter().enumerate() {
                let dialect = names.get(index).copied().unwrap_or("other");
                let labels = [("dialect", dialect)];
                let metric = family.encode_family(&labels)?;
                ConstCounter::new(pick(count)).encode(metric)?;
            }
        }
        for (name, help, value) in [
            (
                "bus_messages",
                "Committed events that reached this node's hub over the bus",
                stats.bus_events(),
            ),
            (
                "bus_lagged",
                "Times the bus said it lost messages (the hub re-read the log)",
                stats.bus_lagged(),
            ),
            (
                "gaps_filled",
                "Events the hub read from the log because the bus had not brought them in order",
                stats.gaps_filled(),
            ),
        ] {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}
