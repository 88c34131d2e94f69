//! The real `pusher` server SDK 5 (npm, tests/node/pusher-sdk.cjs) against the HTTP API and the
//! authorization endpoints: its signed requests are accepted and wrongly signed ones refused
//! (401), its limits and liveplan's channels answered as Pusher does, and its own
//! `authorizeChannel`/`authenticateUser` produce exactly what `/api/v1/pusher/auth` and
//! `/user-auth` return, which cross-checks liveplan's signing with Pusher's code.
//!
//! Requests that pass authentication and validation reach the node's channels (the Pusher
//! sockets' `ChannelDirectory`) and are answered 200; `pusher_ws.rs` checks what sockets get.
//!
//! Needs `npm` (installs tests/node/node_modules on first run); skipped loudly without it.

use liveplan_server::pusher::credentials::PusherCredentials;
use liveplan_server::pusher::signature;
use liveplan_testkit::*;
use md5::Digest;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn npm_ready() -> bool {
    liveplan_testkit::node::npm_ready(&["pusher"], "pusher_sdk (the real pusher SDK)").await
}

/// Runs `ops` through the SDK with `credentials` against `server`; one answer per op.
async fn sdk(server: &TestServer, credentials: &PusherCredentials, ops: Vec<Value>) -> Vec<Value> {
    liveplan_testkit::node::pusher_sdk(credentials, server.addr().port(), ops).await
}

fn credentials(server: &TestServer) -> PusherCredentials {
    (*server.state().pusher).clone()
}

/// Every HTTP API call the SDK makes, from its public methods.
fn every_call() -> Vec<Value> {
    vec![
        json!({"op": "trigger", "channels": ["news", "private-chat"], "event": "greet", "data": {"hello": "world"}}),
        json!({"op": "trigger", "channels": "presence-room", "event": "greet", "data": "text", "params": {"socket_id": "1.2", "info": "user_count,subscription_count"}}),
        json!({"op": "triggerBatch", "batch": [
            {"channel": "news", "name": "a", "data": "1"},
            {"channel": "presence-room", "name": "b", "data": {"x": 1}, "info": "user_count"},
        ]}),
        json!({"op": "get", "path": "/channels"}),
        json!({"op": "get", "path": "/channels", "params": {"filter_by_prefix": "presence-", "info": "user_count"}}),
        json!({"op": "get", "path": "/channels/presence-room", "params": {"info": "user_count,subscription_count"}}),
        json!({"op": "get", "path": "/channels/presence-room/users"}),
        json!({"op": "terminateUserConnections", "userId": "user-1"}),
        json!({"op": "sendToUser", "userId": "user-1", "event": "direct", "data": {"n": 1}}),
    ]
}

#[tokio::test]
async fn the_sdk_s_signatures_are_accepted_and_bad_ones_refused() {
    if !npm_ready().await {
        return;
    }
    let server = TestServer::start().await;
    let credentials = credentials(&server);
    let ops = every_call();
    let count = ops.len();
    // Signed right: every call is answered by the channels (no channel is occupied here).
    for answer in sdk(&server, &credentials, ops).await {
        assert_eq!(answer["status"], 200, "{answer}");
        assert!(answer["body"].is_object(), "{answer}");
    }
    // A wrong secret, a wrong key: 401 with Pusher's JSON error.
    for wrong in [
        PusherCredentials {
            secret: "wrong-secret".into(),
            ..credentials.clone()
        },
        PusherCredentials {
            key: "wrong-key".into(),
            ..credentials.clone()
        },
    ] {
        let answers = sdk(&server, &wrong, every_call()).await;
        for answer in answers {
            assert_eq!(answer["status"], 401, "{answer}");
            assert!(answer["body"]["error"].is_string(), "{answer}");
        }
    }
    // Timestamps: 11 minutes off either way is stale, 9 minutes is not. The exact 600 s edge is
    // the signature module's unit test: here the SDK truncates its clock to the second and the
    // server reads its own later, so a 601 s skew can arrive as 600.
    let skewed = |seconds: i64| -> Vec<Value> {
        every_call()
            .into_iter()
            .map(|mut op| {
                op["skewSeconds"] = seconds.into();
                op
            })
            .collect()
    };
    for seconds in [-660, 660] {
        for answer in sdk(&server, &credentials, skewed(seconds)).await {
            assert_eq!(answer["status"], 401, "{answer}");
            assert!(
                answer["body"]["error"]
                    .as_str()
                    .unwrap()
                    .contains("expired"),
                "{answer}"
            );
        }
    }
    for seconds in [-540, 540] {
        let answers = sdk(&server, &credentials, skewed(seconds)).await;
        assert_eq!(answers.len(), count);
        for answer in answers {
            assert_eq!(answer["status"], 200, "{answer}");
        }
    }
    // Another app id, correctly signed: not found.
    let other_app = PusherCredentials {
        app_id: "999".into(),
        ..credentials.clone()
    };
    for answer in sdk(&server, &other_app, every_call()).await {
        assert_eq!(answer["status"], 404, "{answer}");
    }
}

#[tokio::test]
async fn limits_and_liveplan_channels_are_answered_as_pusher_does() {
    if !npm_ready().await {
        return;
    }
    let server = TestServer::start().await;
    let credentials = credentials(&server);
    let project = server.new_project("Owned").await;
    let many: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
    let eleven: Vec<Value> = (0..11)
        .map(|i| json!({"channel": "news", "name": "e", "data": i.to_string()}))
        .collect();
    let cases = [
        (
            json!({"op": "trigger", "channels": format!("private-project-{project}"), "event": "e", "data": "d"}),
            403,
        ),
        (
            json!({"op": "trigger", "channels": ["news", format!("presence-project-{project}")], "event": "e", "data": "d"}),
            403,
        ),
        (
            json!({"op": "triggerBatch", "batch": [{"channel": format!("private-user-{project}"), "name": "e", "data": "d"}]}),
            403,
        ),
        // The SDK refuses more than 100 channels itself; a raw signed post reaches the server.
        (
            json!({"op": "post", "path": "/events", "body": {"name": "e", "data": "d", "channels": many}}),
            400,
        ),
        (
            json!({"op": "post", "path": "/batch_events", "body": {"batch": eleven}}),
            400,
        ),
        (
            json!({"op": "trigger", "channels": "news", "event": "e", "data": "x".repeat(10 * 1024 + 1)}),
            413,
        ),
        (
            json!({"op": "post", "path": "/events", "body": {"name": "e".repeat(201), "data": "d", "channel": "news"}}),
            400,
        ),
        (
            json!({"op": "post", "path": "/events", "body": {"name": "e", "data": "d", "channel": "bad name"}}),
            400,
        ),
        (
            json!({"op": "trigger", "channels": "news", "event": "e", "data": "d", "params": {"info": "user_count"}}),
            400,
        ),
        (
            json!({"op": "get", "path": "/channels", "params": {"info": "user_count"}}),
            400,
        ),
        (json!({"op": "get", "path": "/channels/news/users"}), 400),
        (
            json!({"op": "get", "path": "/channels/news", "params": {"info": "user_count"}}),
            400,
        ),
    ];
    let ops: Vec<Value> = cases.iter().map(|(op, _)| op.clone()).collect();
    let answers = sdk(&server, &credentials, ops).await;
    for ((op, expected), answer) in cases.iter().zip(&answers) {
        assert_eq!(answer["status"], *expected, "{op} -> {answer}");
        assert!(answer["body"]["error"].is_string(), "{op} -> {answer}");
    }
}

/// A request signed by hand, as the SDK does, whose body is swapped after signing.
#[tokio::test]
async fn a_body_that_does_not_match_body_md5_is_refused() {
    let server = TestServer::start().await;
    let credentials = credentials(&server);
    let signed_body = r#"{"name":"e","data":"d","channel":"news"}"#;
    let sent_body = r#"{"name":"e","data":"X","channel":"news"}"#;
    let path = format!("/apps/{}/events", credentials.app_id);
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let mut query = vec![
        ("auth_key".to_owned(), credentials.key.clone()),
        ("auth_timestamp".to_owned(), timestamp),
        ("auth_version".to_owned(), "1.0".to_owned()),
        (
            "body_md5".to_owned(),
            hex::encode(md5::Md5::digest(signed_body.as_bytes())),
        ),
    ];
    let signature = signature::hmac_hex(
        &credentials.secret,
        signature::api_string_to_sign("POST", &path, &query).as_bytes(),
    );
    query.push(("auth_signature".to_owned(), signature));
    let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let send = |body: &'static str| {
        server
            .http
            .post(server.url(&format!("{path}?{}", query.join("&"))))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let response = send(sent_body).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer["error"].as_str().unwrap().contains("body_md5"),
        "{answer}"
    );
    // The same signature with the body it was made for passes.
    let response = send(signed_body).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_authorization_endpoints_sign_as_the_sdk_does() {
    if !npm_ready().await {
        return;
    }
    let server = TestServer::start().await;
    let credentials = credentials(&server);
    let project = server.new_project("Signed").await;
    let (user, token) = server.new_user("signer").await;
    server.new_member(project, user, 1).await;
    let socket = "98765.4321";
    let channels = [
        "private-chat".to_owned(),
        "presence-lobby".to_owned(),
        format!("private-user-{user}"),
        format!("private-project-{project}"),
        format!("presence-project-{project}"),
    ];
    let mut ours = Vec::new();
    let mut ops = Vec::new();
    for channel in &channels {
        let (status, answer) = server
            .post(
                "/api/v1/pusher/auth",
                &token,
                json!({"socket_id": socket, "channel_name": channel}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let data: Option<Value> = answer["channel_data"]
            .as_str()
            .map(|d| serde_json::from_str(d).unwrap());
        ops.push(
            json!({"op": "authorizeChannel", "socketId": socket, "channel": channel, "data": data}),
        );
        ours.push(answer);
    }
    let (status, signin) = server
        .post(
            "/api/v1/pusher/user-auth",
            &token,
            json!({"socket_id": socket}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{signin}");
    let user_data: Value = serde_json::from_str(signin["user_data"].as_str().unwrap()).unwrap();
    ops.push(json!({"op": "authenticateUser", "socketId": socket, "userData": user_data}));
    ours.push(signin);
    let theirs = sdk(&server, &credentials, ops).await;
    for (ours, theirs) in ours.iter().zip(&theirs) {
        assert_eq!(*ours, theirs["result"], "ours {ours} vs the SDK's {theirs}");
    }
    // The demo app's well-known credentials sign the same way.
    let demo = TestServer::start_with(|c| c.demo = true).await;
    let (_, answer) = demo
        .post(
            "/api/v1/pusher/auth",
            &demo.admin,
            json!({"socket_id": socket, "channel_name": "private-chat"}),
        )
        .await;
    let theirs = sdk(
        &demo,
        &PusherCredentials::demo(),
        vec![
            json!({"op": "authorizeChannel", "socketId": socket, "channel": "private-chat"}),
            json!({"op": "trigger", "channels": "news", "event": "e", "data": "d"}),
        ],
    )
    .await;
    assert_eq!(answer, theirs[0]["result"]);
    assert_eq!(theirs[1]["status"], 200, "{}", theirs[1]);
}

#[tokio::test]
async fn wrong_methods_and_paths_answer_json() {
    let server = TestServer::start().await;
    let app_id = credentials(&server).app_id;
    for (method, path, expected) in [
        (reqwest::Method::GET, format!("/apps/{app_id}/events"), 405),
        (
            reqwest::Method::POST,
            format!("/apps/{app_id}/channels"),
            405,
        ),
        (
            reqwest::Method::POST,
            format!("/apps/{app_id}/nothing"),
            404,
        ),
        (
            reqwest::Method::GET,
            format!("/apps/{app_id}/channels/a/b/c"),
            404,
        ),
    ] {
        let response = server
            .http
            .request(method.clone(), server.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), expected, "{method} {path}");
        let body: Value = response.json().await.expect("a JSON error");
        assert!(
            body["error"].is_object() || body["error"].is_string(),
            "{body}"
        );
    }
}
