//! Laravel Echo 2 (broadcaster `pusher`, over pusher-js 8) as a Laravel front end uses it, against
//! liveplan's Pusher dialect (CONTRACT §10): Echo authorizes each private and presence channel by
//! its own HTTP POST to `/api/v1/pusher/auth` with the user's Bearer token, listens for
//! liveplan's events, and uses `here`/`joining`/`leaving` and whispers on the project's
//! presence channel. Driven by tests/node/echo-driver.mjs; skipped loudly without npm.

use liveplan_server::pusher::credentials::PusherCredentials;
use liveplan_testkit::node::{NodeDriver, npm_ready};
use liveplan_testkit::*;
use serde_json::{Value, json};

/// A line of `kind` about `client`.
fn of<'a>(kind: &'a str, client: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |value: &Value| value["type"] == kind && value["client"] == client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn laravel_echo_private_and_presence_channels_through_liveplans_authorization() {
    if !npm_ready(&["laravel-echo"], "pusher_echo (Laravel Echo)").await {
        return;
    }
    let server =
        TestServer::start_with(|c| c.pusher_credentials = Some(PusherCredentials::demo())).await;
    let key = PusherCredentials::demo().key;
    let project = server.new_project("Echo").await;
    let (ann, ann_token) = server.new_user("Ann").await;
    let (bob, bob_token) = server.new_user("Bob").await;
    server.new_member(project, ann, 100).await;
    server.new_member(project, bob, 1).await;
    let (_, outsider_token) = server.new_user("Out").await;
    let mut d = NodeDriver::start("echo-driver.mjs").await;
    let connect = |client: &str, token: &str| {
        json!({"cmd": "connect", "client": client, "key": key, "port": server.addr().port(),
               "base": server.base, "token": token})
    };
    let signin = |client: &str| json!({"cmd": "signin", "client": client});
    let private = format!("project-{project}");

    // Ann's private project channel, authorized by Echo's own POST with her token.
    d.send(connect("ann", &ann_token)).await;
    d.send(signin("ann")).await;
    d.expect(of("signed_in", "ann")).await;
    d.send(json!({"cmd": "private", "client": "ann", "name": private}))
        .await;
    d.expect(of("subscribed", "ann")).await;
    let task = server.task(&server.admin, project, "Seen by Echo").await;
    let event = d.expect(of("event", "ann")).await;
    assert_eq!(event["data"]["event_type"], "task_created", "{event}");
    assert_eq!(event["data"]["data"]["id"], task["id"], "{event}");

    // Presence: Ann is here, Bob (a Viewer) joins, whispers his cursor, leaves.
    d.send(json!({"cmd": "join", "client": "ann", "name": private}))
        .await;
    let here = d.expect(of("here", "ann")).await;
    assert_eq!(here["members"], json!(["Ann"]), "{here}");
    d.send(connect("bob", &bob_token)).await;
    d.send(signin("bob")).await;
    d.expect(of("signed_in", "bob")).await;
    d.send(json!({"cmd": "join", "client": "bob", "name": private}))
        .await;
    let bob_here = d.expect(of("here", "bob")).await;
    assert_eq!(bob_here["members"], json!(["Ann", "Bob"]), "{bob_here}");
    let joining = d.expect(of("joining", "ann")).await;
    assert_eq!(joining["member"], "Bob");
    d.send(json!({"cmd": "whisper", "client": "bob", "name": private, "data": {"x": 3, "y": 4}}))
        .await;
    let whisper = d.expect(of("whisper", "ann")).await;
    assert_eq!(whisper["data"], json!({"x": 3, "y": 4}));
    d.send(json!({"cmd": "leave", "client": "bob", "name": private}))
        .await;
    let leaving = d.expect(of("leaving", "ann")).await;
    assert_eq!(leaving["member"], "Bob");

    // Someone who is no member is refused by the authorization endpoint (403 to Echo).
    d.send(connect("out", &outsider_token)).await;
    d.send(signin("out")).await;
    d.expect(of("signed_in", "out")).await;
    d.send(json!({"cmd": "private", "client": "out", "name": private}))
        .await;
    let refused = d.expect(of("subscription_error", "out")).await;
    assert_eq!(refused["status"], 403, "{refused}");
}
