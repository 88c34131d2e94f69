//! Ordered, gap-free delivery: a lossy bus, replay-then-live, resync, slow readers.

mod common;

use common::*;
use liveplan_hub::testing::event;
use liveplan_hub::*;
use proto::{EventType, StreamKey};
use std::sync::Arc;
use uuid::Uuid;

fn project() -> StreamKey {
    StreamKey::Project(Uuid::now_v7())
}

#[tokio::test]
async fn a_lossy_bus_still_yields_every_seq_once_in_order() {
    let bus = ScriptedBus::new();
    let s = setup_with(bus.clone(), HubConfig::default()).await;
    let p = project();
    let mut ws = s.sub(p, None).await;
    let mut sse = {
        let mut req = SubscribeRequest::new(p, s.sse, Uuid::now_v7());
        req.since = None;
        s.hub.subscribe(req).await.unwrap()
    };
    let events: Vec<_> = (0..60)
        .map(|_| Arc::new(s.log.append(event(p, EventType::TaskUpdated))))
        .collect();
    let by_seq = |n: usize| BusMessage::Event(events[n - 1].clone());
    // Duplicates, a swap, drops in the middle, a burst of stale copies.
    for n in [1, 1, 3, 2, 2, 4, 7, 5, 6, 6, 10, 9, 11, 1, 2, 3] {
        bus.inject(by_seq(n));
    }
    for n in 12..=57 {
        if n % 5 != 0 {
            bus.inject(by_seq(n));
        }
    }
    // The last three are lost outright; only the bus's own admission of loss reveals them.
    bus.inject(BusMessage::Lagged);

    let got = seqs_until(&mut ws, 60).await;
    assert_eq!(just_seqs(&got), (1..=60).collect::<Vec<_>>());
    assert!(got.iter().all(|(_, replayed)| !replayed));

    let mut ids = Vec::new();
    while ids.last() != Some(&60) {
        let Delivery::Frame(frame) = next(&mut sse).await else {
            panic!("frame expected")
        };
        let text = std::str::from_utf8(&frame).unwrap();
        let id = text
            .strip_prefix("id: ")
            .unwrap()
            .split('\n')
            .next()
            .unwrap();
        ids.push(id.parse::<i64>().unwrap());
    }
    assert_eq!(ids, (1..=60).collect::<Vec<_>>());
    // The hub filled the gaps once for the stream; no subscriber had to read the log itself.
    assert_eq!(ws.stats().catch_ups, 0);
    assert_eq!(sse.stats().catch_ups, 0);
}

#[tokio::test]
async fn a_bus_admitting_loss_makes_the_hub_read_the_log() {
    let bus = ScriptedBus::new();
    let s = setup_with(bus.clone(), HubConfig::default()).await;
    let p = project();
    let mut sub = s.sub(p, None).await;
    s.log.append(event(p, EventType::TaskCreated));
    let first = Arc::new(s.log.append(event(p, EventType::TaskCreated)));
    bus.inject(BusMessage::Event(first));
    assert_eq!(just_seqs(&seqs_until(&mut sub, 2).await), vec![1, 2]);
    // Trailing losses are invisible until the bus says it lost something.
    for _ in 0..3 {
        s.log.append(event(p, EventType::TaskUpdated));
    }
    bus.inject(BusMessage::Lagged);
    assert_eq!(just_seqs(&seqs_until(&mut sub, 5).await), vec![3, 4, 5]);
    assert_eq!(sub.stats().catch_ups, 0);
}

#[tokio::test]
async fn an_overflowing_stream_buffer_is_refilled_from_the_log() {
    let config = HubConfig {
        stream_buffer: 2,
        ..HubConfig::default()
    };
    let s = setup_with(Arc::new(InProcessBus::new(8)), config).await;
    let p = project();
    let mut sub = s.sub(p, None).await;
    // Published without yielding: the broadcast lags and the stream buffer overflows.
    for _ in 0..900 {
        s.commit(p, EventType::TaskUpdated).await;
    }
    let got = seqs_until(&mut sub, 900).await;
    assert_eq!(just_seqs(&got), (1..=900).collect::<Vec<_>>());
}

#[tokio::test]
async fn frames_of_one_dialect_share_one_encoding() {
    let s = setup().await;
    let p = project();
    let mut a = s.sub(p, None).await;
    let mut b = s.sub(p, None).await;
    s.commit(p, EventType::RiskCreated).await;
    let (Delivery::Frame(fa), Delivery::Frame(fb)) = (next(&mut a).await, next(&mut b).await)
    else {
        panic!("frames expected")
    };
    assert_eq!(fa, fb);
    assert_eq!(fa.as_ptr(), fb.as_ptr(), "encoded once, shared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_then_live_under_concurrent_writes_matches_the_log() {
    let s = Arc::new(setup().await);
    let p = project();
    for _ in 0..300 {
        s.commit(p, EventType::TaskUpdated).await;
    }
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..700 {
                s.commit(p, EventType::TaskUpdated).await;
                if i % 7 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut readers = Vec::new();
    for since in [0, 1, 150, 299, 300, 420, 640] {
        // A client can only have seen what was committed: a `since` beyond the log is a
        // different history and rightly answered with a resync.
        while s.log.seqs(p).last().copied().unwrap_or(0) < since {
            tokio::task::yield_now().await;
        }
        // Subscribing while the writer runs is the point: the join of log and live is raced.
        let mut sub = s.sub(p, Some(since)).await;
        readers.push(tokio::spawn(async move {
            (since, seqs_until(&mut sub, 1000).await)
        }));
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    let log = s.log.seqs(p);
    for reader in readers {
        let (since, got) = reader.await.unwrap();
        let expected: Vec<i64> = log.iter().copied().filter(|&n| n > since).collect();
        assert_eq!(just_seqs(&got), expected, "since {since}");
        // Replayed frames, if any, come first and then never again.
        let first_live = got.iter().position(|(_, r)| !r).unwrap_or(got.len());
        assert!(got[first_live..].iter().all(|(_, r)| !r), "since {since}");
    }
}

#[tokio::test]
async fn replays_exactly_1000_and_resyncs_beyond() {
    let s = setup().await;
    let p = project();
    for _ in 0..1500 {
        s.commit(p, EventType::TaskUpdated).await;
    }
    let mut sub = s.sub(p, Some(500)).await;
    let got = seqs_until(&mut sub, 1500).await;
    assert_eq!(just_seqs(&got), (501..=1500).collect::<Vec<_>>());
    assert!(got.iter().all(|(_, replayed)| *replayed));

    let mut sub = s.sub(p, Some(499)).await;
    assert_eq!(
        next(&mut sub).await,
        Delivery::ResyncRequired { latest_seq: 1500 }
    );
    assert_eq!(
        sub.resync_frame(1500),
        NativeWs.resync_required(1500),
        "the transport sends its dialect's resync frame"
    );
    s.commit(p, EventType::TaskUpdated).await;
    assert_eq!(just_seqs(&seqs_until(&mut sub, 1501).await), vec![1501]);
}

#[tokio::test]
async fn resyncs_when_the_log_no_longer_reaches_back_or_since_is_ahead() {
    let s = setup().await;
    let p = project();
    for _ in 0..300 {
        s.commit(p, EventType::TaskUpdated).await;
    }
    s.log.prune_before(p, 200);

    let mut sub = s.sub(p, Some(150)).await;
    assert_eq!(
        next(&mut sub).await,
        Delivery::ResyncRequired { latest_seq: 300 }
    );
    // since = 199 needs 200 onwards, which the log still holds.
    let mut sub = s.sub(p, Some(199)).await;
    assert_eq!(
        just_seqs(&seqs_until(&mut sub, 300).await),
        (200..=300).collect::<Vec<_>>()
    );
    // Up to date: nothing replayed, straight to live.
    let mut current = s.sub(p, Some(300)).await;
    // Ahead of the log: a client from another history must refetch.
    let mut ahead = s.sub(p, Some(5000)).await;
    assert_eq!(
        next(&mut ahead).await,
        Delivery::ResyncRequired { latest_seq: 300 }
    );
    s.commit(p, EventType::TaskUpdated).await;
    assert_eq!(just_seqs(&seqs_until(&mut current, 301).await), vec![301]);
    assert_eq!(just_seqs(&seqs_until(&mut ahead, 301).await), vec![301]);
}

#[tokio::test]
async fn garbage_negative_since_replays_from_the_start() {
    let s = setup().await;
    let p = project();
    for _ in 0..5 {
        s.commit(p, EventType::TaskUpdated).await;
    }
    let mut sub = s.sub(p, Some(-7)).await;
    assert_eq!(
        just_seqs(&seqs_until(&mut sub, 5).await),
        vec![1, 2, 3, 4, 5]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_reader_stays_bounded_and_is_told_to_resync() {
    let limits = QueueLimits {
        max_events: 64,
        max_bytes: 16 * 1024,
    };
    let s = Arc::new(setup().await);
    let p = project();
    let mut slow = {
        let mut req = SubscribeRequest::new(p, s.ws, Uuid::now_v7());
        req.limits = Some(limits);
        s.hub.subscribe(req).await.unwrap()
    };
    let mut fast = Vec::new();
    let mut progress = Vec::new();
    for _ in 0..3 {
        let mut sub = s.sub(p, None).await;
        let (tx, rx) = tokio::sync::watch::channel(0i64);
        progress.push(rx);
        fast.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            while seqs.last() != Some(&10_000) {
                let seq = decode(&next(&mut sub).await).seq.unwrap();
                seqs.push(seq);
                tx.send_replace(seq);
            }
            seqs
        }));
    }
    // Published in batches, each awaited by the fast readers before the next: they get every
    // batch while the slow one reads nothing at all (if it held anything up, this would hang).
    // Pacing keeps a busy test machine from making the fast readers lag themselves.
    for batch in 0..100 {
        for _ in 0..100 {
            s.commit(p, EventType::TaskUpdated).await;
        }
        for rx in &mut progress {
            rx.wait_for(|&seq| seq >= (batch + 1) * 100).await.unwrap();
        }
    }
    for f in fast {
        assert_eq!(f.await.unwrap(), (1..=10_000).collect::<Vec<_>>());
    }
    let stats = slow.stats();
    assert!(stats.peak_events <= limits.max_events, "{stats:?}");
    assert!(stats.peak_bytes <= limits.max_bytes, "{stats:?}");
    assert!(stats.overflows >= 1 && !stats.live, "{stats:?}");

    // It drains what was queued, in order, then learns it must resync, then is live again.
    let mut seen = Vec::new();
    let latest = loop {
        match next(&mut slow).await {
            Delivery::ResyncRequired { latest_seq } => break latest_seq,
            d => seen.push(decode(&d).seq.unwrap()),
        }
    };
    assert_eq!(seen, (1..=seen.len() as i64).collect::<Vec<_>>());
    assert!(seen.len() <= limits.max_events);
    assert_eq!(latest, 10_000);
    s.commit(p, EventType::TaskUpdated).await;
    assert_eq!(
        just_seqs(&seqs_until(&mut slow, 10_001).await),
        vec![10_001]
    );
    assert!(slow.stats().live);
}

#[tokio::test]
async fn a_reader_briefly_behind_catches_up_from_the_log() {
    let limits = QueueLimits {
        max_events: 16,
        max_bytes: 1 << 20,
    };
    let s = setup().await;
    let p = project();
    let mut slow = {
        let mut req = SubscribeRequest::new(p, s.ws, Uuid::now_v7());
        req.limits = Some(limits);
        s.hub.subscribe(req).await.unwrap()
    };
    let mut fast = s.sub(p, None).await;
    for _ in 0..700 {
        s.commit(p, EventType::TaskUpdated).await;
    }
    assert_eq!(
        just_seqs(&seqs_until(&mut fast, 700).await),
        (1..=700).collect::<Vec<_>>()
    );
    let got = seqs_until(&mut slow, 700).await;
    assert_eq!(just_seqs(&got), (1..=700).collect::<Vec<_>>());
    assert!(got.iter().all(|(_, replayed)| !replayed));
    let stats = slow.stats();
    assert!(stats.overflows >= 1 && stats.peak_events <= 16, "{stats:?}");
    // Back to live: the next event comes through the queue again.
    s.commit(p, EventType::TaskUpdated).await;
    assert_eq!(just_seqs(&seqs_until(&mut slow, 701).await), vec![701]);
    assert!(slow.stats().live);
}

/// What the bus does to one committed event.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Lost,
    Twice,
    Once,
}

fn fate() -> impl proptest::strategy::Strategy<Value = Fate> {
    use proptest::prelude::*;
    prop_oneof![1 => Just(Fate::Lost), 1 => Just(Fate::Twice), 4 => Just(Fate::Once)]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Whatever the bus loses, repeats or swaps (then admits a loss), every subscriber gets every
    /// seq exactly once in order, and the hub, not the subscribers, does the log reads.
    #[test]
    fn any_lossy_bus_yields_every_seq_once_in_order(
        fates in proptest::collection::vec(fate(), 1..250),
        shifts in proptest::collection::vec(0usize..5, 500),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let bus = ScriptedBus::new();
            let s = setup_with(bus.clone(), HubConfig::default()).await;
            let p = project();
            let mut subs = Vec::new();
            for _ in 0..3 {
                subs.push(s.sub(p, None).await);
            }
            let mut feed = Vec::new();
            for f in &fates {
                let e = Arc::new(s.log.append(event(p, EventType::TaskUpdated)));
                match f {
                    Fate::Lost => {}
                    Fate::Twice => feed.extend([e.clone(), e]),
                    Fate::Once => feed.push(e),
                }
            }
            for i in 0..feed.len() {
                let j = (i + shifts[i % shifts.len()]).min(feed.len() - 1);
                feed.swap(i, j);
            }
            for e in feed {
                bus.inject(BusMessage::Event(e));
            }
            bus.inject(BusMessage::Lagged);
            let n = fates.len() as i64;
            for sub in &mut subs {
                assert_eq!(just_seqs(&seqs_until(sub, n).await), (1..=n).collect::<Vec<_>>());
                assert_eq!(sub.stats().catch_ups, 0);
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_keeps_reconnecting_with_since_loses_nothing() {
    let s = Arc::new(setup().await);
    let p = project();
    let reader_at = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let writer = {
        let s = s.clone();
        let reader_at = reader_at.clone();
        tokio::spawn(async move {
            for i in 0..2000 {
                // Stays within 500 of the reader, so every reconnect is a replay, never a resync,
                // however the machine schedules the two.
                while i - reader_at.load(std::sync::atomic::Ordering::Relaxed) > 500 {
                    tokio::task::yield_now().await;
                }
                s.commit(p, EventType::TaskUpdated).await;
                if i % 3 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    // Frames read before each abrupt disconnect.
    let mut reads = [1usize, 37, 150, 3, 89, 0, 12, 140, 64, 5]
        .into_iter()
        .cycle();
    let mut seen: Vec<i64> = Vec::new();
    let mut resyncs = 0;
    while seen.last().copied().unwrap_or(0) < 2000 {
        let since = seen.last().copied();
        let mut sub = s.sub(p, Some(since.unwrap_or(0))).await;
        // Read a random number of frames, then drop the connection abruptly.
        for _ in 0..=reads.next().unwrap() {
            match next(&mut sub).await {
                Delivery::ResyncRequired { .. } => {
                    resyncs += 1;
                    break;
                }
                d => {
                    if let Some(seq) = decode(&d).seq {
                        seen.push(seq);
                        reader_at.store(seq, std::sync::atomic::Ordering::Relaxed);
                        if seq == 2000 {
                            break;
                        }
                    }
                }
            }
        }
    }
    writer.await.unwrap();
    assert_eq!(resyncs, 0, "never more than 1000 behind here");
    assert_eq!(seen, s.log.seqs(p));
}

#[tokio::test]
async fn into_stream_ends_after_close() {
    use futures::StreamExt;
    let s = setup().await;
    let p = project();
    let user = Uuid::now_v7();
    let sub = s
        .hub
        .subscribe(SubscribeRequest::new(p, s.ws, user))
        .await
        .unwrap();
    assert_eq!(s.hub.user_subscriptions(user), 1);
    let mut stream = Box::pin(sub.into_stream());
    s.commit(p, EventType::TaskCreated).await;
    assert_eq!(decode(&stream.next().await.unwrap()).seq, Some(1));
    s.hub
        .evict(EvictScope::User(user), CloseReason::AccessRevoked);
    assert_eq!(
        stream.next().await,
        Some(Delivery::Closed(CloseReason::AccessRevoked))
    );
    assert_eq!(stream.next().await, None);
    drop(stream);
    assert_eq!(s.hub.user_subscriptions(user), 0);
    assert_eq!(s.hub.subscriber_count(None), 0);
}

/// A log that can be made to fail, to see that nobody is left silently wrong.
struct FlakyLog {
    inner: MemoryLog,
    failing: std::sync::atomic::AtomicBool,
    /// Reads of events refused while failing.
    refused: std::sync::atomic::AtomicUsize,
}

impl FlakyLog {
    fn check(&self) -> Result<(), LogError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            Err(LogError::Unavailable("test".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait::async_trait]
impl LogReader for FlakyLog {
    async fn read_after(
        &self,
        stream: StreamKey,
        after: i64,
        limit: usize,
    ) -> Result<Vec<proto::Event>, LogError> {
        self.check().inspect_err(|_| {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        })?;
        self.inner.read_after(stream, after, limit).await
    }
    async fn latest_seq(&self, stream: StreamKey) -> Result<i64, LogError> {
        self.check()?;
        self.inner.latest_seq(stream).await
    }
    async fn oldest_seq(&self, stream: StreamKey) -> Result<Option<i64>, LogError> {
        self.check()?;
        self.inner.oldest_seq(stream).await
    }
}

#[tokio::test]
async fn an_unreadable_log_keeps_the_subscriber_waiting_instead_of_skipping() {
    let log = Arc::new(FlakyLog {
        inner: MemoryLog::new(),
        failing: false.into(),
        refused: 0.into(),
    });
    let bus = ScriptedBus::new();
    let mut builder = Hub::builder(log.clone(), bus.clone());
    let ws = builder.dialect(NativeWs);
    let hub = builder.start().await.unwrap();
    let p = project();
    let mut req = SubscribeRequest::new(p, ws, Uuid::now_v7());
    req.heartbeat_slot = Some(0);
    let mut sub = hub.subscribe(req).await.unwrap();
    let first = Arc::new(log.inner.append(event(p, EventType::TaskCreated)));
    bus.inject(BusMessage::Event(first));
    assert_eq!(decode(&next(&mut sub).await).seq, Some(1));

    // Seq 2 is lost on the bus and the log cannot be read to recover it (the database is
    // restarting): the subscriber gets neither seq 3 past the hole nor a close.
    log.inner.append(event(p, EventType::TaskUpdated));
    let third = Arc::new(log.inner.append(event(p, EventType::TaskUpdated)));
    log.failing.store(true, std::sync::atomic::Ordering::SeqCst);
    bus.inject(BusMessage::Event(third));
    let meanwhile = tokio::time::timeout(std::time::Duration::from_millis(500), sub.recv()).await;
    assert!(
        meanwhile.is_err(),
        "nothing while the log is out of reach: {meanwhile:?}"
    );
    // Its reader tried the log again in that time (after pauses, not in a hot loop), and
    // heartbeats still reach it.
    let refused = log.refused.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        refused >= 2,
        "the pump's read and the subscriber's: {refused}"
    );
    hub.sweep(Some(0), chrono::Utc::now());
    assert_eq!(next(&mut sub).await, Delivery::Heartbeat);

    // Once the log answers, the same subscription carries on from the hole, in order.
    log.failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(decode(&next(&mut sub).await).seq, Some(2));
    assert_eq!(decode(&next(&mut sub).await).seq, Some(3));
    let fourth = Arc::new(log.inner.append(event(p, EventType::TaskUpdated)));
    bus.inject(BusMessage::Event(fourth));
    assert_eq!(decode(&next(&mut sub).await).seq, Some(4));

    // Reconnecting with `since` once the log is back resumes exactly where it stopped.
    log.failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let mut req = SubscribeRequest::new(p, ws, Uuid::now_v7());
    req.since = Some(1);
    let mut again = hub.subscribe(req).await.unwrap();
    assert_eq!(just_seqs(&seqs_until(&mut again, 4).await), vec![2, 3, 4]);
    // A subscribe while the log is down fails plainly rather than starting from a guess.
    log.failing.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut req = SubscribeRequest::new(p, ws, Uuid::now_v7());
    req.since = Some(1);
    assert!(matches!(hub.subscribe(req).await, Err(HubError::Log(_))));
}

#[tokio::test]
async fn shutdown_closes_everything() {
    let s = setup().await;
    let mut a = s.sub(project(), None).await;
    let mut b = s.sub(StreamKey::System, Some(0)).await;
    assert_eq!(s.hub.evict(EvictScope::All, CloseReason::Shutdown), 2);
    assert_eq!(next(&mut a).await, Delivery::Closed(CloseReason::Shutdown));
    assert_eq!(next(&mut b).await, Delivery::Closed(CloseReason::Shutdown));
    assert_eq!(CloseReason::Shutdown.ws_close_code(), 1001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_from_zero_while_a_stream_gets_its_first_events_never_resyncs() {
    // The race: the bounds are read while the log is still empty, then the first events commit
    // on another thread before the stream starts. Bounded in count; each round is a fresh hub.
    for round in 0..1000 {
        let s = Arc::new(setup().await);
        let p = project();
        let writer = {
            let s = s.clone();
            tokio::spawn(async move {
                // A different head start each round moves the first commit across the window.
                for _ in 0..(round % 50) * 20 {
                    std::hint::spin_loop();
                }
                for _ in 0..20 {
                    s.commit(p, EventType::TaskUpdated).await;
                }
            })
        };
        let mut sub = s.sub(p, Some(0)).await;
        let mut seen = Vec::new();
        while seen.len() < 20 {
            match next(&mut sub).await {
                Delivery::ResyncRequired { latest_seq } => {
                    panic!("round {round}: told to resync at {latest_seq} after {seen:?}")
                }
                d => seen.extend(decode(&d).seq),
            }
        }
        writer.await.unwrap();
        assert_eq!(seen, (1..=20).collect::<Vec<_>>(), "round {round}");
    }
}
