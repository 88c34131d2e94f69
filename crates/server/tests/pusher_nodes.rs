//! The Pusher Channels protocol across nodes (CONTRACT §10: "across nodes everything is
//! cluster-wide"; §9): real `pusher-js` 8 clients (tests/node/pusher-driver.cjs) on different
//! nodes of one cluster (PostgreSQL + a private Redis), the real `pusher` SDK 5
//! (tests/node/pusher-sdk.cjs) on the HTTP API. App and client events cross nodes, presence and
//! occupancy count every node, `terminate_connections` reaches every node, webhooks go out once,
//! a SIGKILLed node's members leave and a restarted Redis heals.
//!
//! Needs PostgreSQL (`testkit::cluster`), `redis-server`, and `npm` (without npm the tests are
//! skipped with a loud message).

use liveplan_server::Config;
use liveplan_server::pusher::credentials::PusherCredentials;
use liveplan_server::pusher::directory::ChannelDirectory;
use liveplan_server::pusher::signature::{channel_auth, user_auth};
use liveplan_testkit::cluster::Cluster;
use liveplan_testkit::pusher_js::PusherJs;
use liveplan_testkit::*;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_liveplan");
/// The nodes' ping interval: the Pusher state's heartbeat is a third of it, a silent node is
/// given up after three heartbeats.
const PING: Duration = Duration::from_millis(3000);

fn creds() -> PusherCredentials {
    PusherCredentials::demo()
}

fn tune(config: &mut Config) {
    config.pusher_credentials = Some(creds());
    config.live.ws_ping_interval = PING;
}

async fn npm_ready() -> bool {
    liveplan_testkit::node::npm_ready(
        &["pusher-js", "pusher"],
        "pusher_nodes (pusher-js and the pusher SDK)",
    )
    .await
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + GUARD;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `ops` through the real `pusher` SDK against the node on `port`; one answer per op.
async fn sdk(port: u16, ops: Vec<Value>) -> Vec<Value> {
    liveplan_testkit::node::pusher_sdk(&creds(), port, ops).await
}

/// One SDK call that must answer 200: its body.
async fn sdk_ok(port: u16, op: Value) -> Value {
    let answer = sdk(port, vec![op.clone()]).await.remove(0);
    assert_eq!(answer["status"], 200, "{op} → {answer}");
    answer["body"].clone()
}

fn get(path: &str, params: Value) -> Value {
    json!({"op": "get", "path": path, "params": params})
}

fn is_event(client: &str, event: &str) -> impl Fn(&Value) -> bool {
    let (client, event) = (client.to_owned(), event.to_owned());
    move |l: &Value| l["client"] == client.as_str() && l["event"] == event.as_str()
}

fn member_event(client: &str, event: &str, user: &str) -> impl Fn(&Value) -> bool {
    let is = is_event(client, event);
    let user = user.to_owned();
    move |l: &Value| is(l) && l["data"]["id"] == user.as_str()
}

fn member(user: &str) -> Value {
    json!({"user_id": user, "user_info": {"name": user}})
}

fn port(cluster: &Cluster, i: usize) -> u16 {
    cluster.node(i).addr().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_and_client_events_reach_sockets_on_every_node() {
    if !npm_ready().await {
        return;
    }
    let cluster = Cluster::start_with(2, tune).await;
    let (p0, p1) = (port(&cluster, 0), port(&cluster, 1));
    let mut driver = PusherJs::start(creds()).await;
    let _a = driver.connect("a", p0, member("alice")).await;
    let b = driver.connect("b", p1, member("bob")).await;
    for client in ["a", "b"] {
        driver.subscribe(client, "news", &[]).await;
        driver
            .subscribe(client, "private-room", &["client-x"])
            .await;
    }

    // Published through node 0's HTTP API: node 1's socket gets it.
    let answer = sdk_ok(
        p0,
        json!({"op": "trigger", "channels": ["news"], "event": "hello", "data": {"n": 1}}),
    )
    .await;
    assert_eq!(answer, json!({}));
    let got = driver.expect(is_event("b", "hello")).await;
    assert_eq!(got["data"]["n"], 1);
    driver.expect(is_event("a", "hello")).await;

    // `socket_id` excludes a socket of another node; the next event shows the excluded one
    // would have arrived by then.
    let answers = sdk(
        p0,
        vec![
            json!({"op": "trigger", "channels": ["news"], "event": "skip", "data": {"n": 2},
                "params": {"socket_id": b}}),
            json!({"op": "trigger", "channels": ["news"], "event": "after", "data": {"n": 3}}),
        ],
    )
    .await;
    assert!(answers.iter().all(|a| a["status"] == 200), "{answers:?}");
    driver.expect(is_event("b", "after")).await;
    driver.expect(is_event("a", "skip")).await;
    assert_eq!(driver.count(is_event("b", "skip")), 0, "b was excluded");

    // Published on node 1: node 0's socket gets it.
    sdk_ok(
        p1,
        json!({"op": "trigger", "channels": ["news"], "event": "back", "data": {"n": 4}}),
    )
    .await;
    driver.expect(is_event("a", "back")).await;
    driver.expect(is_event("b", "back")).await;

    // Client events both ways, not echoed to their sender.
    driver
        .command(json!({"op": "trigger", "client": "a", "channel": "private-room", "event": "client-x", "data": {"from": "a"}}))
        .await;
    let got = driver
        .expect(|l| l["type"] == "bound" && l["client"] == "b" && l["event"] == "client-x")
        .await;
    assert_eq!(got["data"]["from"], "a");
    driver
        .command(json!({"op": "trigger", "client": "b", "channel": "private-room", "event": "client-x", "data": {"from": "b"}}))
        .await;
    let got = driver
        .expect(|l| l["type"] == "bound" && l["client"] == "a" && l["event"] == "client-x")
        .await;
    assert_eq!(got["data"]["from"], "b");
    assert_eq!(
        driver.count(|l| l["type"] == "bound" && l["client"] == "a" && l["data"]["from"] == "a"),
        0,
        "not echoed"
    );
    driver.command(json!({"op": "exit"})).await;
}

/// The serials of an app channel are one sequence whichever node published: a raw socket on
/// node 1 sees them consecutive, with one `stream_id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serials_stay_one_per_channel_across_nodes() {
    if !npm_ready().await {
        return;
    }
    let cluster = Cluster::start_with(2, tune).await;
    let (p0, p1) = (port(&cluster, 0), port(&cluster, 1));
    let mut ws = ws_connect(cluster.node(1).addr(), "/app/app-key?protocol=7").await;
    assert_eq!(
        ws_json(&mut ws).await["event"],
        "pusher:connection_established"
    );
    ws_send(
        &mut ws,
        tokio_tungstenite::tungstenite::Message::Text(
            json!({"event": "pusher:subscribe", "data": {"channel": "tape"}})
                .to_string()
                .into(),
        ),
    )
    .await;
    assert_eq!(
        ws_json(&mut ws).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    for n in 0..6 {
        let port = if n % 2 == 0 { p0 } else { p1 };
        sdk_ok(
            port,
            json!({"op": "trigger", "channels": ["tape"], "event": "tick", "data": {"n": n}}),
        )
        .await;
    }
    let mut serials = Vec::new();
    let mut streams = Vec::new();
    while serials.len() < 6 {
        let frame = ws_json(&mut ws).await;
        if frame["event"] == "tick" {
            serials.push(frame["serial"].as_i64().unwrap());
            streams.push(frame["stream_id"].as_str().unwrap().to_owned());
        }
    }
    let first = serials[0];
    assert_eq!(serials, (first..first + 6).collect::<Vec<_>>());
    assert!(streams.iter().all(|s| *s == streams[0]), "{streams:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_counts_and_terminate_connections_span_the_nodes() {
    if !npm_ready().await {
        return;
    }
    let cluster = Cluster::start_with(2, tune).await;
    let (p0, p1) = (port(&cluster, 0), port(&cluster, 1));
    let mut driver = PusherJs::start(creds()).await;
    // Alice and Bob, a tab on each node each.
    driver.connect("a1", p0, member("alice")).await;
    driver.connect("a2", p1, member("alice")).await;
    driver.connect("b1", p1, member("bob")).await;
    driver.connect("b2", p0, member("bob")).await;
    let room = "presence-room";
    for (client, expected) in [
        ("a1", json!(["alice"])),
        ("a2", json!(["alice"])),
        ("b1", json!(["alice", "bob"])),
        ("b2", json!(["alice", "bob"])),
    ] {
        driver.subscribe(client, room, &["client-sync"]).await;
        assert_eq!(driver.members(client, room).await, expected, "{client}");
    }
    driver.subscribe("a1", "lobby", &[]).await;
    driver.subscribe("b1", "lobby", &[]).await;
    // Bob's second tab said something after it joined: whatever its join caused has arrived.
    driver.sync("b2", room, &["a1", "a2", "b1"], 1).await;
    for client in ["a1", "a2"] {
        assert_eq!(
            driver.count(member_event(client, "pusher:member_added", "bob")),
            1,
            "{client} saw Bob join once"
        );
    }
    for client in ["a1", "a2", "b1", "b2"] {
        assert_eq!(
            driver.count(member_event(client, "pusher:member_added", "alice")),
            0,
            "nobody saw Alice's second tab as a member"
        );
    }

    // The HTTP API, asked on either node, counts both.
    for port in [p0, p1] {
        let listed = sdk_ok(
            port,
            get(
                "/channels",
                json!({"filter_by_prefix": "presence-", "info": "user_count"}),
            ),
        )
        .await;
        assert_eq!(
            listed,
            json!({"channels": {"presence-room": {"user_count": 2}}})
        );
        let all = sdk_ok(
            port,
            get("/channels", json!({"info": "subscription_count"})),
        )
        .await;
        assert_eq!(all["channels"]["lobby"]["subscription_count"], 2, "{all}");
        assert_eq!(all["channels"]["presence-room"]["subscription_count"], 4);
        let one = sdk_ok(
            port,
            get(
                "/channels/presence-room",
                json!({"info": "subscription_count,user_count"}),
            ),
        )
        .await;
        assert_eq!(
            one,
            json!({"occupied": true, "subscription_count": 4, "user_count": 2})
        );
        let users = sdk_ok(port, get("/channels/presence-room/users", json!({}))).await;
        assert_eq!(users, json!({"users": [{"id": "alice"}, {"id": "bob"}]}));
    }

    // Bob's tab on node 1 leaves: he still has one on node 0, nobody hears he left.
    driver
        .command(json!({"op": "disconnect", "client": "b1"}))
        .await;
    let node0 = cluster.node(0).running().pusher.clone();
    eventually("three sockets on the room", || {
        let node0 = node0.clone();
        async move { node0.channel(room).await.unwrap().subscription_count == 3 }
    })
    .await;
    driver.sync("a2", room, &["a1", "b2"], 2).await;
    assert_eq!(
        driver.count(|l| l["event"] == "pusher:member_removed"),
        0,
        "Bob still has a tab"
    );
    // His last tab leaves: both of Alice's tabs hear it, once.
    driver
        .command(json!({"op": "disconnect", "client": "b2"}))
        .await;
    for client in ["a1", "a2"] {
        driver
            .expect(member_event(client, "pusher:member_removed", "bob"))
            .await;
    }
    driver.sync("a1", room, &["a2"], 3).await;
    driver.sync("a2", room, &["a1"], 4).await;
    assert_eq!(driver.count(|l| l["event"] == "pusher:member_removed"), 0);
    let users = sdk_ok(p0, get("/channels/presence-room/users", json!({}))).await;
    assert_eq!(users, json!({"users": [{"id": "alice"}]}));

    // Alice signs in on both nodes, Carol on node 1; terminating Alice's connections through
    // node 0 closes both of hers (4009) and not Carol's.
    driver.connect("c1", p1, member("carol")).await;
    for client in ["a1", "a2", "c1"] {
        driver
            .command(json!({"op": "signin", "client": client}))
            .await;
        driver
            .expect(|l| l["client"] == client && l["event"] == "pusher:signin_success")
            .await;
    }
    driver.subscribe("c1", "lobby", &[]).await;
    let answer = sdk(
        p0,
        vec![json!({"op": "terminateUserConnections", "userId": "alice"})],
    )
    .await
    .remove(0);
    assert_eq!(answer["status"], 200, "{answer}");
    for client in ["a1", "a2"] {
        let error = driver
            .expect(|l| l["client"] == client && l["event"] == "pusher:error")
            .await;
        assert_eq!(error["data"]["code"], 4009, "{error}");
    }
    eventually("Alice's tabs gone from the room", || {
        let node0 = node0.clone();
        async move { node0.presence_users(room).await.unwrap().is_empty() }
    })
    .await;
    sdk_ok(
        p0,
        json!({"op": "trigger", "channels": ["lobby"], "event": "still", "data": {}}),
    )
    .await;
    driver.expect(is_event("c1", "still")).await;
    assert_eq!(
        driver.count(|l| l["client"] == "c1" && l["event"] == "pusher:error"),
        0,
        "Carol's socket stays"
    );
    driver.command(json!({"op": "exit"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_members_and_sockets_leave_the_survivors() {
    if !npm_ready().await {
        return;
    }
    let cluster = Cluster::start_with(1, tune).await;
    let credentials = creds();
    let mut doomed = cluster.spawn_binary(
        Path::new(BIN),
        &[
            "--pusher-app-id",
            &credentials.app_id,
            "--pusher-key",
            &credentials.key,
            "--pusher-secret",
            &credentials.secret,
        ],
    );
    let (p0, p_doomed) = (port(&cluster, 0), doomed.addr().port());
    let mut driver = PusherJs::start(creds()).await;
    driver.connect("a", p_doomed, member("alice")).await;
    driver.connect("b", p0, member("bob")).await;
    let room = "presence-room";
    driver.subscribe("a", room, &[]).await;
    assert_eq!(driver.members("a", room).await, json!(["alice"]));
    driver.subscribe("b", room, &[]).await;
    assert_eq!(driver.members("b", room).await, json!(["alice", "bob"]));
    driver.subscribe("a", "only-there", &[]).await;
    let node0 = cluster.node(0).running().pusher.clone();
    assert_eq!(
        node0
            .channel("only-there")
            .await
            .unwrap()
            .subscription_count,
        1
    );

    doomed.kill();
    // The survivor gives the node up (its TTL: one ping interval, 30 s for the binary) and
    // announces Alice's leave.
    let removed = driver
        .expect_within(
            Duration::from_secs(75),
            &member_event("b", "pusher:member_removed", "alice"),
        )
        .await;
    assert!(removed.is_some(), "Alice never left: {:#?}", driver.seen);
    assert_eq!(node0.presence_users(room).await.unwrap(), vec!["bob"]);
    let listed = sdk_ok(p0, get("/channels", json!({"info": "subscription_count"}))).await;
    assert_eq!(
        listed,
        json!({"channels": {"presence-room": {"subscription_count": 1}}})
    );
    driver.command(json!({"op": "exit"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn occupancy_and_cross_node_delivery_heal_after_redis_restarts() {
    if !npm_ready().await {
        return;
    }
    let mut cluster = Cluster::start_with(2, tune).await;
    let (p0, p1) = (port(&cluster, 0), port(&cluster, 1));
    let mut driver = PusherJs::start(creds()).await;
    driver.connect("a", p0, member("alice")).await;
    driver.connect("b", p1, member("bob")).await;
    let room = "presence-room";
    for client in ["a", "b"] {
        driver.subscribe(client, room, &[]).await;
        driver.members(client, room).await;
        driver.subscribe(client, "lobby", &[]).await;
    }
    let node0 = cluster.node(0).running().pusher.clone();
    assert_eq!(node0.channel(room).await.unwrap().subscription_count, 2);

    // Redis forgets everything while the nodes stay connected: only their heartbeats can
    // bring the counts back.
    let client = redis::Client::open(cluster.redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    drop(conn);
    assert!(
        healed(&mut driver, &node0, room).await,
        "the room never counted on both nodes again after FLUSHALL"
    );

    // Redis restarts empty (the nodes reconnect; their sockets stay open).
    cluster.redis.kill();
    // Alone meanwhile: node 0 answers from its own sockets, and they still get its events.
    let alone = sdk_ok(
        p0,
        get(
            "/channels/presence-room",
            json!({"info": "subscription_count,user_count"}),
        ),
    )
    .await;
    assert_eq!(
        alone,
        json!({"occupied": true, "subscription_count": 1, "user_count": 1})
    );
    sdk_ok(
        p0,
        json!({"op": "trigger", "channels": ["lobby"], "event": "alone", "data": {}}),
    )
    .await;
    driver.expect(is_event("a", "alone")).await;
    cluster.redis.start_again();
    assert!(
        healed(&mut driver, &node0, room).await,
        "the room never counted on both nodes again after a restart: {:#?}",
        driver.seen
    );
    let one = sdk_ok(
        p1,
        get(
            "/channels/presence-room",
            json!({"info": "subscription_count,user_count"}),
        ),
    )
    .await;
    assert_eq!(
        one,
        json!({"occupied": true, "subscription_count": 2, "user_count": 2})
    );
    assert_eq!(
        driver.count(|l| l["type"] == "error" || l["event"] == "pusher:error"),
        0,
        "no socket was closed by Redis going away: {:#?}",
        driver.seen
    );
    // Events cross again once the nodes' subscriptions are back (events published before
    // that are lost, as Pusher's are: the client resumes).
    let mut crossed = false;
    for n in 0..100 {
        sdk_ok(
            p0,
            json!({"op": "trigger", "channels": ["lobby"], "event": "again", "data": {"n": n}}),
        )
        .await;
        if driver
            .expect_within(Duration::from_millis(300), &is_event("b", "again"))
            .await
            .is_some()
        {
            crossed = true;
            break;
        }
    }
    assert!(crossed, "node 1's socket never heard node 0 again");
    driver.command(json!({"op": "exit"})).await;
}

/// Waits (answering the clients' auth requests meanwhile: they may resubscribe) until node 0
/// counts both sockets and both members of `room`; false after about [`GUARD`].
async fn healed(
    driver: &mut PusherJs,
    node0: &Arc<liveplan_server::dialects::pusher::PusherNode>,
    room: &str,
) -> bool {
    for _ in 0..300 {
        driver
            .expect_within(Duration::from_millis(100), &|_: &Value| false)
            .await;
        let info = node0.channel(room).await.unwrap();
        if info.subscription_count == 2 && info.user_count == Some(2) {
            return true;
        }
    }
    false
}

/// Webhooks the receiver got: every event of every POST, with the node it came from unknown.
#[derive(Default)]
struct Hooks(Mutex<Vec<Value>>);

impl Hooks {
    fn count(&self, name: &str, channel: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["name"] == name && e["channel"] == channel)
            .count()
    }
}

async fn hooks_receiver() -> (Arc<Hooks>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    let hooks = Arc::new(Hooks::default());
    let state = hooks.clone();
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |body: axum::body::Bytes| {
            let state = state.clone();
            async move {
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                for event in body["events"].as_array().into_iter().flatten() {
                    state.0.lock().unwrap().push(event.clone());
                }
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (hooks, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_decided_cluster_wide_and_sent_once() {
    if !npm_ready().await {
        return;
    }
    let (hooks, url) = hooks_receiver().await;
    let cluster = Cluster::start_with(2, |c| {
        tune(c);
        c.pusher_webhook_urls = vec![url.clone()];
    })
    .await;
    let (p0, p1) = (port(&cluster, 0), port(&cluster, 1));
    let mut driver = PusherJs::start(creds()).await;
    driver.connect("x0", p0, member("alice")).await;
    driver.connect("x1", p1, member("alice")).await;
    let hall = "presence-hall";
    for client in ["x0", "x1"] {
        driver.subscribe(client, "room", &[]).await;
        driver.subscribe(client, hall, &[]).await;
        driver.members(client, hall).await;
    }
    eventually("room occupied reported", || async {
        hooks.count("channel_occupied", "room") >= 1 && hooks.count("member_added", hall) >= 1
    })
    .await;
    for client in ["x0", "x1"] {
        driver
            .command(json!({"op": "disconnect", "client": client}))
            .await;
    }
    eventually("room vacated reported", || async {
        hooks.count("channel_vacated", "room") >= 1
            && hooks.count("member_removed", hall) >= 1
            && hooks.count("channel_vacated", hall) >= 1
    })
    .await;
    // A later occupy-and-vacate on each node: their webhooks come after anything either node
    // still had to say about the room (each node sends in order, with the same grace).
    driver.connect("s0", p0, member("sync")).await;
    driver.connect("s1", p1, member("sync")).await;
    driver.subscribe("s0", "sync-0", &[]).await;
    driver.subscribe("s1", "sync-1", &[]).await;
    driver
        .command(json!({"op": "disconnect", "client": "s0"}))
        .await;
    driver
        .command(json!({"op": "disconnect", "client": "s1"}))
        .await;
    eventually("the sync channels vacated", || async {
        hooks.count("channel_vacated", "sync-0") == 1
            && hooks.count("channel_vacated", "sync-1") == 1
    })
    .await;
    for (name, channel) in [
        ("channel_occupied", "room"),
        ("channel_vacated", "room"),
        ("channel_occupied", hall),
        ("channel_vacated", hall),
        ("member_added", hall),
        ("member_removed", hall),
    ] {
        assert_eq!(
            hooks.count(name, channel),
            1,
            "{name} {channel}: {:#?}",
            hooks.0.lock().unwrap()
        );
    }
    driver.command(json!({"op": "exit"})).await;
}

// ---- resuming liveplan's channels ----

const PATH: &str = "/app/app-key?protocol=7&client=js&version=8.4.0&flash=false";

async fn send(ws: &mut Ws, frame: Value) {
    ws_send(
        ws,
        tokio_tungstenite::tungstenite::Message::Text(frame.to_string().into()),
    )
    .await;
}

/// The next frame that is not a server ping.
async fn next(ws: &mut Ws) -> Value {
    for _ in 0..50 {
        let frame = ws_json(ws).await;
        if frame["event"] != "pusher:ping" {
            return frame;
        }
    }
    panic!("only pings");
}

/// A raw socket signed in as `user` and subscribed to `channel`.
async fn signed_in_on(addr: std::net::SocketAddr, user: uuid::Uuid, channel: &str) -> Ws {
    let mut ws = ws_connect(addr, PATH).await;
    let established = ws_json(&mut ws).await;
    let data: Value = serde_json::from_str(established["data"].as_str().unwrap()).unwrap();
    let socket_id = data["socket_id"].as_str().unwrap().to_owned();
    let user_data = json!({ "id": user.to_string() }).to_string();
    let auth = user_auth(&creds(), &socket_id, &user_data);
    send(
        &mut ws,
        json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}),
    )
    .await;
    assert_eq!(next(&mut ws).await["event"], "pusher:signin_success");
    let auth = channel_auth(&creds(), &socket_id, channel, None);
    send(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}}),
    )
    .await;
    assert_eq!(
        next(&mut ws).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    ws
}

/// The serial of the next `task_created` frame of `channel`.
async fn next_task(ws: &mut Ws, channel: &str) -> (i64, String) {
    for _ in 0..50 {
        let frame = next(ws).await;
        if frame["event"] == "task_created" && frame["channel"] == channel {
            return (
                frame["serial"].as_i64().unwrap(),
                frame["stream_id"].as_str().unwrap().to_owned(),
            );
        }
    }
    panic!("no task_created");
}

async fn resume(ws: &mut Ws, channel: &str, serial: i64, stream_id: &str) {
    send(
        ws,
        json!({"event": "pusher:resume", "data": {"channel_positions": {
            channel: {"serial": serial, "stream_id": stream_id}}}}),
    )
    .await;
}

/// The frames up to and with `pusher:resume_success`: (serials replayed, its data).
async fn resumed(ws: &mut Ws) -> (Vec<i64>, Value) {
    let mut serials = Vec::new();
    for _ in 0..2000 {
        let frame = next(ws).await;
        if frame["event"] == "pusher:resume_success" {
            let data = match &frame["data"] {
                Value::String(text) => serde_json::from_str(text).unwrap(),
                other => other.clone(),
            };
            return (serials, data);
        }
        if let Some(serial) = frame["serial"].as_i64() {
            serials.push(serial);
        }
    }
    panic!("no resume_success");
}

#[tokio::test]
async fn a_liveplan_channel_resumes_from_the_event_log() {
    let server = TestServer::start_with(tune).await;
    let project = server.new_project("Resume").await;
    let (user, _token) = server.new_user("resumer").await;
    server.new_member(project, user, 100).await;
    let channel = format!("private-project-{project}");

    let mut first = signed_in_on(server.addr(), user, &channel).await;
    server.task(&server.admin, project, "seen").await;
    let (seen, stream_id) = next_task(&mut first, &channel).await;
    assert_eq!(stream_id, format!("project:{project}"));
    drop(first);
    // Missed while away.
    server.task(&server.admin, project, "missed 1").await;
    server.task(&server.admin, project, "missed 2").await;

    let mut again = signed_in_on(server.addr(), user, &channel).await;
    // One more after the new subscription: live, and not replayed again.
    server.task(&server.admin, project, "live").await;
    let (live, _) = next_task(&mut again, &channel).await;
    resume(&mut again, &channel, seen, &stream_id).await;
    let (replayed, success) = resumed(&mut again).await;
    assert!(replayed.len() >= 2, "{replayed:?}");
    assert_eq!(
        replayed,
        (seen + 1..seen + 1 + replayed.len() as i64).collect::<Vec<_>>(),
        "consecutive from the serial"
    );
    assert!(
        replayed.iter().all(|s| *s < live),
        "{replayed:?} vs live {live}"
    );
    assert_eq!(
        *replayed.last().unwrap(),
        live - 1,
        "no gap before the live frame"
    );
    assert_eq!(
        success,
        json!({"recovered": [{"channel": channel, "replayed": replayed.len()}], "failed": []})
    );

    // Up to date: nothing to replay.
    resume(&mut again, &channel, live, &stream_id).await;
    let (replayed, success) = resumed(&mut again).await;
    assert!(replayed.is_empty());
    assert_eq!(success["recovered"][0]["replayed"], 0);
    // Another stream's id, a serial beyond the log: the documented failures, nothing replayed.
    for (serial, stream) in [
        (seen, format!("project:{}", uuid::Uuid::now_v7())),
        (live + 1000, stream_id.clone()),
    ] {
        resume(&mut again, &channel, serial, &stream).await;
        let (replayed, success) = resumed(&mut again).await;
        assert!(replayed.is_empty());
        assert_eq!(success["recovered"], json!([]));
        assert_eq!(success["failed"][0]["channel"], channel.as_str());
        assert_eq!(success["failed"][0]["code"], "stream_reset", "{success}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_js_resumes_a_liveplan_channel_on_another_node() {
    if !npm_ready().await {
        return;
    }
    let cluster = Cluster::start_with(2, tune).await;
    let (node0, node1) = (cluster.node(0), cluster.node(1));
    let project = node0.new_project("Resume across").await;
    let (user, _token) = node0.new_user("wanderer").await;
    node0.new_member(project, user, 100).await;
    let channel = format!("private-project-{project}");
    let mut driver = PusherJs::start(creds()).await;
    let me = member(&user.to_string());

    driver.connect("first", port(&cluster, 1), me.clone()).await;
    driver
        .command(json!({"op": "signin", "client": "first"}))
        .await;
    driver
        .expect(|l| l["client"] == "first" && l["event"] == "pusher:signin_success")
        .await;
    driver.subscribe("first", &channel, &[]).await;
    node0.task(&node0.admin, project, "seen").await;
    let seen = driver.expect(is_event("first", "task_created")).await["data"]["seq"]
        .as_i64()
        .unwrap();
    driver
        .command(json!({"op": "disconnect", "client": "first"}))
        .await;
    node1.task(&node1.admin, project, "missed 1").await;
    node0.task(&node0.admin, project, "missed 2").await;

    // Back on the other node: pusher-js subscribes, then resumes.
    driver.connect("again", port(&cluster, 0), me).await;
    driver
        .command(json!({"op": "signin", "client": "again"}))
        .await;
    driver
        .expect(|l| l["client"] == "again" && l["event"] == "pusher:signin_success")
        .await;
    driver.subscribe("again", &channel, &[]).await;
    driver
        .command(json!({"op": "send_event", "client": "again", "event": "pusher:resume",
            "data": {"channel_positions": {&channel: {"serial": seen, "stream_id": format!("project:{project}")}}}}))
        .await;
    let success = driver
        .expect(|l| l["client"] == "again" && l["event"] == "pusher:resume_success")
        .await;
    let replayed: Vec<i64> = driver
        .seen
        .iter()
        .filter(|l| l["client"] == "again" && l["channel"] == channel.as_str())
        .filter_map(|l| l["data"]["seq"].as_i64())
        .collect();
    assert!(replayed.len() >= 2, "{replayed:?}");
    assert_eq!(
        replayed,
        (seen + 1..seen + 1 + replayed.len() as i64).collect::<Vec<_>>()
    );
    let names: Vec<&str> = driver
        .seen
        .iter()
        .filter(|l| l["client"] == "again" && l["event"] == "task_created")
        .filter_map(|l| {
            l["data"]["data"]["name"]
                .as_str()
                .or(l["data"]["payload"]["name"].as_str())
        })
        .collect();
    assert!(
        names.contains(&"missed 1") && names.contains(&"missed 2"),
        "{names:?}"
    );
    let data = &success["data"];
    assert_eq!(data["recovered"][0]["replayed"], replayed.len(), "{data}");
    assert_eq!(data["failed"], json!([]));
    driver.command(json!({"op": "exit"})).await;
}
