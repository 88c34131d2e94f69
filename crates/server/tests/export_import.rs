//! Moving all data (CONTRACT §9, issue 15): `liveplan export` and `liveplan import` as an
//! operator runs them, SQLite → PostgreSQL → SQLite with every row, version, timestamp, login
//! and attachment kept and seqs going on above the old; what they refuse; and the HTTP import,
//! which shares their code.
//!
//! The round trip needs a PostgreSQL server whatever backend the run is on
//! (`liveplan_testkit::backend::postgres_server_url`); the other tests run on the backend
//! `LIVEPLAN_TEST_DATABASE_URL` picks.

use liveplan_testkit::backend::{Backend, postgres_server_url};
use liveplan_testkit::*;
use proto::StreamKey;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::{Command, Output};
use store::{MembershipRow, Page, ProjectRow, RecordRow, Referrer, Store, UserRow};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_liveplan");

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

/// Runs the binary and expects success; returns its stdout as JSON (the summary).
fn liveplan_ok(backend: &Backend, args: &[&str]) -> Value {
    let output = liveplan(backend, args);
    assert!(
        output.status.success(),
        "liveplan {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("a JSON summary on stdout")
}

/// Runs the binary and expects a clean failure: exit 1, no panic, `needle` in the message.
fn liveplan_refused(backend: &Backend, args: &[&str], needle: &str) {
    let output = liveplan(backend, args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "liveplan {args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
}

/// Everything the store holds that an export moves, row by row.
#[derive(Debug, PartialEq)]
struct Dump {
    users: Vec<UserRow>,
    projects: Vec<ProjectRow>,
    members: Vec<MembershipRow>,
    records: Vec<RecordRow>,
    refs: Vec<(Uuid, Referrer)>,
    /// Every stream's last seq.
    streams: BTreeMap<String, i64>,
}

async fn dump(store: &dyn Store) -> Dump {
    let mut ops = store.snapshot().await.unwrap();
    let users = ops.list_users().await.unwrap();
    let projects = ops.list_projects().await.unwrap();
    let mut streams = BTreeMap::new();
    let mut keys = vec![StreamKey::System];
    keys.extend(users.iter().map(|u| StreamKey::User(u.id)));
    keys.extend(projects.iter().map(|p| StreamKey::Project(p.id)));
    for key in keys {
        streams.insert(key.to_text(), ops.latest_seq(key).await.unwrap());
    }
    let (mut members, mut records, mut refs) = (Vec::new(), Vec::new(), Vec::new());
    for project in &projects {
        members.extend(ops.list_memberships(project.id).await.unwrap());
        for collection in domain::collections::ALL {
            for record in ops
                .list_records(project.id, collection.name, Page::ALL)
                .await
                .unwrap()
            {
                for referrer in ops.list_referrers(record.id).await.unwrap() {
                    refs.push((record.id, referrer));
                }
                records.push(record);
            }
        }
    }
    refs.sort_by_key(|(id, r)| (*id, r.record_id, r.field.clone()));
    Dump {
        users,
        projects,
        members,
        records,
        refs,
        streams,
    }
}

/// [`dump`] of a stopped server's store, opened as the CLI opens it.
async fn dump_offline(backend: &Backend) -> Dump {
    let store = liveplan_server::backends::open_store(backend.database_url(), backend.data_dir())
        .await
        .expect("the store opens");
    let dumped = dump(&*store).await;
    store.close().await;
    dumped
}

/// `to` holds exactly `from`'s rows, and every stream of `from` goes on from the same seq,
/// but the system stream, which holds `imports` `database_wiped` events on top.
fn assert_moved(from: &Dump, to: &Dump, imports: i64) {
    assert_eq!(to.users, from.users, "users");
    assert_eq!(to.projects, from.projects, "projects");
    assert_eq!(to.members, from.members, "members");
    assert_eq!(to.records, from.records, "records");
    assert_eq!(to.refs, from.refs, "references");
    for (stream, seq) in &from.streams {
        let expected = if stream == "system" {
            seq + imports
        } else {
            *seq
        };
        assert_eq!(to.streams.get(stream), Some(&expected), "{stream}");
    }
}

const FILE_BYTES: &[u8] = b"\x00\xffbinary \xe2\x9c\x93 bytes\n\x01\x02";

async fn upload(server: &TestServer, token: &str, project: &str, task: &str) -> String {
    let form = reqwest::multipart::Form::new()
        .text("task_id", task.to_owned())
        .part(
            "file",
            reqwest::multipart::Part::bytes(FILE_BYTES.to_vec())
                .file_name("plan.bin")
                .mime_str("application/x-plan")
                .unwrap(),
        );
    let response = server
        .http
        .post(server.url(&format!("/api/v1/projects/{project}/attachments")))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

async fn download(server: &TestServer, token: &str, project: &str, id: &str) -> Vec<u8> {
    let response = server
        .http
        .get(server.url(&format!(
            "/api/v1/projects/{project}/attachments/{id}/content"
        )))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.bytes().await.unwrap().to_vec()
}

async fn login_status(server: &TestServer, login: &str, password: &str) -> StatusCode {
    let (status, _) = server
        .call(
            reqwest::Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({ "email": login, "password": password })),
        )
        .await;
    status
}

/// What the round trip checks after each hop, besides the rows.
struct Built {
    project: String,
    attachment: String,
    deactivated: &'static str,
}

/// Users (one deactivated, one renamed), two projects (one renamed), members with changed
/// roles, records in several collections at several versions, references and an attachment:
/// all through the HTTP API.
async fn build(server: &TestServer) -> Built {
    let admin = server.admin.clone();
    let (alice, _) = server.user(&admin, "alice").await;
    let (bob, bob_token) = server.user(&admin, "bob").await;
    let (carol, _) = server.user(&admin, "carol").await;
    server
        .ok(
            reqwest::Method::PATCH,
            &bob_token,
            "/api/v1/users/me",
            json!({ "display_name": "Bob B." }),
        )
        .await;
    let project = server.project(&admin, "Moved").await;
    server
        .ok(
            reqwest::Method::PATCH,
            &admin,
            &format!("/api/v1/projects/{project}"),
            json!({ "name": "Moved twice", "key": "MOVE", "client_field": [1, "x"] }),
        )
        .await;
    let other = server.project(&admin, "Other").await;
    let alice_member = server.add_member(&admin, &project, &alice, 100).await;
    server
        .ok(
            reqwest::Method::PATCH,
            &admin,
            &format!("/api/v1/projects/{project}/members/{alice_member}"),
            json!({ "role": 300 }),
        )
        .await;
    server.add_member(&admin, &project, &bob, 1).await;
    server.add_member(&admin, &other, &carol, 200).await;
    server
        .ok(
            reqwest::Method::PATCH,
            &admin,
            &format!("/api/v1/users/{carol}"),
            json!({ "is_active": false }),
        )
        .await;
    let a = server
        .create(
            &admin,
            &project,
            "tasks",
            json!({ "name": "A", "duration": 3, "bryntum_cls": "kept" }),
        )
        .await;
    let b = server
        .create(
            &admin,
            &project,
            "tasks",
            json!({ "name": "B", "parent_id": a["id"] }),
        )
        .await;
    for n in 0..2 {
        server
            .ok(
                reqwest::Method::PATCH,
                &admin,
                &format!(
                    "/api/v1/projects/{project}/tasks/{}",
                    b["id"].as_str().unwrap()
                ),
                json!({ "duration": 4 + n, "percent_complete": 10 * n }),
            )
            .await;
    }
    server
        .create(
            &admin,
            &project,
            "dependencies",
            json!({ "predecessor_id": a["id"], "successor_id": b["id"], "lag": 1 }),
        )
        .await;
    let resource = server
        .create(&admin, &project, "resources", json!({ "name": "R" }))
        .await;
    server
        .create(
            &admin,
            &project,
            "assignments",
            json!({ "task_id": a["id"], "resource_id": resource["id"], "units": 50 }),
        )
        .await;
    server
        .create(
            &admin,
            &project,
            "comments",
            json!({ "task_id": b["id"], "body": "ü ✓" }),
        )
        .await;
    server
        .create(&admin, &other, "tasks", json!({ "name": "elsewhere" }))
        .await;
    let attachment = upload(server, &admin, &project, a["id"].as_str().unwrap()).await;
    Built {
        project,
        attachment,
        deactivated: "carol@example.test",
    }
}

/// What a server on the moved data must do: the old passwords sign in, the deactivated
/// account stays out, the attachment has its bytes, and the next event of the project goes on
/// right above the old seqs.
async fn check_served(backend: Backend, built: &Built, moved: &Dump) -> Backend {
    let server = TestServer::start_on_backend(backend, relax_rates).await;
    assert_eq!(
        login_status(&server, "alice", "alice-password").await,
        StatusCode::OK
    );
    assert_eq!(
        login_status(&server, built.deactivated, "carol-password").await,
        StatusCode::UNAUTHORIZED,
        "a deactivated user stays locked out"
    );
    let admin = server.admin.clone();
    assert_eq!(
        download(&server, &admin, &built.project, &built.attachment).await,
        FILE_BYTES
    );
    let old = moved.streams[&format!("project:{}", built.project)];
    server
        .create(&admin, &built.project, "tasks", json!({ "name": "after" }))
        .await;
    let log = server.log(&admin, &built.project, 0).await;
    let seqs: Vec<i64> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [old + 1], "the log starts afresh above the old seqs");
    let mut server = server;
    server.stop().await;
    server.into_backend()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_postgres_to_sqlite_keeps_everything() {
    let files = tempfile::tempdir().unwrap();
    let first = files.path().join("from-sqlite.json");
    let second = files.path().join("from-postgres.json");
    let first_arg = first.to_str().unwrap();
    let second_arg = second.to_str().unwrap();

    let mut source = TestServer::start_on_backend(Backend::sqlite(), relax_rates).await;
    let built = build(&source).await;
    // Exported while the server runs: one snapshot.
    let summary = liveplan_ok(source.backend(), &["export", "--out", first_arg]);
    assert_eq!(
        (
            &summary["users"],
            &summary["projects"],
            &summary["attachments"]
        ),
        (&json!(4), &json!(2), &json!(1)),
        "{summary}"
    );
    source.stop().await;
    let original = dump_offline(source.backend()).await;
    assert!(original.members.iter().any(|m| m.version == 2));
    assert!(original.records.iter().any(|r| r.version == 3));
    assert!(original.users.iter().any(|u| !u.is_active));

    let postgres = Backend::postgres(&postgres_server_url());
    let summary = liveplan_ok(&postgres, &["import", "--in", first_arg]);
    assert_eq!(
        (
            &summary["users"],
            &summary["records"],
            &summary["attachments"]
        ),
        (&json!(4), &json!(original.records.len()), &json!(1)),
        "{summary}"
    );
    let on_postgres = dump_offline(&postgres).await;
    assert_moved(&original, &on_postgres, 1);
    let postgres = check_served(postgres, &built, &on_postgres).await;

    let written = dump_offline(&postgres).await;
    liveplan_ok(&postgres, &["export", "--out", second_arg]);
    let sqlite = Backend::sqlite();
    liveplan_ok(&sqlite, &["import", "--in", second_arg]);
    let back_on_sqlite = dump_offline(&sqlite).await;
    assert_moved(&written, &back_on_sqlite, 1);
    assert_eq!(back_on_sqlite.records.len(), original.records.len() + 1);
    check_served(sqlite, &built, &back_on_sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_refuses_bad_files_and_a_database_with_data() {
    let files = tempfile::tempdir().unwrap();
    let path = |name: &str| files.path().join(name).to_str().unwrap().to_owned();
    let mut source = TestServer::start_relaxed().await;
    let built = build(&source).await;
    source.stop().await;
    let good = path("good.json");
    liveplan_ok(source.backend(), &["export", "--out", &good]);
    let text = std::fs::read(&good).unwrap();
    let empty = Backend::from_env();

    liveplan_refused(
        &empty,
        &["import", "--in", &path("missing.json")],
        "cannot read",
    );
    let truncated = path("truncated.json");
    std::fs::write(&truncated, &text[..text.len() / 2]).unwrap();
    liveplan_refused(
        &empty,
        &["import", "--in", &truncated],
        "is not a liveplan export",
    );
    let future = path("future.json");
    std::fs::write(
        &future,
        json!({ "format": "liveplan-export-2", "everything": { "new": true } }).to_string(),
    )
    .unwrap();
    liveplan_refused(&empty, &["import", "--in", &future], "liveplan-export-2");
    let mut document: Value = serde_json::from_slice(&text).unwrap();
    document["attachments"][0]["content"] = json!("not base64 !");
    let bad_bytes = path("bad-bytes.json");
    std::fs::write(&bad_bytes, document.to_string()).unwrap();
    liveplan_refused(&empty, &["import", "--in", &bad_bytes], "not base64");
    let nothing = dump_offline(&empty).await;
    assert!(nothing.users.is_empty() && nothing.projects.is_empty());
    assert!(
        !empty
            .data_dir()
            .join("attachments")
            .join(&built.project)
            .join(&built.attachment)
            .exists(),
        "no bytes of a refused import stay"
    );

    // A database with data is replaced only when asked.
    let before = dump_offline(source.backend()).await;
    let other = path("other.json");
    std::fs::write(
        &other,
        json!({ "format": "liveplan-export-1", "users": [], "projects": [] }).to_string(),
    )
    .unwrap();
    liveplan_refused(source.backend(), &["import", "--in", &other], "--replace");
    assert_eq!(
        dump_offline(source.backend()).await,
        before,
        "nothing changed"
    );
    let summary = liveplan_ok(source.backend(), &["import", "--in", &other, "--replace"]);
    assert_eq!(
        (&summary["users"], &summary["projects"]),
        (&json!(0), &json!(0))
    );
    let replaced = dump_offline(source.backend()).await;
    assert!(replaced.users.is_empty() && replaced.projects.is_empty());
    let system = before.streams["system"];
    assert_eq!(replaced.streams["system"], system + 1, "seqs never go back");
    liveplan_ok(source.backend(), &["import", "--in", &good, "--replace"]);
    assert_moved(&before, &dump_offline(source.backend()).await, 2);
}

/// The HTTP import keeps members' versions and timestamps and answers 200 to the administrator
/// whose account is in the document, on the same server and on another one where their email
/// belongs to another account (it answered 409 there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_import_as_the_same_administrator_is_faithful() {
    let source = TestServer::start_relaxed().await;
    let built = build(&source).await;
    let admin = source.admin.clone();
    let (status, export) = source.get("/api/v1/admin/export", &admin).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(export["attachments"].as_array().unwrap().len(), 1);
    let members_path = format!("/api/v1/projects/{}/members", built.project);
    let (_, members_before) = source.get(&members_path, &admin).await;
    assert!(
        members_before
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["version"] == 2),
        "{members_before}"
    );
    let before = dump(&*source.state().domain.store).await;

    let (status, summary) = source
        .post("/api/v1/admin/import", &admin, export.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert_eq!(summary["attachments"], 1);
    let (status, members_after) = source.get(&members_path, &admin).await;
    assert_eq!(status, StatusCode::OK, "the importer's session lives on");
    assert_eq!(members_after, members_before);
    let after = dump(&*source.state().domain.store).await;
    assert_moved(&before, &after, 1);

    // Another server, whose administrator has the same email but another id.
    let target = TestServer::start_relaxed().await;
    let target_admin = target.admin.clone();
    let (_, me) = target.get("/api/v1/users/me", &target_admin).await;
    let ids: Vec<&Value> = export["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| &u["id"])
        .collect();
    assert!(!ids.contains(&&me["id"]), "another account, same email");
    let stray = target.project(&target_admin, "Replaced").await;
    let (_, gone_token) = target.user(&target_admin, "gone").await;
    let mut gone_stream = target.sse(&gone_token, "/api/v1/users/events", None).await;
    assert_eq!(
        gone_stream.data().await.unwrap().json()["type"],
        "connected"
    );
    let (status, summary) = target
        .post("/api/v1/admin/import", &target_admin, export)
        .await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    // An account the document does not hold is gone, and so is its live stream.
    gone_stream.ended().await;
    let (status, _) = target.get("/api/v1/users/me", &gone_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        login_status(&target, "gone", "gone-password").await,
        StatusCode::UNAUTHORIZED
    );
    // The document's account with that email took the old one's place: sign in again.
    let (status, _) = target.get("/api/v1/users/me", &target_admin).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let admin = target.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (status, _) = target
        .get(&format!("/api/v1/projects/{stray}"), &admin)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, members) = target.get(&members_path, &admin).await;
    assert_eq!(members, members_before);
    let moved = dump(&*target.state().domain.store).await;
    assert_eq!(moved.users, after.users);
    assert_eq!(moved.records, after.records);
    assert_eq!(
        download(&target, &admin, &built.project, &built.attachment).await,
        FILE_BYTES,
        "the bytes came with the document"
    );
    assert_eq!(
        login_status(&target, built.deactivated, "carol-password").await,
        StatusCode::UNAUTHORIZED
    );
}

/// A Yjs update that puts element `key` (a rectangle at `x`) on a board, as a client would.
fn element_update(key: &str, x: i64) -> Vec<u8> {
    use yrs::{Map, MapPrelim, Transact};
    let doc = yrs::Doc::new();
    let elements = doc.get_or_insert_map("elements");
    let mut txn = doc.transact_mut();
    elements.insert(
        &mut txn,
        key,
        MapPrelim::from([
            ("id", yrs::Any::from(key)),
            ("type", yrs::Any::from("rect")),
            ("x", yrs::Any::from(x as f64)),
            ("z", yrs::Any::from("a0")),
        ]),
    );
    txn.encode_update_v1()
}

async fn board_elements(
    server: &TestServer,
    token: &str,
    project: &str,
    board: &str,
) -> Vec<Value> {
    let (status, content) = server
        .get(
            &format!("/api/v1/projects/{project}/whiteboards/{board}/content"),
            token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{content}");
    content["elements"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whiteboards_move_with_their_documents_and_snapshots() {
    let source = TestServer::start_relaxed().await;
    let admin = source.admin.clone();
    let project = source.project(&admin, "Canvas").await;
    let board = source
        .create(&admin, &project, "whiteboards", json!({"name": "plan"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let board_id = Uuid::parse_str(&board).unwrap();
    // Two updates as clients store them, a snapshot between them.
    let store = source.state().domain.store.clone();
    let append = |update: Vec<u8>| {
        let store = store.clone();
        async move {
            let mut tx = store.write().await.unwrap();
            tx.append_whiteboard_update(board_id, &update, store::now())
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    };
    append(element_update("first", 1)).await;
    let (status, snapshot) = source
        .post(
            &format!("/api/v1/projects/{project}/whiteboards/{board}/snapshots"),
            &admin,
            json!({"name": "only the first"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{snapshot}");
    append(element_update("second", 2)).await;
    let elements = board_elements(&source, &admin, &project, &board).await;
    assert_eq!(elements.len(), 2, "{elements:?}");

    let (status, export) = source.get("/api/v1/admin/export", &admin).await;
    assert_eq!(status, StatusCode::OK);
    let carried = &export["projects"][0]["whiteboards"];
    assert_eq!(carried[0]["id"], board.as_str(), "{carried}");
    assert_eq!(carried[0]["updates"].as_array().unwrap().len(), 2);
    assert_eq!(carried[0]["snapshots"][0]["name"], "only the first");

    // Into another server: the same document and its versions, and a restore still works.
    let target = TestServer::start_relaxed().await;
    let (status, summary) = target
        .post("/api/v1/admin/import", &target.admin, export.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert_eq!(summary["whiteboards"], 1);
    let admin = target.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(
        board_elements(&target, &admin, &project, &board).await,
        elements
    );
    let (_, snapshots) = target
        .get(
            &format!("/api/v1/projects/{project}/whiteboards/{board}/snapshots"),
            &admin,
        )
        .await;
    assert_eq!(snapshots[0]["id"], snapshot["id"], "{snapshots}");
    let (status, _) = target
        .post(
            &format!(
                "/api/v1/projects/{project}/whiteboards/{board}/snapshots/{}/restore",
                snapshot["id"].as_str().unwrap()
            ),
            &admin,
            json!({}),
        )
        .await;
    assert!(status.is_success(), "{status}");
    let restored = board_elements(&target, &admin, &project, &board).await;
    assert_eq!(restored.len(), 1, "{restored:?}");
    assert_eq!(restored[0]["id"], "first");

    // A document whose board data is wrong is refused whole, and changes nothing.
    let before = dump(&*target.state().domain.store).await;
    let mut bad = export.clone();
    bad["projects"][0]["whiteboards"][0]["updates"][0] = json!("not base64!");
    let mut elsewhere = export.clone();
    elsewhere["projects"][0]["whiteboards"][0]["id"] = json!(project);
    let mut twice = export.clone();
    let again = twice["projects"][0]["whiteboards"][0].clone();
    twice["projects"][0]["whiteboards"]
        .as_array_mut()
        .unwrap()
        .push(again);
    for document in [bad, elsewhere, twice] {
        let (status, body) = target.post("/api/v1/admin/import", &admin, document).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("whiteboard"),
            "{body}"
        );
    }
    assert_eq!(
        dump(&*target.state().domain.store).await.records,
        before.records
    );
}
