//! The project collections through HTTP: every collection's CRUD, unknown fields kept,
//! optimistic concurrency, cascades, cycles, sprint and baseline actions, attachments.

use liveplan_testkit::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn id(value: &Value) -> &str {
    value["id"].as_str().unwrap()
}

#[tokio::test]
async fn every_collection_lists_creates_gets_patches_and_deletes() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let project = server.project(&admin, "All").await;
    let task = server
        .create(&admin, &project, "tasks", json!({ "name": "T" }))
        .await;
    let resource = server
        .create(&admin, &project, "resources", json!({ "name": "R" }))
        .await;
    let other = server
        .create(&admin, &project, "tasks", json!({ "name": "U" }))
        .await;
    let samples: Vec<(&str, Value, Value)> = vec![
        (
            "tasks",
            json!({ "name": "x", "duration": 3, "start_date": "2026-03-02" }),
            json!({ "duration": 4 }),
        ),
        (
            "dependencies",
            json!({ "predecessor_id": id(&task), "successor_id": id(&other), "type": "SS", "lag": -1 }),
            json!({ "lag": 2 }),
        ),
        (
            "resources",
            json!({ "name": "Res" }),
            json!({ "max_units": 50 }),
        ),
        (
            "assignments",
            json!({ "task_id": id(&other), "resource_id": id(&resource) }),
            json!({ "units": 50 }),
        ),
        (
            "calendars",
            json!({ "name": "Cal", "exceptions": [{ "start": "2026-12-24", "end": "2026-12-26" }] }),
            json!({ "working_days": [1, 2, 3, 4] }),
        ),
        (
            "risks",
            json!({ "title": "Rain", "probability": 30 }),
            json!({ "impact": 5 }),
        ),
        (
            "sprints",
            json!({ "name": "S1", "start_date": "2026-03-02", "end_date": "2026-03-13" }),
            json!({ "goal": "ship" }),
        ),
        ("baselines", json!({ "name": "B1" }), Value::Null),
        (
            "labels",
            json!({ "name": "bug", "color": "#f00" }),
            json!({ "color": "#0f0" }),
        ),
        (
            "columns",
            json!({ "name": "Doing", "status": "doing", "position": 1 }),
            json!({ "wip_limit": 3 }),
        ),
        (
            "comments",
            json!({ "task_id": id(&task), "body": "hello" }),
            json!({ "body": "edited" }),
        ),
        (
            "whiteboards",
            json!({ "name": "Ideas" }),
            json!({ "description": "wall" }),
        ),
        (
            "versions",
            json!({ "name": "v1", "content": { "tasks": [] } }),
            Value::Null,
        ),
    ];
    for (collection, create, patch) in samples {
        let base = format!("/api/v1/projects/{project}/{collection}");
        let mut body = create.clone();
        body["client_extra"] = json!({ "kept": [1, 2] });
        let created = server.create(&admin, &project, collection, body).await;
        assert_eq!(created["version"], 1, "{collection}");
        assert_eq!(
            created["client_extra"],
            json!({ "kept": [1, 2] }),
            "{collection} keeps unknown fields"
        );
        let (status, listed) = server.get(&base, &admin).await;
        assert_eq!(status, 200);
        assert!(
            listed
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["id"] == created["id"]),
            "{collection} lists it"
        );
        let one = format!("{base}/{}", id(&created));
        let (status, got) = server.get(&one, &admin).await;
        assert_eq!((status, &got), (StatusCode::OK, &created), "{collection}");
        if patch.is_null() {
            let (status, body) = server.patch(&one, &admin, json!({ "name": "no" })).await;
            assert_error(
                status,
                &body,
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
            );
            // The method is what is wrong: 405 before the session or the body is looked at,
            // with the methods that are allowed.
            let response = server
                .http
                .patch(format!("{}{one}", server.base))
                .send()
                .await
                .unwrap();
            let allow = response.headers().get("allow").cloned();
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            assert_eq!(
                allow.as_ref().and_then(|v| v.to_str().ok()),
                Some("GET,HEAD,DELETE")
            );
            assert_error(
                status,
                &body,
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
            );
        } else {
            let (status, patched) = server.patch(&one, &admin, patch.clone()).await;
            assert_eq!(status, 200, "{collection}: {patched}");
            assert_eq!(patched["version"], 2, "{collection}");
            for (key, value) in patch.as_object().unwrap() {
                assert_eq!(&patched[key], value, "{collection}.{key}");
            }
            assert_eq!(patched["client_extra"], created["client_extra"]);
        }
        let (status, _) = server.delete(&one, &admin).await;
        assert_eq!(status, 204, "{collection}");
        let (status, body) = server.get(&one, &admin).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    }
}

#[tokio::test]
async fn if_match_guards_against_stale_writes() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let project = server.project(&admin, "Concurrency").await;
    let task = server
        .create(&admin, &project, "tasks", json!({ "name": "T" }))
        .await;
    let url = format!(
        "{}/api/v1/projects/{project}/tasks/{}",
        server.base,
        id(&task)
    );
    let send = |method: Method, tag: &'static str, body: Option<Value>| {
        let mut request = server
            .http
            .request(method, &url)
            .bearer_auth(&admin)
            .header("If-Match", tag);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };
    let response = send(Method::PATCH, "\"1\"", Some(json!({ "name": "v2" })))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = send(Method::PATCH, "\"1\"", Some(json!({ "name": "stale" })))
        .await
        .unwrap();
    assert_eq!(response.status(), 412);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "version_mismatch");
    assert_eq!(body["error"]["details"]["version"], 2);
    let response = send(Method::DELETE, "\"1\"", None).await.unwrap();
    assert_eq!(response.status(), 412);
    let response = send(Method::DELETE, "W/\"2\"", None).await.unwrap();
    assert_eq!(response.status(), 204);
}

#[tokio::test]
async fn deleting_a_task_cascades_in_one_transaction() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let project = server.project(&admin, "Cascade").await;
    let parent = server
        .create(&admin, &project, "tasks", json!({ "name": "parent" }))
        .await;
    let child = server
        .create(
            &admin,
            &project,
            "tasks",
            json!({ "name": "child", "parent_id": id(&parent) }),
        )
        .await;
    let other = server
        .create(&admin, &project, "tasks", json!({ "name": "other" }))
        .await;
    let resource = server
        .create(&admin, &project, "resources", json!({ "name": "R" }))
        .await;
    server
        .create(
            &admin,
            &project,
            "dependencies",
            json!({ "predecessor_id": id(&child), "successor_id": id(&other) }),
        )
        .await;
    server
        .create(
            &admin,
            &project,
            "assignments",
            json!({ "task_id": id(&child), "resource_id": id(&resource) }),
        )
        .await;
    server
        .create(
            &admin,
            &project,
            "comments",
            json!({ "task_id": id(&child), "body": "c" }),
        )
        .await;
    let risk = server
        .create(
            &admin,
            &project,
            "risks",
            json!({ "title": "r", "task_id": id(&child) }),
        )
        .await;
    let before = server.log(&admin, &project, 0).await["latest_seq"]
        .as_i64()
        .unwrap();
    let (status, _) = server
        .delete(
            &format!("/api/v1/projects/{project}/tasks/{}", id(&parent)),
            &admin,
        )
        .await;
    assert_eq!(status, 204);
    let log = server.log(&admin, &project, before).await;
    let mut kinds: Vec<&str> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.pop(), Some("task_deleted"), "the parent goes last");
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "assignment_deleted",
            "dependency_deleted",
            "risk_updated",
            "task_comment_deleted",
            "task_deleted"
        ]
    );
    for collection in ["dependencies", "assignments", "comments"] {
        let (_, rows) = server
            .get(&format!("/api/v1/projects/{project}/{collection}"), &admin)
            .await;
        assert_eq!(rows, json!([]), "{collection}");
    }
    let (_, tasks) = server
        .get(&format!("/api/v1/projects/{project}/tasks"), &admin)
        .await;
    assert_eq!(tasks.as_array().unwrap().len(), 1);
    let (_, risk) = server
        .get(
            &format!("/api/v1/projects/{project}/risks/{}", id(&risk)),
            &admin,
        )
        .await;
    assert_eq!(
        risk["task_id"],
        Value::Null,
        "optional references are cleared, not cascaded"
    );
    assert_eq!(risk["version"], 2);
}

#[tokio::test]
async fn dependency_cycles_and_tree_loops_are_refused() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let project = server.project(&admin, "Cycles").await;
    let tasks: Vec<Value> = futures::future::join_all((0..3).map(|i| {
        server.create(
            &admin,
            &project,
            "tasks",
            json!({ "name": format!("t{i}") }),
        )
    }))
    .await;
    let link = |a: usize, b: usize| json!({ "predecessor_id": id(&tasks[a]), "successor_id": id(&tasks[b]) });
    server
        .create(&admin, &project, "dependencies", link(0, 1))
        .await;
    server
        .create(&admin, &project, "dependencies", link(1, 2))
        .await;
    let before = server.fingerprint().await;
    let (status, body) = server
        .post(
            &format!("/api/v1/projects/{project}/dependencies"),
            &admin,
            link(2, 0),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "dependency_cycle",
    );
    let cycle: Vec<&str> = body["error"]["details"]["cycle"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(cycle, [id(&tasks[0]), id(&tasks[1]), id(&tasks[2])]);
    let (status, body) = server
        .post(
            &format!("/api/v1/projects/{project}/dependencies"),
            &admin,
            link(1, 1),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    let (status, body) = server
        .post(
            &format!("/api/v1/projects/{project}/dependencies"),
            &admin,
            link(0, 1),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    // A task cannot move under its own descendant.
    let t0 = format!("/api/v1/projects/{project}/tasks/{}", id(&tasks[0]));
    let (status, _) = server
        .patch(
            &format!("/api/v1/projects/{project}/tasks/{}", id(&tasks[1])),
            &admin,
            json!({ "parent_id": id(&tasks[0]) }),
        )
        .await;
    assert_eq!(status, 200);
    let after_move = server.fingerprint().await;
    let (status, body) = server
        .patch(&t0, &admin, json!({ "parent_id": id(&tasks[1]) }))
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert_eq!(server.fingerprint().await, after_move);
    assert_ne!(before, after_move);
}

#[tokio::test]
async fn sprints_and_baselines_follow_their_lifecycles() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let project = server.project(&admin, "Agile").await;
    let base = format!("/api/v1/projects/{project}");
    let s1 = server
        .create(&admin, &project, "sprints", json!({ "name": "S1" }))
        .await;
    let s2 = server
        .create(&admin, &project, "sprints", json!({ "name": "S2" }))
        .await;
    assert_eq!(s1["state"], "planned");
    let (status, active) = server
        .post(
            &format!("{base}/sprints/{}/activate", id(&s1)),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(
        (status.as_u16(), active["state"].as_str()),
        (200, Some("active"))
    );
    let (status, body) = server
        .post(
            &format!("{base}/sprints/{}/activate", id(&s2)),
            &admin,
            json!({}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, closed) = server
        .post(
            &format!("{base}/sprints/{}/close", id(&s1)),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(
        (status.as_u16(), closed["state"].as_str()),
        (200, Some("closed"))
    );
    let (status, body) = server
        .post(
            &format!("{base}/sprints/{}/cancel", id(&s1)),
            &admin,
            json!({}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, _) = server
        .post(
            &format!("{base}/sprints/{}/explode", id(&s2)),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(status, 404);
    // Tasks entering and leaving a sprint change its scope.
    let task = server
        .create(
            &admin,
            &project,
            "tasks",
            json!({ "name": "story", "sprint_id": id(&s2) }),
        )
        .await;
    server
        .patch(
            &format!("{base}/tasks/{}", id(&task)),
            &admin,
            json!({ "sprint_id": null }),
        )
        .await;
    let log = server.log(&admin, &project, 0).await;
    let kinds: Vec<&str> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    for expected in ["sprint_activated", "sprint_closed", "sprint_scope_changed"] {
        assert!(kinds.contains(&expected), "{expected} in {kinds:?}");
    }
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "sprint_scope_changed")
            .count(),
        2
    );
    // A baseline snapshots the tasks' dates; activating one deactivates the others.
    server
        .patch(
            &format!("{base}/tasks/{}", id(&task)),
            &admin,
            json!({ "start_date": "2026-03-02", "duration": 5 }),
        )
        .await;
    let b1 = server
        .create(&admin, &project, "baselines", json!({ "name": "B1" }))
        .await;
    assert_eq!(b1["tasks"][id(&task)]["start_date"], "2026-03-02");
    let b2 = server
        .create(&admin, &project, "baselines", json!({ "name": "B2" }))
        .await;
    server
        .post(
            &format!("{base}/baselines/{}/activate", id(&b1)),
            &admin,
            json!({}),
        )
        .await;
    let (status, now_active) = server
        .post(
            &format!("{base}/baselines/{}/activate", id(&b2)),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(
        (status.as_u16(), &now_active["is_active"]),
        (200, &json!(true))
    );
    let (_, b1) = server
        .get(&format!("{base}/baselines/{}", id(&b1)), &admin)
        .await;
    assert_eq!(b1["is_active"], false);
}

#[tokio::test]
async fn attachments_upload_download_and_go_with_their_task() {
    let server = TestServer::start_with(|c| c.max_upload_bytes = 64 * 1024).await;
    let admin = server.admin().await;
    let project = server.project(&admin, "Files").await;
    let task = server
        .create(&admin, &project, "tasks", json!({ "name": "T" }))
        .await;
    let url = format!("{}/api/v1/projects/{project}/attachments", server.base);
    let bytes: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    let form = reqwest::multipart::Form::new()
        .text("task_id", id(&task).to_owned())
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes.clone())
                .file_name("../../plan \"v1\".bin")
                .mime_str("application/x-plan")
                .unwrap(),
        );
    let response = server
        .http
        .post(&url)
        .bearer_auth(&admin)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let attachment: Value = response.json().await.unwrap();
    assert_eq!(attachment["size"], 40_000);
    assert_eq!(attachment["filename"], "plan v1.bin");
    let content_url = format!("{url}/{}/content", id(&attachment));
    let response = server
        .http
        .get(&content_url)
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/x-plan");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(response.bytes().await.unwrap().to_vec(), bytes);
    let stored = server
        .data_dir()
        .join("attachments")
        .join(&project)
        .join(id(&attachment));
    assert!(stored.exists());

    // Too large: refused, nothing recorded, no file left behind.
    let before = server.fingerprint().await;
    let form = reqwest::multipart::Form::new()
        .text("task_id", id(&task).to_owned())
        .part(
            "file",
            reqwest::multipart::Part::bytes(vec![7u8; 70 * 1024]).file_name("big.bin"),
        );
    let response = server
        .http
        .post(&url)
        .bearer_auth(&admin)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(server.fingerprint().await, before);
    assert_eq!(
        std::fs::read_dir(stored.parent().unwrap()).unwrap().count(),
        1
    );
    // A name of 256 characters: refused, nothing recorded, no file left behind.
    let form = reqwest::multipart::Form::new()
        .text("task_id", id(&task).to_owned())
        .part(
            "file",
            reqwest::multipart::Part::bytes(vec![1u8; 10]).file_name("n".repeat(256)),
        );
    let response = server
        .http
        .post(&url)
        .bearer_auth(&admin)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "validation_failed", "{body}");
    assert_eq!(server.fingerprint().await, before);
    assert_eq!(
        std::fs::read_dir(stored.parent().unwrap()).unwrap().count(),
        1
    );
    // A name beyond ASCII keeps its characters for browsers (`filename*`).
    let form = reqwest::multipart::Form::new()
        .text("task_id", id(&task).to_owned())
        .part(
            "file",
            reqwest::multipart::Part::bytes(vec![2u8; 10]).file_name("März-Übersicht.pdf"),
        );
    let response = server
        .http
        .post(&url)
        .bearer_auth(&admin)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let named: Value = response.json().await.unwrap();
    assert_eq!(named["filename"], "März-Übersicht.pdf");
    let response = server
        .http
        .get(format!("{url}/{}/content", id(&named)))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"M_rz-_bersicht.pdf\"; filename*=UTF-8''M%C3%A4rz-%C3%9Cbersicht.pdf"
    );

    // JSON is not an upload.
    let (status, body) = server
        .post(
            &format!("/api/v1/projects/{project}/attachments"),
            &admin,
            json!({ "task_id": id(&task) }),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );

    // Deleting the task removes the attachment and its bytes.
    let (status, _) = server
        .delete(
            &format!("/api/v1/projects/{project}/tasks/{}", id(&task)),
            &admin,
        )
        .await;
    assert_eq!(status, 204);
    assert!(!stored.exists());
    let (status, _) = server
        .get(
            &format!(
                "/api/v1/projects/{project}/attachments/{}/content",
                id(&attachment)
            ),
            &admin,
        )
        .await;
    assert_eq!(status, 404);
}
