//! Several nodes on one PostgreSQL database and one Redis (CONTRACT §9): every event committed
//! on any node reaches the subscribers of every node in seq order, with no gap and no
//! duplicate, whatever Redis does and whichever node dies.
//!
//! These tests need PostgreSQL whatever the run's backend (`testkit::cluster`), and
//! `redis-server` (`scripts/test.sh` installs it).

use liveplan_testkit::follow::{Read, sse_read, ws_read};
use liveplan_testkit::*;
use std::time::Duration;
use uuid::Uuid;

/// A project on the cluster with a member who can read it over every transport: (project,
/// member token, member login).
async fn shared_project(cluster: &Cluster) -> (Uuid, String) {
    let node = cluster.node(0);
    let project = node.new_project("shared").await;
    let (member, token) = node.new_user("member").await;
    node.new_member(project, member, 100).await;
    (project, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_node_reaches_a_socket_on_another() {
    let cluster = Cluster::start(2).await;
    let (project, token) = shared_project(&cluster).await;
    let mut ws = cluster
        .node(1)
        .endpoint()
        .ws_project(&token, project, Some(0))
        .await
        .expect("node 1 answers");
    let mut sse = cluster
        .node(1)
        .endpoint()
        .sse(&token, project, Some(0))
        .await
        .expect("node 1 answers");
    cluster.node(0).task(&token, project, "from node 0").await;
    let latest = *cluster.node(0).log_seqs(project).await.last().unwrap();
    let mut got = Vec::new();
    while got.last() != Some(&latest) {
        match ws_read(&mut ws).await {
            Read::Event(seq) => got.push(seq),
            Read::Other => {}
            Read::Resync(_) | Read::Closed => panic!("unexpected end"),
        }
    }
    assert_eq!(got, cluster.node(0).log_seqs(project).await);
    let mut got = Vec::new();
    while got.last() != Some(&latest) {
        match sse_read(&mut sse).await {
            Read::Event(seq) => got.push(seq),
            Read::Other => {}
            Read::Resync(_) | Read::Closed => panic!("unexpected end"),
        }
    }
    assert_eq!(got, cluster.node(0).log_seqs(project).await);
    let _ = Duration::ZERO;
}
