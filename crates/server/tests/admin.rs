//! System administration: export, import (replacing everything, emitting database_wiped) and
//! wiping all projects (database_projects_wiped).

use liveplan_testkit::*;
use serde_json::json;

async fn last_system_event(server: &TestServer) -> (String, i64) {
    let mut log = server.state().domain.store.snapshot().await.unwrap();
    let latest = log.latest_seq(proto::StreamKey::System).await.unwrap();
    let events = log
        .read_events(proto::StreamKey::System, latest - 1, 1)
        .await
        .unwrap();
    let event = events.last().expect("a system event");
    (event.event_type.as_str().to_owned(), event.seq.unwrap())
}

#[tokio::test]
async fn export_import_round_trip_and_wipe() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let project = server.project(&admin, "Exported").await;
    let a = server
        .create(
            &admin,
            &project,
            "tasks",
            json!({ "name": "A", "bryntum_cls": "x" }),
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
    server
        .create(
            &admin,
            &project,
            "dependencies",
            json!({ "predecessor_id": a["id"], "successor_id": b["id"] }),
        )
        .await;
    let (status, export) = server.get("/api/v1/admin/export", &admin).await;
    assert_eq!(status, 200);
    assert_eq!(export["format"], "liveplan-export-1");
    let (_, tasks_before) = server
        .get(&format!("/api/v1/projects/{project}/tasks"), &admin)
        .await;

    // A member who is not a system administrator may do none of this.
    let (user, token) = server.user(&admin, "plain").await;
    server.add_member(&admin, &project, &user, 400).await;
    for (method, path) in [
        (reqwest::Method::GET, "/api/v1/admin/export"),
        (reqwest::Method::DELETE, "/api/v1/admin/projects"),
    ] {
        let (status, body) = server.call(method, path, Some(&token), None).await;
        assert_error(status, &body, reqwest::StatusCode::FORBIDDEN, "forbidden");
    }

    server.project(&admin, "Replaced by the import").await;
    let (status, summary) = server
        .post("/api/v1/admin/import", &admin, export.clone())
        .await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["projects"], 1);
    assert_eq!(last_system_event(&server).await.0, "database_wiped");
    let (_, projects) = server.get("/api/v1/projects", &admin).await;
    assert_eq!(projects.as_array().unwrap().len(), 1);
    let (_, tasks_after) = server
        .get(&format!("/api/v1/projects/{project}/tasks"), &admin)
        .await;
    let names = |v: &serde_json::Value| {
        let mut n: Vec<(String, String)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["id"].to_string(),
                    t["name"].to_string() + &t["bryntum_cls"].to_string(),
                )
            })
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(&tasks_after), names(&tasks_before));
    // References survive the import: deleting A still cascades to B and the link.
    let (status, _) = server
        .delete(
            &format!(
                "/api/v1/projects/{project}/tasks/{}",
                a["id"].as_str().unwrap()
            ),
            &admin,
        )
        .await;
    assert_eq!(status, 204);
    let (_, tasks) = server
        .get(&format!("/api/v1/projects/{project}/tasks"), &admin)
        .await;
    assert_eq!(tasks, json!([]));

    let (status, body) = server
        .post(
            "/api/v1/admin/import",
            &admin,
            json!({ "format": "other", "users": [], "projects": [] }),
        )
        .await;
    assert_error(
        status,
        &body,
        reqwest::StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );

    let (status, wiped) = server.delete("/api/v1/admin/projects", &admin).await;
    assert_eq!((status.as_u16(), &wiped["projects"]), (200, &json!(1)));
    assert_eq!(
        last_system_event(&server).await.0,
        "database_projects_wiped"
    );
    let (_, projects) = server.get("/api/v1/projects", &admin).await;
    assert_eq!(projects, json!([]));
}
