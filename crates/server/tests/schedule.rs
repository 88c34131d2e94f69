//! The scheduler in the server: `GET …/schedule`, the worker that writes outputs after a
//! schedule input commits, its `cpm_complete`/`task_dates_updated`/`cpm_error` events.

mod common;
use common::*;
use serde_json::{Value, json};
use std::time::Duration;

/// Waits (bounded) until the project log holds an event of `kind` after `since`.
async fn wait_for(
    server: &TestServer,
    token: &str,
    project: &str,
    since: i64,
    kind: &str,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let log = server.log(token, project, since).await;
        let events = log["events"].as_array().unwrap().clone();
        if events.iter().any(|e| e["event_type"] == kind) {
            return events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {kind} after seq {since}: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn latest(log: &Value) -> i64 {
    log["latest_seq"].as_i64().unwrap()
}

#[tokio::test]
async fn the_worker_writes_outputs_and_events_after_each_schedule_change() {
    let server = TestServer::start_with(|c| c.scheduler = true).await;
    let admin = server.admin().await;
    let (status, project) = server
        .post(
            "/api/v1/projects",
            &admin,
            json!({ "name": "Plan", "start_date": "2026-03-02" }),
        )
        .await;
    assert_eq!(status, 201);
    let project = project["id"].as_str().unwrap().to_owned();
    let calendar = server
        .create(&admin, &project, "calendars", json!({ "name": "Std", "working_days": [1, 2, 3, 4, 5], "exceptions": [{ "start": "2026-03-05", "end": "2026-03-05", "name": "holiday" }] }))
        .await;
    server
        .patch(
            &format!("/api/v1/projects/{project}"),
            &admin,
            json!({ "calendar_id": calendar["id"] }),
        )
        .await;
    let a = server
        .create(
            &admin,
            &project,
            "tasks",
            json!({ "name": "A", "duration": 3 }),
        )
        .await;
    let b = server
        .create(
            &admin,
            &project,
            "tasks",
            json!({ "name": "B", "duration": 2 }),
        )
        .await;
    let c = server
        .create(
            &admin,
            &project,
            "tasks",
            json!({ "name": "C", "duration": 1 }),
        )
        .await;
    server
        .create(
            &admin,
            &project,
            "dependencies",
            json!({ "predecessor_id": a["id"], "successor_id": b["id"] }),
        )
        .await;
    let (status, schedule) = server
        .get(&format!("/api/v1/projects/{project}/schedule"), &admin)
        .await;
    assert_eq!(status, 200, "{schedule}");
    // A: Mon 2 – Wed 4; Thursday 5 is a holiday, so B: Fri 6 – Mon 9. C floats beside them.
    let task = |id: &Value| {
        schedule["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == *id)
            .unwrap()
            .clone()
    };
    assert_eq!(
        (
            task(&a["id"])["early_start"].as_str(),
            task(&a["id"])["early_finish"].as_str()
        ),
        (Some("2026-03-02"), Some("2026-03-04"))
    );
    assert_eq!(
        (
            task(&b["id"])["early_start"].as_str(),
            task(&b["id"])["early_finish"].as_str()
        ),
        (Some("2026-03-06"), Some("2026-03-09"))
    );
    assert_eq!(task(&c["id"])["total_float"], 4);
    assert_eq!(task(&c["id"])["is_critical"], false);
    assert_eq!(schedule["project_finish"], "2026-03-09");
    assert_eq!(schedule["critical_path"], json!([a["id"], b["id"]]));
    assert!(schedule["computed_at"].is_string());

    // The worker wrote the same outputs into the tasks, without bumping their version.
    let events = wait_for(&server, &admin, &project, 0, "task_dates_updated").await;
    let mut stored = json!(null);
    for _ in 0..400 {
        let (_, row) = server
            .get(
                &format!(
                    "/api/v1/projects/{project}/tasks/{}",
                    b["id"].as_str().unwrap()
                ),
                &admin,
            )
            .await;
        if row["early_finish"] == "2026-03-09" {
            stored = row;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        stored["early_start"], "2026-03-06",
        "outputs written: {events:?}"
    );
    assert_eq!(stored["version"], 1);

    // Lengthening A moves A and B, and C's late dates and float (the finish moved).
    let before = latest(&server.log(&admin, &project, 0).await);
    server
        .patch(
            &format!(
                "/api/v1/projects/{project}/tasks/{}",
                a["id"].as_str().unwrap()
            ),
            &admin,
            json!({ "duration": 4 }),
        )
        .await;
    let events = wait_for(&server, &admin, &project, before, "task_dates_updated").await;
    let complete = events
        .iter()
        .find(|e| e["event_type"] == "cpm_complete")
        .expect("cpm_complete");
    assert_eq!(complete["payload"]["project_finish"], "2026-03-10");
    let dates = events
        .iter()
        .rev()
        .find(|e| e["event_type"] == "task_dates_updated")
        .unwrap();
    let moved: Vec<&Value> = dates["payload"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["id"])
        .collect();
    assert!(
        moved.contains(&&a["id"]) && moved.contains(&&b["id"]),
        "{dates}"
    );
    let listed_c = dates["payload"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == c["id"])
        .expect("C's float moved");
    assert_eq!(
        (
            listed_c["early_start"].as_str(),
            listed_c["total_float"].as_i64()
        ),
        (Some("2026-03-02"), Some(5))
    );
    assert_eq!(dates["payload"]["count"], moved.len());
    let listed_b = dates["payload"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == b["id"])
        .unwrap();
    for field in [
        "early_start",
        "early_finish",
        "late_start",
        "late_finish",
        "total_float",
        "free_float",
        "is_critical",
        "start_date",
        "duration",
    ] {
        assert!(listed_b.get(field).is_some(), "{field} in {listed_b}");
    }
}

#[tokio::test]
async fn a_cycle_through_the_hierarchy_is_a_cpm_error_and_leaves_outputs() {
    let server = TestServer::start_with(|c| c.scheduler = true).await;
    let admin = server.admin().await;
    let (_, project) = server
        .post(
            "/api/v1/projects",
            &admin,
            json!({ "name": "Loop", "start_date": "2026-03-02" }),
        )
        .await;
    let project = project["id"].as_str().unwrap().to_owned();
    let parent = server
        .create(&admin, &project, "tasks", json!({ "name": "summary" }))
        .await;
    let child = server
        .create(
            &admin,
            &project,
            "tasks",
            json!({ "name": "child", "duration": 2, "parent_id": parent["id"] }),
        )
        .await;
    wait_for(&server, &admin, &project, 0, "cpm_complete").await;
    let before = latest(&server.log(&admin, &project, 0).await);
    // A link from a summary into its own subtask can never be satisfied.
    server
        .create(
            &admin,
            &project,
            "dependencies",
            json!({ "predecessor_id": parent["id"], "successor_id": child["id"] }),
        )
        .await;
    let events = wait_for(&server, &admin, &project, before, "cpm_error").await;
    let error = events
        .iter()
        .find(|e| e["event_type"] == "cpm_error")
        .unwrap();
    assert!(
        error["payload"]["error"]
            .as_str()
            .unwrap()
            .contains("cycle"),
        "{error}"
    );
    let (status, body) = server
        .get(&format!("/api/v1/projects/{project}/schedule"), &admin)
        .await;
    assert_error(
        status,
        &body,
        reqwest::StatusCode::UNPROCESSABLE_ENTITY,
        "dependency_cycle",
    );
    let (_, row) = server
        .get(
            &format!(
                "/api/v1/projects/{project}/tasks/{}",
                child["id"].as_str().unwrap()
            ),
            &admin,
        )
        .await;
    assert_eq!(
        row["early_start"], "2026-03-02",
        "the previous outputs stay"
    );
}

#[tokio::test]
async fn more_than_500_moves_are_reported_truncated() {
    let server = TestServer::start_with(|c| c.scheduler = true).await;
    let admin = server.admin().await;
    let (_, project) = server
        .post(
            "/api/v1/projects",
            &admin,
            json!({ "name": "Big", "start_date": "2026-03-02" }),
        )
        .await;
    let project = project["id"].as_str().unwrap().to_owned();
    for i in 0..510 {
        server
            .create(
                &admin,
                &project,
                "tasks",
                json!({ "name": format!("t{i}"), "duration": 1 }),
            )
            .await;
    }
    wait_for(&server, &admin, &project, 0, "cpm_complete").await;
    // Let the worker settle on the last burst before moving everything.
    let mut before = latest(&server.log(&admin, &project, 0).await);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = latest(&server.log(&admin, &project, 0).await);
        if now == before {
            break;
        }
        before = now;
    }
    server
        .patch(
            &format!("/api/v1/projects/{project}"),
            &admin,
            json!({ "start_date": "2026-04-06" }),
        )
        .await;
    let events = wait_for(&server, &admin, &project, before, "task_dates_updated").await;
    let dates = events
        .iter()
        .find(|e| e["event_type"] == "task_dates_updated")
        .unwrap();
    assert_eq!(dates["payload"], json!({ "count": 510, "truncated": true }));
}

#[tokio::test]
async fn the_schedule_is_for_members_only() {
    let server = TestServer::start_with(|c| c.scheduler = true).await;
    let admin = server.admin().await;
    let project = server.project(&admin, "Private").await;
    let (_, outsider) = server.user(&admin, "outsider").await;
    let (status, body) = server
        .get(&format!("/api/v1/projects/{project}/schedule"), &outsider)
        .await;
    assert_error(status, &body, reqwest::StatusCode::NOT_FOUND, "not_found");
}
