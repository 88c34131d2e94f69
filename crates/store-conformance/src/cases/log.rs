//! The event log: seqs, what rolls back, what is never logged.

use super::*;

/// Seqs start at 1 and grow by one per stream, independently per stream, and events read back
/// exactly as written.
pub async fn seqs_are_gap_free_per_stream(store: Arc<dyn Store>) {
    let a = StreamKey::Project(Uuid::now_v7());
    let b = StreamKey::System;
    let mut tx = store.write().await.unwrap();
    let mut written = Vec::new();
    for i in 0..5 {
        written.push(tx.append_event(event(a)).await.unwrap());
        if i % 2 == 0 {
            tx.append_event(event(b)).await.unwrap();
        }
    }
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    let read = ops.read_events(a, 0, 100).await.unwrap();
    assert_eq!(read, written, "events read back as written");
    assert_eq!(
        read.iter().map(|e| e.seq.unwrap()).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(ops.latest_seq(b).await.unwrap(), 3);
    assert_eq!(ops.read_events(a, 3, 1).await.unwrap()[0].seq, Some(4));
    assert_eq!(ops.oldest_seq(a).await.unwrap(), Some(1));
    assert_eq!(
        ops.latest_seq(StreamKey::User(Uuid::now_v7()))
            .await
            .unwrap(),
        0
    );
}

/// Deleting a stream's events leaves its seq where it was: the next event goes on above it.
pub async fn a_seq_never_goes_backwards_after_deletes(store: Arc<dyn Store>) {
    let stream = StreamKey::Project(Uuid::now_v7());
    let other = StreamKey::User(Uuid::now_v7());
    let mut tx = store.write().await.unwrap();
    for _ in 0..3 {
        tx.append_event(event(stream)).await.unwrap();
    }
    tx.append_event(event(other)).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.write().await.unwrap();
    tx.delete_stream_events(stream).await.unwrap();
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    assert_eq!(
        ops.latest_seq(stream).await.unwrap(),
        3,
        "kept after delete"
    );
    assert_eq!(ops.oldest_seq(stream).await.unwrap(), None);
    assert!(ops.read_events(stream, 0, 10).await.unwrap().is_empty());
    assert_eq!(
        ops.latest_seq(other).await.unwrap(),
        1,
        "other streams keep theirs"
    );
    assert_eq!(ops.oldest_seq(other).await.unwrap(), Some(1));
    drop(ops);
    let mut tx = store.write().await.unwrap();
    assert_eq!(tx.append_event(event(stream)).await.unwrap().seq, Some(4));
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    assert_eq!(ops.oldest_seq(stream).await.unwrap(), Some(4));
    let seqs: Vec<_> = ops.read_events(stream, 0, 10).await.unwrap();
    assert_eq!(seqs.iter().map(|e| e.seq).collect::<Vec<_>>(), [Some(4)]);
}

/// Presence events are ephemeral: appending one fails and allocates no seq.
pub async fn ephemeral_events_are_never_logged(store: Arc<dyn Store>) {
    let stream = StreamKey::Project(Uuid::now_v7());
    let mut tx = store.write().await.unwrap();
    let presence = NewEvent {
        event_type: EventType::PresenceJoin,
        ..event(stream)
    };
    assert!(tx.append_event(presence).await.is_err());
    drop(tx);
    let mut tx = store.write().await.unwrap();
    assert_eq!(tx.append_event(event(stream)).await.unwrap().seq, Some(1));
    tx.commit().await.unwrap();
}

/// Events appended at once get the seqs one at a time would give them, each stream's in order,
/// whether one stream's run is interrupted by another's or not; an ephemeral one among them
/// fails the call.
pub async fn events_appended_at_once_take_the_seqs_of_one_at_a_time(store: Arc<dyn Store>) {
    let a = StreamKey::Project(Uuid::now_v7());
    let b = StreamKey::User(Uuid::now_v7());
    let mut tx = store.write().await.unwrap();
    let first = tx.append_event(event(a)).await.unwrap();
    let distinct = |stream: StreamKey, n: i64| NewEvent {
        payload: json!({ "n": n }),
        ..event(stream)
    };
    let batch = vec![
        distinct(a, 1),
        distinct(a, 2),
        distinct(b, 3),
        distinct(a, 4),
    ];
    let appended = tx.append_events(batch).await.unwrap();
    assert_eq!(
        appended.iter().map(|e| e.seq.unwrap()).collect::<Vec<_>>(),
        [2, 3, 1, 4]
    );
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    let read = ops.read_events(a, 0, 100).await.unwrap();
    let expected = vec![
        first,
        appended[0].clone(),
        appended[1].clone(),
        appended[3].clone(),
    ];
    assert_eq!(read, expected, "read back as appended, in order");
    assert_eq!(
        ops.read_events(b, 0, 100).await.unwrap(),
        vec![appended[2].clone()]
    );
    drop(ops);
    let mut tx = store.write().await.unwrap();
    let presence = NewEvent {
        event_type: EventType::PresenceJoin,
        ..event(a)
    };
    assert!(tx.append_events(vec![event(a), presence]).await.is_err());
    drop(tx);
    let mut ops = store.read().await.unwrap();
    assert_eq!(
        ops.latest_seq(a).await.unwrap(),
        4,
        "nothing of the failed call stays"
    );
}

/// A transaction that is dropped, or fails midway, leaves neither rows nor events nor a used
/// seq behind.
pub async fn rollback_leaves_nothing(store: Arc<dyn Store>) {
    let stream = StreamKey::Project(Uuid::now_v7());
    let first = Uuid::now_v7();
    {
        let mut tx = store.write().await.unwrap();
        tx.insert_project(&project(first)).await.unwrap();
        tx.append_event(event(stream)).await.unwrap();
        // Dropped without commit.
    }
    {
        let mut tx = store.write().await.unwrap();
        tx.insert_project(&project(first)).await.unwrap();
        tx.append_event(event(stream)).await.unwrap();
        let again = tx.insert_project(&project(first)).await;
        assert!(
            matches!(again, Err(StoreError::Conflict { .. })),
            "duplicate id is a conflict"
        );
    }
    let mut ops = store.read().await.unwrap();
    assert!(ops.get_project(first).await.unwrap().is_none());
    assert_eq!(ops.latest_seq(stream).await.unwrap(), 0);
    assert!(ops.read_events(stream, 0, 10).await.unwrap().is_empty());
    drop(ops);
    let mut tx = store.write().await.unwrap();
    assert_eq!(
        tx.append_event(event(stream)).await.unwrap().seq,
        Some(1),
        "no seq was burnt"
    );
    tx.commit().await.unwrap();
}

/// Writers from many tasks appending to one stream: its seqs stay consecutive, none lost.
pub async fn concurrent_writers_keep_seqs_consecutive(store: Arc<dyn Store>) {
    let stream = StreamKey::Project(Uuid::now_v7());
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                let mut tx = store.write().await.unwrap();
                tx.append_event(event(stream)).await.unwrap();
                tx.append_event(event(stream)).await.unwrap();
                tx.commit().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut ops = store.read().await.unwrap();
    let seqs: Vec<i64> = ops
        .read_events(stream, 0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq.unwrap())
        .collect();
    assert_eq!(seqs, (1..=160).collect::<Vec<_>>());
}

/// Raising a stream's seq never lowers it, and the next event goes on right above it; a
/// raise that rolls back leaves the seq where it was, and one below 0 is refused.
pub async fn raising_a_seq_never_lowers_it(store: Arc<dyn Store>) {
    let stream = StreamKey::Project(Uuid::now_v7());
    let other = StreamKey::System;
    let mut tx = store.write().await.unwrap();
    tx.raise_seq(stream, 40).await.unwrap();
    assert_eq!(tx.latest_seq(stream).await.unwrap(), 40);
    tx.commit().await.unwrap();
    let mut tx = store.write().await.unwrap();
    assert_eq!(tx.append_event(event(stream)).await.unwrap().seq, Some(41));
    tx.raise_seq(stream, 7).await.unwrap();
    tx.raise_seq(stream, 41).await.unwrap();
    tx.raise_seq(stream, 0).await.unwrap();
    assert!(tx.raise_seq(stream, -1).await.is_err(), "below 0");
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    assert_eq!(ops.latest_seq(stream).await.unwrap(), 41, "never lowered");
    assert_eq!(
        ops.latest_seq(other).await.unwrap(),
        0,
        "other streams untouched"
    );
    assert!(
        ops.raise_seq(stream, 100).await.is_err(),
        "a read handle refuses it"
    );
    drop(ops);
    {
        let mut tx = store.write().await.unwrap();
        tx.raise_seq(stream, 1_000).await.unwrap();
        // Dropped without commit.
    }
    let mut tx = store.write().await.unwrap();
    tx.raise_seq(other, 0).await.unwrap();
    assert_eq!(tx.append_event(event(stream)).await.unwrap().seq, Some(42));
    assert_eq!(tx.append_event(event(other)).await.unwrap().seq, Some(1));
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    let seqs: Vec<_> = ops
        .read_events(stream, 0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [Some(41), Some(42)]);
}
