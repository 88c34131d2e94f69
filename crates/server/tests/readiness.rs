//! `GET /readyz` (CONTRACT §12): 200 while the node takes traffic, 503 with a JSON error
//! naming what is missing while its PostgreSQL or its cluster's Redis is down, and 200 again
//! once they are back, with no restart.

use liveplan_testkit::cluster::cluster_config;
use liveplan_testkit::private_postgres::PrivatePostgres;
use liveplan_testkit::*;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

async fn readyz(server: &TestServer) -> (StatusCode, Value) {
    let response = tokio::time::timeout(GUARD, server.http.get(server.url("/readyz")).send())
        .await
        .expect("an answer in time")
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// Asks until `/readyz` answers `status` (bounded); returns the last body.
async fn readyz_until(server: &TestServer, status: StatusCode) -> Value {
    let mut last = Value::Null;
    for _ in 0..300 {
        let (got, body) = readyz(server).await;
        if got == status {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/readyz never answered {status}: {last}");
}

#[tokio::test]
async fn a_node_with_its_store_is_ready() {
    let server = TestServer::start().await;
    let (status, body) = readyz(&server).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_postgresql_makes_the_node_unready_until_it_is_back() {
    let mut postgres = match PrivatePostgres::binaries() {
        Ok(_) => tokio::task::block_in_place(PrivatePostgres::start),
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let server = TestServer::start_with_database_url(&postgres.url(), |_| {}).await;
    assert_eq!(readyz(&server).await.0, StatusCode::OK);

    tokio::task::block_in_place(|| postgres.kill());
    let body = readyz_until(&server, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
    assert_eq!(body["error"]["details"]["unready"], "store", "{body}");
    assert!(body["error"]["message"].is_string());
    // /healthz agrees.
    let (status, _) = server
        .call(reqwest::Method::GET, "/healthz", None, None)
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    tokio::task::block_in_place(|| postgres.start_again());
    let body = readyz_until(&server, StatusCode::OK).await;
    assert_eq!(body["status"], "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_redis_makes_a_cluster_node_unready_until_it_is_back() {
    if !liveplan_testkit::backend::postgres_requested() {
        println!("skipped: a cluster needs PostgreSQL (LIVEPLAN_TEST_DATABASE_URL)");
        return;
    }
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    let server = TestServer::start_on_backend(
        liveplan_testkit::backend::Backend::postgres(
            &liveplan_testkit::backend::postgres_server_url(),
        ),
        |c| cluster_config(c, &url),
    )
    .await;
    assert_eq!(readyz(&server).await.0, StatusCode::OK);

    tokio::task::block_in_place(|| redis.stop());
    let body = readyz_until(&server, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert_eq!(body["error"]["details"]["unready"], "bus", "{body}");
    // The store is fine: the node still serves reads.
    let (status, _) = server.get("/api/v1/users/me", &server.admin).await;
    assert_eq!(status, StatusCode::OK);

    tokio::task::block_in_place(|| redis.start_again());
    readyz_until(&server, StatusCode::OK).await;
}
