//! Replays the client side of `fixtures/bryntum/real-client-transcript.txt` (two real Bryntum
//! Gantt 7.3 clients against Bryntum's demo server) against liveplan and checks that every
//! answer has the shape the client expects. Ids are mapped: the transcript's `events-12` is a
//! liveplan task made for this test, the demo server's `undefined-101` is the real id liveplan
//! gave the new task, and `project: 1` is the test project's uuid.

use liveplan_testkit::bryntum::{Client, flatten_tasks};
use liveplan_testkit::{Clock, TestServer};
use serde_json::{Value, json};
use std::collections::HashMap;

const TRANSCRIPT: &str = include_str!("fixtures/bryntum/real-client-transcript.txt");

/// The transcript's project: `events-1000` holds `events-1` (11–15) and `events-2` (21–25).
async fn fixture(server: &TestServer, admin: &str) -> (String, HashMap<String, String>) {
    let project = server.project(admin, "Transcript").await;
    let mut ids = HashMap::new();
    let task = |name: &str, parent: Option<&str>, ids: &HashMap<String, String>| {
        let mut body = json!({"name": format!("Task {name}"), "duration": 2,
            "scheduled_start": "2019-01-14T00:00:00Z", "scheduled_finish": "2019-01-16T00:00:00Z"});
        if name == "events-12" {
            body["name"] = json!("Configure firewall");
        }
        if let Some(parent) = parent {
            body["parent_id"] = json!(ids[parent]);
        }
        body
    };
    for (name, parent) in [
        ("events-1000", None),
        ("events-1", Some("events-1000")),
        ("events-2", Some("events-1000")),
    ] {
        let body = task(name, parent, &ids);
        let created = server.create(admin, &project, "tasks", body).await;
        ids.insert(name.to_owned(), created["id"].as_str().unwrap().to_owned());
    }
    for n in 11..=15 {
        let name = format!("events-{n}");
        let body = task(&name, Some("events-1"), &ids);
        let created = server.create(admin, &project, "tasks", body).await;
        ids.insert(name, created["id"].as_str().unwrap().to_owned());
    }
    for n in 21..=25 {
        let name = format!("events-{n}");
        let body = task(&name, Some("events-2"), &ids);
        let created = server.create(admin, &project, "tasks", body).await;
        ids.insert(name, created["id"].as_str().unwrap().to_owned());
    }
    let dependency = server
        .create(
            admin,
            &project,
            "dependencies",
            json!({"predecessor_id": ids["events-11"], "successor_id": ids["events-12"]}),
        )
        .await;
    ids.insert(
        "dependencies-1".into(),
        dependency["id"].as_str().unwrap().to_owned(),
    );
    let resource = server
        .create(admin, &project, "resources", json!({"name": "Ann"}))
        .await;
    let assignment = server
        .create(
            admin,
            &project,
            "assignments",
            json!({"task_id": ids["events-11"], "resource_id": resource["id"], "units": 100}),
        )
        .await;
    ids.insert(
        "assignments-1".into(),
        assignment["id"].as_str().unwrap().to_owned(),
    );
    (project, ids)
}

/// Replaces every quoted transcript id by its liveplan id, and `"project":1` by the uuid.
fn map_ids(text: &str, ids: &HashMap<String, String>, project: &str) -> String {
    let mut text = text.replace("\"project\":1", &format!("\"project\":\"{project}\""));
    for (from, to) in ids {
        text = text.replace(&format!("\"{from}\""), &format!("\"{to}\""));
    }
    text
}

fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

/// Checks an answer against the transcript's: same command, same data keys, and for
/// revisions the same revision keys and stores; learns the real ids of the demo server's
/// `undefined-N` ids.
fn check_shape(expected: &Value, actual: &Value, ids: &mut HashMap<String, String>) {
    assert_eq!(actual["command"], expected["command"], "{actual}");
    assert!(actual.get("error").is_none(), "{actual}");
    assert_eq!(keys(&actual["data"]), keys(&expected["data"]), "{actual}");
    match expected["command"].as_str() {
        Some("dataset") => {
            let dataset = &actual["data"]["dataset"];
            for key in [
                "tasksData",
                "dependenciesData",
                "resourcesData",
                "assignmentsData",
                "calendarsData",
                "versionsData",
                "project",
            ] {
                assert!(dataset.get(key).is_some(), "dataset lacks {key}");
            }
        }
        Some("project_change") => {
            let want = &expected["data"]["revisions"][0];
            let got = &actual["data"]["revisions"][0];
            assert_eq!(keys(got), keys(want), "{got}");
            assert!(got["revision"].as_str().unwrap().starts_with("server-"));
            assert!(got["localRevision"].as_str().unwrap().starts_with("local-"));
            assert!(got["client"].as_str().unwrap().starts_with("client-"));
            assert_eq!(keys(&got["changes"]), keys(&want["changes"]), "{got}");
            for (store, section) in want["changes"].as_object().unwrap() {
                for (i, record) in section["added"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let real = &got["changes"][store]["added"][i];
                    assert_eq!(real["$PhantomId"], record["$PhantomId"]);
                    let id = real["id"].as_str().expect("a real id");
                    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
                    assert_eq!(
                        got["changes"][store]["$input"]["added"][i]["id"],
                        real["id"]
                    );
                    if let Some(demo) = record["id"].as_str() {
                        ids.insert(demo.to_owned(), id.to_owned());
                    }
                }
            }
        }
        Some("login") => {
            assert!(
                actual["data"]["client"]
                    .as_str()
                    .unwrap()
                    .starts_with("client-")
            );
        }
        _ => {}
    }
}

#[tokio::test]
async fn replays_the_real_client_transcript() {
    let server = TestServer::start_with(|config| config.demo = true).await;
    let admin = server.login("admin", "admin").await;
    let (project, mut ids) = fixture(&server, &admin).await;
    let root = server.admin().await;
    let (bob_id, _) = server.user(&root, "bob").await;
    server.add_member(&admin, &project, &bob_id, 300).await;

    let mut clients: HashMap<&str, Client> = HashMap::new();
    clients.insert("A", Client::connect(&server.base).await);
    clients.insert("B", Client::connect(&server.base).await);
    let mut answers = 0;
    for line in TRANSCRIPT.lines() {
        let line = line.trim_start();
        let Some((_, rest)) = line.split_once("ms ") else {
            continue;
        };
        let (who, rest) = rest.split_at(1);
        let rest = rest.trim_start();
        let (arrow, body) = if let Some(body) = rest.strip_prefix("=> ") {
            ("=>", body)
        } else if let Some(body) = rest.strip_prefix("<= ") {
            ("<=", body)
        } else {
            continue;
        };
        let client = clients.get_mut(who).expect("client A or B");
        if arrow == "=>" {
            let mut text = map_ids(body, &ids, &project);
            if who == "B" {
                text = text.replace(r#""password":"""#, r#""password":"bob-password""#);
            }
            client.send_text(text).await;
        } else {
            let expected: Value = serde_json::from_str(body).expect("transcript JSON");
            let actual = client.recv().await;
            check_shape(&expected, &actual, &mut ids);
            answers += 1;
        }
    }
    assert_eq!(answers, 24, "every answer of the transcript arrived");

    // Both edits of events-14 committed, in some order; the reset put the fixture back.
    let (_, tasks) = server
        .get(&format!("/api/v1/projects/{project}/tasks"), &admin)
        .await;
    let tasks = tasks.as_array().unwrap().clone();
    let by_id = |id: &str| tasks.iter().find(|t| t["id"] == id).cloned();
    assert!(
        by_id(&ids["events-11"]).is_some(),
        "the reset restored events-11"
    );
    assert_eq!(
        by_id(&ids["events-12"]).unwrap()["name"],
        "Configure firewall"
    );
    assert!(
        by_id(&ids["undefined-101"]).is_none(),
        "the reset removed the new task"
    );
    assert_eq!(tasks.len(), 13);

    // A fresh dataset agrees with the store.
    let a = clients.get_mut("A").unwrap();
    let dataset = a.dataset(json!(project)).await;
    let flat = flatten_tasks(&dataset["tasksData"]);
    assert_eq!(flat.len(), 13);
    let firewall = flat
        .iter()
        .find(|t| t["id"] == ids["events-12"].as_str())
        .unwrap();
    assert_eq!(firewall["name"], "Configure firewall");
    assert_eq!(firewall["parentId"], json!(ids["events-1"]));
    assert_eq!(firewall["startDate"], "2019-01-14T00:00:00Z");
    assert_eq!(dataset["dependenciesData"][0]["type"], 2);
    assert_eq!(dataset["project"]["hoursPerDay"], 8);
}

/// On the server's manual clock (liveplan-testkit's "Time"): the reset comes once the test has
/// moved the clock past `--reset-delay`, a minute here, far longer than the test waits.
#[tokio::test]
async fn an_idle_demo_project_gets_its_demo_data_back() {
    let reset_delay = std::time::Duration::from_secs(60);
    let server = TestServer::start_with(|config| {
        config.demo = true;
        config.bryntum_reset_delay = reset_delay;
        config.clock = Clock::manual();
    })
    .await;
    let admin = server.login("admin", "admin").await;
    let mut client = Client::connect(&server.base).await;
    client.login("admin", "admin").await;
    // The demo projects are the admin's first two: `project: 1` names the first.
    let dataset = client.dataset(json!(1)).await;
    let before = flatten_tasks(&dataset["tasksData"]);
    let first = before[0]["id"].as_str().unwrap().to_owned();
    let echo = client
        .change(
            &json!(1),
            "local-1",
            json!({"tasks": {"updated": [{"id": first, "name": "Changed"}]}}),
        )
        .await;
    assert_eq!(echo["changes"]["tasks"]["updated"][0]["name"], "Changed");
    drop(client);
    let (_, projects) = server.get("/api/v1/projects", &admin).await;
    let mut projects = projects.as_array().unwrap().clone();
    projects.sort_by_key(|p| p["created_at"].as_str().unwrap_or_default().to_owned());
    let project = projects[0]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/projects/{project}/tasks/{first}");
    // The idle watch looks in every few seconds of the server's clock: move it a step at a
    // time, at most ten delays in all, giving the watch real time to run in between.
    let step = std::time::Duration::from_secs(5);
    let mut advanced = std::time::Duration::ZERO;
    let give_up = tokio::time::Instant::now() + liveplan_testkit::GUARD;
    let mut restored = false;
    while tokio::time::Instant::now() < give_up {
        if advanced < 10 * reset_delay {
            server.advance(step);
            advanced += step;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let (_, task) = server.get(&path, &admin).await;
        if task["name"] == before[0]["name"] {
            restored = true;
            break;
        }
    }
    assert!(restored, "the idle reset restored the demo data");
}
