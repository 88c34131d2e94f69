//! An import replaces the database: the Pusher app's channels start anew too, each under a new
//! `stream_id` (`store::app_channels`), so no client resumes into a history that is gone.

use liveplan_domain::transfer::Existing;
use liveplan_domain::{Domain, NoListener};
use std::sync::Arc;
use store::{AppLogRetention, Store, Timestamp};
use store_sqlite::SqliteStore;

const EVER: Timestamp = Timestamp::UNIX_EPOCH;

async fn append(store: &Arc<dyn Store>, channel: &str) -> i64 {
    let mut tx = store.write().await.unwrap();
    let appended = tx
        .append_app_event(
            &[channel.to_owned()],
            "e",
            "d",
            store::now(),
            AppLogRetention {
                keep_events: 1_000,
                keep_since: EVER,
            },
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    appended[0].serial
}

#[tokio::test]
async fn an_import_forgets_the_app_channels() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_dir(dir.path()).await.unwrap());
    let domain = Domain::new(store.clone(), Arc::new(NoListener));
    append(&store, "chat").await;
    assert_eq!(append(&store, "chat").await, 2);
    let before = store
        .read()
        .await
        .unwrap()
        .app_channel_position("chat", EVER)
        .await
        .unwrap()
        .unwrap();
    let document = domain.export_all().await.unwrap();
    domain
        .import_document(None, &document, Existing::Replace)
        .await
        .unwrap();
    let mut ops = store.read().await.unwrap();
    assert_eq!(ops.app_channel_position("chat", EVER).await.unwrap(), None);
    assert!(
        ops.read_app_events("chat", 0, 10, EVER)
            .await
            .unwrap()
            .is_empty()
    );
    drop(ops);
    assert_eq!(append(&store, "chat").await, 1, "serials start anew");
    let after = store
        .read()
        .await
        .unwrap()
        .app_channel_position("chat", EVER)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(after.stream_id, before.stream_id, "under a new stream");
    store.close().await;
}
