//! Bryntum as a hub dialect: one shared encoding per event written behind each socket's own
//! project label, roles read when a change is made, phantoms kept per project for the node,
//! pings like the native socket's.

use liveplan_testkit::bryntum::{Client, owned_project};
use liveplan_testkit::{
    ADMIN_EMAIL, ADMIN_PASSWORD, Clock, GUARD, TestServer, pings_until_close, raw_upgrade,
};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::MaybeTlsStream;

/// A project owned by `alice` with one task; her token and the project id.
async fn project_of_alice(server: &TestServer) -> (String, String, String) {
    owned_project(server, "alice", "Dialect", "First").await
}

async fn alice_on(server: &TestServer, label: Value) -> Client {
    Client::on_dataset(server, "alice", label).await
}

#[tokio::test]
async fn every_socket_gets_the_shared_change_under_its_own_label() {
    let server = TestServer::start().await;
    let (_root, alice, project) = project_of_alice(&server).await;
    // The demo server's `project: 1` and the uuid name the same project.
    let mut by_number = alice_on(&server, json!(1)).await;
    let mut by_id = alice_on(&server, json!(project)).await;
    let mut by_text = alice_on(&server, json!("1")).await;

    let echo = by_id
        .change(
            &json!(project),
            "local-1",
            json!({"tasks": {"added": [{"$PhantomId": "_n", "name": "Numbered"}]}}),
        )
        .await;
    for (client, label) in [(&mut by_number, json!(1)), (&mut by_text, json!("1"))] {
        let message = client.recv_command("project_change").await;
        assert_eq!(message["data"]["project"], label);
        assert_eq!(message["data"]["revisions"], json!([echo]));
    }

    // Another writer's change: the same bytes for all, each under its label.
    server
        .create(&alice, &project, "tasks", json!({"name": "Over REST"}))
        .await;
    for (client, label) in [
        (&mut by_number, json!(1)),
        (&mut by_id, json!(project)),
        (&mut by_text, json!("1")),
    ] {
        let message = client.recv_command("project_change").await;
        assert_eq!(message["data"]["project"], label);
        let revision = &message["data"]["revisions"][0];
        assert_eq!(revision["client"], Value::Null);
        assert_eq!(
            revision["changes"]["tasks"]["added"][0]["name"],
            "Over REST"
        );
    }
}

#[tokio::test]
async fn a_promoted_viewer_may_change_without_loading_again() {
    let server = TestServer::start().await;
    let (root, _alice, project) = project_of_alice(&server).await;
    let (victor_id, _) = server.user(&root, "victor").await;
    let membership = server.add_member(&root, &project, &victor_id, 1).await;
    let mut viewer = Client::connect(&server.base).await;
    viewer.login("victor", "victor-password").await;
    viewer.dataset(json!(project)).await;
    let (status, body) = server
        .patch(
            &format!("/api/v1/projects/{project}/members/{membership}"),
            &root,
            json!({"role": 100}),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let echo = viewer
        .change(
            &json!(project),
            "promoted-1",
            json!({"tasks": {"added": [{"$PhantomId": "_v", "name": "By Victor"}]}}),
        )
        .await;
    assert_eq!(echo["changes"]["tasks"]["added"][0]["name"], "By Victor");
}

#[tokio::test]
async fn a_phantom_resent_after_every_socket_left_is_still_an_update() {
    let server = TestServer::start().await;
    let (_root, alice, project) = project_of_alice(&server).await;
    let label = json!(project);
    let mut first = alice_on(&server, label.clone()).await;
    let added = json!({"tasks": {"added": [{"$PhantomId": "_resent", "name": "Once"}]}});
    let echo = first.change(&label, "local-1", added).await;
    let id = echo["changes"]["tasks"]["added"][0]["id"].clone();
    drop(first);
    // Let the server see the socket go, so the project has no Bryntum socket left.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut second = alice_on(&server, label.clone()).await;
    let again = json!({"tasks": {"added": [{"$PhantomId": "_resent", "name": "Once more"}]}});
    let echo = second.change(&label, "local-2", again).await;
    assert_eq!(echo["changes"]["tasks"]["added"][0]["id"], id);
    let names = server.record_names(&alice, &project, "tasks").await;
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().any(|n| n == "Once more"), "{names:?}");
}

#[tokio::test]
async fn a_phantom_resent_after_a_restart_is_still_an_update() {
    let mut server = TestServer::start().await;
    let (_root, _alice, project) = project_of_alice(&server).await;
    let label = json!(project);
    let mut before = alice_on(&server, label.clone()).await;
    let added = json!({"tasks": {"added": [{"$PhantomId": "_kept", "name": "Before"}]}});
    let echo = before.change(&label, "local-1", added).await;
    let id = echo["changes"]["tasks"]["added"][0]["id"].clone();
    drop(before);

    server.restart().await;
    let alice = server.login("alice", "alice-password").await;
    let mut after = alice_on(&server, label.clone()).await;
    let again = json!({"tasks": {"added": [{"$PhantomId": "_kept", "name": "After"}]}});
    let echo = after.change(&label, "local-2", again).await;
    assert_eq!(echo["changes"]["tasks"]["added"][0]["id"], id);
    let names = server.record_names(&alice, &project, "tasks").await;
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().any(|n| n == "After"), "{names:?}");
}

/// A Bryntum client that stops answering pings is closed (1008) after two unanswered pings,
/// as a native one is: before logging in, and idle on a loaded dataset (where the fan-out
/// writes to it directly). The server's clock is a manual one that only the test moves, by a
/// ping interval longer than the read guard, so pings that came in real time would fail it.
#[tokio::test]
async fn a_bryntum_socket_that_answers_no_ping_is_closed_after_two() {
    let ping_interval = 2 * GUARD;
    let server = TestServer::start_with(|c| {
        c.live.ws_ping_interval = ping_interval;
        c.clock = Clock::manual();
    })
    .await;
    let (_root, _alice, project) = project_of_alice(&server).await;

    let mut anonymous = raw_upgrade(server.addr(), "/ws/v1/bryntum").await;
    let (pings, code) = pings_until_close(&server, &mut anonymous, ping_interval).await;
    assert_eq!((pings, code), (2, 1008), "before login");

    // A real client logs in and loads the dataset, then goes silent: from here on the test
    // reads its TCP stream itself, so nothing answers the server's pings.
    let loaded = alice_on(&server, json!(project)).await;
    let MaybeTlsStream::Plain(mut tcp) = loaded.ws.into_inner() else {
        panic!("a plain TCP stream");
    };
    let (pings, code) = pings_until_close(&server, &mut tcp, ping_interval).await;
    assert_eq!((pings, code), (2, 1008), "on a loaded dataset");

    // The closed socket left the node's roster: the users list no longer names alice.
    let mut admin = Client::connect(&server.base).await;
    admin.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    admin.send(json!({"command": "users"})).await;
    let users = admin.recv_command("users").await["data"]["users"].clone();
    assert_eq!(users, json!([ADMIN_EMAIL]), "{users}");
}
