//! The PostgreSQL backend: the whole conformance suite, each case on a database of its own made
//! for it and dropped after, and what only a shared server shows (several nodes writing).
//!
//! The server is `LIVEPLAN_TEST_POSTGRES_URL`, else `LIVEPLAN_TEST_DATABASE_URL` when that names
//! a PostgreSQL (it also moves the server's tests there), else the one on 127.0.0.1:5432 as
//! `postgres`, database `test`; `scripts/test.sh` makes sure one runs.

use std::sync::Arc;
use store::Store;
use store_conformance::{Fresh, conformance_suite};
use uuid::Uuid;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn server_url() -> String {
    let var = |name| {
        std::env::var(name)
            .ok()
            .filter(|url: &String| !url.is_empty())
    };
    var("LIVEPLAN_TEST_POSTGRES_URL")
        .or_else(|| var("LIVEPLAN_TEST_DATABASE_URL").filter(|url| url.starts_with("postgres")))
        .unwrap_or_else(|| DEFAULT_URL.into())
}

/// `url` with its database replaced by `name`.
fn url_of(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(server, _)| server);
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

async fn admin(sql: String) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&server_url()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

/// A new, empty database; its name is also its URL's last part.
async fn fresh_database() -> (String, String) {
    let name = format!("liveplan_test_{}", Uuid::now_v7().simple());
    admin(format!("CREATE DATABASE {name}")).await;
    let url = url_of(&server_url(), &name);
    (name, url)
}

async fn drop_database(name: String) {
    admin(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}

/// Two stores on one database, standing in for two nodes.
async fn two_nodes(url: &str) -> [Arc<dyn Store>; 2] {
    [
        Arc::new(liveplan_store_postgres::open(url).await.unwrap()),
        Arc::new(liveplan_store_postgres::open(url).await.unwrap()),
    ]
}

async fn fresh() -> Fresh {
    let (name, url) = fresh_database().await;
    let store = liveplan_store_postgres::open(&url).await.unwrap();
    Fresh::new(Arc::new(store), drop_database(name))
}

conformance_suite!(fresh);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_on_several_nodes_keep_one_streams_seqs_gap_free() {
    // Three stores on one database stand in for three nodes, each with its own pool.
    let (name, url) = fresh_database().await;
    let mut nodes: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..3 {
        nodes.push(Arc::new(liveplan_store_postgres::open(&url).await.unwrap()));
    }
    let stream = proto::StreamKey::Project(Uuid::now_v7());
    let writers: Vec<_> = nodes
        .iter()
        .flat_map(|node| [node.clone(), node.clone()])
        .map(|node| {
            tokio::spawn(async move {
                for _ in 0..10 {
                    let mut tx = node.write().await.unwrap();
                    for _ in 0..2 {
                        tx.append_event(task_created(stream)).await.unwrap();
                    }
                    tx.commit().await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let mut ops = nodes[0].read().await.unwrap();
    let seqs: Vec<i64> = ops
        .read_events(stream, 0, 1000)
        .await
        .unwrap()
        .iter()
        .filter_map(|e| e.seq)
        .collect();
    assert_eq!(seqs, (1..=120).collect::<Vec<_>>());
    drop(ops);
    for node in nodes {
        node.close().await;
    }
    drop_database(name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_that_share_commits_keep_seqs_gap_free_and_hand_them_over_in_order() {
    // Writers that begin by holding one stream share transactions (the store's group commit).
    // Some are rolled back after appending, some are cancelled mid-statement: the log holds
    // exactly what was acknowledged, gap-free, and the follow-ups ran in seq order.
    let (name, url) = fresh_database().await;
    let store: Arc<dyn Store> = Arc::new(liveplan_store_postgres::open(&url).await.unwrap());
    let stream = proto::StreamKey::Project(Uuid::now_v7());
    let handed_over = Arc::new(std::sync::Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..16)
        .map(|writer| {
            let (store, handed_over) = (store.clone(), handed_over.clone());
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for round in 0..15 {
                    let mut tx = store.write().await.unwrap();
                    tx.lock_stream(stream).await.unwrap();
                    let mut event = task_created(stream);
                    event.payload = serde_json::json!({ "writer": writer, "round": round });
                    match (writer + round) % 6 {
                        // Rolled back after its append.
                        0 => {
                            tx.append_event(event).await.unwrap();
                            drop(tx);
                        }
                        // Cancelled while its append may be under way.
                        1 => {
                            let cancelled = tokio::time::timeout(
                                std::time::Duration::from_micros(50),
                                tx.append_event(event),
                            );
                            let _ = cancelled.await;
                            drop(tx);
                        }
                        _ => {
                            let seq = tx.append_event(event.clone()).await.unwrap().seq;
                            let handed_over = handed_over.clone();
                            tx.commit_then(Box::new(move || {
                                handed_over.lock().unwrap().push(seq.unwrap())
                            }))
                            .await
                            .unwrap();
                            acknowledged.push(event.payload);
                        }
                    }
                }
                acknowledged
            })
        })
        .collect();
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    let logged = store
        .read()
        .await
        .unwrap()
        .read_events(stream, 0, 1000)
        .await
        .unwrap();
    let seqs: Vec<i64> = logged.iter().filter_map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=acknowledged.len() as i64).collect::<Vec<_>>());
    let key = |payload: &serde_json::Value| (payload["writer"].clone(), payload["round"].clone());
    let mut logged: Vec<_> = logged.iter().map(|e| key(&e.payload)).collect();
    let mut acknowledged: Vec<_> = acknowledged.iter().map(key).collect();
    let order = |a: &(serde_json::Value, serde_json::Value),
                 b: &(serde_json::Value, serde_json::Value)| {
        (a.0.as_i64(), a.1.as_i64()).cmp(&(b.0.as_i64(), b.1.as_i64()))
    };
    logged.sort_by(order);
    acknowledged.sort_by(order);
    assert_eq!(logged, acknowledged, "exactly the acknowledged changes");
    assert_eq!(
        *handed_over.lock().unwrap(),
        seqs,
        "handed over in seq order"
    );
    store.close().await;
    drop_database(name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_on_two_nodes_sharing_streams_never_deadlock() {
    // Two nodes, each with writers of the same sixteen streams: each node's batches hold several
    // streams at once, so a writer that waited inside its batch for a stream the other node's
    // batch holds could close a circle (PostgreSQL would give one of them up). None may fail.
    let (name, url) = fresh_database().await;
    let nodes = two_nodes(&url).await;
    let streams: Vec<_> = (0..16)
        .map(|_| proto::StreamKey::Project(Uuid::now_v7()))
        .collect();
    let writers: Vec<_> = (0..32)
        .map(|writer| {
            let (node, streams) = (nodes[writer % 2].clone(), streams.clone());
            tokio::spawn(async move {
                for round in 0..30 {
                    let stream = streams[(writer + round) % streams.len()];
                    let mut tx = node.write().await?;
                    tx.lock_stream(stream).await?;
                    tx.append_event(task_created(stream)).await?;
                    tx.commit().await?;
                }
                Ok::<(), store::StoreError>(())
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap().unwrap();
    }
    let mut ops = nodes[0].read().await.unwrap();
    let mut total = 0;
    for stream in streams {
        let seqs: Vec<i64> = ops
            .read_events(stream, 0, 1000)
            .await
            .unwrap()
            .iter()
            .filter_map(|e| e.seq)
            .collect();
        assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
        total += seqs.len();
    }
    assert_eq!(total, 32 * 30);
    drop(ops);
    for node in nodes {
        node.close().await;
    }
    drop_database(name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_channel_appends_on_several_nodes_keep_serials_gap_free() {
    // Three stores on one database stand in for three nodes; each appends to both channels,
    // in opposite orders on alternate writers (locking in name order keeps them deadlock-free).
    let (name, url) = fresh_database().await;
    let mut nodes: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..3 {
        nodes.push(Arc::new(liveplan_store_postgres::open(&url).await.unwrap()));
    }
    let retention = store::AppLogRetention {
        keep_events: 1_000,
        keep_since: store::Timestamp::UNIX_EPOCH,
    };
    let writers: Vec<_> = nodes
        .iter()
        .flat_map(|node| [node.clone(), node.clone()])
        .enumerate()
        .map(|(i, node)| {
            tokio::spawn(async move {
                let channels: Vec<String> = if i % 2 == 0 {
                    vec!["chat-a".into(), "chat-b".into()]
                } else {
                    vec!["chat-b".into(), "chat-a".into()]
                };
                for _ in 0..10 {
                    let mut tx = node.write().await.unwrap();
                    tx.append_app_event(&channels, "e", "d", store::now(), retention)
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let mut ops = nodes[1].read().await.unwrap();
    for channel in ["chat-a", "chat-b"] {
        let serials: Vec<i64> = ops
            .read_app_events(channel, 0, 1000, store::Timestamp::UNIX_EPOCH)
            .await
            .unwrap()
            .iter()
            .map(|e| e.serial)
            .collect();
        assert_eq!(serials, (1..=60).collect::<Vec<_>>(), "{channel}");
    }
    drop(ops);
    for node in nodes {
        node.close().await;
    }
    drop_database(name).await;
}

/// When the crash sentinel is gone after a fast node ran (a crash of the database that may
/// have lost commits), every app channel gets a new `stream_id`.
#[tokio::test]
async fn a_lost_tail_renews_every_app_channels_stream() {
    let (name, url) = fresh_database().await;
    let first = liveplan_store_postgres::open_with(&url, store::Durability::Fast)
        .await
        .unwrap();
    let mut tx = first.write().await.unwrap();
    tx.append_app_event(
        &["chat".to_owned()],
        "e",
        "d",
        store::now(),
        store::AppLogRetention {
            keep_events: 10,
            keep_since: store::Timestamp::UNIX_EPOCH,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let position = async |store: &dyn Store| {
        store
            .read()
            .await
            .unwrap()
            .app_channel_position("chat", store::Timestamp::UNIX_EPOCH)
            .await
            .unwrap()
            .unwrap()
    };
    let before = position(&first).await;
    first.close().await;
    // Crash recovery empties the unlogged sentinel table; the next connection finds it empty.
    admin_on(&url, "DELETE FROM crash_sentinel".into()).await;
    let second = liveplan_store_postgres::open(&url).await.unwrap();
    assert!(second.begin_run().await.unwrap().skipped);
    let after = position(&second).await;
    assert_ne!(after.stream_id, before.stream_id);
    assert_eq!(after.last_serial, before.last_serial);
    second.close().await;
    drop_database(name).await;
}

/// The README's restore: `pg_dump --format=custom` of a database that served, `pg_restore` into
/// an empty one. Its first start moves every stream on, as a SQLite copy's does, so clients
/// that saw commits made after the dump resync; the original, opened again, does not.
#[tokio::test]
async fn a_database_restored_from_a_dump_skips_its_seqs_ahead() {
    use std::process::Command;
    if Command::new("pg_dump").arg("--version").output().is_err() {
        eprintln!("\n!!! SKIPPED: pg_dump is not installed\n");
        return;
    }
    let (name, url) = fresh_database().await;
    let stream = proto::StreamKey::Project(Uuid::now_v7());
    let append = async |store: &dyn Store| {
        let mut tx = store.write().await.unwrap();
        let seq = tx
            .append_event(task_created(stream))
            .await
            .unwrap()
            .seq
            .unwrap();
        tx.commit().await.unwrap();
        seq
    };
    let served = liveplan_store_postgres::open(&url).await.unwrap();
    assert_eq!(append(&served).await, 1);
    let dump = std::env::temp_dir().join(format!("{name}.dump"));
    let status = Command::new("pg_dump")
        .args(["--format=custom", "--file"])
        .arg(&dump)
        .arg(&url)
        .status()
        .unwrap();
    assert!(status.success());
    // Served on after the dump: a client may have seen seq 2.
    assert_eq!(append(&served).await, 2);
    served.close().await;

    let (restored_name, restored_url) = fresh_database().await;
    let status = Command::new("pg_restore")
        .args(["--no-owner", "--dbname", &restored_url])
        .arg(&dump)
        .status()
        .unwrap();
    assert!(status.success());
    let _ = std::fs::remove_file(&dump);
    let restored = liveplan_store_postgres::open(&restored_url).await.unwrap();
    assert!(restored.begin_run().await.unwrap().skipped);
    assert_eq!(append(&restored).await, 1 + store::LOST_TAIL_SKIP + 1);
    restored.close().await;
    // Once only: the restored database is now the one that wrote its rows.
    let again = liveplan_store_postgres::open(&restored_url).await.unwrap();
    assert!(!again.begin_run().await.unwrap().skipped);
    assert_eq!(append(&again).await, 1 + store::LOST_TAIL_SKIP + 2);
    again.close().await;

    let original = liveplan_store_postgres::open(&url).await.unwrap();
    assert!(!original.begin_run().await.unwrap().skipped);
    assert_eq!(append(&original).await, 3);
    original.close().await;
    drop_database(name).await;
    drop_database(restored_name).await;
}

async fn admin_on(url: &str, sql: String) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn migrations_apply_once_to_a_database_opened_again() {
    let (name, url) = fresh_database().await;
    let first = liveplan_store_postgres::open(&url).await.unwrap();
    let mut tx = first.write().await.unwrap();
    tx.put_setting("k", "v").await.unwrap();
    tx.commit().await.unwrap();
    first.close().await;
    let again = liveplan_store_postgres::open(&url).await.unwrap();
    let mut ops = again.read().await.unwrap();
    assert_eq!(ops.get_setting("k").await.unwrap().as_deref(), Some("v"));
    drop(ops);
    again.close().await;
    drop_database(name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_mid_transaction_is_retryable_and_leaves_the_other_to_commit() {
    // Two transactions on two nodes take two streams in opposite orders, each its first
    // before either asks for its second: PostgreSQL gives one up, which the store reports as
    // retryable, and the other goes on. (On one node two such writers may share a batch, where
    // the second waits for the first's turn to end: the barrier would then never open.)
    let (name, url) = fresh_database().await;
    let nodes = two_nodes(&url).await;
    let a = proto::StreamKey::User(Uuid::now_v7());
    let b = proto::StreamKey::User(Uuid::now_v7());
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let writers: Vec<_> = [(a, b), (b, a)]
        .into_iter()
        .zip(nodes.clone())
        .map(|((first, second), store)| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let mut tx = store.write().await.unwrap();
                tx.lock_stream(first).await.unwrap();
                barrier.wait().await;
                match tx.lock_stream(second).await {
                    Ok(()) => tx.commit().await,
                    Err(error) => Err(error),
                }
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for writer in writers {
        outcomes.push(writer.await.unwrap());
    }
    let committed = outcomes.iter().filter(|o| o.is_ok()).count();
    let retryable = outcomes
        .iter()
        .filter(|o| matches!(o, Err(store::StoreError::Retryable)))
        .count();
    assert_eq!((committed, retryable), (1, 1), "{outcomes:?}");
    for node in nodes {
        node.close().await;
    }
    drop_database(name).await;
}

#[tokio::test]
async fn a_server_that_does_not_answer_is_unavailable() {
    // A port of 127.0.0.1 nobody listens on: the pool gives up after its acquire timeout.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/nothing");
    let opened = liveplan_store_postgres::open(&url).await;
    assert!(
        matches!(opened, Err(store::StoreError::Unavailable)),
        "{:?}",
        opened.err()
    );
}

/// A bare `task_created` event on `stream`, for tests about seqs alone.
fn task_created(stream: proto::StreamKey) -> store::NewEvent {
    store::NewEvent {
        stream,
        event_type: proto::EventType::TaskCreated,
        payload: serde_json::json!({}),
        data: serde_json::json!({}),
        actor_id: None,
        tab_id: None,
        ts: store::now(),
        project_id: None,
        echo: None,
    }
}
