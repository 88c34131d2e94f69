#![allow(dead_code)]

use async_trait::async_trait;
use liveplan_hub::testing::event;
use liveplan_hub::*;
use proto::{Event, EventType, StreamKey};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

pub struct Setup {
    pub log: Arc<MemoryLog>,
    pub bus: Arc<dyn Bus>,
    pub hub: Hub,
    pub ws: DialectId,
    pub sse: DialectId,
}

pub async fn setup_with(bus: Arc<dyn Bus>, config: HubConfig) -> Setup {
    let log = Arc::new(MemoryLog::new());
    let mut builder = Hub::builder(log.clone(), bus.clone());
    let ws = builder.dialect(NativeWs);
    let sse = builder.dialect(Sse);
    let hub = builder.config(config).start().await.unwrap();
    Setup {
        log,
        bus,
        hub,
        ws,
        sse,
    }
}

pub async fn setup() -> Setup {
    setup_with(Arc::new(InProcessBus::default()), HubConfig::default()).await
}

impl Setup {
    /// Commits to the log, then publishes, as the store's write path does.
    pub async fn commit(&self, stream: StreamKey, event_type: EventType) -> Event {
        let committed = self.log.append(event(stream, event_type));
        self.bus.publish(Arc::new(committed.clone())).await.unwrap();
        committed
    }

    pub async fn commit_for_project(&self, stream: StreamKey, project: uuid::Uuid) -> Event {
        let mut e = event(stream, EventType::ProjectUpdated);
        e.project_id = Some(project);
        let committed = self.log.append(e);
        self.bus.publish(Arc::new(committed.clone())).await.unwrap();
        committed
    }

    pub async fn sub(&self, stream: StreamKey, since: Option<i64>) -> Subscription {
        let mut req = SubscribeRequest::new(stream, self.ws, uuid::Uuid::now_v7());
        req.since = since;
        self.hub.subscribe(req).await.unwrap()
    }
}

/// Guards against a hang; not a timing assertion.
pub async fn next(sub: &mut Subscription) -> Delivery {
    tokio::time::timeout(Duration::from_secs(30), sub.recv())
        .await
        .expect("subscription stalled")
}

pub fn json(d: &Delivery) -> Value {
    match d {
        Delivery::Frame(b) => serde_json::from_slice(b).unwrap(),
        other => panic!("expected a frame, got {other:?}"),
    }
}

/// One native WS frame, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Got {
    pub seq: Option<i64>,
    pub event_type: String,
    pub replayed: bool,
    pub project_id: Option<String>,
}

pub fn decode(d: &Delivery) -> Got {
    let v = json(d);
    Got {
        seq: v["seq"].as_i64(),
        event_type: v["event_type"].as_str().unwrap().to_owned(),
        replayed: v.get("replayed").is_some(),
        project_id: None,
    }
}

/// Receives native WS frames until `last` has arrived; returns the logged seqs in order
/// (ephemeral frames skipped) and the replayed flags.
pub async fn seqs_until(sub: &mut Subscription, last: i64) -> Vec<(i64, bool)> {
    let mut out = Vec::new();
    loop {
        let d = next(sub).await;
        let got = decode(&d);
        if let Some(seq) = got.seq {
            out.push((seq, got.replayed));
            if seq >= last {
                return out;
            }
        }
    }
}

pub fn just_seqs(v: &[(i64, bool)]) -> Vec<i64> {
    v.iter().map(|(s, _)| *s).collect()
}

/// A bus whose feed the test writes by hand, to drop, duplicate and reorder at will.
pub struct ScriptedBus {
    tx: mpsc::UnboundedSender<BusMessage>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<BusMessage>>>,
    /// When false, `publish` (used by presence) is not forwarded either.
    pub forward_publish: bool,
}

impl ScriptedBus {
    pub fn new() -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        Arc::new(Self {
            tx,
            rx: Mutex::new(Some(rx)),
            forward_publish: false,
        })
    }

    pub fn inject(&self, message: BusMessage) {
        self.tx.send(message).unwrap();
    }
}

#[async_trait]
impl Bus for ScriptedBus {
    async fn publish(&self, event: Arc<Event>) -> Result<(), BusError> {
        if self.forward_publish {
            let _ = self.tx.send(BusMessage::Event(event));
        }
        Ok(())
    }

    async fn subscribe(&self) -> Result<BusFeed, BusError> {
        let rx = self.rx.lock().unwrap().take().expect("one subscriber");
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|m| (m, rx))
        })))
    }
}
