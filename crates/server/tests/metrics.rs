//! `GET /metrics` (CONTRACT §12) over real sockets: the families, their labels (dialects,
//! route templates, outcomes), one registry per app (two servers in one process count
//! apart), and the optional bearer token.

use axum::extract::{Path, State};
use axum::http::StatusCode as AxumStatus;
use liveplan_server::metrics::Metrics;
use liveplan_server::pusher::activity::ChannelActivity;
use liveplan_server::pusher::credentials::PusherCredentials;
use liveplan_server::pusher::directory::LateDirectory;
use liveplan_server::pusher::webhooks::retry::RetryPolicy;
use liveplan_server::pusher::webhooks::{WebhookSettings, Webhooks};
use liveplan_testkit::*;
use reqwest::StatusCode;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The scrape as text, checked for its status and content type.
async fn scrape(server: &TestServer) -> String {
    let response = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let kind = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    let text = response.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    text
}

/// The value of the sample `name{labels}` (labels exactly as written, in order), 0 when the
/// scrape has no such sample.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let rest = line.strip_prefix(series)?;
            rest.strip_prefix(' ')?.split(' ').next()?.parse().ok()
        })
        .unwrap_or(0.0)
}

/// Scrapes until `series` reaches `at_least` (bounded); returns the last scrape.
async fn scrape_until(server: &TestServer, series: &str, at_least: f64) -> String {
    let mut text = String::new();
    for _ in 0..200 {
        text = scrape(server).await;
        if sample(&text, series) >= at_least {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{series} stayed below {at_least}:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_count_apart_by_dialect_route_and_status() {
    let a = TestServer::start_relaxed().await;
    let b = TestServer::start_relaxed().await;
    let project = a.new_project("Metrics").await;

    // A native socket and an SSE stream on the project, live.
    let mut ws = a.ws_project(&a.admin, project, None).await;
    assert_eq!(ws_json(&mut ws).await["event_type"], "presence_join");
    let mut sse = a
        .sse(
            &a.admin,
            &format!("/api/v1/projects/{project}/events"),
            None,
        )
        .await;
    assert_eq!(sse.data().await.unwrap().json()["type"], "connected");
    let text = scrape(&a).await;
    assert_eq!(
        sample(&text, r#"liveplan_connections{dialect="native_ws"}"#),
        1.0
    );
    assert_eq!(sample(&text, r#"liveplan_connections{dialect="sse"}"#), 1.0);

    let committed_before = sample(&text, "liveplan_events_committed_total");
    a.task(&a.admin, project, "counted").await;
    assert_eq!(ws_event(&mut ws).await["event_type"], "task_created");
    assert_eq!(sse.event().await.unwrap().json()["type"], "ticket.created");

    // Counters are bumped beside the work they count (a delivery just after its write), so a
    // client can see the work before the scrape sees the count: wait for each, then check.
    scrape_until(
        &a,
        "liveplan_events_committed_total",
        committed_before + 1.0,
    )
    .await;
    scrape_until(&a, "liveplan_commit_latency_seconds_count", 1.0).await;
    for dialect in ["native_ws", "sse"] {
        let series = format!(r#"liveplan_deliveries_total{{dialect="{dialect}"}}"#);
        scrape_until(&a, &series, 1.0).await;
    }
    // The route template, never the raw path: no id is a label.
    let created = r#"liveplan_http_requests_total{route="/api/v1/projects/{project_id}/{collection}",method="POST",status="201"}"#;
    let text = scrape_until(&a, created, 1.0).await;
    assert_eq!(sample(&text, created), 1.0, "{text}");
    assert!(!text.contains(&project.to_string()), "{text}");
    let unmatched = r#"liveplan_http_requests_total{route="unmatched",method="GET",status="404"}"#;
    let (status, _) = a.get("/no/such/thing/42", &a.admin).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        sample(&scrape_until(&a, unmatched, 1.0).await, unmatched),
        1.0
    );

    // A resume from a position the log cannot have is a resync, counted for its dialect.
    let mut far = a.ws_project(&a.admin, project, Some(1_000_000)).await;
    assert_eq!(ws_event(&mut far).await["event_type"], "resync_required");
    scrape_until(&a, r#"liveplan_resyncs_total{dialect="native_ws"}"#, 1.0).await;

    // The other server saw none of it.
    let other = scrape(&b).await;
    assert_eq!(sample(&other, created), 0.0, "{other}");
    assert_eq!(
        sample(&other, r#"liveplan_connections{dialect="native_ws"}"#),
        0.0
    );
    assert_eq!(
        sample(&other, r#"liveplan_resyncs_total{dialect="native_ws"}"#),
        0.0
    );
    assert!(
        sample(&other, "liveplan_events_committed_total")
            < sample(&scrape(&a).await, "liveplan_events_committed_total")
    );

    // Closed connections leave the gauge.
    drop(ws);
    drop(far);
    drop(sse);
    for _ in 0..200 {
        let text = scrape(&a).await;
        if sample(&text, r#"liveplan_connections{dialect="native_ws"}"#) == 0.0
            && sample(&text, r#"liveplan_connections{dialect="sse"}"#) == 0.0
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "the connection gauges did not go back to 0:\n{}",
        scrape(&a).await
    );
}

#[tokio::test]
async fn every_family_is_documented_in_the_scrape() {
    let server = TestServer::start().await;
    let text = scrape(&server).await;
    for family in [
        "liveplan_connections",
        "liveplan_events_committed",
        "liveplan_commit_latency_seconds",
        "liveplan_deliveries",
        "liveplan_catch_ups",
        "liveplan_resyncs",
        "liveplan_queue_overflows",
        "liveplan_scheduler_runs",
        "liveplan_scheduler_run_duration_seconds",
        "liveplan_bus_messages",
        "liveplan_bus_lagged",
        "liveplan_gaps_filled",
        "liveplan_http_requests",
        "liveplan_webhook_deliveries",
    ] {
        assert!(
            text.contains(&format!("# HELP {family} "))
                && text.contains(&format!("# TYPE {family} ")),
            "{family} is missing:\n{text}"
        );
    }
    // Each dialect has its series from the start.
    for dialect in ["native_ws", "sse", "bryntum", "pusher"] {
        assert!(text.contains(&format!(
            r#"liveplan_deliveries_total{{dialect="{dialect}"}} 0"#
        )));
    }
}

#[tokio::test]
async fn a_metrics_token_guards_the_scrape() {
    let server = TestServer::start_with(|c| c.metrics_token = Some("scrape-secret".into())).await;
    let url = server.url("/metrics");
    let refused = server.http.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers().contains_key("www-authenticate"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_authenticated", "{body}");
    for wrong in ["scrape-secre", "scrape-secret2", ""] {
        let response = server
            .http
            .get(&url)
            .bearer_auth(wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{wrong:?}");
    }
    // A user's access token is not the metrics token.
    let response = server
        .http
        .get(&url)
        .bearer_auth(&server.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = server
        .http
        .get(&url)
        .bearer_auth("scrape-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("liveplan_http_requests_total")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_rounds_are_counted_with_their_duration() {
    let server = TestServer::start_relaxed_with(|c| c.scheduler = true).await;
    let project = server.new_project("Scheduled").await;
    server
        .create(
            &server.admin,
            &project.to_string(),
            "tasks",
            json!({"name": "a", "duration": 3, "start_date": "2026-03-02"}),
        )
        .await;
    let text = scrape_until(
        &server,
        r#"liveplan_scheduler_runs_total{outcome="done"}"#,
        1.0,
    )
    .await;
    assert!(sample(&text, "liveplan_scheduler_run_duration_seconds_count") >= 1.0);
}

/// Receivers by path answering scripted statuses in turn, then 200.
#[derive(Default)]
struct Script(Mutex<HashMap<String, Vec<u16>>>);

async fn answer(State(script): State<Arc<Script>>, Path(path): Path<String>) -> AxumStatus {
    let mut script = script.0.lock().unwrap();
    let status = script
        .get_mut(&path)
        .and_then(|s| (!s.is_empty()).then(|| s.remove(0)));
    AxumStatus::from_u16(status.unwrap_or(200)).unwrap()
}

#[tokio::test]
async fn webhook_outcomes_are_counted() {
    let script = Arc::new(Script::default());
    script.0.lock().unwrap().insert("flaky".into(), vec![503]);
    script
        .0
        .lock()
        .unwrap()
        .insert("gone".into(), vec![410, 410]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/{path}", axum::routing::post(answer))
        .with_state(script);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let metrics = Arc::new(Metrics::new());
    let settings = WebhookSettings {
        grace: Duration::from_millis(50),
        retry: RetryPolicy {
            first: Duration::from_millis(20),
            max: Duration::from_millis(50),
            give_up_after: Duration::from_secs(10),
        },
        outcomes: metrics.webhook_counter("pusher"),
        ..WebhookSettings::default()
    };
    let sink = Webhooks::start_with(
        settings,
        &["ok", "flaky", "gone"].map(|p| format!("{base}/{p}")),
        PusherCredentials {
            app_id: "1".into(),
            key: "key".into(),
            secret: "secret".into(),
        },
        Arc::new(LateDirectory::default()),
    )
    .unwrap();
    sink.record(ChannelActivity::Occupied {
        channel: "metered".into(),
    });
    let series = |outcome: &str| {
        format!(r#"liveplan_webhook_deliveries_total{{kind="pusher",outcome="{outcome}"}}"#)
    };
    let mut text = String::new();
    for _ in 0..400 {
        text = metrics.render();
        if sample(&text, &series("delivered")) >= 2.0 && sample(&text, &series("refused")) >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // /ok and /flaky (after one retried attempt) delivered; /gone refused at once (410).
    assert_eq!(sample(&text, &series("delivered")), 2.0, "{text}");
    assert_eq!(sample(&text, &series("retried")), 1.0, "{text}");
    assert_eq!(sample(&text, &series("refused")), 1.0, "{text}");
    assert_eq!(sample(&text, &series("gave_up")), 0.0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_each_node_counts_its_own_commits_and_the_bus_brings_the_others() {
    if !backend::postgres_requested() {
        println!("skipped: a cluster needs PostgreSQL (LIVEPLAN_TEST_DATABASE_URL)");
        return;
    }
    let cluster = Cluster::start(2).await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    let project = a.new_project("Across").await;
    // A subscriber on node b, so its hub runs the project's stream.
    let mut ws = b.ws_project(&b.admin, project, None).await;
    assert_eq!(ws_json(&mut ws).await["event_type"], "presence_join");
    let before_b = sample(&scrape(b).await, "liveplan_events_committed_total");
    a.task(&a.admin, project, "from a").await;
    assert_eq!(ws_event(&mut ws).await["event_type"], "task_created");
    let text = scrape_until(b, "liveplan_bus_messages_total", 1.0).await;
    assert_eq!(
        sample(&text, "liveplan_events_committed_total"),
        before_b,
        "b committed nothing: {text}"
    );
    assert!(sample(&text, r#"liveplan_deliveries_total{dialect="native_ws"}"#) >= 1.0);
    assert!(sample(&scrape(a).await, "liveplan_events_committed_total") >= 1.0);
}
