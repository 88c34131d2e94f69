//! Two nodes writing one project at once lose no update: each write transaction holds the
//! project's stream before it reads the version an If-Match names, so of two PATCHes of one
//! record at one version exactly one wins and the other gets 412. And two write transactions
//! that hold two streams in opposite orders deadlock on PostgreSQL, and both still commit:
//! the store reports the one PostgreSQL gives up as retryable and the domain runs it again.
//!
//! The nodes are two stores on one PostgreSQL database (`LIVEPLAN_TEST_POSTGRES_URL`, else
//! `LIVEPLAN_TEST_DATABASE_URL` when it names a PostgreSQL, else the server on 127.0.0.1:5432
//! when one answers; in a fresh database dropped at the end); without a PostgreSQL, two stores
//! on one SQLite file.

use liveplan_domain::accounts::NewUser;
use liveplan_domain::tx::Tx;
use liveplan_domain::{Actor, Domain, NoListener};
use proto::{EventType, StreamKey};
use serde_json::{Value, json};
use sqlx::Connection;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use store::Store;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const ROUNDS: i64 = 20;
const GUARD: Duration = Duration::from_secs(30);

/// The PostgreSQL server to test on, if there is one: as for the PostgreSQL store's tests.
async fn postgres_url() -> Option<String> {
    let var = |name| {
        std::env::var(name)
            .ok()
            .filter(|url: &String| !url.is_empty())
    };
    let given = var("LIVEPLAN_TEST_POSTGRES_URL")
        .or_else(|| var("LIVEPLAN_TEST_DATABASE_URL").filter(|url| url.starts_with("postgres")));
    if given.is_some() {
        return given;
    }
    let answers = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect("127.0.0.1:5432"),
    )
    .await;
    matches!(answers, Ok(Ok(_))).then(|| DEFAULT_URL.to_string())
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

async fn administer(url: &str, statement: String) {
    let work = async {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    };
    tokio::time::timeout(GUARD, work)
        .await
        .expect("PostgreSQL answers in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_if_match_patches_on_two_nodes_let_exactly_one_win() {
    match postgres_url().await {
        Some(server) => {
            on_two_postgres_nodes(&server, race).await;
        }
        None => {
            println!("no PostgreSQL answers: two stores on one SQLite file instead");
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("liveplan.db");
            let mut nodes: Vec<Arc<dyn Store>> = Vec::new();
            for _ in 0..2 {
                nodes.push(Arc::new(
                    store_sqlite::SqliteStore::open_file(&file).await.unwrap(),
                ));
            }
            race(nodes).await;
        }
    }
}

async fn race(nodes: Vec<Arc<dyn Store>>) {
    let domains: Vec<Arc<Domain>> = nodes
        .into_iter()
        .map(|store| Arc::new(Domain::new(store, Arc::new(NoListener))))
        .collect();
    let first = &domains[0];
    let (actor, project) = admin_and_project(first, "Two nodes").await;
    let tasks = liveplan_domain::collections::by_name("tasks").unwrap();
    let task = first
        .create_record(&actor, project, tasks, &json!({ "name": "contended" }))
        .await
        .unwrap();
    let task_id = id_of(&task);
    let first_version = task["version"].as_i64().unwrap();
    for (round, version) in (first_version..first_version + ROUNDS).enumerate() {
        let patches = domains.iter().enumerate().map(|(node, domain)| {
            let (domain, actor) = (domain.clone(), actor.clone());
            tokio::spawn(async move {
                let name = json!({ "name": format!("round {round} node {node}") });
                domain
                    .update_record(&actor, project, tasks, task_id, &name, Some(version))
                    .await
            })
        });
        let mut won = Vec::new();
        let mut refused = 0;
        for patch in patches.collect::<Vec<_>>() {
            match tokio::time::timeout(GUARD, patch).await.unwrap().unwrap() {
                Ok(row) => won.push(row),
                Err(error) => {
                    assert_eq!(error.code.http_status(), 412, "round {round}: {error:?}");
                    refused += 1;
                }
            }
        }
        assert_eq!((won.len(), refused), (1, 1), "round {round}: one wins");
        let winner = &won[0];
        assert_eq!(winner["version"].as_i64(), Some(version + 1));
        // Both nodes read the winner's change: nothing was lost or written over.
        for domain in &domains {
            let stored = domain
                .get_record(&actor, project, tasks, task_id)
                .await
                .unwrap();
            assert_eq!(stored.version, version + 1, "round {round}");
            assert_eq!(stored.body.get("name"), winner.get("name"), "round {round}");
        }
    }
}

/// An administrator (who never logs in) and a project of theirs named `name`.
async fn admin_and_project(domain: &Domain, name: &str) -> (Actor, uuid::Uuid) {
    let admin = domain
        .create_user(
            None,
            NewUser {
                email: "admin@example.test".into(),
                username: None,
                display_name: None,
                password_hash: "not a hash: nobody logs in here".into(),
                is_admin: true,
            },
        )
        .await
        .unwrap();
    let actor = Actor {
        user_id: id_of(&admin),
        is_admin: true,
        tab_id: None,
    };
    let project = domain
        .create_project(&actor, &json!({ "name": name }))
        .await
        .unwrap();
    (actor, id_of(&project))
}

fn id_of(row: &Value) -> uuid::Uuid {
    uuid::Uuid::parse_str(row["id"].as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opposite_lock_orders_deadlock_and_the_loser_runs_again() {
    let Some(server) = postgres_url().await else {
        // SQLite runs one write transaction at a time: nothing to deadlock.
        println!("skipped: no PostgreSQL answers, and SQLite cannot deadlock");
        return;
    };
    on_two_postgres_nodes(&server, deadlock).await;
}

/// Runs `case` with two stores (two nodes) on a fresh database of `server`, then closes them
/// and drops the database whatever happened, then reports what happened.
async fn on_two_postgres_nodes<F, Fut>(server: &str, case: F)
where
    F: FnOnce(Vec<Arc<dyn Store>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let name = format!("liveplan_test_{}", uuid::Uuid::now_v7().simple());
    administer(server, format!("CREATE DATABASE {name}")).await;
    let url = with_database(server, &name);
    let mut nodes: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..2 {
        nodes.push(Arc::new(store_postgres::open(&url).await.unwrap()));
    }
    let outcome = tokio::spawn(case(nodes.clone())).await;
    for node in nodes {
        node.close().await;
    }
    administer(
        server,
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
}

/// Node 0 holds stream `a` then `b`, node 1 `b` then `a`, each appending an event to its
/// second; a barrier makes both take their first before either asks for its second, so their
/// first attempts deadlock for sure.
async fn deadlock(nodes: Vec<Arc<dyn Store>>) {
    let a = StreamKey::User(uuid::Uuid::now_v7());
    let b = StreamKey::User(uuid::Uuid::now_v7());
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let runs = Arc::new(AtomicUsize::new(0));
    let reader = nodes[0].clone();
    let writers = nodes
        .into_iter()
        .zip([(a, b), (b, a)])
        .map(|(store, (first, second))| {
            let (barrier, runs) = (barrier.clone(), runs.clone());
            tokio::spawn(async move {
                let domain = Domain::new(store, Arc::new(NoListener));
                let first_run = AtomicBool::new(true);
                let (domain, barrier, runs, first_run) = (&domain, &*barrier, &*runs, &first_run);
                domain
                    .retrying(|| async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        let mut tx = Tx::begin(domain, None).await?;
                        tx.hold(first).await?;
                        if first_run.swap(false, Ordering::SeqCst) {
                            barrier.wait().await;
                        }
                        tx.hold(second).await?;
                        tx.emit(second, EventType::UserUpdated, json!({}), json!({}), None)
                            .await?;
                        tx.commit().await.map(drop)
                    })
                    .await
            })
        });
    for writer in writers.collect::<Vec<_>>() {
        let outcome = tokio::time::timeout(GUARD, writer).await.unwrap().unwrap();
        assert_eq!(outcome, Ok(()), "both commit in the end");
    }
    // PostgreSQL gave exactly one of the two first attempts up, and it ran once more.
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    // Each event went in once, and only the retry's: the given-up attempt left nothing.
    let mut ops = reader.read().await.unwrap();
    for stream in [a, b] {
        assert_eq!(ops.latest_seq(stream).await.unwrap(), 1, "{stream:?}");
        assert_eq!(ops.read_events(stream, 0, 10).await.unwrap().len(), 1);
    }
}

/// Two nodes' schedulers on one database: the lease on a project is held by one of them at a
/// time (until given back or run out), and a schedule computed from a state the mark already
/// covers is not written, so each change gets one `cpm_complete` however many nodes were
/// asked to compute it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_at_a_time_holds_a_project_schedule_and_a_covered_write_is_dropped() {
    let Some(server) = postgres_url().await else {
        // SQLite is one process: a node alone computes without a lease.
        println!("no PostgreSQL answers: nothing to test");
        return;
    };
    on_two_postgres_nodes(&server, schedule_lease).await;
}

async fn schedule_lease(nodes: Vec<Arc<dyn Store>>) {
    use liveplan_domain::schedule::{ScheduleUpdate, WriteOutcome};
    let domains: Vec<Domain> = nodes
        .iter()
        .map(|store| Domain::new(store.clone(), Arc::new(NoListener)))
        .collect();
    let (a, b) = (&domains[0], &domains[1]);
    let (_, project) = admin_and_project(a, "Scheduled twice").await;
    let (holder_a, holder_b) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let long = Duration::from_secs(60);

    assert_eq!(
        a.take_schedule_lease(project, holder_a, long)
            .await
            .unwrap(),
        Some(0)
    );
    assert_eq!(
        b.take_schedule_lease(project, holder_b, long)
            .await
            .unwrap(),
        None,
        "held by a"
    );
    assert_eq!(
        a.take_schedule_lease(project, holder_a, long)
            .await
            .unwrap(),
        Some(0),
        "its holder renews it"
    );
    b.end_schedule_lease(project, holder_b).await.unwrap();
    assert_eq!(
        b.take_schedule_lease(project, holder_b, long)
            .await
            .unwrap(),
        None,
        "only the holder gives it back"
    );

    let stream = StreamKey::Project(project);
    let state = nodes[0]
        .read()
        .await
        .unwrap()
        .latest_seq(stream)
        .await
        .unwrap();
    let update = ScheduleUpdate {
        project_finish: chrono::NaiveDate::from_ymd_opt(2027, 1, 4).unwrap(),
        critical_path: Vec::new(),
        moved: Vec::new(),
    };
    let written = a
        .write_schedule_update(project, &update, || true, Some(state))
        .await
        .unwrap();
    assert!(
        matches!(written, WriteOutcome::Written { .. }),
        "{written:?}"
    );
    a.end_schedule_lease(project, holder_a).await.unwrap();

    // b was asked to compute the same change: the lease is free and says it is covered.
    assert_eq!(
        b.take_schedule_lease(project, holder_b, long)
            .await
            .unwrap(),
        Some(state)
    );
    // A computation from this state or an older one is not written again.
    for stale in [state, state - 1] {
        let outcome = b
            .write_schedule_update(project, &update, || true, Some(stale))
            .await
            .unwrap();
        assert_eq!(outcome, WriteOutcome::AlreadyCovered, "from seq {stale}");
        b.write_schedule_error(project, "stale", Value::Null, Some(stale))
            .await
            .unwrap();
    }
    b.end_schedule_lease(project, holder_b).await.unwrap();

    // A lease that ran out (its node died) is taken over.
    assert!(
        a.take_schedule_lease(project, holder_a, Duration::ZERO)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        b.take_schedule_lease(project, holder_b, long)
            .await
            .unwrap(),
        Some(state),
        "an expired lease is free"
    );

    let events = nodes[0]
        .read()
        .await
        .unwrap()
        .read_events(stream, 0, 1000)
        .await
        .unwrap();
    let count = |kind| events.iter().filter(|e| e.event_type == kind).count();
    assert_eq!(count(EventType::CpmComplete), 1, "one schedule written");
    assert_eq!(count(EventType::CpmError), 0, "no stale error written");
}
