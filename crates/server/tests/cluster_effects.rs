//! Cross-node effects (CONTRACT §9): two real nodes on one PostgreSQL database and a Redis
//! server of the test's own. Presence and the roster count both nodes' connections and heal
//! after a node vanishes or Redis restarts; logouts and password changes close the session's
//! connections on the other node; SSE slots and login attempts are counted across nodes;
//! nothing answers 500 while Redis is down.

use futures::StreamExt;
use liveplan_server::Config;
use liveplan_testkit::cluster::Cluster;
use liveplan_testkit::proxy::Proxy;
use liveplan_testkit::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// Pings every 1.5 s: a node heartbeats every 0.5 s and is given up 1 s after its last one.
const PING: Duration = Duration::from_millis(1500);

fn short_ping(config: &mut Config) {
    config.live.ws_ping_interval = PING;
}

/// Two nodes (A = node 0, B = node 1) on one database and one private Redis.
async fn two_nodes() -> Cluster {
    Cluster::start_with(2, short_ping).await
}

/// A user made on `node`, with the password [`PASSWORD`]: (id, email, access token).
async fn person(node: &TestServer, name: &str) -> (Uuid, String, String) {
    let email = format!("{name}-{}@example.test", Uuid::now_v7().simple());
    let user = node
        .ok(
            Method::POST,
            &node.admin,
            "/api/v1/users",
            json!({"email": email, "password": PASSWORD, "display_name": name}),
        )
        .await;
    let id = Uuid::parse_str(user["id"].as_str().unwrap()).unwrap();
    let token = node.login(&email, PASSWORD).await;
    (id, email, token)
}

/// Polls `check` every 50 ms until it holds; panics with `what` after [`GUARD`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + GUARD;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The roster of `project` as `node` answers it: user id → connections.
async fn roster(node: &TestServer, token: &str, project: Uuid) -> Vec<(Uuid, u64)> {
    let (status, body) = node
        .get(&format!("/api/v1/projects/{project}/presence/"), token)
        .await;
    assert_eq!(status, 200, "{body}");
    let mut entries: Vec<(Uuid, u64)> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                Uuid::parse_str(e["user_id"].as_str().unwrap()).unwrap(),
                e["connections"].as_u64().unwrap(),
            )
        })
        .collect();
    entries.sort();
    entries
}

async fn roster_is(node: &TestServer, project: Uuid, mut expected: Vec<(Uuid, u64)>) -> bool {
    expected.sort();
    roster(node, &node.admin, project).await == expected
}

/// A native socket read in the background, as a browser reads it, so the server's pings are
/// answered however long the test looks elsewhere (pings come every 1.5 s here); its frames and
/// its close code come out of a channel. Dropping it cuts the connection.
struct Live {
    frames: mpsc::UnboundedReceiver<WsNext>,
    task: tokio::task::JoinHandle<()>,
}

impl Live {
    fn new(mut ws: Ws) -> Live {
        let (tx, frames) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let next = match ws.next().await {
                    None | Some(Err(_)) => WsNext::Closed(None),
                    Some(Ok(Message::Text(text))) => {
                        WsNext::Json(serde_json::from_str(&text).unwrap_or(Value::Null))
                    }
                    Some(Ok(Message::Close(frame))) => {
                        WsNext::Closed(frame.map(|f| u16::from(f.code)))
                    }
                    Some(Ok(_)) => continue,
                };
                let closed = matches!(next, WsNext::Closed(_));
                if tx.send(next).is_err() || closed {
                    return;
                }
            }
        });
        Live { frames, task }
    }

    /// The next frame or close within `wait`, `None` when nothing came.
    async fn next(&mut self, wait: Duration) -> Option<WsNext> {
        tokio::time::timeout(wait, self.frames.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next JSON frame; fails on a close or after [`GUARD`].
    async fn json(&mut self) -> Value {
        match self.next(GUARD).await {
            Some(WsNext::Json(frame)) => frame,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The close code, skipping frames; fails after [`GUARD`].
    async fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.next(GUARD).await {
                Some(WsNext::Closed(code)) => return code,
                Some(WsNext::Json(_)) => continue,
                None => panic!("the socket did not close in time"),
            }
        }
    }

    /// The next presence frame (others skipped), or `None` within `wait`.
    async fn presence(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await? {
                WsNext::Json(frame)
                    if frame["event_type"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("presence_")) =>
                {
                    return Some(frame);
                }
                WsNext::Json(_) => continue,
                WsNext::Closed(code) => {
                    panic!("socket closed ({code:?}) while waiting for presence")
                }
            }
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A native socket of `token` on `project` at `node`, read in the background.
async fn live(node: &TestServer, token: &str, project: Uuid) -> Live {
    Live::new(node.ws_project(token, project, None).await)
}

#[tokio::test]
async fn the_roster_counts_every_nodes_connections() {
    let cluster = two_nodes().await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    let project = a.new_project("roster").await;
    let (x, x_token) = a.new_user("xavier").await;
    let (y, y_token) = a.new_user("yvonne").await;
    a.new_member(project, x, 100).await;
    a.new_member(project, y, 100).await;

    let x_on_a = live(a, &x_token, project).await;
    let y_on_b = live(b, &y_token, project).await;
    for node in [&a, &b] {
        eventually("both users on both rosters", || {
            roster_is(node, project, vec![(x, 1), (y, 1)])
        })
        .await;
    }
    // A second tab of X on the other node: one user, two connections.
    let x_on_b = live(b, &x_token, project).await;
    eventually("X counted twice", || {
        roster_is(a, project, vec![(x, 2), (y, 1)])
    })
    .await;
    drop(x_on_a);
    eventually("X still there through B", || {
        roster_is(a, project, vec![(x, 1), (y, 1)])
    })
    .await;
    drop(x_on_b);
    eventually("X gone once the last connection anywhere closed", || {
        roster_is(a, project, vec![(y, 1)])
    })
    .await;
    drop(y_on_b);
    eventually("nobody left", || roster_is(b, project, vec![])).await;
}

#[tokio::test]
async fn a_node_that_vanishes_leaves_the_roster_and_its_users_leave_once() {
    let mut cluster = Cluster::start_with(1, short_ping).await;
    // Node B reaches Redis through a link the test can break: to the others it is then a node
    // that stopped without a goodbye.
    let link = Proxy::start(cluster.redis.address()).await;
    let through_link = format!("redis://{}", link.address());
    cluster
        .add_node_with(|config| {
            short_ping(config);
            config.redis_url = Some(through_link.clone());
        })
        .await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    let project = a.new_project("vanish").await;
    let (watcher, watcher_token) = a.new_user("watcher").await;
    let (x, x_token) = a.new_user("xavier").await;
    a.new_member(project, watcher, 100).await;
    a.new_member(project, x, 100).await;
    let mut watching = live(a, &watcher_token, project).await;
    let _x_on_b = live(b, &x_token, project).await;
    eventually("X on A's roster", || {
        roster_is(a, project, vec![(watcher, 1), (x, 1)])
    })
    .await;

    link.isolate();
    eventually("B's connections gone from A's roster", || {
        roster_is(a, project, vec![(watcher, 1)])
    })
    .await;
    // A, which gave B up, announced X's leave, once.
    let mut leaves = 0;
    while let Some(frame) = watching.presence(PING * 2).await {
        if frame["event_type"] == "presence_leave" && frame["payload"]["user_id"] == x.to_string() {
            leaves += 1;
        }
    }
    assert_eq!(leaves, 1, "one presence_leave for X");

    // B's link comes back: its next heartbeat publishes its connections again.
    link.heal();
    eventually("X back on A's roster", || {
        roster_is(a, project, vec![(watcher, 1), (x, 1)])
    })
    .await;
}

#[tokio::test]
async fn logout_on_one_node_closes_the_sessions_connections_on_the_other() {
    let cluster = two_nodes().await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    let project = a.new_project("logout").await;
    let (user, email, token) = person(a, "leaver").await;
    a.new_member(project, user, 100).await;
    // Another session of the same user, which must stay.
    let other_session = a.login(&email, PASSWORD).await;
    let mut ws = live(b, &token, project).await;
    let mut sse = b
        .sse(&token, &format!("/api/v1/projects/{project}/events"), None)
        .await;
    assert_eq!(sse.data().await.unwrap().json()["type"], "connected");
    let mut kept = live(b, &other_session, project).await;
    // Two sockets and the SSE stream: three live connections to the project.
    eventually("the connections are on B's roster", || {
        roster_is(b, project, vec![(user, 3)])
    })
    .await;

    let (status, body) = a
        .call(Method::POST, "/api/v1/auth/logout", Some(&token), None)
        .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(ws.close_code().await, Some(4003));
    sse.ended().await;
    // The other session's socket is untouched: it still gets events.
    b.task(&b.admin, project, "after logout").await;
    loop {
        let frame = kept.json().await;
        if frame["event_type"] == "task_created" {
            break;
        }
    }
}

#[tokio::test]
async fn a_password_change_on_one_node_closes_every_connection_of_the_user_on_the_other() {
    let cluster = two_nodes().await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    let project = a.new_project("password").await;
    let (user, token) = a.new_user("changer").await;
    a.new_member(project, user, 100).await;
    let mut ws = live(b, &token, project).await;
    eventually("the socket is on B's roster", || {
        roster_is(b, project, vec![(user, 1)])
    })
    .await;
    let (status, body) = a
        .patch(
            "/api/v1/users/me",
            &token,
            json!({"password": "a-brand-new-password", "current_password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ws.close_code().await, Some(4003));
}

#[tokio::test]
async fn the_sse_cap_counts_streams_on_every_node() {
    let cluster = Cluster::start_with(2, |config| {
        short_ping(config);
        config.live.sse_max_per_user = 2;
    })
    .await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    let project = a.new_project("cap").await;
    let (user, token) = a.new_user("streamer").await;
    a.new_member(project, user, 1).await;
    let path = format!("/api/v1/projects/{project}/events");
    let mut on_a = a.sse(&token, &path, None).await;
    let mut on_b = b.sse(&token, &path, None).await;
    for stream in [&mut on_a, &mut on_b] {
        assert_eq!(stream.data().await.unwrap().json()["type"], "connected");
    }
    for node in [&a, &b] {
        let refused = node
            .http
            .get(node.url(&path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            refused.status(),
            429,
            "a third stream on any node is refused"
        );
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limited");
    }
    // A stream that ends gives its slot back to the whole cluster.
    drop(on_a);
    eventually("a slot is free again, on the other node", || async {
        let response = b
            .http
            .get(b.url(&path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        response.status() == 200
    })
    .await;
}

#[tokio::test]
async fn login_attempts_are_counted_across_nodes() {
    let cluster = Cluster::start_with(2, |config| {
        short_ping(config);
        // The production per-account limit (10 a minute); the per-address one stays high so
        // that only the account is counted here.
        config.rates.logins_per_account_per_minute = 10;
        config.rates.logins_per_address_per_minute = 10_000;
    })
    .await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    let email = format!("target-{}@example.test", Uuid::now_v7().simple());
    a.ok(
        Method::POST,
        &a.admin,
        "/api/v1/users",
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    // Alternating nodes: each node alone would allow 10, so 20 in all.
    let mut allowed = 0;
    for attempt in 0..30 {
        let node = if attempt % 2 == 0 { &a } else { &b };
        let (status, body) = node
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"email": email, "password": "wrong-password"})),
            )
            .await;
        match status.as_u16() {
            401 => allowed += 1,
            429 => {
                assert_eq!(body["error"]["code"], "rate_limited");
                break;
            }
            other => panic!("attempt {attempt}: {other} {body}"),
        }
    }
    assert_eq!(
        allowed, 10,
        "10 attempts a minute for the account, whichever node"
    );
}

#[tokio::test]
async fn while_redis_is_down_nodes_fall_back_and_heal_after() {
    let mut cluster = two_nodes().await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let project = a.new_project("outage").await;
    let (user, email, token) = person(a, "resilient").await;
    let (other, other_token) = a.new_user("other").await;
    a.new_member(project, user, 100).await;
    a.new_member(project, other, 100).await;
    let mut ws = live(b, &token, project).await;
    let _other_on_a = live(a, &other_token, project).await;
    eventually("both on the roster", || {
        roster_is(a, project, vec![(user, 1), (other, 1)])
    })
    .await;

    let (third, third_token) = a.new_user("third").await;
    let third_membership = a.new_member(project, third, 100).await;
    let mut third_on_b = live(b, &third_token, project).await;
    let (fourth, fourth_token) = a.new_user("fourth").await;
    let fourth_membership = a.new_member(project, fourth, 100).await;
    let mut fourth_on_b = live(b, &fourth_token, project).await;

    cluster.redis.kill();
    // A removal B cannot hear of now (its event stays on A's side of the bus).
    let (status, body) = a
        .call(
            Method::DELETE,
            &format!("/api/v1/projects/{project}/members/{fourth_membership}"),
            Some(&a.admin),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    // Nothing answers 500: logins, tickets, SSE, the roster go on with the node's own state.
    let fresh = a.login(&email, PASSWORD).await;
    let _ = a.ticket(&fresh).await;
    let mut sse = a
        .sse(&fresh, &format!("/api/v1/projects/{project}/events"), None)
        .await;
    assert_eq!(sse.data().await.unwrap().json()["type"], "connected");
    let local = roster(a, &a.admin, project).await;
    assert!(
        local.contains(&(other, 1)),
        "A's own connections are on its roster: {local:?}"
    );
    // A logout B cannot hear of now.
    let (status, _) = a
        .call(Method::POST, "/api/v1/auth/logout", Some(&token), None)
        .await;
    assert_eq!(status, 204);

    cluster.redis.start_again();
    // B's control channel and bus reconnect; B re-checks its connections and reads what it
    // missed: the logged-out session's socket and the removed member's close.
    assert_eq!(ws.close_code().await, Some(4003));
    assert_eq!(fourth_on_b.close_code().await, Some(4003));
    // Presence heals: each node's connections are published again (the logged-out socket
    // closed; the user's SSE stream on A, on the fresh session, keeps them present).
    for node in [a, b] {
        eventually("the roster healed", || {
            roster_is(node, project, vec![(other, 1), (third, 1), (user, 1)])
        })
        .await;
    }
    // And evictions work as before: a logout on B reaches A, a removal on A reaches B.
    let (status, _) = b
        .call(Method::POST, "/api/v1/auth/logout", Some(&fresh), None)
        .await;
    assert_eq!(status, 204);
    sse.ended().await;
    let (status, body) = a
        .call(
            Method::DELETE,
            &format!("/api/v1/projects/{project}/members/{third_membership}"),
            Some(&a.admin),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(third_on_b.close_code().await, Some(4003));
}

/// A member of `project` on node B with a native socket and an SSE stream there, both known to
/// be live (a write on A reached them).
async fn member_on_b(
    a: &TestServer,
    b: &TestServer,
    project: Uuid,
    name: &str,
    role: i64,
) -> (Uuid, String, Uuid, Option<Live>, SseReader) {
    let (user, token) = a.new_user(name).await;
    let membership = a.new_member(project, user, role).await;
    let ws = if role >= 100 {
        let mut ws = live(b, &token, project).await;
        // The socket subscribes after the upgrade, "live from now": until its own join comes
        // back, a write on A may commit before the subscription and never reach it.
        let join = ws
            .presence(GUARD)
            .await
            .expect("the socket's own presence join");
        assert_eq!(join["event_type"], "presence_join", "{join}");
        Some(ws)
    } else {
        None
    };
    let mut sse = b
        .sse(&token, &format!("/api/v1/projects/{project}/events"), None)
        .await;
    assert_eq!(sse.data().await.unwrap().json()["type"], "connected");
    (user, token, membership, ws, sse)
}

/// Waits until a write on A reaches the SSE stream on B (the bus carries A's events there).
async fn synced(a: &TestServer, project: Uuid, sse: &mut SseReader) {
    a.task(&a.admin, project, "sync").await;
    loop {
        let message = sse.event().await.expect("the stream is open");
        if message.json()["type"] == "ticket.created" {
            return;
        }
    }
}

#[tokio::test]
async fn removal_on_one_node_closes_the_users_connections_on_the_other() {
    let cluster = two_nodes().await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    let project = a.new_project("removal").await;
    let (_, token, membership, ws, mut sse) = member_on_b(a, b, project, "removed", 100).await;
    let mut ws = ws.unwrap();
    synced(a, project, &mut sse).await;
    loop {
        let frame = ws.json().await;
        if frame["event_type"] == "task_created" {
            break;
        }
    }
    let (status, body) = a
        .call(
            Method::DELETE,
            &format!("/api/v1/projects/{project}/members/{membership}"),
            Some(&a.admin),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    // B evicted before it delivered anything after the removal: nothing logged reaches the
    // socket before its close, the stream ends without the removal or anything later.
    loop {
        match ws.next(GUARD).await {
            Some(WsNext::Closed(code)) => {
                assert_eq!(code, Some(4003));
                break;
            }
            // The user's own presence join may still be on its way (ephemeral, no seq).
            Some(WsNext::Json(frame)) if frame["seq"].is_null() => continue,
            other => panic!("nothing logged after the removal reaches it: {other:?}"),
        }
    }
    assert!(
        sse.event().await.is_none(),
        "the stream ends with nothing more"
    );
    let mut again = live(b, &token, project).await;
    assert_eq!(again.close_code().await, Some(4003));
}

#[tokio::test]
async fn demotion_on_one_node_closes_the_socket_on_the_other_but_not_sse() {
    let cluster = two_nodes().await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    let project = a.new_project("demotion").await;
    let (_, _, membership, ws, mut sse) = member_on_b(a, b, project, "demoted", 100).await;
    let mut ws = ws.unwrap();
    synced(a, project, &mut sse).await;
    a.ok(
        Method::PATCH,
        &a.admin,
        &format!("/api/v1/projects/{project}/members/{membership}"),
        json!({"role": 1}),
    )
    .await;
    assert_eq!(ws.close_code().await, Some(4003));
    // A Viewer still reads SSE: a later write on A arrives.
    synced(a, project, &mut sse).await;
}

#[tokio::test]
async fn deactivation_on_one_node_closes_every_connection_of_the_user_on_the_other() {
    let cluster = two_nodes().await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    let project = a.new_project("deactivation").await;
    let (user, _, _, ws, mut sse) = member_on_b(a, b, project, "deactivated", 100).await;
    let mut ws = ws.unwrap();
    synced(a, project, &mut sse).await;
    a.ok(
        Method::PATCH,
        &a.admin,
        &format!("/api/v1/users/{user}"),
        json!({"is_active": false}),
    )
    .await;
    assert_eq!(ws.close_code().await, Some(4003));
    sse.ended().await;
}

#[tokio::test]
async fn deleting_a_project_on_one_node_closes_its_connections_on_the_other() {
    let cluster = two_nodes().await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    let project = a.new_project("deletion").await;
    let (_, _, _, ws, mut sse) = member_on_b(a, b, project, "orphan", 100).await;
    let mut ws = ws.unwrap();
    synced(a, project, &mut sse).await;
    let (status, body) = a
        .call(
            Method::DELETE,
            &format!("/api/v1/projects/{project}"),
            Some(&a.admin),
            None,
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    assert_eq!(ws.close_code().await, Some(4003));
    sse.ended().await;
}

#[tokio::test]
async fn presence_events_count_every_node() {
    let cluster = two_nodes().await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    let project = a.new_project("presence").await;
    let (watcher, watcher_token) = a.new_user("watcher").await;
    let (x, x_token) = a.new_user("xavier").await;
    a.new_member(project, watcher, 100).await;
    a.new_member(project, x, 100).await;
    let mut watching = live(b, &watcher_token, project).await;
    let own = watching.presence(GUARD).await.expect("own join");
    assert_eq!(own["payload"]["user_id"], watcher.to_string());

    // X's first connection anywhere (on A) joins, seen on B.
    let x_on_a = live(a, &x_token, project).await;
    let join = watching.presence(GUARD).await.expect("X joins");
    assert_eq!(join["event_type"], "presence_join");
    assert_eq!(join["payload"]["user_id"], x.to_string());
    // A second tab on B is no new join; closing the first is no leave.
    let x_on_b = live(b, &x_token, project).await;
    eventually("X counted twice", || {
        roster_is(b, project, vec![(watcher, 1), (x, 2)])
    })
    .await;
    drop(x_on_a);
    eventually("X's A tab gone", || {
        roster_is(b, project, vec![(watcher, 1), (x, 1)])
    })
    .await;
    assert_eq!(watching.presence(PING).await, None, "no flap");
    // The last one anywhere leaves.
    drop(x_on_b);
    let leave = watching.presence(GUARD).await.expect("X leaves");
    assert_eq!(leave["event_type"], "presence_leave");
    assert_eq!(leave["payload"]["user_id"], x.to_string());
}

#[tokio::test]
async fn a_bryntum_revision_on_one_node_reaches_bryntum_clients_on_the_other() {
    use liveplan_testkit::bryntum::{Client, owned_project};
    let cluster = two_nodes().await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    let (root, _, project) = owned_project(a, "alice", "Across", "Existing").await;
    let (bob, _) = a.user(&root, "bob").await;
    a.add_member(&root, &project, &bob, 100).await;
    let label = json!(project);
    let mut alice = Client::on_dataset(a, "alice", label.clone()).await;
    let mut bob = Client::on_dataset(b, "bob", label.clone()).await;

    let echo = alice
        .change(
            &label,
            "local-1",
            json!({"tasks": {"added": [{"$PhantomId": "_new", "name": "Made on A"}]}}),
        )
        .await;
    let id = echo["changes"]["tasks"]["added"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(echo["changes"]["tasks"]["added"][0]["$PhantomId"], "_new");
    let seen = bob.recv_command("project_change").await;
    let revision = &seen["data"]["revisions"][0];
    assert_eq!(
        revision["revision"], echo["revision"],
        "the same server revision"
    );
    assert_eq!(revision["localRevision"], "local-1");
    assert_eq!(revision["client"], echo["client"]);
    assert_eq!(revision["changes"]["tasks"]["added"][0]["id"], json!(id));

    // A revision of view state only (nothing liveplan keeps) has no event to ride on: it
    // still reaches the other node's client.
    let view = json!({"timeRanges": {"added": [{"$PhantomId": "_range", "name": "Sprint"}]}});
    let echo = alice.change(&label, "local-2", view).await;
    assert_eq!(echo["localRevision"], "local-2");
    let seen = bob.recv_command("project_change").await;
    assert_eq!(seen["data"]["revisions"][0]["localRevision"], "local-2");
    assert_eq!(
        seen["data"]["revisions"][0]["changes"]["timeRanges"]["added"][0]["name"],
        "Sprint"
    );
    // And the phantom created on A is known on B: bob updating it by phantom updates the same
    // record.
    let _ = bob;
    let (_, tasks) = b
        .get(&format!("/api/v1/projects/{project}/tasks"), &root)
        .await;
    let made: Vec<&Value> = tasks
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"] == "Made on A")
        .collect();
    assert_eq!(made.len(), 1, "one record for the phantom");
}
