//! Losing access closes live connections after the commit that caused it: removal, demotion
//! below Member, deactivation, logout and project deletion, on the native WebSocket (4003) and
//! on SSE (the stream ends; a Viewer keeps SSE).

use liveplan_testkit::*;
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

struct Member {
    id: Uuid,
    token: String,
    membership: Uuid,
}

async fn setup(server: &TestServer, name: &str) -> (Uuid, Member) {
    let project = server.new_project(name).await;
    let (id, token) = server.new_user(name).await;
    let membership = server.new_member(project, id, 100).await;
    (
        project,
        Member {
            id,
            token,
            membership,
        },
    )
}

async fn head(server: &TestServer, project: Uuid) -> i64 {
    server.log_seqs(project).await.last().copied().unwrap_or(0)
}

/// A socket and an SSE stream of `member` on `project`, both known to be live.
async fn connect(server: &TestServer, project: Uuid, member: &Member) -> (Ws, SseReader) {
    let at = head(server, project).await;
    let mut ws = server.ws_project(&member.token, project, Some(at)).await;
    let mut sse = server
        .sse(
            &member.token,
            &format!("/api/v1/projects/{project}/events"),
            Some(at),
        )
        .await;
    assert_eq!(sse.data().await.unwrap().json()["type"], "connected");
    server.task(&server.admin, project, "sync").await;
    assert_eq!(ws_event(&mut ws).await["event_type"], "task_created");
    assert_eq!(sse.event().await.unwrap().json()["type"], "ticket.created");
    (ws, sse)
}

#[tokio::test]
async fn removal_closes_socket_and_stream() {
    let server = TestServer::start_relaxed().await;
    let (project, member) = setup(&server, "removal").await;
    let (mut ws, mut sse) = connect(&server, project, &member).await;
    let (status, body) = server
        .call(
            Method::DELETE,
            &format!("/api/v1/projects/{project}/members/{}", member.membership),
            Some(&server.admin),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(ws_close_code(&mut ws).await, Some(4003));
    sse.ended().await;
    // And they cannot come back.
    let mut ws = server.ws_project(&member.token, project, None).await;
    assert_eq!(ws_close_code(&mut ws).await, Some(4003));
}

#[tokio::test]
async fn demotion_to_viewer_closes_the_socket_but_not_sse() {
    let server = TestServer::start_relaxed().await;
    let (project, member) = setup(&server, "demotion").await;
    let (mut ws, mut sse) = connect(&server, project, &member).await;
    server
        .ok(
            Method::PATCH,
            &server.admin,
            &format!("/api/v1/projects/{project}/members/{}", member.membership),
            json!({"role": 1}),
        )
        .await;
    assert_eq!(ws_close_code(&mut ws).await, Some(4003));
    // The Viewer's SSE stream goes on: it sees its own demotion and later writes.
    let changed = sse.event().await.unwrap().json();
    assert_eq!(changed["type"], "member.role.updated");
    server.task(&server.admin, project, "after").await;
    let next = sse.event().await.unwrap().json();
    assert_eq!(next["type"], "ticket.created");
    assert_eq!(next["data"]["name"], "after");
    // A promotion back does not need a reconnect to be allowed again.
    server
        .ok(
            Method::PATCH,
            &server.admin,
            &format!("/api/v1/projects/{project}/members/{}", member.membership),
            json!({"role": 200}),
        )
        .await;
    // (The user is still present by the SSE stream: the socket brings no presence_join.) The
    // socket is admitted after its upgrade: without `since`, a task created before its
    // subscription would be missed.
    let at = head(&server, project).await;
    let mut ws = server.ws_project(&member.token, project, Some(at)).await;
    server.task(&server.admin, project, "allowed again").await;
    assert_eq!(ws_json(&mut ws).await["event_type"], "task_created");
}

#[tokio::test]
async fn deactivation_closes_everything_of_the_user() {
    let server = TestServer::start_relaxed().await;
    let (project, member) = setup(&server, "deactivated").await;
    let (mut ws, mut sse) = connect(&server, project, &member).await;
    let mut list = server
        .sse(&member.token, "/api/v1/projects/events", None)
        .await;
    assert_eq!(list.data().await.unwrap().json()["type"], "connected");
    let mut users = server
        .sse(&member.token, "/api/v1/users/events", None)
        .await;
    assert_eq!(users.data().await.unwrap().json()["type"], "connected");
    server
        .ok(
            Method::PATCH,
            &server.admin,
            &format!("/api/v1/users/{}", member.id),
            json!({"is_active": false}),
        )
        .await;
    assert_eq!(ws_close_code(&mut ws).await, Some(4003));
    sse.ended().await;
    list.ended().await;
    users.ended().await;
}

#[tokio::test]
async fn logout_closes_that_session_only() {
    let server = TestServer::start_relaxed().await;
    let (project, member) = setup(&server, "logout").await;
    let (mut ws, mut sse) = connect(&server, project, &member).await;
    // A second session of the same user (another browser) stays connected.
    let email = server
        .ok(Method::GET, &member.token, "/api/v1/users/me", json!(null))
        .await["email"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = Member {
        id: member.id,
        token: server.login(&email, PASSWORD).await,
        membership: member.membership,
    };
    let at = head(&server, project).await;
    let mut other_ws = server.ws_project(&other.token, project, Some(at)).await;
    let (status, _) = server
        .call(
            Method::POST,
            "/api/v1/auth/logout",
            Some(&member.token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(ws_close_code(&mut ws).await, Some(4003));
    sse.ended().await;
    server.task(&server.admin, project, "still here").await;
    let frame = ws_event(&mut other_ws).await;
    assert_eq!(frame["event_type"], "task_created");
}

#[tokio::test]
async fn project_deletion_closes_every_connection_on_it() {
    let server = TestServer::start_relaxed().await;
    let (project, member) = setup(&server, "deleted").await;
    let (mut ws, mut sse) = connect(&server, project, &member).await;
    let (status, body) = server
        .call(
            Method::DELETE,
            &format!("/api/v1/projects/{project}"),
            Some(&server.admin),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(ws_close_code(&mut ws).await, Some(4003));
    sse.ended().await;
}

#[tokio::test]
async fn wiping_all_projects_closes_project_streams_and_tells_the_list_stream() {
    let server = TestServer::start_relaxed().await;
    let (project, member) = setup(&server, "wiped").await;
    let (mut ws, mut sse) = connect(&server, project, &member).await;
    let mut list = server
        .sse(&member.token, "/api/v1/projects/events", None)
        .await;
    assert_eq!(list.data().await.unwrap().json()["type"], "connected");
    let (status, body) = server
        .call(
            Method::DELETE,
            "/api/v1/admin/projects",
            Some(&server.admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ws_close_code(&mut ws).await, Some(4003));
    sse.ended().await;
    let wiped = list.event().await.unwrap().json();
    assert_eq!(wiped["type"], "database.projects.wiped");
}
