//! The conformance suite on the SQLite backend, each case on its own real database file.

use liveplan_store::Store;
use liveplan_store::conformance;
use liveplan_store::sqlite::SqliteStore;
use std::sync::Arc;

async fn fresh() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in_dir(dir.path()).await.unwrap();
    (dir, Arc::new(store))
}

#[tokio::test]
async fn seqs_are_gap_free_per_stream() {
    let (_dir, store) = fresh().await;
    conformance::seqs_are_gap_free_per_stream(&*store).await;
}

#[tokio::test]
async fn rollback_leaves_nothing() {
    let (_dir, store) = fresh().await;
    conformance::rollback_leaves_nothing(&*store).await;
}

#[tokio::test]
async fn snapshots_are_consistent() {
    let (_dir, store) = fresh().await;
    conformance::snapshots_are_consistent(&*store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_serialize() {
    let (_dir, store) = fresh().await;
    conformance::concurrent_writers_serialize(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_are_consumed_once() {
    let (_dir, store) = fresh().await;
    conformance::tickets_are_consumed_once(store).await;
}

#[tokio::test]
async fn unique_rules_are_conflicts() {
    let (_dir, store) = fresh().await;
    conformance::unique_rules_are_conflicts(&*store).await;
}

#[tokio::test]
async fn records_keep_bodies_and_references() {
    let (_dir, store) = fresh().await;
    conformance::records_keep_bodies_and_references(&*store).await;
}

#[tokio::test]
async fn a_second_process_sees_committed_writes() {
    // Two stores on one file stand in for `liveplan user create` beside a running server.
    let dir = tempfile::tempdir().unwrap();
    let first = SqliteStore::open_in_dir(dir.path()).await.unwrap();
    let second = SqliteStore::open_in_dir(dir.path()).await.unwrap();
    let mut tx = first.write().await.unwrap();
    tx.put_setting("k", "v").await.unwrap();
    tx.commit().await.unwrap();
    let mut other = second.write().await.unwrap();
    assert_eq!(other.get_setting("k").await.unwrap().as_deref(), Some("v"));
    other.put_setting("k", "w").await.unwrap();
    other.commit().await.unwrap();
    assert_eq!(
        first
            .read()
            .await
            .unwrap()
            .get_setting("k")
            .await
            .unwrap()
            .as_deref(),
        Some("w")
    );
}

#[tokio::test]
async fn events_carry_their_echo() {
    let (_dir, store) = fresh().await;
    conformance::events_carry_their_echo(&*store).await;
}

#[tokio::test]
async fn phantom_ids_are_kept_bounded() {
    let (_dir, store) = fresh().await;
    conformance::phantom_ids_are_kept_bounded(&*store).await;
}

#[tokio::test]
async fn joined_reads_match_separate_reads() {
    let (_dir, store) = fresh().await;
    conformance::joined_reads_match_separate_reads(&*store).await;
}

#[tokio::test]
async fn a_writer_waits_for_another_process_without_blocking_its_thread() {
    // On a single-threaded runtime: if the second store waited for the file's write lock by
    // blocking the thread (SQLite's busy handler), the first could never commit and the wait
    // would end in an error after BUSY_TIMEOUT.
    let dir = tempfile::tempdir().unwrap();
    let first = Arc::new(SqliteStore::open_in_dir(dir.path()).await.unwrap());
    let second = Arc::new(SqliteStore::open_in_dir(dir.path()).await.unwrap());
    let mut held = first.write().await.unwrap();
    held.put_setting("k", "first").await.unwrap();
    let waiter = tokio::spawn({
        let second = second.clone();
        async move {
            let started = std::time::Instant::now();
            let mut tx = second.write().await.unwrap();
            let waited = started.elapsed();
            let seen = tx.get_setting("k").await.unwrap();
            tx.put_setting("k", "second").await.unwrap();
            tx.commit().await.unwrap();
            (waited, seen)
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    held.commit().await.unwrap();
    let (waited, seen) = waiter.await.unwrap();
    assert_eq!(
        seen.as_deref(),
        Some("first"),
        "the waiter began after the commit"
    );
    assert!(
        waited >= std::time::Duration::from_millis(150),
        "the waiter did wait for the lock ({waited:?})"
    );
    let mut ops = first.read().await.unwrap();
    assert_eq!(
        ops.get_setting("k").await.unwrap().as_deref(),
        Some("second")
    );
}

#[tokio::test]
async fn a_dropped_snapshot_leaves_its_connection_current() {
    // Readers are reused: a snapshot's connection must not stay in its old read transaction.
    let (_dir, store) = fresh().await;
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
    let mut ops = store.read().await.unwrap();
    assert_eq!(ops.get_setting("k").await.unwrap().as_deref(), Some("new"));
}

#[tokio::test]
async fn read_handles_refuse_writes() {
    let (_dir, store) = fresh().await;
    let mut ops = store.read().await.unwrap();
    let refused = ops.put_setting("k", "v").await.unwrap_err();
    assert!(matches!(refused, liveplan_store::StoreError::Database(_)));
    drop(ops);
    assert_eq!(
        store.read().await.unwrap().get_setting("k").await.unwrap(),
        None
    );
}

#[tokio::test]
async fn a_closed_store_refuses_work_and_its_file_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in_dir(dir.path()).await.unwrap();
    let mut tx = store.write().await.unwrap();
    tx.put_setting("k", "v").await.unwrap();
    tx.commit().await.unwrap();
    let lent = store.read().await.unwrap();
    store.close().await;
    assert!(store.read().await.is_err());
    assert!(store.write().await.is_err());
    assert!(store.ping().await.is_err());
    drop(lent);
    let reopened = SqliteStore::open_in_dir(dir.path()).await.unwrap();
    let mut ops = reopened.read().await.unwrap();
    assert_eq!(ops.get_setting("k").await.unwrap().as_deref(), Some("v"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_reads_on_a_multi_threaded_runtime() {
    // Long reads step off the runtime's worker (block_in_place) there; the same calls run
    // directly on a current-thread runtime (the other tests).
    let (_dir, store) = fresh().await;
    conformance::whole_collections_read_concurrently(store).await;
}
