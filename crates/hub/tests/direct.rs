//! Direct writes from the fan-out (`DirectWrite`): frames written by the hub while the reader
//! is parked and frames the reader writes itself must reach the wire in seq order, once each,
//! whatever the socket does (takes all, takes part, refuses).

mod common;

use bytes::Bytes;
use common::*;
use liveplan_hub::*;
use proto::{EventType, StreamKey};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// A socket as the hub sees it: frames land on `wire` in the order they would reach the
/// client. `script` decides each direct write's fate, in turn.
struct ScriptedSocket {
    state: Mutex<Wire>,
    script: Vec<DirectOutcome>,
}

#[derive(Default)]
struct Wire {
    frames: Vec<Bytes>,
    /// A frame partly written: the socket takes nothing else until the reader flushes.
    unflushed: bool,
    calls: usize,
    sent: usize,
    started: usize,
    refused: usize,
}

impl ScriptedSocket {
    fn new(script: Vec<DirectOutcome>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::default(),
            script,
        })
    }

    /// The reader's own write: it drains an unfinished frame first, as the real socket does.
    fn reader_writes(&self, frame: Bytes) {
        let mut wire = self.state.lock().unwrap();
        wire.unflushed = false;
        if !frame.is_empty() {
            wire.frames.push(frame);
        }
    }
}

impl DirectWrite for ScriptedSocket {
    fn try_write(&self, frame: &Bytes) -> DirectOutcome {
        let mut wire = self.state.lock().unwrap();
        assert!(
            !wire.unflushed,
            "the hub wrote directly while a partly written frame awaited its flush"
        );
        let outcome = self.script[wire.calls % self.script.len()];
        wire.calls += 1;
        match outcome {
            DirectOutcome::Sent => wire.sent += 1,
            DirectOutcome::Started => {
                wire.started += 1;
                wire.unflushed = true;
            }
            DirectOutcome::Refused => {
                wire.refused += 1;
                return outcome;
            }
        }
        wire.frames.push(frame.clone());
        outcome
    }
}

fn seq_of(frame: &Bytes) -> i64 {
    let value: serde_json::Value = serde_json::from_slice(frame).unwrap();
    value["seq"].as_i64().expect("a logged event")
}

async fn direct_sub(s: &Setup, stream: StreamKey, socket: &Arc<ScriptedSocket>) -> Subscription {
    direct_sub_of(s, stream, socket, Uuid::now_v7()).await
}

async fn direct_sub_of(
    s: &Setup,
    stream: StreamKey,
    socket: &Arc<ScriptedSocket>,
    user: Uuid,
) -> Subscription {
    let mut req = SubscribeRequest::new(stream, s.ws, user);
    req.direct = Some(socket.clone() as Arc<dyn DirectWrite>);
    s.hub.subscribe(req).await.unwrap()
}

/// Lets the reader park: nothing arrives, so it waits in `recv` with nothing in hand.
async fn park(sub: &mut Subscription) {
    assert!(
        tokio::time::timeout(Duration::from_millis(50), sub.recv())
            .await
            .is_err()
    );
}

/// Commits one event and gives the pump time to offer it.
async fn commit_and_settle(s: &Setup, stream: StreamKey) {
    s.commit(stream, EventType::TaskUpdated).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Runs the reader like a transport: everything it receives goes to the wire, an empty frame
/// is a flush. Returns when `last` is on the wire.
async fn read_until(sub: &mut Subscription, socket: &ScriptedSocket, last: i64) {
    // Guards against a hang; not a timing assertion.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stalled; wire ends at {:?}",
            socket.state.lock().unwrap().frames.last().map(seq_of)
        );
        if socket
            .state
            .lock()
            .unwrap()
            .frames
            .last()
            .is_some_and(|f| seq_of(f) >= last)
        {
            return;
        }
        let delivery = tokio::time::timeout(Duration::from_millis(200), sub.recv()).await;
        match delivery {
            Ok(Delivery::Frame(frame)) => {
                socket.reader_writes(frame);
                // A reader that is sometimes slow, so that frames queue behind it.
                if rand_yield() {
                    tokio::task::yield_now().await;
                }
            }
            Ok(other) => panic!("unexpected delivery {other:?}"),
            // Parked and nothing came: the frames went directly; look at the wire again.
            Err(_) => {}
        }
    }
}

fn rand_yield() -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let x = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    (x >> 61) & 1 == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_and_queued_frames_reach_the_wire_in_order_whatever_the_socket_does() {
    use DirectOutcome::{Refused, Sent, Started};
    for script in [
        vec![Sent],
        vec![Sent, Sent, Refused],
        vec![Started, Sent, Refused, Sent],
        vec![Refused, Started],
    ] {
        let s = Arc::new(setup().await);
        let p = StreamKey::Project(Uuid::now_v7());
        let socket = ScriptedSocket::new(script.clone());
        let mut sub = direct_sub(&s, p, &socket).await;
        let writer = {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..2_000 {
                    s.commit(p, EventType::TaskUpdated).await;
                    // Pauses let the reader park, so direct writes happen between bursts.
                    if i % 50 == 0 {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            })
        };
        read_until(&mut sub, &socket, 2_000).await;
        writer.await.unwrap();
        let wire = socket.state.lock().unwrap();
        let seqs: Vec<i64> = wire.frames.iter().map(seq_of).collect();
        assert_eq!(seqs, (1..=2_000).collect::<Vec<_>>(), "script {script:?}");
        assert!(wire.sent + wire.started > 0, "no direct write: {script:?}");
        let queued = 2_000 - wire.sent - wire.started;
        if script.contains(&Refused) {
            assert!(queued > 0, "nothing took the queue: {script:?}");
        }
        if script.contains(&Started) {
            assert!(wire.started > 0, "{script:?}");
        }
    }
}

#[tokio::test]
async fn a_busy_reader_is_never_overtaken_and_a_dropped_one_gets_nothing() {
    let s = setup().await;
    let p = StreamKey::Project(Uuid::now_v7());
    let socket = ScriptedSocket::new(vec![DirectOutcome::Sent]);
    let mut sub = direct_sub(&s, p, &socket).await;
    // Never parked yet: the first events queue.
    s.commit(p, EventType::TaskUpdated).await;
    commit_and_settle(&s, p).await;
    assert_eq!(sub.stats().queued_events, 2);
    // The reader takes the first frame and holds it, as a transport does while writing.
    let Delivery::Frame(first) = next(&mut sub).await else {
        panic!("frame expected")
    };
    commit_and_settle(&s, p).await;
    assert_eq!(
        socket.state.lock().unwrap().calls,
        0,
        "the hub overtook the reader"
    );
    // A transport batching with `try_recv` holds the whole batch until its flush, also after
    // `try_recv` found nothing more: that must not count as parked.
    let mut batch = vec![first];
    while let Some(Delivery::Frame(frame)) = sub.try_recv() {
        batch.push(frame);
    }
    assert_eq!(batch.len(), 3);
    commit_and_settle(&s, p).await;
    assert_eq!(
        socket.state.lock().unwrap().calls,
        0,
        "the hub overtook a batch"
    );
    for frame in batch {
        socket.reader_writes(frame);
    }
    let Delivery::Frame(fourth) = next(&mut sub).await else {
        panic!("frame expected")
    };
    socket.reader_writes(fourth);
    // Parked now: the next event goes straight to the wire.
    park(&mut sub).await;
    commit_and_settle(&s, p).await;
    {
        let wire = socket.state.lock().unwrap();
        let seqs: Vec<i64> = wire.frames.iter().map(seq_of).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
        assert_eq!(wire.sent, 1);
    }
    drop(sub);
    commit_and_settle(&s, p).await;
    assert_eq!(socket.state.lock().unwrap().calls, 1);
}

#[tokio::test]
async fn a_closed_subscription_is_not_written_to() {
    let s = setup().await;
    let p = StreamKey::Project(Uuid::now_v7());
    let socket = ScriptedSocket::new(vec![DirectOutcome::Sent]);
    let user = Uuid::now_v7();
    let mut sub = direct_sub_of(&s, p, &socket, user).await;
    park(&mut sub).await;
    commit_and_settle(&s, p).await;
    assert_eq!(socket.state.lock().unwrap().sent, 1);
    assert_eq!(
        s.hub
            .evict(EvictScope::User(user), CloseReason::AccessRevoked),
        1
    );
    commit_and_settle(&s, p).await;
    assert_eq!(socket.state.lock().unwrap().calls, 1);
    assert_eq!(
        next(&mut sub).await,
        Delivery::Closed(CloseReason::AccessRevoked)
    );
}

/// A stream with more subscribers than one fan-out task serves is fanned out by several at
/// once; each subscriber must still get every event once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_split_between_tasks_keeps_every_subscriber_in_order() {
    use DirectOutcome::{Refused, Sent, Started};
    const SUBSCRIBERS: usize = 700;
    const EVENTS: i64 = 300;
    let s = Arc::new(setup().await);
    let p = StreamKey::Project(Uuid::now_v7());
    let scripts = [
        vec![Sent],
        vec![Sent, Refused],
        vec![Started, Sent],
        vec![Refused],
    ];
    let mut readers = Vec::new();
    for i in 0..SUBSCRIBERS {
        let socket = ScriptedSocket::new(scripts[i % scripts.len()].clone());
        let mut sub = direct_sub(&s, p, &socket).await;
        readers.push(tokio::spawn(async move {
            read_until(&mut sub, &socket, EVENTS).await;
            // Taken live, never from the log: no task offered an event before the previous one.
            assert_eq!(sub.stats().catch_ups, 0);
            let wire = socket.state.lock().unwrap();
            wire.frames.iter().map(seq_of).collect::<Vec<_>>()
        }));
    }
    for i in 0..EVENTS {
        s.commit(p, EventType::TaskUpdated).await;
        if i % 25 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    for reader in readers {
        assert_eq!(reader.await.unwrap(), (1..=EVENTS).collect::<Vec<_>>());
    }
}
