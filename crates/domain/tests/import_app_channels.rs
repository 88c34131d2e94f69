//! An import replaces the database: the Pusher app's channels start anew too, each under a new
//! `stream_id` (`store::app_channels`), so no client resumes into a history that is gone.
//!
//! On PostgreSQL when `LIVEPLAN_TEST_DATABASE_URL` names one (a database made for the test and
//! dropped after), else on SQLite in a temporary directory.

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

/// The PostgreSQL server of `LIVEPLAN_TEST_DATABASE_URL`, if it names one.
fn postgres_server() -> Option<String> {
    std::env::var("LIVEPLAN_TEST_DATABASE_URL")
        .ok()
        .filter(|url| url.starts_with("postgres"))
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

async fn administer(url: &str, statement: String) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(statement))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn an_import_forgets_the_app_channels() {
    match postgres_server() {
        Some(server) => {
            let name = format!("liveplan_test_{}", uuid::Uuid::now_v7().simple());
            administer(&server, format!("CREATE DATABASE {name}")).await;
            let store = store_postgres::open(&with_database(&server, &name))
                .await
                .unwrap();
            let outcome = tokio::spawn(import_forgets(Arc::new(store))).await;
            administer(
                &server,
                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
            .await;
            outcome.unwrap();
        }
        None => {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open_in_dir(dir.path()).await.unwrap();
            import_forgets(Arc::new(store)).await;
        }
    }
}

async fn import_forgets(store: Arc<dyn Store>) {
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
