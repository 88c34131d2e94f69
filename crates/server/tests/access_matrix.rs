//! Every endpoint × every role × a non-member: the role rules of the domain, asked by every
//! handler. Allowed → success; a member below the needed role → 403; a non-member (even a
//! system administrator) → 404, so a project's existence never leaks.

use domain::collections;
use liveplan_testkit::*;
use proto::Role;
use reqwest::Method;
use serde_json::{Value, json};

struct Actors {
    by_role: Vec<(Role, String, String)>,
    outsider: String,
    outside_admin: String,
}

async fn actors(server: &TestServer, root: &str, project: &str) -> Actors {
    let mut by_role = Vec::new();
    for role in Role::ALL {
        let (id, token) = server.user(root, &format!("as-{}", role.name())).await;
        server.add_member(root, project, &id, role.level()).await;
        by_role.push((role, id, token));
    }
    let (_, outsider) = server.user(root, "outsider").await;
    let (other_admin, _) = server.user(root, "otheradmin").await;
    server
        .patch(
            &format!("/api/v1/users/{other_admin}"),
            root,
            json!({ "is_admin": true }),
        )
        .await;
    let outside_admin = server
        .login("otheradmin@example.test", "otheradmin-password")
        .await;
    Actors {
        by_role,
        outsider,
        outside_admin,
    }
}

fn sample(collection: &str, refs: &Refs) -> Value {
    match collection {
        "tasks" => json!({ "name": "t" }),
        "dependencies" => {
            json!({ "predecessor_id": refs.fresh_task_a, "successor_id": refs.fresh_task_b })
        }
        "assignments" => json!({ "task_id": refs.fresh_task_a, "resource_id": refs.resource }),
        "comments" => json!({ "task_id": refs.task, "body": "b" }),
        "risks" => json!({ "title": "r" }),
        _ => json!({ "name": "n" }),
    }
}

fn patch_body(collection: &str) -> Value {
    match collection {
        "dependencies" => json!({ "lag": 1 }),
        "assignments" => json!({ "units": 50 }),
        "comments" => json!({ "body": "changed" }),
        "risks" => json!({ "title": "changed" }),
        _ => json!({ "name": "changed" }),
    }
}

struct Refs {
    task: String,
    resource: String,
    fresh_task_a: String,
    fresh_task_b: String,
}

async fn refs(server: &TestServer, root: &str, project: &str, task: &str, resource: &str) -> Refs {
    let a = server
        .create(root, project, "tasks", json!({ "name": "a" }))
        .await;
    let b = server
        .create(root, project, "tasks", json!({ "name": "b" }))
        .await;
    Refs {
        task: task.to_owned(),
        resource: resource.to_owned(),
        fresh_task_a: a["id"].as_str().unwrap().to_owned(),
        fresh_task_b: b["id"].as_str().unwrap().to_owned(),
    }
}

fn expect(role: Role, needed: Role, success: u16, status: u16, what: &str) {
    let wanted = if role >= needed { success } else { 403 };
    assert_eq!(status, wanted, "{what} as {}", role.name());
}

#[tokio::test]
async fn every_endpoint_for_every_role() {
    let server = TestServer::start().await;
    let root = server.admin().await;
    let project = server.project(&root, "Matrix").await;
    let actors = actors(&server, &root, &project).await;
    let task = server
        .create(&root, &project, "tasks", json!({ "name": "anchor" }))
        .await;
    let task = task["id"].as_str().unwrap().to_owned();
    let resource = server
        .create(&root, &project, "resources", json!({ "name": "R" }))
        .await;
    let resource = resource["id"].as_str().unwrap().to_owned();
    let p = format!("/api/v1/projects/{project}");
    let outsiders = [actors.outsider.clone(), actors.outside_admin.clone()];

    // Reads: any member.
    let mut reads = vec![
        p.clone(),
        format!("{p}/members"),
        format!("{p}/log?since=0"),
    ];
    for collection in collections::ALL {
        reads.push(format!("{p}/{}", collection.name));
    }
    reads.push(format!("{p}/tasks/{task}"));
    for path in &reads {
        for (role, _, token) in &actors.by_role {
            let (status, body) = server.get(path, token).await;
            assert_eq!(status, 200, "GET {path} as {}: {body}", role.name());
        }
        for token in &outsiders {
            let (status, body) = server.get(path, token).await;
            assert_error(status, &body, reqwest::StatusCode::NOT_FOUND, "not_found");
        }
    }

    // Writes on every collection.
    for collection in collections::ALL.iter().filter(|c| !c.upload_only) {
        let base = format!("{p}/{}", collection.name);
        let needed = collection.write_role;
        // Comments of others need Admin to change; creating them needs Member.
        let change_needed = if collection.name == "comments" {
            Role::Admin
        } else {
            needed
        };
        for (role, _, token) in &actors.by_role {
            let fresh = refs(&server, &root, &project, &task, &resource).await;
            let (status, body) = server
                .post(&base, token, sample(collection.name, &fresh))
                .await;
            expect(
                *role,
                needed,
                201,
                status.as_u16(),
                &format!("POST {}: {body}", collection.name),
            );
            let target = server
                .create(
                    &root,
                    &project,
                    collection.name,
                    sample(
                        collection.name,
                        &refs(&server, &root, &project, &task, &resource).await,
                    ),
                )
                .await;
            let one = format!("{base}/{}", target["id"].as_str().unwrap());
            if collection.patchable {
                let (status, body) = server.patch(&one, token, patch_body(collection.name)).await;
                expect(
                    *role,
                    change_needed,
                    200,
                    status.as_u16(),
                    &format!("PATCH {}: {body}", collection.name),
                );
            }
            let (status, body) = server.delete(&one, token).await;
            expect(
                *role,
                change_needed,
                204,
                status.as_u16(),
                &format!("DELETE {}: {body}", collection.name),
            );
        }
        for token in &outsiders {
            let fresh = refs(&server, &root, &project, &task, &resource).await;
            let (status, _) = server
                .post(&base, token, sample(collection.name, &fresh))
                .await;
            assert_eq!(status, 404, "POST {} as outsider", collection.name);
            let target = server
                .create(
                    &root,
                    &project,
                    collection.name,
                    sample(collection.name, &fresh),
                )
                .await;
            let one = format!("{base}/{}", target["id"].as_str().unwrap());
            // A record that never changes refuses PATCH for anyone, in any project, existing
            // or not (405 says nothing about the project); otherwise the outsider sees none.
            let refused = if collection.patchable { 404 } else { 405 };
            assert_eq!(
                server
                    .patch(&one, token, patch_body(collection.name))
                    .await
                    .0,
                refused,
                "PATCH {} as outsider",
                collection.name
            );
            assert_eq!(server.delete(&one, token).await.0, 404);
        }
    }

    // Actions, the project itself and its members.
    for (role, _, token) in &actors.by_role {
        let sprint = server
            .create(&root, &project, "sprints", json!({ "name": "s" }))
            .await;
        let (status, _) = server
            .post(
                &format!("{p}/sprints/{}/cancel", sprint["id"].as_str().unwrap()),
                token,
                json!({}),
            )
            .await;
        expect(
            *role,
            Role::Scheduler,
            200,
            status.as_u16(),
            "cancel sprint",
        );
        let baseline = server
            .create(&root, &project, "baselines", json!({ "name": "b" }))
            .await;
        let (status, _) = server
            .post(
                &format!(
                    "{p}/baselines/{}/activate",
                    baseline["id"].as_str().unwrap()
                ),
                token,
                json!({}),
            )
            .await;
        expect(
            *role,
            Role::Admin,
            200,
            status.as_u16(),
            "activate baseline",
        );
        let (status, _) = server
            .patch(
                &p,
                token,
                json!({ "description": format!("by {}", role.name()) }),
            )
            .await;
        expect(*role, Role::Admin, 200, status.as_u16(), "PATCH project");
        let (newcomer, _) = server.user(&root, &format!("new-{}", role.name())).await;
        let (status, added) = server
            .post(
                &format!("{p}/members"),
                token,
                json!({ "user_id": newcomer, "role": 1 }),
            )
            .await;
        expect(*role, Role::Admin, 201, status.as_u16(), "add member");
        let membership = match added["membership_id"].as_str() {
            Some(id) => id.to_owned(),
            None => server.add_member(&root, &project, &newcomer, 1).await,
        };
        let (status, _) = server
            .patch(
                &format!("{p}/members/{membership}"),
                token,
                json!({ "role": 100 }),
            )
            .await;
        expect(*role, Role::Admin, 200, status.as_u16(), "change role");
        let (status, _) = server
            .patch(
                &format!("{p}/members/{membership}"),
                token,
                json!({ "role": 400 }),
            )
            .await;
        expect(*role, Role::Owner, 200, status.as_u16(), "make owner");
        if status != 200 {
            server
                .patch(
                    &format!("{p}/members/{membership}"),
                    &root,
                    json!({ "role": 400 }),
                )
                .await;
        }
        let (status, _) = server
            .patch(
                &format!("{p}/members/{membership}"),
                token,
                json!({ "role": 100 }),
            )
            .await;
        expect(*role, Role::Owner, 200, status.as_u16(), "unmake owner");
        if status != 200 {
            server
                .patch(
                    &format!("{p}/members/{membership}"),
                    &root,
                    json!({ "role": 100 }),
                )
                .await;
        }
        let (status, _) = server
            .delete(&format!("{p}/members/{membership}"), token)
            .await;
        expect(*role, Role::Admin, 204, status.as_u16(), "remove member");
        // Webhooks: Admin+ for reads and writes alike.
        let hooks = format!("{p}/webhooks");
        let body = json!({ "url": "http://hooks.example/matrix", "events": ["*"] });
        let (status, created) = server.post(&hooks, token, body.clone()).await;
        expect(*role, Role::Admin, 201, status.as_u16(), "create webhook");
        let hook = match created["id"].as_str() {
            Some(id) => id.to_owned(),
            None => server.post(&hooks, &root, body).await.1["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        };
        let one = format!("{hooks}/{hook}");
        let (status, _) = server.get(&hooks, token).await;
        expect(*role, Role::Admin, 200, status.as_u16(), "list webhooks");
        let (status, _) = server.get(&one, token).await;
        expect(*role, Role::Admin, 200, status.as_u16(), "get webhook");
        let (status, _) = server.get(&format!("{one}/deliveries"), token).await;
        expect(
            *role,
            Role::Admin,
            200,
            status.as_u16(),
            "webhook deliveries",
        );
        let (status, _) = server.patch(&one, token, json!({ "active": false })).await;
        expect(*role, Role::Admin, 200, status.as_u16(), "change webhook");
        for outsider in &outsiders {
            assert_eq!(server.get(&one, outsider).await.0, 404);
            assert_eq!(server.get(&hooks, outsider).await.0, 404);
            assert_eq!(server.delete(&one, outsider).await.0, 404);
        }
        let (status, _) = server.delete(&one, token).await;
        expect(*role, Role::Admin, 204, status.as_u16(), "delete webhook");
        if status != 204 {
            server.delete(&one, &root).await;
        }
        let doomed = server.project(&root, "doomed").await;
        let (id, _) = (
            actors
                .by_role
                .iter()
                .find(|(r, _, _)| r == role)
                .unwrap()
                .1
                .clone(),
            (),
        );
        server.add_member(&root, &doomed, &id, role.level()).await;
        let (status, _) = server
            .delete(&format!("/api/v1/projects/{doomed}"), token)
            .await;
        expect(*role, Role::Owner, 204, status.as_u16(), "delete project");
    }
    for token in &outsiders {
        assert_eq!(
            server
                .patch(&p, token, json!({ "description": "x" }))
                .await
                .0,
            404
        );
        assert_eq!(server.delete(&p, token).await.0, 404);
        assert_eq!(
            server
                .post(
                    &format!("{p}/members"),
                    token,
                    json!({ "user_id": actors.by_role[0].1, "role": 1 })
                )
                .await
                .0,
            404
        );
    }
    // Nobody can leave the project ownerless.
    let (_, members) = server.get(&format!("{p}/members"), &root).await;
    let owners: Vec<&Value> = members
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == 400)
        .collect();
    assert!(!owners.is_empty());
    let _ = Method::GET;
}

#[tokio::test]
async fn the_last_owner_stays() {
    let server = TestServer::start().await;
    let root = server.admin().await;
    let project = server.project(&root, "Owned").await;
    let (_, members) = server
        .get(&format!("/api/v1/projects/{project}/members"), &root)
        .await;
    let mine = members[0]["membership_id"].as_str().unwrap();
    let (status, body) = server
        .delete(&format!("/api/v1/projects/{project}/members/{mine}"), &root)
        .await;
    assert_error(status, &body, reqwest::StatusCode::CONFLICT, "conflict");
    let (status, body) = server
        .patch(
            &format!("/api/v1/projects/{project}/members/{mine}"),
            &root,
            json!({ "role": 300 }),
        )
        .await;
    assert_error(status, &body, reqwest::StatusCode::CONFLICT, "conflict");
}

#[tokio::test]
async fn uploads_and_downloads_follow_the_roles() {
    let server = TestServer::start().await;
    let root = server.admin().await;
    let project = server.project(&root, "Uploads").await;
    let actors = actors(&server, &root, &project).await;
    let task = server
        .create(&root, &project, "tasks", json!({ "name": "T" }))
        .await;
    let url = format!("{}/api/v1/projects/{project}/attachments", server.base);
    let upload = |token: String| {
        let form = reqwest::multipart::Form::new()
            .text("task_id", task["id"].as_str().unwrap().to_owned())
            .part(
                "file",
                reqwest::multipart::Part::bytes(b"hello".to_vec()).file_name("a.txt"),
            );
        server
            .http
            .post(&url)
            .bearer_auth(token)
            .multipart(form)
            .send()
    };
    let mut uploaded = None;
    for (role, _, token) in &actors.by_role {
        let response = upload(token.clone()).await.unwrap();
        let status = response.status().as_u16();
        expect(*role, Role::Member, 201, status, "upload");
        if status == 201 {
            uploaded = Some(response.json::<Value>().await.unwrap());
        }
    }
    for token in [&actors.outsider, &actors.outside_admin] {
        assert_eq!(upload(token.clone()).await.unwrap().status(), 404);
    }
    let attachment = uploaded.unwrap();
    let content = format!(
        "/api/v1/projects/{project}/attachments/{}/content",
        attachment["id"].as_str().unwrap()
    );
    for (_, _, token) in &actors.by_role {
        let response = server
            .http
            .get(format!("{}{content}", server.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.bytes().await.unwrap().as_ref(), b"hello");
    }
    let response = server
        .http
        .get(format!("{}{content}", server.base))
        .bearer_auth(&actors.outsider)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

/// The role is asked before the body: one who may not write a collection gets 403 whatever
/// they sent, not a 422 about a body they may not send at all (issue 20 defect 7).
#[tokio::test]
async fn a_role_too_low_is_refused_before_the_body_is_judged() {
    let server = TestServer::start_relaxed().await;
    let root = server.admin().await;
    let project = server.project(&root, "Roles first").await;
    let actors = actors(&server, &root, &project).await;
    let (_, _, member) = actors
        .by_role
        .iter()
        .find(|(role, _, _)| *role == Role::Member)
        .unwrap();
    let malformed = json!({ "type": "XX", "predecessor_id": 5 });
    let (status, body) = server
        .post(
            &format!("/api/v1/projects/{project}/dependencies"),
            member,
            malformed.clone(),
        )
        .await;
    assert_error(status, &body, reqwest::StatusCode::FORBIDDEN, "forbidden");
    // The same body from one who may write dependencies is judged: 422.
    let (status, body) = server
        .post(
            &format!("/api/v1/projects/{project}/dependencies"),
            &root,
            malformed,
        )
        .await;
    assert_error(
        status,
        &body,
        reqwest::StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    // A patch too: a Member may not change a dependency, whatever the body.
    let task = server
        .create(&root, &project, "tasks", json!({"name": "a"}))
        .await;
    let other = server
        .create(&root, &project, "tasks", json!({"name": "b"}))
        .await;
    let dependency = server
        .create(
            &root,
            &project,
            "dependencies",
            json!({"predecessor_id": task["id"], "successor_id": other["id"]}),
        )
        .await;
    let (status, body) = server
        .patch(
            &format!(
                "/api/v1/projects/{project}/dependencies/{}",
                dependency["id"].as_str().unwrap()
            ),
            member,
            json!({ "type": "XX" }),
        )
        .await;
    assert_error(status, &body, reqwest::StatusCode::FORBIDDEN, "forbidden");
}
