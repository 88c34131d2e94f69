//! Read handles, snapshots, closing, and the concurrency contract per stream and record.

use super::*;

/// A snapshot sees the database as of its first read: records and seqs committed after it
/// stay invisible to it, while a plain read sees them; and it does not hold up the writer.
pub async fn snapshots_are_consistent(store: Arc<dyn Store>) {
    let id = Uuid::now_v7();
    let stream = StreamKey::Project(id);
    let mut tx = store.write().await.unwrap();
    tx.insert_project(&project(id)).await.unwrap();
    tx.append_event(event(stream)).await.unwrap();
    tx.commit().await.unwrap();

    let mut snapshot = store.snapshot().await.unwrap();
    assert_eq!(snapshot.latest_seq(stream).await.unwrap(), 1);
    let other = Uuid::now_v7();
    let mut tx = store.write().await.unwrap();
    tx.insert_project(&project(other)).await.unwrap();
    tx.append_event(event(stream)).await.unwrap();
    tx.commit().await.unwrap();

    assert_eq!(
        snapshot.latest_seq(stream).await.unwrap(),
        1,
        "seq as of the snapshot"
    );
    assert!(
        snapshot.get_project(other).await.unwrap().is_none(),
        "a later commit is invisible to the snapshot"
    );
    assert!(snapshot.get_project(id).await.unwrap().is_some());
    let mut fresh = store.read().await.unwrap();
    assert_eq!(fresh.latest_seq(stream).await.unwrap(), 2);
    assert!(fresh.get_project(other).await.unwrap().is_some());
}

/// A snapshot's connection, once dropped, does not stay in its old moment for the next reader.
pub async fn a_dropped_snapshot_leaves_its_connection_current(store: Arc<dyn Store>) {
    let mut tx = store.write().await.unwrap();
    tx.put_setting("k", "old").await.unwrap();
    tx.commit().await.unwrap();
    let mut snapshot = store.snapshot().await.unwrap();
    assert_eq!(
        snapshot.get_setting("k").await.unwrap().as_deref(),
        Some("old")
    );
    let mut tx = store.write().await.unwrap();
    tx.put_setting("k", "new").await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        snapshot.get_setting("k").await.unwrap().as_deref(),
        Some("old"),
        "a snapshot keeps its moment"
    );
    drop(snapshot);
    for _ in 0..3 {
        let mut ops = store.read().await.unwrap();
        assert_eq!(ops.get_setting("k").await.unwrap().as_deref(), Some("new"));
    }
}

/// A read handle refuses every write, holding a stream included, and leaves nothing behind.
pub async fn read_handles_refuse_writes(store: Arc<dyn Store>) {
    let mut ops = store.read().await.unwrap();
    let refused = ops.put_setting("k", "v").await.unwrap_err();
    assert!(matches!(refused, StoreError::Database(_)), "{refused}");
    drop(ops);
    let mut ops = store.read().await.unwrap();
    assert!(ops.insert_user(&user("ro@example.test")).await.is_err());
    drop(ops);
    let mut ops = store.read().await.unwrap();
    assert!(ops.append_event(event(StreamKey::System)).await.is_err());
    drop(ops);
    let mut ops = store.read().await.unwrap();
    assert!(ops.lock_stream(StreamKey::System).await.is_err());
    drop(ops);
    let mut ops = store.read().await.unwrap();
    assert_eq!(ops.get_setting("k").await.unwrap(), None);
    assert_eq!(ops.count_users().await.unwrap(), 0);
    assert_eq!(ops.latest_seq(StreamKey::System).await.unwrap(), 0);
}

/// A closed store answers every call with an error, it does not hang; before, it pings.
pub async fn a_closed_store_refuses_work(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    assert!(!store.backend_name().is_empty());
    let mut tx = store.write().await.unwrap();
    tx.put_setting("k", "v").await.unwrap();
    tx.commit().await.unwrap();
    let lent = store.read().await.unwrap();
    let closing = tokio::time::timeout(Duration::from_secs(10), store.close());
    closing.await.expect("close does not wait for lent handles");
    assert!(store.read().await.is_err());
    assert!(store.snapshot().await.is_err());
    assert!(store.write().await.is_err());
    assert!(store.ping().await.is_err());
    drop(lent);
}

/// A transaction that holds a stream makes the next one that asks for it wait until it
/// commits, and that one then sees what the first committed.
pub async fn a_held_stream_makes_the_next_holder_wait(store: Arc<dyn Store>) {
    let stream = StreamKey::Project(Uuid::now_v7());
    let mut held = store.write().await.unwrap();
    held.lock_stream(stream).await.unwrap();
    held.put_setting("k", "first").await.unwrap();
    let waiter = tokio::spawn({
        let store = store.clone();
        async move {
            let mut tx = store.write().await.unwrap();
            tx.lock_stream(stream).await.unwrap();
            let seen = tx.get_setting("k").await.unwrap();
            let seq = tx.append_event(event(stream)).await.unwrap().seq;
            tx.commit().await.unwrap();
            (seen, seq)
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "the second holder waits");
    assert_eq!(held.append_event(event(stream)).await.unwrap().seq, Some(1));
    held.commit().await.unwrap();
    let (seen, seq) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter goes on after the commit")
        .unwrap();
    assert_eq!(seen.as_deref(), Some("first"), "it sees what was committed");
    assert_eq!(seq, Some(2));
}

/// Writers that hold a record's stream before reading it never write over a newer version:
/// each reads the version the previous one wrote, so no increment is lost.
pub async fn holders_of_a_stream_never_write_over_a_newer_version(store: Arc<dyn Store>) {
    let owner = project(Uuid::now_v7());
    let stream = StreamKey::Project(owner.id);
    let counter = record(owner.id, "tasks", json!({ "count": 0 }));
    let mut tx = store.write().await.unwrap();
    tx.insert_project(&owner).await.unwrap();
    tx.insert_record(&counter, &[]).await.unwrap();
    tx.commit().await.unwrap();
    let (writers, rounds) = (6, 5);
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..rounds {
                    let mut tx = store.write().await.unwrap();
                    tx.lock_stream(stream).await.unwrap();
                    let mut row = tx.get_record(counter.id).await.unwrap().unwrap();
                    let count = row.body["count"].as_i64().unwrap();
                    tokio::task::yield_now().await;
                    row.body.insert("count".into(), json!(count + 1));
                    row.version += 1;
                    tx.update_record_body(&row).await.unwrap();
                    tx.append_event(event(stream)).await.unwrap();
                    tx.commit().await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut ops = store.read().await.unwrap();
    let row = ops.get_record(counter.id).await.unwrap().unwrap();
    let total = writers * rounds;
    assert_eq!(row.body["count"], json!(total), "no update lost");
    assert_eq!(row.version, 1 + total);
    assert_eq!(ops.latest_seq(stream).await.unwrap(), total);
}
