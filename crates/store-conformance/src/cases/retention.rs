//! Log retention: reading every stream's bounds in pages, and pruning the oldest events in
//! small batches without a hole and without moving a seq.

use super::*;

fn event_at(stream: StreamKey, ts: store::Timestamp) -> NewEvent {
    NewEvent {
        ts,
        ..event(stream)
    }
}

fn seqs(events: &[proto::Event]) -> Vec<i64> {
    events.iter().filter_map(|e| e.seq).collect()
}

/// `log_bounds` lists every stream once, in pages, with its counter and oldest logged event;
/// a stream whose events are gone shows none but keeps its counter.
pub async fn log_bounds_page_through_every_stream(store: Arc<dyn Store>) {
    let old = now() - chrono::Duration::days(3);
    let streams = [
        StreamKey::Project(Uuid::now_v7()),
        StreamKey::Project(Uuid::now_v7()),
        StreamKey::User(Uuid::now_v7()),
        StreamKey::System,
    ];
    let mut tx = store.write().await.unwrap();
    for (i, stream) in streams.iter().enumerate() {
        tx.append_event(event_at(*stream, old)).await.unwrap();
        for _ in 0..i {
            tx.append_event(event(*stream)).await.unwrap();
        }
    }
    tx.commit().await.unwrap();
    let mut tx = store.write().await.unwrap();
    tx.delete_stream_events(streams[1]).await.unwrap();
    tx.commit().await.unwrap();

    let mut ops = store.read().await.unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    for _ in 0..10 {
        let page = ops.log_bounds(after, 3).await.unwrap();
        assert!(page.len() <= 3, "a page holds at most its limit");
        let Some(last) = page.last() else { break };
        after = Some(last.stream);
        seen.extend(page);
    }
    let names: Vec<String> = seen.iter().map(|b| b.stream.to_text()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "in name order, each stream once");
    assert_eq!(seen.len(), streams.len());
    for (i, stream) in streams.iter().enumerate() {
        let bounds = seen.iter().find(|b| b.stream == *stream).unwrap();
        assert_eq!(bounds.latest_seq, i as i64 + 1, "{stream}");
        if i == 1 {
            assert_eq!((bounds.oldest_seq, bounds.oldest_ts), (None, None));
        } else {
            assert_eq!(bounds.oldest_seq, Some(1));
            let ts = bounds.oldest_ts.unwrap();
            assert!((ts - old).num_milliseconds().abs() < 5, "{ts} vs {old}");
        }
    }
}

/// Pruning by age and by count takes the oldest events in batches, stops at the first event
/// it must keep (an old one after it stays: no hole), never lowers the counter, and a read
/// handle cannot prune.
pub async fn pruning_keeps_an_unbroken_newest_run(store: Arc<dyn Store>) {
    let stream = StreamKey::Project(Uuid::now_v7());
    let other = StreamKey::Project(Uuid::now_v7());
    let old = now() - chrono::Duration::days(40);
    let cut = now() - chrono::Duration::days(30);
    let mut tx = store.write().await.unwrap();
    for _ in 0..5 {
        tx.append_event(event_at(stream, old)).await.unwrap();
        tx.append_event(event_at(other, old)).await.unwrap();
    }
    for _ in 0..3 {
        tx.append_event(event(stream)).await.unwrap();
    }
    // Old again after young ones (a clock step back): kept, or the log would have a hole.
    tx.append_event(event_at(stream, old)).await.unwrap();
    tx.append_event(event(stream)).await.unwrap();
    tx.commit().await.unwrap();

    let mut ops = store.read().await.unwrap();
    assert!(
        ops.prune_events(stream, 0, Some(cut), 10).await.is_err(),
        "a read handle cannot prune"
    );
    drop(ops);

    let mut pruned = Vec::new();
    for _ in 0..5 {
        let mut tx = store.write().await.unwrap();
        pruned.push(tx.prune_events(stream, 0, Some(cut), 2).await.unwrap());
        tx.commit().await.unwrap();
    }
    assert_eq!(pruned, [2, 2, 1, 0, 0], "batches of at most the limit");
    let mut ops = store.read().await.unwrap();
    assert_eq!(
        seqs(&ops.read_events(stream, 0, 100).await.unwrap()),
        [6, 7, 8, 9, 10]
    );
    assert_eq!(ops.oldest_seq(stream).await.unwrap(), Some(6));
    assert_eq!(ops.latest_seq(stream).await.unwrap(), 10);
    assert_eq!(
        ops.oldest_seq(other).await.unwrap(),
        Some(1),
        "other streams untouched"
    );
    drop(ops);

    // By count: keep the last two seqs, whatever their age.
    let mut tx = store.write().await.unwrap();
    assert_eq!(tx.prune_events(stream, 9, None, 100).await.unwrap(), 3);
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    assert_eq!(
        seqs(&ops.read_events(stream, 0, 100).await.unwrap()),
        [9, 10]
    );
    drop(ops);

    // A rolled-back prune leaves everything.
    let mut tx = store.write().await.unwrap();
    assert_eq!(tx.prune_events(stream, 11, None, 100).await.unwrap(), 2);
    drop(tx);
    let mut ops = store.read().await.unwrap();
    assert_eq!(ops.oldest_seq(stream).await.unwrap(), Some(9));
    drop(ops);

    // Everything gone: the counter stays and the next event goes on above it.
    let mut tx = store.write().await.unwrap();
    assert_eq!(tx.prune_events(stream, 11, None, 100).await.unwrap(), 2);
    assert_eq!(tx.append_event(event(stream)).await.unwrap().seq, Some(11));
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    assert_eq!(ops.oldest_seq(stream).await.unwrap(), Some(11));
    assert_eq!(ops.latest_seq(stream).await.unwrap(), 11);
}

/// The n-th newest logged event counts events, not seqs: across a hole in the seqs too.
pub async fn the_nth_newest_event_is_counted_across_holes(store: Arc<dyn Store>) {
    let stream = StreamKey::Project(Uuid::now_v7());
    let mut tx = store.write().await.unwrap();
    for _ in 0..3 {
        tx.append_event(event(stream)).await.unwrap();
    }
    tx.raise_seq(stream, 1_000).await.unwrap();
    for _ in 0..2 {
        tx.append_event(event(stream)).await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    let mut nth = Vec::new();
    for n in 0..=6 {
        nth.push(ops.nth_newest_seq(stream, n).await.unwrap());
    }
    assert_eq!(
        nth,
        [
            None,
            Some(1002),
            Some(1001),
            Some(3),
            Some(2),
            Some(1),
            None
        ]
    );
    assert_eq!(
        ops.nth_newest_seq(StreamKey::User(Uuid::now_v7()), 1)
            .await
            .unwrap(),
        None
    );
}
