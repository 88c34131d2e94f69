//! Several nodes on one PostgreSQL database and one Redis (CONTRACT §9): every event committed
//! on any node reaches the subscribers of every node in seq order, with no gap and no
//! duplicate, whatever Redis does and whichever node dies; and a node that would not hear the
//! others refuses to start.
//!
//! These tests need PostgreSQL whatever the run's backend (`testkit::cluster`), and
//! `redis-server` (`scripts/test.sh` installs it).

use futures::future::join_all;
use liveplan_testkit::bryntum::Client as Bryntum;
use liveplan_testkit::cluster::{Endpoint, follow_across};
use liveplan_testkit::follow::{Reads, project_with_member};
use liveplan_testkit::*;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_liveplan");

/// Every task id a Bryntum client hears of as added by another transport, until it has
/// `count`; fails on a duplicate.
async fn bryntum_added(client: &mut Bryntum, count: usize) -> HashSet<String> {
    let mut ids = HashSet::new();
    while ids.len() < count {
        let message = client.recv_command("project_change").await;
        for revision in message["data"]["revisions"].as_array().unwrap() {
            assert_eq!(revision["client"], Value::Null, "{revision}");
            for added in revision["changes"]["tasks"]["added"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let id = added["id"].as_str().unwrap().to_owned();
                assert!(ids.insert(id.clone()), "task {id} added twice");
            }
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_every_node_reach_every_transport_on_every_node() {
    const PER_NODE: usize = 12;
    let cluster = Cluster::start(3).await;
    let first = cluster.node(0);
    let (project, token) = project_with_member(first, "everywhere").await;
    let (bry_id, _) = first.user(&first.admin, "bry").await;
    first
        .add_member(&first.admin, &project.to_string(), &bry_id, 400)
        .await;
    // Every node has a native socket, an SSE stream and a Bryntum client on the project.
    let mut sockets = Vec::new();
    let mut streams = Vec::new();
    let mut gantts = Vec::new();
    for node in &cluster.nodes {
        sockets.push(node.ws_project(&token, project, Some(0)).await);
        let path = format!("/api/v1/projects/{project}/events");
        streams.push(node.sse(&token, &path, Some(0)).await);
        gantts.push(Bryntum::on_dataset(node, "bry", json!(project)).await);
    }

    // Every node writes, all at once.
    let writes = cluster.nodes.iter().enumerate().map(|(i, node)| {
        let token = token.clone();
        async move {
            let mut ids = Vec::new();
            for n in 0..PER_NODE {
                let task = node
                    .task(&token, project, &format!("node {i} task {n}"))
                    .await;
                ids.push(task["id"].as_str().unwrap().to_owned());
            }
            ids
        }
    });
    let written: HashSet<String> = join_all(writes).await.into_iter().flatten().collect();
    assert_eq!(written.len(), 3 * PER_NODE);

    let log = first.log_seqs(project).await;
    let last = *log.last().unwrap();
    for (i, ws) in sockets.iter_mut().enumerate() {
        let mut got = Vec::new();
        ws.through(&mut got, last).await;
        assert_eq!(got, log, "native socket on node {i}");
    }
    for (i, sse) in streams.iter_mut().enumerate() {
        let mut got = Vec::new();
        sse.through(&mut got, last).await;
        assert_eq!(got, log, "SSE stream on node {i}");
    }
    for (i, gantt) in gantts.iter_mut().enumerate() {
        let added = bryntum_added(gantt, written.len()).await;
        assert_eq!(added, written, "Bryntum client on node {i}");
    }
}

/// Writes `count` tasks, spread over `endpoints` in turn; a node that does not answer is
/// skipped for the next. Returns how many were acknowledged.
async fn write_spread(endpoints: &[Endpoint], token: &str, project: Uuid, count: usize) -> usize {
    let mut acknowledged = 0;
    for n in 0..count {
        for attempt in 0..endpoints.len() {
            let endpoint = &endpoints[(n + attempt) % endpoints.len()];
            let answer = endpoint
                .post(
                    &format!("/api/v1/projects/{project}/tasks"),
                    token,
                    json!({"name": format!("spread {n}")}),
                )
                .await;
            if let Some((201, _)) = answer {
                acknowledged += 1;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    acknowledged
}

/// Followers (native and SSE, one per node each) of `project`, started on `endpoints`; each
/// returns its seqs once it holds the target sent on the returned channel.
fn followers(
    endpoints: &[Endpoint],
    token: &str,
    project: Uuid,
) -> (watch::Sender<i64>, Vec<tokio::task::JoinHandle<Vec<i64>>>) {
    let (done_tx, done) = watch::channel(0);
    let mut tasks = Vec::new();
    for start in 0..endpoints.len() {
        // Each follower starts on its own node and moves on round robin from there.
        let mut order = endpoints.to_vec();
        order.rotate_left(start);
        for sse in [false, true] {
            tasks.push(tokio::spawn(follow_across(
                order.clone(),
                token.to_string(),
                project,
                sse,
                200,
                done.clone(),
            )));
        }
    }
    (done_tx, tasks)
}

async fn finish(
    done_tx: watch::Sender<i64>,
    tasks: Vec<tokio::task::JoinHandle<Vec<i64>>>,
    log: &[i64],
) {
    done_tx.send(*log.last().unwrap()).unwrap();
    for (i, task) in tasks.into_iter().enumerate() {
        let got = tokio::time::timeout(GUARD, task)
            .await
            .expect("the follower finishes in time")
            .expect("the follower did not fail");
        assert_eq!(got, log, "follower {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_while_writes_run_loses_nothing() {
    let mut cluster = Cluster::start(2).await;
    let (project, token) = project_with_member(cluster.node(0), "redisrestart").await;
    let endpoints = cluster.endpoints();
    let (done_tx, tasks) = followers(&endpoints, &token, project);
    // Let the followers connect before anything is written.
    tokio::time::sleep(Duration::from_millis(200)).await;

    write_spread(&endpoints, &token, project, 20).await;
    // Redis crashes while both nodes write: each hears the other's commits again once Redis
    // is back (the later events of the stream show the gap, the log fills it).
    cluster.redis.kill();
    write_spread(&endpoints, &token, project, 10).await;
    cluster.redis.start_again();
    write_spread(&endpoints, &token, project, 10).await;
    // Redis stops while only node 1 writes, and nothing is written after it is back: node 0's
    // clients get those events only because its feed says it lagged when it subscribes again.
    cluster.redis.stop();
    write_spread(&endpoints[1..], &token, project, 20).await;
    cluster.redis.start_again();

    let log = cluster.node(0).log_seqs(project).await;
    assert!(log.len() >= 60, "{} events", log.len());
    finish(done_tx, tasks, &log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_clients_resume_on_another_node() {
    let cluster = Cluster::start(1).await;
    let (project, token) = project_with_member(cluster.node(0), "nodekilled").await;
    let mut doomed = cluster.spawn_binary(Path::new(BIN), &[]);
    // The followers start on the doomed node, writes go to both.
    let endpoints = vec![doomed.endpoint.clone(), cluster.node(0).endpoint()];
    let (done_tx, done) = watch::channel(0);
    let mut tasks = Vec::new();
    for sse in [false, true] {
        for _ in 0..2 {
            tasks.push(tokio::spawn(follow_across(
                endpoints.clone(),
                token.clone(),
                project,
                sse,
                200,
                done.clone(),
            )));
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    write_spread(&endpoints, &token, project, 30).await;
    doomed.kill();
    write_spread(&endpoints, &token, project, 30).await;

    let log = cluster.node(0).log_seqs(project).await;
    assert!(log.len() >= 60, "{} events", log.len());
    finish(done_tx, tasks, &log).await;
    assert!(
        !cluster::listening(doomed.addr()),
        "the killed node is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_redis_beside_another_node_refuses_to_start() {
    let cluster = Cluster::start(1).await;
    let refused = BinaryNode::run_to_exit(
        Path::new(BIN),
        &[
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            cluster.database_url(),
            "--node-heartbeat-ms",
            "200",
            "--node-expiry-ms",
            "1000",
        ],
        &[],
    );
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("another liveplan node runs on this database")
            && refused.stderr.contains("--redis-url")
            && refused
                .stderr
                .contains(&cluster.node(0).state().node_id.to_string()),
        "{}",
        refused.stderr
    );
    // The running node was not disturbed, and the registry holds it alone.
    let live = cluster
        .node(0)
        .state()
        .domain
        .store
        .live_nodes(Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].id, cluster.node(0).state().node_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_redis_beside_a_node_without_refuses_to_start() {
    let redis = PrivateRedis::start();
    let alone = TestServer::start_on_backend(
        backend::Backend::postgres(&backend::postgres_server_url()),
        |c| {
            c.node_heartbeat = cluster::NODE_HEARTBEAT;
            c.node_expiry = cluster::NODE_EXPIRY;
        },
    )
    .await;
    let url = alone.backend().database_url().unwrap().to_string();
    let refused = BinaryNode::spawn(
        Path::new(BIN),
        &url,
        &["--redis-url".to_string(), redis.url()],
    )
    .err()
    .expect("the node is refused");
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        refused.stderr.contains("without --redis-url")
            && refused.stderr.contains(&alone.state().node_id.to_string()),
        "{}",
        refused.stderr
    );

    // A clean stop leaves the registry, so a cluster node may start on the database at once.
    let mut alone = alone;
    alone.stop().await;
    let store = liveplan_server::backends::open_store(Some(&url), alone.data_dir())
        .await
        .unwrap();
    let live = store.live_nodes(Duration::from_secs(3600)).await.unwrap();
    store.close().await;
    assert!(live.is_empty(), "{live:?}");
    let mut joined = BinaryNode::spawn(
        Path::new(BIN),
        &url,
        &["--redis-url".to_string(), redis.url()],
    )
    .expect("the node starts");
    let status = joined.terminate();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}: {}",
        joined.stderr()
    );
    drop(alone);
}

#[tokio::test]
async fn a_bad_redis_url_is_a_clear_start_up_error() {
    let not_a_url = BinaryNode::run_to_exit(
        Path::new(BIN),
        &["--listen", "127.0.0.1:0", "--redis-url", "not a url"],
        &[],
    );
    assert!(!not_a_url.status.success());
    assert!(
        not_a_url.stderr.contains("the Redis URL is not valid"),
        "{}",
        not_a_url.stderr
    );

    // Nobody listens there; the password in the URL is never repeated.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("redis://:sekret-password@127.0.0.1:{port}");
    let unreachable = BinaryNode::run_to_exit(
        Path::new(BIN),
        &["--listen", "127.0.0.1:0"],
        &[("LIVEPLAN_REDIS_URL", &url)],
    );
    assert!(!unreachable.status.success());
    assert!(
        unreachable
            .stderr
            .contains("cannot reach Redis at 127.0.0.1"),
        "{}",
        unreachable.stderr
    );
    assert!(
        !unreachable.stderr.contains("sekret-password"),
        "{}",
        unreachable.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_bus_is_dropped_and_delivery_goes_on() {
    let cluster = Cluster::start(2).await;
    let (project, token) = project_with_member(cluster.node(0), "garbage").await;
    let mut ws = cluster.node(0).ws_project(&token, project, Some(0)).await;
    let channel = cluster.node(0).state().cluster.bus_channel();
    assert!(channel.starts_with("liveplan:"), "{channel}");
    let someone = Uuid::now_v7().simple().to_string();
    for garbage in [
        "x".to_string(),
        format!("E{someone}"),
        format!("E{someone}{{\"stream\":\"nowhere\"}}"),
        format!("L{someone}trailing"),
        format!("Q{someone}"),
    ] {
        let receivers = cluster.redis.command(&["PUBLISH", &channel, &garbage]);
        assert_eq!(receivers, ":2", "both nodes listen on {channel}");
    }
    cluster.node(1).task(&token, project, "after garbage").await;
    let log = cluster.node(0).log_seqs(project).await;
    let mut got = Vec::new();
    ws.through(&mut got, *log.last().unwrap()).await;
    assert_eq!(got, log);
}
