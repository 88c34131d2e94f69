//! Per-project webhooks (CONTRACT §12) for real: a server (SQLite, or PostgreSQL with
//! `LIVEPLAN_TEST_DATABASE_URL`) posts to receivers on 127.0.0.1 that record every request and
//! answer as told; what they got is compared with the project's log. The two-node test needs
//! PostgreSQL and `redis-server` in every pass (`testkit::cluster`).

use axum::http::StatusCode;
use hmac::{Hmac, Mac};
use liveplan_testkit::receivers::{Received, Receivers};
use liveplan_testkit::*;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

const SECRET: &str = "a-webhook-secret-of-ours";

/// Short retries and looks, and internal targets allowed (the receivers are on 127.0.0.1).
fn tune(config: &mut liveplan_server::Config) {
    config.webhooks.allow_private = true;
    config.webhooks.retry_base = Duration::from_millis(50);
    config.webhooks.poll = Duration::from_millis(100);
    config.webhooks.lease = Duration::from_secs(2);
}

async fn server() -> TestServer {
    TestServer::start_relaxed_with(tune).await
}

/// The seq of the event a project webhook request carries.
fn seq(received: &Received) -> i64 {
    received.json()["seq"].as_i64().unwrap()
}

/// Waits until `path` got requests for every seq of `seqs`; returns all it got.
async fn wait_for_seqs(receivers: &Receivers, path: &str, seqs: &[i64]) -> Vec<Received> {
    receivers
        .wait_until(path, &format!("the seqs {seqs:?}"), |got| {
            let have: Vec<i64> = got.iter().map(seq).collect();
            seqs.iter().all(|s| have.contains(s))
        })
        .await
}

/// Receivers on 127.0.0.1:0 (`/moved` redirects, `/slow…` answers after 20 ms): them, their
/// base URL and port.
async fn receivers() -> (Arc<Receivers>, String, u16) {
    let (receivers, addr) = liveplan_testkit::receivers::start().await;
    (receivers, format!("http://{addr}"), addr.port())
}

fn hooks(project: Uuid) -> String {
    format!("/api/v1/projects/{project}/webhooks")
}

/// Creates a webhook as the administrator; returns its answer.
async fn webhook(server: &TestServer, project: Uuid, url: &str, events: Value) -> Value {
    let (status, body) = server
        .post(
            &hooks(project),
            &server.admin,
            json!({ "url": url, "events": events, "secret": SECRET }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

async fn deliveries(server: &TestServer, project: Uuid, hook: &Value) -> Vec<Value> {
    let (status, body) = server
        .get(
            &format!(
                "{}/{}/deliveries",
                hooks(project),
                hook["id"].as_str().unwrap()
            ),
            &server.admin,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().unwrap().clone()
}

/// Waits (at most GUARD) until the webhook's cursor is at `head`.
async fn wait_for_cursor(
    server: &TestServer,
    project: Uuid,
    hook: &Value,
    head: i64,
) -> Result<(), tokio::time::error::Elapsed> {
    let path = format!("{}/{}", hooks(project), hook["id"].as_str().unwrap());
    tokio::time::timeout(GUARD, async {
        loop {
            let (_, hook) = server.get(&path, &server.admin).await;
            if hook["last_seq"] == head {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// Waits until the webhook's deliveries include one of `seq` with a final outcome.
async fn final_delivery(server: &TestServer, project: Uuid, hook: &Value, seq: i64) -> Value {
    tokio::time::timeout(GUARD, async {
        loop {
            if let Some(found) = deliveries(server, project, hook)
                .await
                .into_iter()
                .find(|d| d["seq"] == seq && d["outcome"] != "pending")
            {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("seq {seq} got a final outcome in time"))
}

/// The project's log after `after`: (seq, event_type) pairs.
async fn log_after(server: &TestServer, project: Uuid, after: i64) -> Vec<(i64, String)> {
    let body = server.log(&server.admin, &project.to_string(), after).await;
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["seq"].as_i64().unwrap(),
                e["event_type"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn signature_of(secret: &str, received: &Received) -> bool {
    let header = received.header("X-Liveplan-Signature");
    let (t, v1) = header.split_once(",v1=").expect("t=…,v1=…");
    let t = t.strip_prefix("t=").expect("t=");
    let now = chrono::Utc::now().timestamp();
    assert!((now - t.parse::<i64>().unwrap()).abs() < 120, "{header}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(received.body.as_bytes());
    mac.verify_slice(&hex::decode(v1).unwrap()).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_managed_by_admins_with_validation() {
    let server = server().await;
    let project = server.new_project("managed").await;
    let mut tokens = HashMap::new();
    for (role, level) in [
        ("viewer", 1),
        ("member", 100),
        ("scheduler", 200),
        ("admin", 300),
    ] {
        let (id, token) = server.new_user(role).await;
        server.new_member(project, id, level).await;
        tokens.insert(role, token);
    }
    let (_, outsider) = server.new_user("outsider").await;
    let body = json!({ "url": "http://hooks.example/in", "events": ["task.created"] });
    for role in ["viewer", "member", "scheduler"] {
        let (status, answer) = server
            .post(&hooks(project), &tokens[role], body.clone())
            .await;
        assert_error(status, &answer, StatusCode::FORBIDDEN, "forbidden");
        let (status, answer) = server.get(&hooks(project), &tokens[role]).await;
        assert_error(status, &answer, StatusCode::FORBIDDEN, "forbidden");
        // Authorization comes before validation.
        let (status, _) = server
            .post(&hooks(project), &tokens[role], json!({ "url": 5 }))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, answer) = server.post(&hooks(project), &outsider, body.clone()).await;
    assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
    let (status, answer) = server.get(&hooks(project), &outsider).await;
    assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");

    server.task(&server.admin, project, "before").await;
    let head = log_after(&server, project, 0).await.last().unwrap().0;
    let admin = &tokens["admin"];
    let (status, created) = server.post(&hooks(project), admin, body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap();
    assert_eq!(secret.len(), 64, "a generated secret: {created}");
    assert_eq!(created["last_seq"], head, "starts at the log's head");
    assert_eq!(created["active"], true);
    assert_eq!(created["events"], json!(["task.created"]));
    let id = created["id"].as_str().unwrap();
    let one = format!("{}/{id}", hooks(project));
    let (status, listed) = server.get(&hooks(project), admin).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(
        listed[0].get("secret").is_none(),
        "reads never show the secret"
    );
    let (status, got) = server.get(&one, admin).await;
    assert_eq!(status, StatusCode::OK);
    assert!(got.get("secret").is_none());
    assert_eq!(got["url"], "http://hooks.example/in");
    let (status, changed) = server
        .patch(
            &one,
            admin,
            json!({ "events": ["task.updated", "*"], "active": false, "secret": "0123456789abcdefXYZ" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["events"], json!(["task.updated", "*"]));
    assert_eq!(changed["active"], false);
    assert!(changed.get("secret").is_none());
    for role in ["member", "viewer"] {
        let (status, _) = server.get(&one, &tokens[role]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = server.delete(&one, &tokens[role]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = server
            .get(&format!("{one}/deliveries"), &tokens[role])
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, _) = server.get(&one, &outsider).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Bad input: 422 with the field, and nothing changes.
    let long_url = format!("http://hooks.example/{}", "a".repeat(2100));
    for (bad, field) in [
        (
            json!({ "url": "ftp://hooks.example/", "events": ["*"] }),
            "url",
        ),
        (json!({ "url": "not a url", "events": ["*"] }), "url"),
        (json!({ "url": long_url, "events": ["*"] }), "url"),
        (
            json!({ "url": "http://u:p@hooks.example/", "events": ["*"] }),
            "url",
        ),
        (json!({ "events": ["*"] }), "url"),
        (json!({ "url": "http://hooks.example/" }), "events"),
        (
            json!({ "url": "http://hooks.example/", "events": [] }),
            "events",
        ),
        (
            json!({ "url": "http://hooks.example/", "events": ["task_created"] }),
            "events",
        ),
        (
            json!({ "url": "http://hooks.example/", "events": ["task.moved"] }),
            "events",
        ),
        (
            json!({ "url": "http://hooks.example/", "events": ["presence.join"] }),
            "events",
        ),
        (
            json!({ "url": "http://hooks.example/", "events": ["project.updated"] }),
            "events",
        ),
        (
            json!({ "url": "http://hooks.example/", "events": vec!["*"; 65] }),
            "events",
        ),
        (
            json!({ "url": "http://hooks.example/", "events": ["*"], "secret": "short" }),
            "secret",
        ),
        (
            json!({ "url": "http://hooks.example/", "events": ["*"], "secret": 12 }),
            "secret",
        ),
        (
            json!({ "url": "http://hooks.example/", "events": ["*"], "active": "yes" }),
            "active",
        ),
        (
            json!({ "url": "http://hooks.example/", "events": ["*"], "colour": "red" }),
            "colour",
        ),
    ] {
        let (status, answer) = server.post(&hooks(project), admin, bad.clone()).await;
        assert_error(
            status,
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        assert_eq!(
            answer["error"]["details"]["field"], field,
            "{bad}: {answer}"
        );
    }
    let (status, answer) = server
        .patch(&one, admin, json!({ "url": "gopher://x/" }))
        .await;
    assert_error(
        status,
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    let (status, answer) = server.post(&hooks(project), admin, json!([1, 2])).await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_request");
    let (status, answer) = server
        .call(Method::POST, &hooks(project), Some(admin), None)
        .await;
    assert!(status.is_client_error(), "{status} {answer}");
    let (status, listed) = server.get(&hooks(project), admin).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "refusals changed nothing"
    );
    assert_eq!(listed[0]["url"], "http://hooks.example/in");
    for missing in [
        format!("{}/{}", hooks(project), Uuid::now_v7()),
        format!("{}/not-an-id", hooks(project)),
        format!("/api/v1/projects/{}/webhooks/{id}", Uuid::now_v7()),
    ] {
        let (status, answer) = server.get(&missing, admin).await;
        assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
        let (status, _) = server
            .patch(&missing, admin, json!({ "active": true }))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = server.delete(&missing, admin).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    // A webhook of another project is not found under this one.
    let other = server.new_project("other").await;
    let foreign = webhook(&server, other, "http://hooks.example/o", json!(["*"])).await;
    let (status, _) = server
        .get(
            &format!("{}/{}", hooks(project), foreign["id"].as_str().unwrap()),
            &server.admin,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // At most 20 per project.
    for n in 1..20 {
        let (status, answer) = server
            .post(
                &hooks(project),
                admin,
                json!({ "url": format!("http://hooks.example/{n}"), "events": ["*"] }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    let (status, answer) = server.post(&hooks(project), admin, body.clone()).await;
    assert_error(
        status,
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    let (status, _) = server.delete(&one, admin).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server.get(&one, admin).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.post(&hooks(project), admin, body).await;
    assert_eq!(status, StatusCode::CREATED, "room again after a delete");

    // Deleting the project takes its webhooks.
    let (status, _) = server
        .delete(&format!("/api/v1/projects/{other}"), &server.admin)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let mut ops = server.state().domain.store.read().await.unwrap();
    assert!(ops.list_webhooks(other).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_after_creation_arrive_in_seq_order_signed_and_filtered() {
    let server = server().await;
    let (receivers, base, _) = receivers().await;
    let project = server.new_project("delivered").await;
    server
        .task(&server.admin, project, "before the webhook")
        .await;
    let all = webhook(&server, project, &format!("{base}/all"), json!(["*"])).await;
    let updates = webhook(
        &server,
        project,
        &format!("{base}/updates"),
        json!(["task.updated"]),
    )
    .await;
    let start = all["last_seq"].as_i64().unwrap();
    let mut tasks = Vec::new();
    for n in 0..4 {
        tasks.push(server.task(&server.admin, project, &format!("t{n}")).await);
    }
    let first = tasks[0]["id"].as_str().unwrap();
    server
        .ok(
            Method::PATCH,
            &server.admin,
            &format!("/api/v1/projects/{project}/tasks/{first}"),
            json!({ "name": "renamed" }),
        )
        .await;
    let (status, _) = server
        .delete(
            &format!(
                "/api/v1/projects/{project}/tasks/{}",
                tasks[1]["id"].as_str().unwrap()
            ),
            &server.admin,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let log = log_after(&server, project, start).await;
    let seqs: Vec<i64> = log.iter().map(|(s, _)| *s).collect();
    assert!(seqs.len() >= 6, "{log:?}");
    let got = wait_for_seqs(&receivers, "/all", &seqs).await;
    assert_eq!(
        got.iter().map(seq).collect::<Vec<_>>(),
        seqs,
        "every event after the creation, once, in seq order, none before"
    );
    let project_log = server.log(&server.admin, &project.to_string(), start).await;
    for (received, logged) in got.iter().zip(project_log["events"].as_array().unwrap()) {
        let body = received.json();
        let event = proto::EventType::parse(logged["event_type"].as_str().unwrap()).unwrap();
        assert_eq!(body["event"], event.dotted());
        assert_eq!(body["project_id"], json!(project));
        assert_eq!(body["payload"], logged["payload"]);
        assert_eq!(body["data"], logged["data"]);
        assert_eq!(body["actor_id"], logged["actor_id"]);
        assert!(body["timestamp"].is_string());
        assert!(Uuid::parse_str(body["id"].as_str().unwrap()).is_ok());
        assert_eq!(received.header("content-type"), "application/json");
        assert_eq!(received.header("X-Liveplan-Event"), event.dotted());
        assert_eq!(
            received.header("X-Liveplan-Delivery"),
            body["id"].as_str().unwrap()
        );
        assert!(signature_of(SECRET, received), "the signature verifies");
        assert!(!signature_of("another-secret-entirely", received));
    }
    // The filter: only task.updated.
    let updated: Vec<i64> = log
        .iter()
        .filter(|(_, t)| t == "task_updated")
        .map(|(s, _)| *s)
        .collect();
    assert!(!updated.is_empty());
    let got = wait_for_seqs(&receivers, "/updates", &updated).await;
    assert_eq!(got.iter().map(seq).collect::<Vec<_>>(), updated);
    assert!(got.iter().all(|r| r.json()["event"] == "task.updated"));
    // The deliveries say so, newest first, once the cursor reached the head: a delivery is
    // recorded (final, with the cursor) just after its receiver answered, so it may still be
    // pending when the receiver has it.
    let head = *seqs.last().unwrap();
    wait_for_cursor(&server, project, &all, head)
        .await
        .expect("the webhook's cursor reaches the last event");
    let listed = deliveries(&server, project, &all).await;
    assert_eq!(
        listed
            .iter()
            .map(|d| d["seq"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        seqs.iter().rev().copied().collect::<Vec<_>>()
    );
    assert!(
        listed.iter().all(|d| d["outcome"] == "delivered"
            && d["attempts"] == 1
            && d["response_status"] == 200),
        "{listed:?}"
    );
    wait_for_cursor(&server, project, &updates, head)
        .await
        .expect("the filtered webhook's cursor passes what it filters out");
    // The counter is bumped just after the commit that moved the cursor, so it may trail it.
    tokio::time::timeout(GUARD, async {
        loop {
            let metrics = server
                .http
                .get(server.url("/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if metrics.lines().any(|l| {
                l.starts_with(
                    r#"liveplan_webhook_deliveries_total{kind="project",outcome="delivered"}"#,
                ) && !l.ends_with(" 0")
            }) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the delivered webhooks are counted in /metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_refusals_are_final_and_redirects_are_not_followed() {
    let server = server().await;
    let (receivers, base, _) = receivers().await;
    let project = server.new_project("retries").await;
    receivers.answer("/flaky", &[500]);
    receivers.answer("/gone", &[404]);
    receivers.answer("/down", &[500, 503, 429, 408, 502]);
    let flaky = webhook(
        &server,
        project,
        &format!("{base}/flaky"),
        json!(["task.created"]),
    )
    .await;
    let gone = webhook(
        &server,
        project,
        &format!("{base}/gone"),
        json!(["task.created"]),
    )
    .await;
    let down = webhook(
        &server,
        project,
        &format!("{base}/down"),
        json!(["task.created"]),
    )
    .await;
    let moved = webhook(
        &server,
        project,
        &format!("{base}/moved"),
        json!(["task.created"]),
    )
    .await;
    let start = flaky["last_seq"].as_i64().unwrap();
    server.task(&server.admin, project, "one").await;
    server.task(&server.admin, project, "two").await;
    let log = log_after(&server, project, start).await;
    let (one, two) = (log[0].0, log[1].0);

    // 500, then 200: the same delivery twice, then the next event once.
    let got = wait_for_seqs(&receivers, "/flaky", &[one, two]).await;
    assert_eq!(got.iter().map(seq).collect::<Vec<_>>(), [one, one, two]);
    assert_eq!(
        got[0].header("X-Liveplan-Delivery"),
        got[1].header("X-Liveplan-Delivery")
    );
    assert_ne!(
        got[1].header("X-Liveplan-Delivery"),
        got[2].header("X-Liveplan-Delivery")
    );
    assert_eq!(got[0].body, got[1].body, "the same body at every attempt");
    let first = final_delivery(&server, project, &flaky, one).await;
    assert_eq!(
        (first["outcome"].as_str(), first["attempts"].as_i64()),
        (Some("delivered"), Some(2))
    );

    // 404: final at once; the next event goes on.
    let got = wait_for_seqs(&receivers, "/gone", &[one, two]).await;
    assert_eq!(got.iter().map(seq).collect::<Vec<_>>(), [one, two]);
    let refused = final_delivery(&server, project, &gone, one).await;
    assert_eq!(refused["outcome"], "refused");
    assert_eq!(refused["attempts"], 1);
    assert_eq!(refused["response_status"], 404);
    assert_eq!(refused["error"], "HTTP 404");

    // Five failures (5xx, 429, 408): given up, recorded; the next event then goes.
    let got = wait_for_seqs(&receivers, "/down", &[one, two]).await;
    assert_eq!(
        got.iter().map(seq).collect::<Vec<_>>(),
        [one, one, one, one, one, two]
    );
    let gave_up = final_delivery(&server, project, &down, one).await;
    assert_eq!(gave_up["outcome"], "gave_up");
    assert_eq!(gave_up["attempts"], 5);
    assert_eq!(gave_up["response_status"], 502);
    assert_eq!(
        final_delivery(&server, project, &down, two).await["outcome"],
        "delivered"
    );

    // A redirect is a failed attempt, never followed.
    let moved_first = final_delivery(&server, project, &moved, one).await;
    assert_eq!(moved_first["outcome"], "gave_up");
    assert_eq!(moved_first["response_status"], 302);
    assert!(
        receivers.got("/redirected").is_empty(),
        "the redirect was not followed"
    );
    assert_eq!(
        receivers
            .got("/moved")
            .iter()
            .filter(|r| seq(r) == one)
            .count(),
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_stream_skips_and_repeats_nothing() {
    let mut server = server().await;
    let (receivers, base, _) = receivers().await;
    let project = server.new_project("restarts").await;
    let hook = webhook(
        &server,
        project,
        &format!("{base}/slow-steady"),
        json!(["*"]),
    )
    .await;
    let start = hook["last_seq"].as_i64().unwrap();
    for n in 0..30 {
        server.task(&server.admin, project, &format!("a{n}")).await;
    }
    receivers.wait_for("/slow-steady", 3).await;
    server.stop().await;
    let before_restart = receivers.got("/slow-steady").len();
    // Commits while no server runs reach the webhook after the restart.
    server.offline_tasks(project, "offline", 5).await;
    server
        .restart_with(|c| {
            relax_rates(c);
            tune(c);
        })
        .await;
    server.admin = server.admin().await;
    for n in 0..5 {
        server.task(&server.admin, project, &format!("b{n}")).await;
    }
    let seqs: Vec<i64> = log_after(&server, project, start)
        .await
        .iter()
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(seqs.len(), 40);
    assert!(
        before_restart < 30,
        "the stop came mid-stream ({before_restart} sent before it)"
    );
    let got = wait_for_seqs(&receivers, "/slow-steady", &seqs).await;
    // Nothing skipped; a repeat only of the event a stop cut short, with its delivery id.
    let mut ids: HashMap<i64, String> = HashMap::new();
    let mut distinct = Vec::new();
    for received in &got {
        let id = received.header("X-Liveplan-Delivery");
        match ids.get(&seq(received)) {
            Some(known) => assert_eq!(known, &id, "a resend keeps its delivery id"),
            None => {
                ids.insert(seq(received), id.to_owned());
                distinct.push(seq(received));
            }
        }
    }
    assert_eq!(distinct, seqs, "every seq, in order");
    assert!(
        got.len() <= seqs.len() + 1,
        "at most the one cut short is sent again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_targets_are_refused_without_the_flag() {
    let server = TestServer::start_relaxed_with(|c| {
        tune(c);
        c.webhooks.allow_private = false;
    })
    .await;
    let (receivers, _, port) = receivers().await;
    let project = server.new_project("ssrf").await;
    for url in [
        format!("http://127.0.0.1:{port}/x"),
        "http://[::1]/x".to_owned(),
        "http://[::ffff:127.0.0.1]/x".to_owned(),
        "http://10.0.0.1/x".to_owned(),
        "http://169.254.169.254/latest".to_owned(),
        "http://0.0.0.0/".to_owned(),
    ] {
        let (status, answer) = server
            .post(
                &hooks(project),
                &server.admin,
                json!({ "url": url, "events": ["*"] }),
            )
            .await;
        assert_error(
            status,
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
    }
    // A name is resolved at delivery: localhost is loopback, so refused then.
    let hook = webhook(
        &server,
        project,
        &format!("http://localhost:{port}/named"),
        json!(["*"]),
    )
    .await;
    let start = hook["last_seq"].as_i64().unwrap();
    server.task(&server.admin, project, "x").await;
    let seq = log_after(&server, project, start).await[0].0;
    let refused = final_delivery(&server, project, &hook, seq).await;
    assert_eq!(refused["outcome"], "refused");
    assert_eq!(refused["attempts"], 1);
    assert_eq!(refused["response_status"], Value::Null);
    assert_eq!(refused["error"], "the host is an internal address");
    assert!(receivers.got("/named").is_empty());
}

/// Two nodes on one PostgreSQL database, writes on both: each event reaches the receiver once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_send_each_event_once() {
    let cluster = Cluster::start_with(2, tune).await;
    let (receivers, base, _) = receivers().await;
    let first = cluster.node(0);
    let project = first.new_project("two nodes").await;
    let hook = webhook(
        first,
        project,
        &format!("{base}/cluster"),
        json!(["task.created"]),
    )
    .await;
    let start = hook["last_seq"].as_i64().unwrap();
    for n in 0..20 {
        let node = cluster.node(n % 2);
        let token = node.admin().await;
        node.task(&token, project, &format!("n{n}")).await;
    }
    let seqs: Vec<i64> = log_after(first, project, start)
        .await
        .iter()
        .filter(|(_, t)| t == "task_created")
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(seqs.len(), 20);
    wait_for_seqs(&receivers, "/cluster", &seqs).await;
    // Both nodes look every 100 ms: time for a second send to show, were there one.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got: Vec<i64> = receivers.got("/cluster").iter().map(seq).collect();
    assert_eq!(got, seqs, "each event once, in seq order");
}

/// Retention never prunes for their age the events an active webhook has not handled; its
/// count limit does, and a webhook that lost events records one `skipped` delivery and goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_spares_unhandled_events_except_for_the_count_limit() {
    use liveplan_server::retention::{RetentionConfig, pass};
    let server = TestServer::start_relaxed_with(|c| {
        tune(c);
        // One failure, then a wait far beyond the test: the webhook's cursor stays put.
        c.webhooks.retry_base = Duration::from_secs(3600);
        c.retention = RetentionConfig {
            max_age: None,
            max_events_per_stream: None,
        };
    })
    .await;
    let (receivers, base, _) = receivers().await;
    let store = server.state().domain.store.clone();
    let by_age = RetentionConfig {
        max_age: Some(Duration::from_secs(24 * 3600)),
        max_events_per_stream: None,
    };
    let in_two_days = chrono::Utc::now() + chrono::Duration::days(2);

    // Held back by a failing receiver: every event after its cursor stays, whatever its age.
    let project = server.new_project("spared").await;
    receivers.answer("/failing", &[500]);
    let held = webhook(&server, project, &format!("{base}/failing"), json!(["*"])).await;
    let start = held["last_seq"].as_i64().unwrap();
    for n in 0..6 {
        server.task(&server.admin, project, &format!("s{n}")).await;
    }
    receivers.wait_for("/failing", 1).await;
    let unhandled: Vec<i64> = log_after(&server, project, start)
        .await
        .iter()
        .map(|(s, _)| *s)
        .collect();
    pass(&*store, by_age, in_two_days).await.unwrap();
    let log = server.log(&server.admin, &project.to_string(), 0).await;
    assert_eq!(
        log["first_seq"], unhandled[0],
        "only what the webhook handled went: {log}"
    );
    // Without an active webhook behind, the same pass prunes everything old.
    let (status, _) = server
        .patch(
            &format!("{}/{}", hooks(project), held["id"].as_str().unwrap()),
            &server.admin,
            json!({ "active": false }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    pass(&*store, by_age, in_two_days).await.unwrap();
    let log = server.log(&server.admin, &project.to_string(), 0).await;
    assert!(log["events"].as_array().unwrap().is_empty(), "{log}");

    // The count limit prunes unhandled events: the webhook records the gap as skipped.
    let project = server.new_project("skipped").await;
    let (status, lagging) = server
        .post(
            &hooks(project),
            &server.admin,
            json!({ "url": format!("{base}/lagging"), "events": ["*"], "active": false }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{lagging}");
    let start = lagging["last_seq"].as_i64().unwrap();
    for n in 0..6 {
        server.task(&server.admin, project, &format!("k{n}")).await;
    }
    let by_count = RetentionConfig {
        max_age: None,
        max_events_per_stream: Some(2),
    };
    pass(&*store, by_count, chrono::Utc::now()).await.unwrap();
    let kept: Vec<i64> = log_after(&server, project, 0)
        .await
        .iter()
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(kept.len(), 2);
    let (status, _) = server
        .patch(
            &format!("{}/{}", hooks(project), lagging["id"].as_str().unwrap()),
            &server.admin,
            json!({ "active": true }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let got = wait_for_seqs(&receivers, "/lagging", &kept).await;
    assert_eq!(got.iter().map(seq).collect::<Vec<_>>(), kept);
    let skipped = final_delivery(&server, project, &lagging, start + 1).await;
    assert_eq!(skipped["outcome"], "skipped", "{skipped}");
    assert_eq!(skipped["attempts"], 0);
    let reason = skipped["error"].as_str().unwrap();
    assert!(
        reason.contains(&format!("{} to {}", start + 1, kept[0] - 1)),
        "{reason}"
    );
}

/// A certificate authority and a certificate it signed for `localhost` and 127.0.0.1, made by
/// openssl in `dir` (a self-signed certificate alone is refused as a server's: it is a CA):
/// (the CA's certificate PEM, the server's certificate PEM, its key PEM).
fn certificates(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let path = |name: &str| dir.join(name);
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(status.success(), "openssl {args:?}");
    };
    let days = ["-days", "1"];
    openssl(
        &[
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=liveplan test CA",
            ][..],
            &days,
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
    );
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        path("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &[
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
            ][..],
            &days,
            &["-extfile", "server.ext", "-out", "cert.pem"],
        ]
        .concat(),
    );
    (path("ca.pem"), path("cert.pem"), path("key.pem"))
}

/// The receivers of [`receivers`] behind TLS with the certificate `cert` (key `key`), on
/// 127.0.0.1:0, named `https://localhost:PORT` (the name the certificate is for).
async fn tls_receivers(cert: &std::path::Path, key: &std::path::Path) -> (Arc<Receivers>, String) {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let receivers = Arc::new(Receivers::default());
    let app = receivers.router();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                // A client that does not trust the certificate ends the handshake here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (receivers, format!("https://localhost:{port}"))
}

/// `https` receivers are verified: a server given the receiver's CA (`--webhook-ca-file`)
/// delivers, signed as over http; one without it (only the system's
/// roots) does not, and says why in the deliveries list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_targets_are_verified_against_the_system_and_the_given_roots() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let (receivers, base) = tls_receivers(&cert, &key).await;
    let pem = std::fs::read(&ca).unwrap();

    let trusting = TestServer::start_relaxed_with(|config| {
        tune(config);
        config.webhooks.extra_roots = reqwest::Certificate::from_pem_bundle(&pem).unwrap();
    })
    .await;
    let project = trusting.new_project("over TLS").await;
    let hook = webhook(
        &trusting,
        project,
        &format!("{base}/secure"),
        json!(["task.created"]),
    )
    .await;
    let task = trusting.task(&trusting.admin, project, "sealed").await;
    let seq = log_after(&trusting, project, hook["last_seq"].as_i64().unwrap())
        .await
        .into_iter()
        .find(|(_, kind)| kind == "task_created")
        .expect("the task's event")
        .0;
    let outcome = final_delivery(&trusting, project, &hook, seq).await;
    assert_eq!(outcome["outcome"], "delivered", "{outcome}");
    let got = wait_for_seqs(&receivers, "/secure", &[seq]).await;
    let delivered = got.iter().find(|r| crate::seq(r) == seq).unwrap();
    assert_eq!(delivered.json()["data"]["id"], task["id"]);
    assert!(signature_of(SECRET, delivered), "signed as over http");

    // Without the certificate among its roots, the handshake fails: retried, then given up,
    // and the receiver never got a request.
    let doubting = server().await;
    let project = doubting.new_project("untrusted").await;
    let hook = webhook(
        &doubting,
        project,
        &format!("{base}/untrusted"),
        json!(["task.created"]),
    )
    .await;
    doubting.task(&doubting.admin, project, "refused").await;
    let seq = log_after(&doubting, project, hook["last_seq"].as_i64().unwrap())
        .await
        .into_iter()
        .find(|(_, kind)| kind == "task_created")
        .expect("the task's event")
        .0;
    let failed = final_delivery(&doubting, project, &hook, seq).await;
    assert_eq!(failed["outcome"], "gave_up", "{failed}");
    assert!(failed["error"].is_string(), "{failed}");
    assert!(receivers.got("/untrusted").is_empty());
}
