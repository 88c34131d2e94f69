//! Presence counts every dialect's live connection to a project (CONTRACT §6): a native socket,
//! the project's SSE stream (a Viewer's too, whom the native socket refuses), a Bryntum socket
//! with the project's dataset loaded, and a Pusher project channel. A member's native socket
//! watches the `presence_join` / `presence_leave` events, and the roster
//! (`/api/v1/projects/{id}/presence/`) is read beside them.

use liveplan_server::pusher::credentials::PusherCredentials;
use liveplan_server::pusher::signature::{channel_auth, user_auth};
use liveplan_testkit::bryntum::Client as BryntumClient;
use liveplan_testkit::*;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

const BOUND: Duration = Duration::from_secs(15);
/// How long "nothing more happens" is watched for.
const QUIET: Duration = Duration::from_millis(700);

async fn server() -> TestServer {
    TestServer::start_with(|c| c.pusher_credentials = Some(PusherCredentials::demo())).await
}

/// The next presence event on the watcher's socket: (event type, user id).
async fn presence_event(ws: &mut Ws) -> (String, String) {
    let frame = timeout(BOUND, async {
        loop {
            let frame = ws_json(ws).await;
            if frame["event_type"]
                .as_str()
                .is_some_and(|kind| kind.starts_with("presence_"))
            {
                return frame;
            }
        }
    })
    .await
    .expect("a presence event in time");
    assert!(frame["seq"].is_null(), "presence is ephemeral: {frame}");
    (
        frame["event_type"].as_str().unwrap().to_owned(),
        frame["payload"]["user_id"].as_str().unwrap().to_owned(),
    )
}

/// No presence event arrives on the watcher's socket for a while.
async fn no_presence_event(ws: &mut Ws) {
    if let Ok(event) = timeout(QUIET, presence_event(ws)).await {
        panic!("no presence change expected, got {event:?}");
    }
}

async fn roster(server: &TestServer, project: Uuid) -> Vec<String> {
    let (status, body) = server
        .get(
            &format!("/api/v1/projects/{project}/presence/"),
            &server.admin,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut users: Vec<String> = body
        .as_array()
        .expect("the roster is an array")
        .iter()
        .map(|entry| entry["user_id"].as_str().unwrap().to_owned())
        .collect();
    users.sort();
    users
}

fn sorted(mut users: Vec<String>) -> Vec<String> {
    users.sort();
    users
}

/// A member's native socket on `project`, past its own `presence_join`.
async fn watcher(server: &TestServer, project: Uuid) -> (Uuid, Ws) {
    let (watcher, token) = server.new_user("watcher").await;
    server.new_member(project, watcher, 100).await;
    let mut ws = server.ws_project(&token, project, None).await;
    assert_eq!(
        presence_event(&mut ws).await,
        ("presence_join".to_owned(), watcher.to_string())
    );
    (watcher, ws)
}

#[tokio::test]
async fn a_viewers_sse_streams_make_them_present_once() {
    let server = server().await;
    let project = server.new_project("Seen by SSE").await;
    let (watcher, mut ws) = watcher(&server, project).await;
    let (viewer, viewer_token) = server.new_user("viewer").await;
    server.new_member(project, viewer, 1).await;
    let path = format!("/api/v1/projects/{project}/events");

    let mut first = server.sse(&viewer_token, &path, None).await;
    assert_eq!(first.data().await.unwrap().json()["type"], "connected");
    assert_eq!(
        presence_event(&mut ws).await,
        ("presence_join".to_owned(), viewer.to_string())
    );
    assert_eq!(
        roster(&server, project).await,
        sorted(vec![watcher.to_string(), viewer.to_string()])
    );

    // A second tab changes nothing; closing one of two changes nothing; the last one leaves.
    let mut second = server.sse(&viewer_token, &path, None).await;
    assert_eq!(second.data().await.unwrap().json()["type"], "connected");
    no_presence_event(&mut ws).await;
    drop(first);
    no_presence_event(&mut ws).await;
    drop(second);
    assert_eq!(
        presence_event(&mut ws).await,
        ("presence_leave".to_owned(), viewer.to_string())
    );
    assert_eq!(roster(&server, project).await, vec![watcher.to_string()]);

    // The user's own stream (not the project's) is no connection to the project.
    let mut own = server
        .sse(&viewer_token, "/api/v1/users/events", None)
        .await;
    assert_eq!(own.data().await.unwrap().json()["type"], "connected");
    no_presence_event(&mut ws).await;
    assert_eq!(roster(&server, project).await, vec![watcher.to_string()]);
}

#[tokio::test]
async fn a_bryntum_socket_with_the_project_loaded_makes_its_user_present() {
    let server = server().await;
    let project = server.new_project("Seen by Bryntum").await;
    let (_, mut ws) = watcher(&server, project).await;
    let (planner, _) = server.user(&server.admin, "planner").await;
    server
        .add_member(&server.admin, &project.to_string(), &planner, 100)
        .await;

    let mut client = BryntumClient::connect(&server.base).await;
    client.login("planner", "planner-password").await;
    // Signed in but no project loaded: not present on any project.
    no_presence_event(&mut ws).await;
    client.dataset(json!(project.to_string())).await;
    assert_eq!(
        presence_event(&mut ws).await,
        ("presence_join".to_owned(), planner.clone())
    );
    assert!(roster(&server, project).await.contains(&planner));

    drop(client);
    assert_eq!(
        presence_event(&mut ws).await,
        ("presence_leave".to_owned(), planner.clone())
    );
    assert!(!roster(&server, project).await.contains(&planner));
}

#[tokio::test]
async fn a_pusher_project_channel_makes_its_user_present() {
    let server = server().await;
    let project = server.new_project("Seen by Pusher").await;
    let (_, mut ws) = watcher(&server, project).await;
    let (member, _) = server.new_user("pusherian").await;
    server.new_member(project, member, 100).await;
    let creds = PusherCredentials::demo();

    let mut pusher = ws_connect(
        server.addr(),
        "/app/app-key?protocol=7&client=js&version=8.4.0&flash=false",
    )
    .await;
    let established = ws_json(&mut pusher).await;
    assert_eq!(established["event"], "pusher:connection_established");
    let data: Value = serde_json::from_str(established["data"].as_str().unwrap()).unwrap();
    let socket_id = data["socket_id"].as_str().unwrap().to_owned();
    let user_data = json!({ "id": member.to_string() }).to_string();
    let auth = user_auth(&creds, &socket_id, &user_data);
    send(
        &mut pusher,
        json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}),
    )
    .await;
    assert_eq!(
        next_pusher(&mut pusher).await["event"],
        "pusher:signin_success"
    );
    // Signed in, no project channel yet: not present.
    no_presence_event(&mut ws).await;

    let channel = format!("private-project-{project}");
    let auth = channel_auth(&creds, &socket_id, &channel, None);
    send(
        &mut pusher,
        json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}}),
    )
    .await;
    assert_eq!(
        next_pusher(&mut pusher).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    assert_eq!(
        presence_event(&mut ws).await,
        ("presence_join".to_owned(), member.to_string())
    );

    send(
        &mut pusher,
        json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}),
    )
    .await;
    assert_eq!(
        presence_event(&mut ws).await,
        ("presence_leave".to_owned(), member.to_string())
    );
    assert!(!roster(&server, project).await.contains(&member.to_string()));
}

async fn send(ws: &mut Ws, frame: Value) {
    ws_send(ws, Message::Text(frame.to_string().into())).await;
}

/// The next Pusher frame that is not a server ping.
async fn next_pusher(ws: &mut Ws) -> Value {
    for _ in 0..50 {
        let frame = ws_json(ws).await;
        if frame["event"] != "pusher:ping" {
            return frame;
        }
    }
    panic!("only pings");
}
