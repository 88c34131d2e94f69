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
async fn joined_reads_match_separate_reads() {
    let (_dir, store) = fresh().await;
    conformance::joined_reads_match_separate_reads(&*store).await;
}
