//! The hub's counters (`Hub::stats`, read by the server's `/metrics`): deliveries per dialect
//! whether queued or read back by a catch-up, overflows and catch-ups of a slow reader,
//! resyncs, bus messages and the events a pump read from the log to fill a gap.

use liveplan_hub::testing::event;
use liveplan_hub::*;
use proto::{EventType, StreamKey};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

async fn recv(sub: &mut Subscription) -> Delivery {
    tokio::time::timeout(Duration::from_secs(10), sub.recv())
        .await
        .expect("a delivery in time")
}

#[tokio::test]
async fn counters_follow_what_the_hub_does() {
    let log = Arc::new(MemoryLog::new());
    let bus = Arc::new(InProcessBus::default());
    let mut builder = Hub::builder(log.clone(), bus.clone());
    let ws = builder.dialect(NativeWs);
    let sse = builder.dialect(Sse);
    let hub = builder.start().await.unwrap();
    let stream = StreamKey::Project(Uuid::now_v7());

    // A reader whose queue holds two frames, and one that keeps up.
    let mut slow = {
        let mut req = SubscribeRequest::new(stream, ws, Uuid::now_v7());
        req.limits = Some(QueueLimits {
            max_events: 2,
            max_bytes: 1 << 20,
        });
        hub.subscribe(req).await.unwrap()
    };
    let mut quick = hub
        .subscribe(SubscribeRequest::new(stream, sse, Uuid::now_v7()))
        .await
        .unwrap();
    for _ in 0..5 {
        let committed = log.append(event(stream, EventType::TaskUpdated));
        hub.publish(committed).await.unwrap();
        assert!(matches!(recv(&mut quick).await, Delivery::Frame(_)));
    }
    // The slow one overflowed once, caught up from the log, and got all five.
    for _ in 0..5 {
        assert!(matches!(recv(&mut slow).await, Delivery::Frame(_)));
    }
    let counts = hub.stats().dialects();
    assert_eq!(counts[ws.index()].overflows, 1, "{counts:?}");
    assert_eq!(counts[ws.index()].catch_ups, 1, "{counts:?}");
    assert_eq!(counts[ws.index()].deliveries, 5, "{counts:?}");
    assert_eq!(counts[sse.index()].deliveries, 5, "{counts:?}");
    assert_eq!(counts[sse.index()].overflows, 0);
    assert_eq!(hub.stats().bus_events(), 5);
    assert_eq!(hub.stats().gaps_filled(), 0);

    // Two commits the bus never brought, then one it did: the pump reads them from the log.
    log.append(event(stream, EventType::TaskUpdated));
    log.append(event(stream, EventType::TaskUpdated));
    let committed = log.append(event(stream, EventType::TaskUpdated));
    hub.publish(committed).await.unwrap();
    for _ in 0..3 {
        assert!(matches!(recv(&mut quick).await, Delivery::Frame(_)));
    }
    // The read that fills the gap may bring the third along (a page reads on past it).
    let filled = hub.stats().gaps_filled();
    assert!((2..=3).contains(&filled), "{filled}");
    assert_eq!(hub.stats().bus_events(), 6);

    // A position beyond the log: one resync, counted for its dialect only.
    let mut lost = {
        let mut req = SubscribeRequest::new(stream, sse, Uuid::now_v7());
        req.since = Some(1_000);
        hub.subscribe(req).await.unwrap()
    };
    assert!(matches!(
        recv(&mut lost).await,
        Delivery::ResyncRequired { latest_seq: 8 }
    ));
    let counts = hub.stats().dialects();
    assert_eq!(
        (counts[sse.index()].resyncs, counts[ws.index()].resyncs),
        (1, 0)
    );
}
