//! The scheduler in the server: `GET …/schedule`, the worker that writes outputs after a
//! schedule input commits, its `cpm_complete`/`task_dates_updated`/`cpm_error` events.
//!
//! One file on purpose: each test file is a binary of its own (~170 MB linked), so the
//! scheduler's cases share one.

use liveplan_testkit::*;
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

/// Waits (bounded) until the worker has written outputs into `task`: only a computation that
/// included the task's creation does.
async fn wait_for_outputs(server: &TestServer, token: &str, project: &str, task: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, row) = server
            .get(&format!("/api/v1/projects/{project}/tasks/{task}"), token)
            .await;
        if row["early_start"].is_string() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no outputs in {task}: {}",
            server.log(token, project, 0).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A project that starts on `start`; returns its id.
async fn project_starting(server: &TestServer, token: &str, name: &str, start: &str) -> String {
    let (status, project) = server
        .post(
            "/api/v1/projects",
            token,
            json!({ "name": name, "start_date": start }),
        )
        .await;
    assert_eq!(status, 201, "{project}");
    project["id"].as_str().unwrap().to_owned()
}

fn latest(log: &Value) -> i64 {
    log["latest_seq"].as_i64().unwrap()
}

#[tokio::test]
async fn the_worker_writes_outputs_and_events_after_each_schedule_change() {
    let server = TestServer::start_with(|c| c.scheduler = true).await;
    let admin = server.admin().await;
    let project = project_starting(&server, &admin, "Plan", "2026-03-02").await;
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
    wait_for_outputs(&server, &admin, &project, child["id"].as_str().unwrap()).await;
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
async fn a_schedule_past_9999_is_a_cpm_error_and_input_dates_have_four_digit_years() {
    let server = TestServer::start_with(|c| c.scheduler = true).await;
    let admin = server.admin().await;
    let project = project_starting(&server, &admin, "Far", "9999-01-04").await;
    let first = server
        .create(
            &admin,
            &project,
            "tasks",
            json!({ "name": "first", "duration": 100 }),
        )
        .await;
    let first_id = first["id"].as_str().unwrap().to_owned();
    wait_for_outputs(&server, &admin, &project, &first_id).await;
    let before = latest(&server.log(&admin, &project, 0).await);
    // The second task would end about four years past 9999-12-31.
    let second = server
        .create(
            &admin,
            &project,
            "tasks",
            json!({ "name": "second", "duration": 1000 }),
        )
        .await;
    let second_id = second["id"].as_str().unwrap().to_owned();
    let events = wait_for(&server, &admin, &project, before, "cpm_error").await;
    let error = events
        .iter()
        .find(|e| e["event_type"] == "cpm_error")
        .unwrap();
    // The first task's late dates reach the project finish too: either may be named.
    let named = error["payload"]["details"]["task_id"].as_str();
    assert!(
        named == Some(second_id.as_str()) || named == Some(first_id.as_str()),
        "{error}"
    );
    assert_eq!(error["payload"]["details"]["reason"], "date out of range");
    assert!(
        !events
            .iter()
            .any(|e| e["event_type"] == "task_dates_updated"),
        "{events:?}"
    );
    let (status, body) = server
        .get(&format!("/api/v1/projects/{project}/schedule"), &admin)
        .await;
    assert_error(
        status,
        &body,
        reqwest::StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    let task_path = format!("/api/v1/projects/{project}/tasks/{second_id}");
    let (_, row) = server.get(&task_path, &admin).await;
    assert!(
        row["early_finish"].is_null(),
        "no date past 9999 is written: {row}"
    );

    // Shortened, it fits, and its outputs come.
    let before = latest(&server.log(&admin, &project, 0).await);
    let (status, _) = server
        .patch(&task_path, &admin, json!({ "duration": 5 }))
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    wait_for(&server, &admin, &project, before, "task_dates_updated").await;
    wait_for_outputs(&server, &admin, &project, &second_id).await;
    let (_, row) = server.get(&task_path, &admin).await;
    assert_eq!(row["early_start"], "9999-01-04", "{row}");

    // Input dates are YYYY-MM-DD from 0001 to 9999: the signed forms are refused.
    for bad in ["+10383-04-21", "+2026-03-02", "0000-12-31"] {
        let (status, body) = server
            .patch(&task_path, &admin, json!({ "start_date": bad }))
            .await;
        assert_error(
            status,
            &body,
            reqwest::StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
    }
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

/// The output fields a task stores, as CONTRACT §4 names them.
const OUTPUTS: [&str; 7] = [
    "early_start",
    "early_finish",
    "late_start",
    "late_finish",
    "total_float",
    "free_float",
    "is_critical",
];

/// Waits until the worker has computed every commit so far, then checks that every task's
/// stored outputs, and the last `cpm_complete`, are what a fresh full computation of the
/// stored inputs (`GET …/schedule`) gives.
///
/// The wait changes the duration of `probe`, a task of its own without links, between one and
/// two days: only a round that took every commit up to that change lists it in
/// `task_dates_updated` with dates of the new duration. A duration change is an incremental edit, so the check sees the
/// outputs of the cached engine, not of one built afresh for the occasion.
async fn assert_outputs_are_a_full_recompute(
    server: &TestServer,
    token: &str,
    project: &str,
    probe: &str,
) {
    let (_, row) = server
        .get(&format!("/api/v1/projects/{project}/tasks/{probe}"), token)
        .await;
    let duration = if row["duration"] == 1 { 2 } else { 1 };
    let since = latest(&server.log(token, project, 0).await);
    set_duration(server, token, project, probe, duration).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let log = server.log(token, project, since).await;
        // The listing shows the body's duration at the time of the write, which a round that
        // started before the change may also show; the dates tell which duration the round
        // computed with: one day starts and finishes on the same day, two do not.
        let listed = log["events"].as_array().unwrap().iter().any(|e| {
            e["event_type"] == "task_dates_updated"
                && e["payload"]["tasks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|t| {
                        t["id"] == probe
                            && t["duration"] == duration
                            && (t["early_start"] == t["early_finish"]) == (duration == 1)
                    })
        });
        if listed {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never caught up: {log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, schedule) = server
        .get(&format!("/api/v1/projects/{project}/schedule"), token)
        .await;
    assert_eq!(status, 200, "{schedule}");
    let (status, tasks) = server
        .get(
            &format!("/api/v1/projects/{project}/tasks?limit=10000"),
            token,
        )
        .await;
    assert_eq!(status, 200, "{tasks}");
    let tasks = tasks.as_array().unwrap();
    let expected = schedule["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), expected.len());
    for want in expected {
        let stored = tasks.iter().find(|t| t["id"] == want["id"]).unwrap();
        for field in OUTPUTS {
            assert_eq!(
                stored[field], want[field],
                "{field} of {}: stored {stored}, full recompute {want}",
                want["id"]
            );
        }
    }
    let log = server.log(token, project, since).await;
    let complete = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["event_type"] == "cpm_complete")
        .expect("cpm_complete");
    assert_eq!(
        complete["payload"]["project_finish"],
        schedule["project_finish"]
    );
    assert_eq!(
        complete["payload"]["critical_path"],
        schedule["critical_path"]
    );
}

/// A small deterministic generator, so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len())])
    }

    fn day(&mut self) -> String {
        format!("2026-03-{:02}", 1 + self.below(28))
    }
}

/// The test's picture of the plan, enough to keep it free of dependency cycles: links only
/// join leaf tasks, from older to newer, and summaries ("groups") only hold leaves or other
/// groups. The server would accept more (and report a cycle as `cpm_error`); the point here
/// is that the outputs stay a full recompute's.
#[derive(Default)]
struct Model {
    groups: Vec<String>,
    leaves: Vec<String>,
    /// Dependency id, predecessor, successor.
    links: Vec<(String, String, String)>,
    calendars: Vec<String>,
}

impl Model {
    fn position(&self, task: &str) -> usize {
        self.leaves.iter().position(|t| t == task).unwrap_or(0)
    }
}

async fn random_edit(
    server: &TestServer,
    token: &str,
    project: &str,
    model: &mut Model,
    rng: &mut Rng,
    incremental_only: bool,
) {
    let base = format!("/api/v1/projects/{project}");
    let leaf = rng.pick(&model.leaves).cloned();
    let patch_leaf = |body: Value| {
        let path = leaf.as_ref().map(|l| format!("{base}/tasks/{l}"));
        async move {
            if let Some(path) = path {
                let (status, row) = server.patch(&path, token, body).await;
                // A milestone refuses a duration; everything else is accepted.
                assert!(status == 200 || status == 422, "{row}");
            }
        }
    };
    // The edits the engine repairs in place (durations, constraints, deadlines, starts,
    // links) and the ones that make the worker build it again.
    let choice = if incremental_only {
        *rng.pick(&[0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12]).unwrap()
    } else {
        rng.below(20)
    };
    match choice {
        0..=3 => patch_leaf(json!({ "duration": rng.below(6) })).await,
        4 => {
            let kind = *rng
                .pick(&["asap", "alap", "snet", "snlt", "fnet", "fnlt", "mso", "mfo"])
                .unwrap();
            patch_leaf(json!({ "constraint_type": kind, "constraint_date": rng.day() })).await
        }
        5 => {
            let deadline = (rng.below(2) == 0).then(|| rng.day());
            patch_leaf(json!({ "deadline": deadline })).await
        }
        6 => {
            let start = (rng.below(2) == 0).then(|| rng.day());
            patch_leaf(json!({ "start_date": start })).await
        }
        7 => {
            let body = match rng.below(4) {
                0 => json!({ "is_milestone": true, "duration": 0 }),
                1 => json!({ "is_milestone": false, "duration": 2 }),
                2 => json!({ "percent_complete": 50, "actual_start": "2026-03-03" }),
                _ => {
                    json!({ "manually_scheduled": true, "scheduled_start": rng.day(), "scheduled_finish": "2026-03-31" })
                }
            };
            patch_leaf(body).await
        }
        8..=10 => {
            if model.leaves.len() < 2 {
                return;
            }
            let (mut a, mut b) = (rng.below(model.leaves.len()), rng.below(model.leaves.len()));
            if a == b {
                return;
            }
            if a > b {
                std::mem::swap(&mut a, &mut b);
            }
            let (from, to) = (model.leaves[a].clone(), model.leaves[b].clone());
            if model.links.iter().any(|(_, p, s)| *p == from && *s == to) {
                return;
            }
            let kind = *rng.pick(&["FS", "SS", "FF", "SF"]).unwrap();
            let lag = rng.below(5) as i64 - 2;
            let link = server
                .create(
                    token,
                    project,
                    "dependencies",
                    json!({ "predecessor_id": from, "successor_id": to, "type": kind, "lag": lag }),
                )
                .await;
            model
                .links
                .push((link["id"].as_str().unwrap().to_owned(), from, to));
        }
        11 => {
            let Some((id, from, _)) = rng.pick(&model.links).cloned() else {
                return;
            };
            // Another type and lag, or another successor further down.
            let body = if rng.below(2) == 0 {
                json!({ "type": *rng.pick(&["FS", "SS", "FF", "SF"]).unwrap(), "lag": rng.below(4) })
            } else {
                let after = model.position(&from) + 1;
                let Some(to) = model.leaves.get(after + rng.below(3)).cloned() else {
                    return;
                };
                if model.links.iter().any(|(_, p, s)| *p == from && *s == to) {
                    return;
                }
                if let Some(entry) = model.links.iter_mut().find(|(l, _, _)| *l == id) {
                    entry.2 = to.clone();
                }
                json!({ "successor_id": to })
            };
            let (status, row) = server
                .patch(&format!("{base}/dependencies/{id}"), token, body)
                .await;
            assert_eq!(status, 200, "{row}");
        }
        12 => {
            let Some((id, _, _)) = rng.pick(&model.links).cloned() else {
                return;
            };
            let (status, _) = server
                .delete(&format!("{base}/dependencies/{id}"), token)
                .await;
            assert_eq!(status, 204);
            model.links.retain(|(l, _, _)| *l != id);
        }
        13 => {
            let parent = (rng.below(2) == 0)
                .then(|| rng.pick(&model.groups).cloned())
                .flatten();
            let task = server
                .create(
                    token,
                    project,
                    "tasks",
                    json!({ "name": "new", "duration": rng.below(5), "parent_id": parent }),
                )
                .await;
            model.leaves.push(task["id"].as_str().unwrap().to_owned());
        }
        14 => {
            let Some(leaf) = leaf else { return };
            let (status, _) = server.delete(&format!("{base}/tasks/{leaf}"), token).await;
            assert_eq!(status, 204);
            model.leaves.retain(|t| *t != leaf);
            model.links.retain(|(_, p, s)| *p != leaf && *s != leaf);
        }
        15 => {
            // Hierarchy: a leaf into or out of a group, or a group under another.
            if rng.below(3) == 0 && model.groups.len() > 1 {
                let (a, b) = (rng.below(model.groups.len()), rng.below(model.groups.len()));
                let parent = (a != b).then(|| model.groups[b].clone());
                let (status, body) = server
                    .patch(
                        &format!("{base}/tasks/{}", model.groups[a]),
                        token,
                        json!({ "parent_id": parent }),
                    )
                    .await;
                // Moving a group under its own subgroup is refused.
                assert!(status == 200 || status == 422, "{body}");
            } else {
                let parent = rng
                    .pick(&model.groups)
                    .cloned()
                    .filter(|_| rng.below(3) > 0);
                patch_leaf(json!({ "parent_id": parent })).await;
            }
        }
        16 => {
            let working: Vec<u64> = (1..=7).filter(|_| rng.below(3) > 0).collect();
            let working = if working.is_empty() { vec![1] } else { working };
            if rng.below(2) == 0 || model.calendars.is_empty() {
                let calendar = server
                    .create(
                        token,
                        project,
                        "calendars",
                        {
                            let off = rng.day();
                            json!({ "name": "cal", "working_days": working, "exceptions": [{ "start": off, "end": off, "name": "off" }] })
                        },
                    )
                    .await;
                model
                    .calendars
                    .push(calendar["id"].as_str().unwrap().to_owned());
            } else {
                let calendar = rng.pick(&model.calendars).cloned().unwrap();
                let (status, row) = server
                    .patch(
                        &format!("{base}/calendars/{calendar}"),
                        token,
                        json!({ "working_days": working }),
                    )
                    .await;
                assert_eq!(status, 200, "{row}");
            }
        }
        17 => {
            let calendar = rng.pick(&model.calendars).cloned();
            if rng.below(4) == 0 {
                // The project's own calendar and start.
                let (status, row) = server
                    .patch(
                        &base,
                        token,
                        json!({ "calendar_id": calendar, "start_date": rng.day() }),
                    )
                    .await;
                assert_eq!(status, 200, "{row}");
            } else {
                patch_leaf(json!({ "calendar_id": calendar })).await;
            }
        }
        18 => {
            // Deleting a calendar clears the references to it (with their task_updated).
            let Some(calendar) = rng.pick(&model.calendars).cloned() else {
                return;
            };
            let (status, _) = server
                .delete(&format!("{base}/calendars/{calendar}"), token)
                .await;
            assert_eq!(status, 204);
            model.calendars.retain(|c| *c != calendar);
        }
        _ => {
            // A summary's own start bound reaches every leaf below it.
            let Some(group) = rng.pick(&model.groups).cloned() else {
                return;
            };
            let start = (rng.below(2) == 0).then(|| rng.day());
            let (status, row) = server
                .patch(
                    &format!("{base}/tasks/{group}"),
                    token,
                    json!({ "start_date": start }),
                )
                .await;
            assert_eq!(status, 200, "{row}");
        }
    }
}

#[tokio::test]
async fn after_random_edits_the_stored_outputs_are_a_full_recompute() {
    let server = TestServer::start_with(|c| c.scheduler = true).await;
    let admin = server.admin().await;
    for seed in [0x5eed_0001_u64, 0x5eed_0002, 0x5eed_0003] {
        let mut rng = Rng(seed);
        let (status, project) = server
            .post(
                "/api/v1/projects",
                &admin,
                json!({ "name": format!("random {seed:x}"), "start_date": "2026-03-02" }),
            )
            .await;
        assert_eq!(status, 201);
        let project = project["id"].as_str().unwrap().to_owned();
        let probe = probe(&server, &admin, &project).await;
        let mut model = Model::default();
        for _ in 0..3 {
            let group = server
                .create(&admin, &project, "tasks", json!({ "name": "group" }))
                .await;
            model.groups.push(group["id"].as_str().unwrap().to_owned());
        }
        for i in 0..12 {
            let parent = (i % 3 == 0).then(|| model.groups[i % 2].clone());
            let task = server
                .create(
                    &admin,
                    &project,
                    "tasks",
                    json!({ "name": format!("t{i}"), "duration": 1 + i % 4, "parent_id": parent }),
                )
                .await;
            model.leaves.push(task["id"].as_str().unwrap().to_owned());
        }
        for round in 0..12 {
            // Every other round only repairs the cached engine, so that the check after it
            // sees the incremental path rather than a rebuild that would hide its mistakes.
            let incremental_only = round % 2 == 1;
            for _ in 0..12 {
                random_edit(
                    &server,
                    &admin,
                    &project,
                    &mut model,
                    &mut rng,
                    incremental_only,
                )
                .await;
                // Now and then let the worker catch up, so that edits land both on a warm
                // cache one at a time and in bursts.
                if rng.below(8) == 0 {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
            }
            eprintln!("seed {seed:x} round {round}");
            assert_outputs_are_a_full_recompute(&server, &admin, &project, &probe).await;
        }
    }
}

/// A task of its own for [`assert_outputs_are_a_full_recompute`] to edit.
async fn probe(server: &TestServer, token: &str, project: &str) -> String {
    let task = server
        .create(
            token,
            project,
            "tasks",
            json!({ "name": "probe", "duration": 1 }),
        )
        .await;
    task["id"].as_str().unwrap().to_owned()
}

/// A chain of `n` tasks, each linked to the next; returns their ids.
async fn chain(server: &TestServer, token: &str, project: &str, n: usize) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for i in 0..n {
        let task = server
            .create(
                token,
                project,
                "tasks",
                json!({ "name": format!("c{i}"), "duration": 1 + i % 3 }),
            )
            .await;
        let id = task["id"].as_str().unwrap().to_owned();
        if let Some(previous) = ids.last() {
            server
                .create(
                    token,
                    project,
                    "dependencies",
                    json!({ "predecessor_id": previous, "successor_id": id }),
                )
                .await;
        }
        ids.push(id);
    }
    ids
}

async fn set_duration(server: &TestServer, token: &str, project: &str, task: &str, days: u64) {
    let (status, row) = server
        .patch(
            &format!("/api/v1/projects/{project}/tasks/{task}"),
            token,
            json!({ "duration": days }),
        )
        .await;
    assert_eq!(status, 200, "{row}");
}

#[tokio::test]
async fn the_cached_plan_is_read_again_after_a_wipe_an_import_and_a_restart() {
    let mut server = TestServer::start_with(|c| c.scheduler = true).await;
    let admin = server.admin().await;
    let project = server.project(&admin, "Cached").await;
    let tasks = chain(&server, &admin, &project, 6).await;
    let probe = probe(&server, &admin, &project).await;
    let other = server.project(&admin, "Deleted while cached").await;
    chain(&server, &admin, &other, 3).await;
    let other_probe = self::probe(&server, &admin, &other).await;
    assert_outputs_are_a_full_recompute(&server, &admin, &project, &probe).await;
    assert_outputs_are_a_full_recompute(&server, &admin, &other, &other_probe).await;

    // A deleted project leaves the cache; the other one goes on.
    let (status, _) = server
        .delete(&format!("/api/v1/projects/{other}"), &admin)
        .await;
    assert_eq!(status, 204);
    set_duration(&server, &admin, &project, &tasks[0], 4).await;
    assert_outputs_are_a_full_recompute(&server, &admin, &project, &probe).await;

    // Wipe, then import the same project (same ids) with other durations and the old
    // outputs: a cache that survived would schedule the old durations.
    let (status, mut export) = server.get("/api/v1/admin/export", &admin).await;
    assert_eq!(status, 200);
    for record in export["projects"][0]["records"].as_array_mut().unwrap() {
        if record["collection"] == "tasks" {
            record["record"]["duration"] = json!(7);
        }
    }
    let (status, body) = server
        .call(
            reqwest::Method::DELETE,
            "/api/v1/admin/projects",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.post("/api/v1/admin/import", &admin, export).await;
    assert_eq!(status, 200, "{body}");
    set_duration(&server, &admin, &project, &tasks[5], 2).await;
    assert_outputs_are_a_full_recompute(&server, &admin, &project, &probe).await;

    // A change made while the server was down is seen after the restart.
    server.stop().await;
    let changed: uuid::Uuid = tasks[1].parse().unwrap();
    server
        .offline(async |domain| {
            // A change behind the domain's back, as a restore or a hand edit would be: the
            // body only, no event, no version bump.
            let mut tx = domain.store.write().await.unwrap();
            let mut task = tx.get_record(changed).await.unwrap().unwrap();
            task.body.insert("duration".into(), json!(9));
            tx.update_record_body(&task).await.unwrap();
            tx.commit().await.unwrap();
        })
        .await;
    server.restart_with(|c| c.scheduler = true).await;
    let admin = server.admin().await;
    set_duration(&server, &admin, &project, &tasks[3], 5).await;
    assert_outputs_are_a_full_recompute(&server, &admin, &project, &probe).await;
}

#[tokio::test]
async fn a_bryntum_revision_is_followed_like_rest_edits() {
    let server = TestServer::start_with(|c| c.scheduler = true).await;
    let admin = server.admin().await;
    let project = server.project(&admin, "Bryntum").await;
    let tasks = chain(&server, &admin, &project, 5).await;
    let probe = probe(&server, &admin, &project).await;
    assert_outputs_are_a_full_recompute(&server, &admin, &project, &probe).await;
    let mut client = liveplan_testkit::bryntum::Client::connect(&server.base).await;
    client.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let label = json!(project);
    client.dataset(label.clone()).await;
    // One revision: durations, a new task linked into the chain, a link across it, and a
    // removed task (its links go with it).
    let changes = json!({
        "tasks": {
            "added": [{ "$PhantomId": "_new", "name": "new", "duration": 3, "durationUnit": "day" }],
            "updated": [
                { "id": tasks[0], "duration": 4, "durationUnit": "day" },
                { "id": tasks[3], "duration": 2, "durationUnit": "day" }
            ],
            "removed": [{ "id": tasks[2] }]
        },
        "dependencies": {
            "added": [
                { "$PhantomId": "_d1", "from": "_new", "to": tasks[4], "type": 2, "lag": 0 },
                { "$PhantomId": "_d2", "from": tasks[1], "to": tasks[3], "type": 0, "lag": 1 }
            ]
        }
    });
    client.change(&label, "local-1", changes).await;
    assert_outputs_are_a_full_recompute(&server, &admin, &project, &probe).await;
}

/// Waits (bounded) until `task`'s stored `early_start` is `expected`.
async fn wait_for_early_start(
    server: &TestServer,
    token: &str,
    project: &str,
    task: &str,
    expected: &str,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, row) = server
            .get(&format!("/api/v1/projects/{project}/tasks/{task}"), token)
            .await;
        if row["early_start"] == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{task} never started on {expected}: {row}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn moving_only_a_manual_tasks_bar_reschedules_its_successors() {
    let server = TestServer::start_with(|c| c.scheduler = true).await;
    let admin = server.admin().await;
    let project = project_starting(&server, &admin, "Manual", "2026-03-02").await;
    let manual = server
        .create(
            &admin,
            &project,
            "tasks",
            json!({ "name": "Fixed", "duration": 2, "manually_scheduled": true,
                    "scheduled_start": "2026-03-02", "scheduled_finish": "2026-03-04" }),
        )
        .await;
    let next = server
        .create(
            &admin,
            &project,
            "tasks",
            json!({ "name": "Next", "duration": 1 }),
        )
        .await;
    server
        .create(
            &admin,
            &project,
            "dependencies",
            json!({ "predecessor_id": manual["id"], "successor_id": next["id"] }),
        )
        .await;
    let next_id = next["id"].as_str().unwrap();
    // Fixed holds Mon 2 – Tue 3 (the bar's end is exclusive), so Next starts Wed 4.
    wait_for_early_start(&server, &admin, &project, next_id, "2026-03-04").await;

    // Only the bar moves, a week later: nothing else is a schedule input, yet Next follows.
    let (status, body) = server
        .patch(
            &format!(
                "/api/v1/projects/{project}/tasks/{}",
                manual["id"].as_str().unwrap()
            ),
            &admin,
            json!({ "scheduled_start": "2026-03-09", "scheduled_finish": "2026-03-11" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    wait_for_early_start(&server, &admin, &project, next_id, "2026-03-11").await;
    let (_, schedule) = server
        .get(&format!("/api/v1/projects/{project}/schedule"), &admin)
        .await;
    let listed = schedule["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == next["id"])
        .cloned()
        .unwrap();
    assert_eq!(listed["early_start"], "2026-03-11", "{schedule}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_racing_the_first_read_of_a_plan_are_all_followed() {
    let mut server = TestServer::start_with(|c| c.scheduler = true).await;
    let admin = server.admin().await;
    let project = server.project(&admin, "Racing").await;
    let tasks = chain(&server, &admin, &project, 40).await;
    let probe = probe(&server, &admin, &project).await;
    assert_outputs_are_a_full_recompute(&server, &admin, &project, &probe).await;

    // After a restart the cache is empty: the first commit makes the worker read the plan
    // from a snapshot while the other writers keep committing, so some of their changes
    // land in the snapshot and the rest must reach the feed, none twice and none lost.
    server.restart_with(|c| c.scheduler = true).await;
    let admin = server.admin().await;
    let writers = tasks.iter().enumerate().map(|(i, task)| {
        let (server, admin, project) = (&server, &admin, &project);
        async move {
            set_duration(server, admin, project, task, 1 + (i as u64 * 7) % 5).await;
        }
    });
    futures::future::join_all(writers).await;
    // No further commit follows, so a change the worker missed would never be repaired by a
    // later read: the stored outputs must come to equal a full recompute on their own.
    outputs_come_to_equal_a_full_recompute(&server, &admin, &project).await;
    assert_outputs_are_a_full_recompute(&server, &admin, &project, &probe).await;
}

/// Waits (bounded) until every task's stored outputs equal what `GET …/schedule` computes.
async fn outputs_come_to_equal_a_full_recompute(server: &TestServer, token: &str, project: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, schedule) = server
            .get(&format!("/api/v1/projects/{project}/schedule"), token)
            .await;
        let (_, tasks) = server
            .get(
                &format!("/api/v1/projects/{project}/tasks?limit=10000"),
                token,
            )
            .await;
        let tasks = tasks.as_array().unwrap();
        let differing: Vec<&Value> = schedule["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|want| {
                let stored = tasks.iter().find(|t| t["id"] == want["id"]);
                stored.is_none_or(|stored| OUTPUTS.iter().any(|f| stored[f] != want[f]))
            })
            .collect();
        if differing.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stored outputs never matched a full recompute: {differing:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two nodes on one database and one Redis (CONTRACT §9: "a project's schedule is computed by
/// one node at a time"). Each node's scheduler computes the changes committed on it, under the
/// project's lease, and skips a change another node's schedule already included:
/// - changes made one at a time, alternating between the nodes, get one `cpm_complete` each,
///   not one per node;
/// - changes made on both nodes at once end with the stored outputs of a full recompute (a
///   node that computed an older state never writes over a newer schedule), with at most one
///   `cpm_complete` per change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_two_nodes_each_change_is_scheduled_once_and_the_outputs_are_a_full_recompute() {
    let cluster = Cluster::start_with(2, |c| {
        c.scheduler = true;
        relax_rates(c);
    })
    .await;
    let nodes = [cluster.node(0), cluster.node(1)];
    let tokens = [nodes[0].admin().await, nodes[1].admin().await];
    let project = project_starting(nodes[0], &tokens[0], "Two schedulers", "2027-03-01").await;
    let tasks = chain(nodes[0], &tokens[0], &project, 6).await;
    let probe = probe(nodes[0], &tokens[0], &project).await;
    outputs_come_to_equal_a_full_recompute(nodes[0], &tokens[0], &project).await;
    wait_for_outputs(nodes[0], &tokens[0], &project, &probe).await;

    // One at a time, alternating: each change is computed by the node that made it, once.
    let count_completes = |log: &Value| {
        log["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event_type"] == "cpm_complete")
            .count()
    };
    let start = latest(&nodes[0].log(&tokens[0], &project, 0).await);
    for (i, task) in tasks.iter().enumerate() {
        let n = i % 2;
        let since = latest(&nodes[n].log(&tokens[n], &project, 0).await);
        set_duration(nodes[n], &tokens[n], &project, task, 2 + (i as u64 % 3)).await;
        wait_for(
            nodes[1 - n],
            &tokens[1 - n],
            &project,
            since,
            "cpm_complete",
        )
        .await;
    }
    // Both nodes are idle now: a second computation of any change would have been written.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = nodes[1].log(&tokens[1], &project, start).await;
    assert_eq!(
        count_completes(&log),
        tasks.len(),
        "one cpm_complete per change: {log}"
    );

    // Both at once: each round changes one task on each node concurrently.
    let start = latest(&nodes[0].log(&tokens[0], &project, 0).await);
    let rounds = 12;
    for round in 0..rounds {
        let writes = (0..2).map(|n| {
            let (node, token, project) = (nodes[n], &tokens[n], &project);
            let task = &tasks[(round * 2 + n) % tasks.len()];
            async move {
                set_duration(node, token, project, task, 1 + ((round + n) as u64 % 4)).await;
            }
        });
        futures::future::join_all(writes).await;
    }
    outputs_come_to_equal_a_full_recompute(nodes[1], &tokens[1], &project).await;
    assert_outputs_are_a_full_recompute(nodes[0], &tokens[0], &project, &probe).await;
    let log = nodes[0].log(&tokens[0], &project, start).await;
    assert!(
        count_completes(&log) <= rounds * 2 + 1,
        "at most one cpm_complete per change (and the probe's): {log}"
    );
}

/// Issue 20, defect 4: a calendar without a working day is refused on create and patch with
/// nothing changed; a calendar the engine still cannot use (an exception centuries away, or
/// an empty week stored before the rule) is named in `cpm_error` and in `/schedule`'s 422.
#[tokio::test]
async fn an_unusable_calendar_is_refused_or_named() {
    // Without the worker, whose own events would change the fingerprint meanwhile.
    let quiet = TestServer::start().await;
    let admin = quiet.admin().await;
    let project = project_starting(&quiet, &admin, "Calendars", "2026-03-02").await;
    refuses_a_week_without_working_days(&quiet, &admin, &project).await;

    let mut server = TestServer::start_with(|c| c.scheduler = true).await;
    let admin = server.admin().await;
    let project = project_starting(&server, &admin, "Calendars", "2026-03-02").await;
    let calendars = format!("/api/v1/projects/{project}/calendars");
    let calendar = server
        .create(&admin, &project, "calendars", json!({ "name": "Std" }))
        .await;
    let calendar_id = calendar["id"].as_str().unwrap().to_owned();
    let calendar_path = format!("{calendars}/{calendar_id}");

    // Still accepted by the API, but no calendar table reaches that far back.
    let task = server.task(&admin, project.parse().unwrap(), "work").await;
    wait_for_outputs(&server, &admin, &project, task["id"].as_str().unwrap()).await;
    let since = latest(&server.log(&admin, &project, 0).await);
    let (status, body) = server
        .patch(
            &calendar_path,
            &admin,
            json!({ "exceptions": [{ "start": "1000-01-01", "end": "1000-01-02" }] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let events = wait_for(&server, &admin, &project, since, "cpm_error").await;
    let error = events
        .iter()
        .find(|e| e["event_type"] == "cpm_error")
        .unwrap();
    let details = &error["payload"]["details"];
    assert_eq!(details["calendar_id"], calendar_id, "{error}");
    assert_eq!(
        details["reason"], "exception too far from the project start",
        "{error}"
    );
    assert!(
        error["payload"]["error"]
            .as_str()
            .unwrap()
            .contains(&calendar_id),
        "{error}"
    );
    let (status, body) = server
        .get(&format!("/api/v1/projects/{project}/schedule"), &admin)
        .await;
    assert_error(
        status,
        &body,
        reqwest::StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert_eq!(
        body["error"]["details"]["calendar_id"], calendar_id,
        "{body}"
    );
    let (status, body) = server
        .patch(&calendar_path, &admin, json!({ "exceptions": [] }))
        .await;
    assert_eq!(status, 200, "{body}");

    // A calendar with an empty week stored before the rule existed: named, not a mystery.
    server.stop().await;
    let project_id: uuid::Uuid = project.parse().unwrap();
    let legacy = server
        .offline(async |domain| {
            let actor = admin_actor(domain).await;
            let mut tx = domain::tx::Tx::begin(domain, Some(&actor)).await.unwrap();
            let body = json!({ "name": "Legacy", "working_days": [], "exceptions": [] });
            let row = domain
                .insert_new_record(
                    &mut tx,
                    project_id,
                    &domain::collections::CALENDARS,
                    body.as_object().unwrap().clone(),
                    None,
                )
                .await
                .unwrap();
            tx.commit().await.unwrap();
            row.id
        })
        .await;
    server.start_again_with(|c| c.scheduler = true).await;
    let admin = server.admin().await;
    let (status, body) = server
        .get(&format!("/api/v1/projects/{project}/schedule"), &admin)
        .await;
    assert_error(
        status,
        &body,
        reqwest::StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert_eq!(
        body["error"]["details"],
        json!({ "calendar_id": legacy, "reason": "no working days" }),
        "{body}"
    );
}

/// POST and PATCH refuse a calendar without a working day, and change nothing.
async fn refuses_a_week_without_working_days(server: &TestServer, admin: &str, project: &str) {
    let calendars = format!("/api/v1/projects/{project}/calendars");
    let before = server.fingerprint().await;
    let (status, body) = server
        .post(
            &calendars,
            admin,
            json!({ "name": "Never", "working_days": [] }),
        )
        .await;
    assert_error(
        status,
        &body,
        reqwest::StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert_eq!(body["error"]["details"]["field"], "working_days", "{body}");
    assert_eq!(server.fingerprint().await, before, "nothing was created");

    let calendar = server
        .create(admin, project, "calendars", json!({ "name": "Std" }))
        .await;
    let calendar_id = calendar["id"].as_str().unwrap().to_owned();
    let calendar_path = format!("{calendars}/{calendar_id}");
    let before = server.fingerprint().await;
    let (status, body) = server
        .patch(&calendar_path, admin, json!({ "working_days": [] }))
        .await;
    assert_error(
        status,
        &body,
        reqwest::StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert_eq!(body["error"]["details"]["field"], "working_days", "{body}");
    assert_eq!(server.fingerprint().await, before, "nothing was changed");
    let (_, stored) = server.get(&calendar_path, admin).await;
    assert_eq!(stored["working_days"], json!([1, 2, 3, 4, 5]));
}
