//! Fan-out cost: one committed event delivered to N subscribers of one project, end to end
//! through the in-process bus, the dispatcher, the stream's pump (one encoding) and every
//! subscriber's queue and `recv`. Divide the time by N for the cost per delivery.
//!
//! `cargo bench -p liveplan-hub --bench fanout`

use liveplan_hub::testing::event;
use liveplan_hub::*;
use proto::{EventType, StreamKey};
use std::sync::Arc;
use tokio::runtime::Runtime;
use uuid::Uuid;

fn main() {
    divan::main();
}

struct Fixture {
    rt: Runtime,
    log: Arc<MemoryLog>,
    bus: Arc<InProcessBus>,
    subs: Vec<Subscription>,
    stream: StreamKey,
    _hub: Hub,
}

fn fixture(subscribers: usize, dialect_of: impl Fn(usize) -> usize) -> Fixture {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let log = Arc::new(MemoryLog::new());
    let bus = Arc::new(InProcessBus::default());
    let stream = StreamKey::Project(Uuid::now_v7());
    let (hub, subs) = rt.block_on(async {
        let mut builder = Hub::builder(log.clone(), bus.clone());
        let dialects = [builder.dialect(NativeWs), builder.dialect(Sse)];
        let hub = builder.start().await.unwrap();
        let mut subs = Vec::with_capacity(subscribers);
        for i in 0..subscribers {
            let req = SubscribeRequest::new(stream, dialects[dialect_of(i)], Uuid::now_v7());
            subs.push(hub.subscribe(req).await.unwrap());
        }
        (hub, subs)
    });
    let mut f = Fixture {
        rt,
        log,
        bus,
        subs,
        stream,
        _hub: hub,
    };
    // Steady state is what matters: the first event allocates every subscriber's queue.
    publish_and_drain(&mut f);
    f
}

fn publish_and_drain(f: &mut Fixture) {
    let committed = f.log.append(event(f.stream, EventType::TaskUpdated));
    let seq = committed.seq.unwrap();
    // Keeps the in-memory log from growing over millions of iterations.
    f.log.prune_before(f.stream, seq);
    let Fixture { rt, bus, subs, .. } = f;
    rt.block_on(async {
        bus.publish(Arc::new(committed)).await.unwrap();
        for sub in subs.iter_mut() {
            match sub.recv().await {
                Delivery::Frame(frame) => {
                    divan::black_box(frame);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    });
}

/// Every subscriber speaks the native WebSocket dialect.
#[divan::bench(args = [1, 100, 1000])]
fn native_ws(bencher: divan::Bencher, subscribers: usize) {
    let mut f = fixture(subscribers, |_| 0);
    bencher.bench_local(|| publish_and_drain(&mut f));
}

/// Half native WebSocket, half SSE: two encodings per event.
#[divan::bench(args = [1000])]
fn mixed_dialects(bencher: divan::Bencher, subscribers: usize) {
    let mut f = fixture(subscribers, |i| i % 2);
    bencher.bench_local(|| publish_and_drain(&mut f));
}

/// One encoding, for scale.
#[divan::bench]
fn encode_native_ws(bencher: divan::Bencher) {
    let mut e = event(StreamKey::Project(Uuid::now_v7()), EventType::TaskUpdated);
    e.seq = Some(1);
    bencher.bench_local(|| NativeWs.encode(divan::black_box(&e), false));
}

#[divan::bench]
fn encode_sse(bencher: divan::Bencher) {
    let mut e = event(StreamKey::Project(Uuid::now_v7()), EventType::TaskUpdated);
    e.seq = Some(1);
    bencher.bench_local(|| Sse.encode(divan::black_box(&e), false));
}
