//! The SQLite backend: the whole conformance suite, each case on its own real database file,
//! and what only a file-based store shows (a second process on the same file).

use liveplan_store_sqlite::SqliteStore;
use std::sync::Arc;
use store::Store;
use store_conformance::{Fresh, conformance_suite};

async fn fresh() -> Fresh {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in_dir(dir.path()).await.unwrap();
    Fresh::new(Arc::new(store), async move { drop(dir) })
}

conformance_suite!(fresh);

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
async fn a_closed_store_file_reopens_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in_dir(dir.path()).await.unwrap();
    let mut tx = store.write().await.unwrap();
    tx.put_setting("k", "v").await.unwrap();
    tx.commit().await.unwrap();
    let lent = store.read().await.unwrap();
    store.close().await;
    assert!(store.read().await.is_err());
    drop(lent);
    let reopened = SqliteStore::open_in_dir(dir.path()).await.unwrap();
    let mut ops = reopened.read().await.unwrap();
    assert_eq!(ops.get_setting("k").await.unwrap().as_deref(), Some("v"));
}

/// After a run that may have lost the tail of its commits (fast, unclean, another boot), every
/// app channel gets a new `stream_id`: serials alone could not tell a client what was lost.
#[tokio::test]
async fn a_lost_tail_renews_every_app_channels_stream() {
    use liveplan_store_sqlite::SqliteOptions;
    use store::{AppLogRetention, Durability, Timestamp};
    let dir = tempfile::tempdir().unwrap();
    let boot_file = dir.path().join("boot_id");
    let file = dir.path().join("liveplan.db");
    let options = || SqliteOptions {
        durability: Durability::Fast,
        boot_id_file: Some(boot_file.clone()),
    };
    let position = async |store: &SqliteStore| {
        store
            .read()
            .await
            .unwrap()
            .app_channel_position("chat", Timestamp::UNIX_EPOCH)
            .await
            .unwrap()
            .unwrap()
    };
    std::fs::write(&boot_file, "boot-a").unwrap();
    let store = SqliteStore::open_file_with(&file, options()).await.unwrap();
    assert!(!store.begin_run().await.unwrap().skipped);
    let mut tx = store.write().await.unwrap();
    tx.append_app_event(
        &["chat".to_owned()],
        "e",
        "d",
        store::now(),
        AppLogRetention {
            keep_events: 10,
            keep_since: Timestamp::UNIX_EPOCH,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let before = position(&store).await;
    // The run ends without `close` (a crash), and the machine boots again.
    drop(store);
    std::fs::write(&boot_file, "boot-b").unwrap();
    let store = SqliteStore::open_file_with(&file, options()).await.unwrap();
    assert!(store.begin_run().await.unwrap().skipped);
    let after = position(&store).await;
    assert_ne!(after.stream_id, before.stream_id);
    assert_eq!(after.last_serial, before.last_serial);
    store.close().await;
}
