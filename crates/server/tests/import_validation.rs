//! Issue 20, defect 3: an import document is checked whole, with the API's rules, before
//! anything is written. Each kind of bad document is refused with 422 `validation_failed`,
//! a `details.problems` entry saying where, which record and which field, and the database
//! exactly as it was (the testkit's fingerprint); the CLI refuses the same way. A valid
//! export still imports.

use liveplan_testkit::backend::Backend;
use liveplan_testkit::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::{Command, Output};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_liveplan");

/// A project with a calendar, three tasks (B under A), a link A -> C, a resource assigned to C,
/// a comment, a sprint and a second member; returns the server's export of it.
async fn exported(server: &TestServer) -> Value {
    let admin = &server.admin;
    let project = server.project(admin, "Checked").await;
    let calendar = server
        .create(admin, &project, "calendars", json!({ "name": "Std" }))
        .await;
    let (status, body) = server
        .patch(
            &format!("/api/v1/projects/{project}"),
            admin,
            json!({ "calendar_id": calendar["id"], "key": "CHK" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let a = server
        .create(admin, &project, "tasks", json!({ "name": "A" }))
        .await;
    server
        .create(
            admin,
            &project,
            "tasks",
            json!({ "name": "B", "parent_id": a["id"] }),
        )
        .await;
    let c = server
        .create(admin, &project, "tasks", json!({ "name": "C" }))
        .await;
    server
        .create(
            admin,
            &project,
            "dependencies",
            json!({ "predecessor_id": a["id"], "successor_id": c["id"] }),
        )
        .await;
    let resource = server
        .create(admin, &project, "resources", json!({ "name": "Crane" }))
        .await;
    server
        .create(
            admin,
            &project,
            "assignments",
            json!({ "task_id": c["id"], "resource_id": resource["id"] }),
        )
        .await;
    server
        .create(
            admin,
            &project,
            "comments",
            json!({ "task_id": a["id"], "body": "first" }),
        )
        .await;
    let (user_id, _) = server.user(admin, "bob").await;
    server.add_member(admin, &project, &user_id, 200).await;
    let (status, export) = server.get("/api/v1/admin/export", admin).await;
    assert_eq!(status, StatusCode::OK, "{export}");
    export
}

/// The records of the document's first project.
fn records(document: &mut Value) -> &mut Vec<Value> {
    document["projects"][0]["records"].as_array_mut().unwrap()
}

/// The index, in the first project's records, of the `collection` record whose `key` is `value`.
fn index_of(document: &Value, collection: &str, key: &str, value: &str) -> usize {
    document["projects"][0]["records"]
        .as_array()
        .unwrap()
        .iter()
        .position(|r| r["collection"] == collection && r["record"][key] == value)
        .unwrap_or_else(|| panic!("no {collection} with {key} {value}"))
}

fn record_id(document: &Value, index: usize) -> Value {
    document["projects"][0]["records"][index]["record"]["id"].clone()
}

fn task_id(document: &Value, name: &str) -> Value {
    record_id(document, index_of(document, "tasks", "name", name))
}

fn new_record(collection: &str, body: Value) -> Value {
    let mut body = body;
    body["id"] = json!(Uuid::now_v7());
    json!({ "collection": collection, "record": body })
}

/// POSTs `document` and expects the refusal: 422, a problem naming `field` (and `at`, when
/// given) whose reason contains `needle`, and nothing changed. Returns the details.
async fn refused(
    server: &TestServer,
    document: &Value,
    field: &str,
    at: Option<&str>,
    needle: &str,
) -> Value {
    let before = server.fingerprint().await;
    let (status, body) = server
        .post("/api/v1/admin/import", &server.admin, document.clone())
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    let details = &body["error"]["details"];
    let problems = details["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("a list of problems ({field}): {body}"));
    assert!(
        problems.iter().any(|p| p["field"] == field
            && at.is_none_or(|at| p["at"] == at)
            && p["reason"].as_str().is_some_and(|r| r.contains(needle))),
        "no problem with {field} at {at:?} saying {needle:?}: {body}"
    );
    assert!(
        problems.len() <= 50 && details["problem_count"].as_u64() >= Some(problems.len() as u64)
    );
    assert_eq!(
        server.fingerprint().await,
        before,
        "nothing changed: {body}"
    );
    details.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_bad_document_is_refused_whole_with_nothing_changed() {
    let server = TestServer::start_relaxed().await;
    let good = exported(&server).await;

    // Memberships: a user the document lacks, a second membership of one user, no Owner.
    let mut doc = good.clone();
    let ghost = Uuid::now_v7();
    doc["projects"][0]["members"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "id": Uuid::now_v7(), "user_id": ghost, "role": 200 }));
    let details = refused(
        &server,
        &doc,
        "user_id",
        Some("projects[0].members[2]"),
        "no user",
    )
    .await;
    assert!(details["problems"][0]["id"].is_string(), "{details}");
    let mut doc = good.clone();
    let bob = doc["projects"][0]["members"][1]["user_id"].clone();
    doc["projects"][0]["members"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "id": Uuid::now_v7(), "user_id": bob, "role": 100 }));
    refused(&server, &doc, "user_id", None, "already has a membership").await;
    let mut doc = good.clone();
    for member in doc["projects"][0]["members"].as_array_mut().unwrap() {
        member["role"] = json!(300);
    }
    refused(&server, &doc, "members", Some("projects[0]"), "Owner").await;

    // Users: emails and usernames are unique case-insensitively; ids are unique.
    let mut doc = good.clone();
    let mut twin = doc["users"][1].clone();
    twin["id"] = json!(Uuid::now_v7());
    twin["email"] = json!(twin["email"].as_str().unwrap().to_uppercase());
    twin["username"] = json!("someone-else");
    doc["users"].as_array_mut().unwrap().push(twin.clone());
    refused(&server, &doc, "email", Some("users[2]"), "another user").await;
    let mut doc = good.clone();
    twin["email"] = json!("other@example.test");
    twin["username"] = json!(doc["users"][1]["username"].as_str().unwrap().to_uppercase());
    doc["users"].as_array_mut().unwrap().push(twin.clone());
    refused(&server, &doc, "username", Some("users[2]"), "another user").await;
    let mut doc = good.clone();
    twin["id"] = doc["users"][1]["id"].clone();
    twin["username"] = json!("third");
    doc["users"].as_array_mut().unwrap().push(twin);
    refused(&server, &doc, "id", Some("users[2]"), "another user").await;

    // References to what is not in the project.
    let mut doc = good.clone();
    let link = index_of(
        &doc,
        "dependencies",
        "successor_id",
        task_id(&doc, "C").as_str().unwrap(),
    );
    records(&mut doc)[link]["record"]["predecessor_id"] = json!(Uuid::now_v7());
    let at = format!("projects[0].records[{link}]");
    let details = refused(
        &server,
        &doc,
        "predecessor_id",
        Some(&at),
        "no tasks record",
    )
    .await;
    assert_eq!(details["problems"][0]["collection"], "dependencies");
    assert_eq!(details["problems"][0]["id"], record_id(&doc, link));
    let mut doc = good.clone();
    let b = index_of(&doc, "tasks", "name", "B");
    records(&mut doc)[b]["record"]["parent_id"] = json!(Uuid::now_v7());
    refused(&server, &doc, "parent_id", None, "no tasks record").await;
    let mut doc = good.clone();
    let assignment = index_of(
        &doc,
        "assignments",
        "task_id",
        task_id(&doc, "C").as_str().unwrap(),
    );
    records(&mut doc)[assignment]["record"]["resource_id"] = json!(Uuid::now_v7());
    refused(&server, &doc, "resource_id", None, "no resources record").await;
    let mut doc = good.clone();
    let comment = index_of(&doc, "comments", "body", "first");
    records(&mut doc)[comment]["record"]["task_id"] = json!(Uuid::now_v7());
    refused(&server, &doc, "task_id", None, "no tasks record").await;
    let mut doc = good.clone();
    let calendar = index_of(&doc, "calendars", "name", "Std");
    doc["projects"][0]["project"]["calendar_id"] = json!(Uuid::now_v7());
    refused(
        &server,
        &doc,
        "calendar_id",
        Some("projects[0]"),
        "no calendar",
    )
    .await;
    let mut doc = good.clone();
    let a = task_id(&doc, "A");
    records(&mut doc).push(new_record(
        "tasks",
        json!({ "name": "D", "calendar_id": a }),
    ));
    refused(&server, &doc, "calendar_id", None, "no calendars record").await;
    let mut doc = good.clone();
    let bob = doc["users"][1]["id"].clone();
    records(&mut doc).push(new_record(
        "tasks",
        json!({ "name": "E", "assignee_id": bob }),
    ));
    records(&mut doc).push(new_record(
        "tasks",
        json!({ "name": "F", "assignee_id": Uuid::now_v7() }),
    ));
    let details = refused(&server, &doc, "assignee_id", None, "no user").await;
    assert_eq!(details["problem_count"], 1, "bob is a user: {details}");

    // The task tree: a task under itself, and a loop through two tasks.
    let mut doc = good.clone();
    let a = index_of(&doc, "tasks", "name", "A");
    let a_id = record_id(&doc, a);
    records(&mut doc)[a]["record"]["parent_id"] = a_id;
    refused(&server, &doc, "parent_id", None, "itself").await;
    let mut doc = good.clone();
    let b_id = task_id(&doc, "B");
    records(&mut doc)[a]["record"]["parent_id"] = b_id.clone();
    let details = refused(&server, &doc, "parent_id", None, "loop").await;
    let problem = &details["problems"][0];
    assert_eq!(
        problem["details"]["loop"].as_array().unwrap().len(),
        2,
        "{details}"
    );

    // Dependencies: on itself, twice, and round in a cycle.
    let mut doc = good.clone();
    let (a_id, c_id) = (task_id(&doc, "A"), task_id(&doc, "C"));
    records(&mut doc).push(new_record(
        "dependencies",
        json!({ "predecessor_id": a_id, "successor_id": a_id }),
    ));
    refused(&server, &doc, "successor_id", None, "itself").await;
    let mut doc = good.clone();
    records(&mut doc).push(new_record(
        "dependencies",
        json!({ "predecessor_id": a_id, "successor_id": c_id }),
    ));
    refused(&server, &doc, "successor_id", None, "already linked").await;
    let mut doc = good.clone();
    records(&mut doc).push(new_record(
        "dependencies",
        json!({ "predecessor_id": c_id, "successor_id": a_id }),
    ));
    let details = refused(&server, &doc, "successor_id", None, "cycle").await;
    let cycle = details["problems"][0]["details"]["cycle"]
        .as_array()
        .unwrap();
    assert!(cycle.contains(&a_id) && cycle.contains(&c_id), "{details}");

    // Uniqueness of records and of links between them.
    let mut doc = good.clone();
    let copy = records(&mut doc)[calendar].clone();
    records(&mut doc).push(copy);
    refused(&server, &doc, "id", None, "another record").await;
    let mut doc = good.clone();
    let resource = records(&mut doc)[assignment]["record"]["resource_id"].clone();
    records(&mut doc).push(new_record(
        "assignments",
        json!({ "task_id": c_id, "resource_id": resource }),
    ));
    refused(&server, &doc, "resource_id", None, "already assigned").await;

    // Field validation from the collection table, defect 4's rule included.
    let mut doc = good.clone();
    records(&mut doc)[calendar]["record"]["working_days"] = json!([]);
    refused(
        &server,
        &doc,
        "working_days",
        None,
        "at least one working day",
    )
    .await;
    let mut doc = good.clone();
    records(&mut doc)[a]["record"]["name"] = json!("");
    refused(&server, &doc, "name", None, "characters").await;
    let mut doc = good.clone();
    records(&mut doc).push(new_record("nonsense", json!({})));
    refused(&server, &doc, "collection", None, "unknown collection").await;
    let mut doc = good.clone();
    doc["projects"][0]["project"]["key"] = json!("not a key");
    refused(&server, &doc, "key", Some("projects[0]"), "letters").await;

    // Many problems: each is found, the list is bounded, the count is whole.
    let mut doc = good.clone();
    for _ in 0..70 {
        records(&mut doc).push(new_record(
            "dependencies",
            json!({ "predecessor_id": Uuid::now_v7(), "successor_id": c_id }),
        ));
    }
    let details = refused(&server, &doc, "predecessor_id", None, "no tasks record").await;
    assert_eq!(details["problems"].as_array().unwrap().len(), 50);
    assert_eq!(details["problem_count"], 70);
    assert_eq!(details["truncated"], true);

    // The document as exported still imports, and then the schedule is computable.
    let (status, body) = server
        .post("/api/v1/admin/import", &server.admin, good.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let admin = server.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let project = good["projects"][0]["project"]["id"].as_str().unwrap();
    let (status, body) = server
        .get(&format!("/api/v1/projects/{project}/schedule"), &admin)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// `liveplan import` shares the checks: exit 1, the problem in its message, nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_refuses_a_bad_document_and_writes_nothing() {
    let server = TestServer::start_relaxed().await;
    let mut doc = exported(&server).await;
    let ghost = Uuid::now_v7();
    doc["projects"][0]["members"][1]["user_id"] = json!(ghost);
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("bad.json");
    std::fs::write(&file, doc.to_string()).unwrap();

    let empty = Backend::from_env();
    let output = liveplan(&empty, &["import", "--in", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("projects[0].members[1] user_id") && stderr.contains(&ghost.to_string()),
        "{stderr}"
    );
    let store = liveplan_server::backends::open_store(empty.database_url(), empty.data_dir())
        .await
        .expect("the store opens");
    let mut ops = store.snapshot().await.unwrap();
    assert!(
        ops.list_users().await.unwrap().is_empty(),
        "no user written"
    );
    assert!(
        ops.list_projects().await.unwrap().is_empty(),
        "no project written"
    );
    drop(ops);
    store.close().await;
}

/// The binary on `backend`'s store, with `args`; bounded like every wait of the tests.
fn liveplan(backend: &Backend, args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .arg("--data-dir")
        .arg(backend.data_dir())
        .env_remove("DATABASE_URL")
        .env_remove("LIVEPLAN_DATA_DIR");
    if let Some(url) = backend.database_url() {
        command.arg("--database-url").arg(url);
    }
    let child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn liveplan");
    let (done, output) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    output
        .recv_timeout(GUARD * 2)
        .expect("liveplan finishes")
        .expect("liveplan ran")
}
