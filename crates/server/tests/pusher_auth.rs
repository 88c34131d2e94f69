//! Pusher channel authorization, user sign-in and the app's credentials (CONTRACT §10): the
//! signatures are checked against `signature::verify_*` here and against Pusher's own SDK in
//! `pusher_sdk.rs`.

use liveplan_server::pusher::credentials::PusherCredentials;
use liveplan_server::pusher::signature;
use liveplan_testkit::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

const SOCKET: &str = "1234.5678";

/// `POST path` with a Bearer token and a form body, as pusher-js sends it.
async fn form(
    server: &TestServer,
    path: &str,
    token: &str,
    fields: &[(&str, &str)],
) -> (StatusCode, Value) {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect();
    let response = server
        .http
        .post(server.url(path))
        .bearer_auth(token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.join("&"))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn authorize(server: &TestServer, token: &str, channel: &str) -> (StatusCode, Value) {
    form(
        server,
        "/api/v1/pusher/auth",
        token,
        &[("socket_id", SOCKET), ("channel_name", channel)],
    )
    .await
}

fn credentials(server: &TestServer) -> PusherCredentials {
    (*server.state().pusher).clone()
}

/// The answer is a valid signature for this socket and channel (and channel data).
fn assert_signed(server: &TestServer, channel: &str, answer: &Value) {
    let data = answer["channel_data"].as_str();
    assert!(
        signature::verify_channel_auth(
            &credentials(server),
            SOCKET,
            channel,
            data,
            answer["auth"].as_str().unwrap()
        ),
        "{channel}: {answer}"
    );
}

#[tokio::test]
async fn liveplan_channels_follow_the_domain_s_access_rules() {
    let server = TestServer::start().await;
    let project = server.new_project("Pusher").await;
    let whiteboard = server
        .create(
            &server.admin,
            &project.to_string(),
            "whiteboards",
            json!({"name": "Board"}),
        )
        .await;
    let whiteboard = whiteboard["id"].as_str().unwrap().to_owned();
    let mut members = Vec::new();
    for (name, role) in [
        ("viewer", 1),
        ("member", 100),
        ("admin", 300),
        ("owner", 400),
    ] {
        let (id, token) = server.new_user(name).await;
        let membership = server.new_member(project, id, role).await;
        members.push((name, id, token, membership));
    }
    let (outsider_id, outsider) = server.new_user("outsider").await;
    let project_channels = [
        format!("private-project-{project}"),
        format!("presence-project-{project}"),
        format!("presence-whiteboard-{whiteboard}"),
    ];
    for (name, id, token, _) in &members {
        for channel in &project_channels {
            let (status, answer) = authorize(&server, token, channel).await;
            assert_eq!(status, StatusCode::OK, "{name} on {channel}: {answer}");
            assert_signed(&server, channel, &answer);
            if channel.starts_with("presence-") {
                let data: Value =
                    serde_json::from_str(answer["channel_data"].as_str().unwrap()).unwrap();
                assert_eq!(data["user_id"], id.to_string());
                assert_eq!(data["user_info"]["name"], *name);
                assert!(data["user_info"]["email"].as_str().unwrap().contains('@'));
            } else {
                assert!(answer.get("channel_data").is_none(), "{answer}");
            }
        }
        // Their own user channel, nobody else's.
        let own = format!("private-user-{id}");
        let (status, answer) = authorize(&server, token, &own).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_signed(&server, &own, &answer);
        let (status, answer) =
            authorize(&server, token, &format!("private-user-{outsider_id}")).await;
        assert_error(status, &answer, StatusCode::FORBIDDEN, "forbidden");
    }
    for channel in &project_channels {
        let (status, answer) = authorize(&server, &outsider, channel).await;
        assert_error(status, &answer, StatusCode::FORBIDDEN, "forbidden");
    }
    // Channels of things that do not exist, or of a task rather than a whiteboard.
    let task = server.task(&server.admin, project, "T").await;
    for channel in [
        format!("private-project-{}", Uuid::now_v7()),
        format!("presence-whiteboard-{}", Uuid::now_v7()),
        format!("presence-whiteboard-{}", task["id"].as_str().unwrap()),
        "private-project-not-an-id".to_owned(),
    ] {
        let (status, answer) = authorize(&server, &server.admin, &channel).await;
        assert_error(status, &answer, StatusCode::FORBIDDEN, "forbidden");
    }
    // A removed member loses the project's channels.
    let (_, _, viewer, membership_id) = &members[0];
    let (status, body) = server
        .delete(
            &format!("/api/v1/projects/{project}/members/{membership_id}"),
            &server.admin,
        )
        .await;
    assert!(status.is_success(), "{body}");
    let (status, _) = authorize(&server, viewer, &project_channels[0]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_app_s_own_channels_are_for_any_signed_in_user() {
    let server = TestServer::start().await;
    let (id, token) = server.new_user("someone").await;
    for channel in [
        "private-chat",
        "private-cache-room",
        "private-encrypted-secret",
        "presence-lobby",
        "presence-cache-lobby",
    ] {
        let (status, answer) = authorize(&server, &token, channel).await;
        assert_eq!(status, StatusCode::OK, "{channel}: {answer}");
        assert_signed(&server, channel, &answer);
        if channel.starts_with("presence-") {
            // On the app's channels strangers meet: no e-mail address.
            let data: Value =
                serde_json::from_str(answer["channel_data"].as_str().unwrap()).unwrap();
            assert_eq!(
                data,
                json!({"user_id": id.to_string(), "user_info": {"name": "someone"}})
            );
        }
    }
    // Public channels need no authorization.
    let (status, answer) = authorize(&server, &token, "news").await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_request");
    let (status, answer) = authorize(&server, &token, "cache-news").await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn bad_input_is_a_400_and_strangers_a_401() {
    let server = TestServer::start().await;
    let (_, token) = server.new_user("someone").await;
    for socket in [
        "",
        "1",
        "1.",
        ".1",
        "abc.def",
        "1.2.3",
        "1;2",
        &format!("{}.1", "9".repeat(60)),
    ] {
        let (status, answer) = form(
            &server,
            "/api/v1/pusher/auth",
            &token,
            &[("socket_id", socket), ("channel_name", "private-a")],
        )
        .await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_request");
        let (status, answer) = form(
            &server,
            "/api/v1/pusher/user-auth",
            &token,
            &[("socket_id", socket)],
        )
        .await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_request");
    }
    let long = format!("private-{}", "a".repeat(200));
    for channel in [
        "",
        "private-a b",
        "private-é",
        "#server-to-user-1",
        long.as_str(),
    ] {
        let (status, answer) = authorize(&server, &token, channel).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_request");
    }
    let (status, answer) = form(
        &server,
        "/api/v1/pusher/auth",
        &token,
        &[("socket_id", SOCKET)],
    )
    .await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_request");
    // JSON that is not an object of strings; an unknown media type; too large a body.
    let (status, answer) = server
        .post("/api/v1/pusher/auth", &token, json!(["socket_id"]))
        .await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "malformed_body");
    let (status, answer) = server
        .post(
            "/api/v1/pusher/auth",
            &token,
            json!({"socket_id": SOCKET, "channel_name": ["x"]}),
        )
        .await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "malformed_body");
    let response = server
        .http
        .post(server.url("/api/v1/pusher/auth"))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body("socket_id=1.2")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let response = server
        .http
        .post(server.url("/api/v1/pusher/auth"))
        .bearer_auth(&token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "socket_id=1.2&channel_name=private-a&pad={}",
            "x".repeat(20_000)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // No session at all; a token that is not one.
    for path in ["/api/v1/pusher/auth", "/api/v1/pusher/user-auth"] {
        let (status, answer) = server
            .call(
                reqwest::Method::POST,
                path,
                None,
                Some(json!({"socket_id": SOCKET, "channel_name": "private-a"})),
            )
            .await;
        assert_error(
            status,
            &answer,
            StatusCode::UNAUTHORIZED,
            "not_authenticated",
        );
        let (status, answer) = server
            .post(
                path,
                "not-a-token",
                json!({"socket_id": SOCKET, "channel_name": "private-a"}),
            )
            .await;
        assert_error(
            status,
            &answer,
            StatusCode::UNAUTHORIZED,
            "not_authenticated",
        );
    }
}

#[tokio::test]
async fn json_bodies_and_session_cookies_work_too() {
    let server = TestServer::start().await;
    let (id, token) = server.new_user("cookie").await;
    let channel = format!("private-user-{id}");
    let (status, answer) = server
        .post(
            "/api/v1/pusher/auth",
            &token,
            json!({"socket_id": SOCKET, "channel_name": channel}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_signed(&server, &channel, &answer);
    // The session cookie, from the same origin (CSRF rule of cookie-authenticated writes).
    let login = server
        .http
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({"email": server.get("/api/v1/users/me", &token).await.1["email"], "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let cookie = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("liveplan_session="))
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let send = |origin: Option<String>| {
        let mut request = server
            .http
            .post(server.url("/api/v1/pusher/auth"))
            .header("cookie", cookie.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("socket_id={SOCKET}&channel_name={channel}"));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    let same = send(Some(server.base.clone())).await.unwrap();
    assert_eq!(same.status(), StatusCode::OK);
    let answer: Value = same.json().await.unwrap();
    assert_signed(&server, &channel, &answer);
    let cross = send(Some("http://evil.example".to_owned())).await.unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    let none = send(None).await.unwrap();
    assert_eq!(none.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn user_auth_signs_the_liveplan_user() {
    let server = TestServer::start().await;
    let (id, token) = server.new_user("signin").await;
    let (status, answer) = form(
        &server,
        "/api/v1/pusher/user-auth",
        &token,
        &[("socket_id", SOCKET)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let user_data = answer["user_data"].as_str().unwrap();
    let data: Value = serde_json::from_str(user_data).unwrap();
    assert_eq!(data["id"], id.to_string());
    assert_eq!(data["user_info"]["name"], "signin");
    assert!(signature::verify_user_auth(
        &credentials(&server),
        SOCKET,
        user_data,
        answer["auth"].as_str().unwrap()
    ));
    // The signature binds the socket: it is worthless on any other.
    assert!(!signature::verify_user_auth(
        &credentials(&server),
        "1234.5679",
        user_data,
        answer["auth"].as_str().unwrap()
    ));
}

#[tokio::test]
async fn only_system_administrators_read_the_credentials() {
    let server = TestServer::start().await;
    let (status, creds) = server.get("/api/v1/admin/pusher", &server.admin).await;
    assert_eq!(status, StatusCode::OK);
    let expected = credentials(&server);
    assert_eq!(
        creds,
        json!({"app_id": expected.app_id, "key": expected.key, "secret": expected.secret})
    );
    let (_, token) = server.new_user("plain").await;
    let (status, answer) = server.get("/api/v1/admin/pusher", &token).await;
    assert_error(status, &answer, StatusCode::FORBIDDEN, "forbidden");
    let (status, answer) = server
        .call(reqwest::Method::GET, "/api/v1/admin/pusher", None, None)
        .await;
    assert_error(
        status,
        &answer,
        StatusCode::UNAUTHORIZED,
        "not_authenticated",
    );
}

#[tokio::test]
async fn generated_credentials_are_made_once_and_survive_restarts() {
    let mut server = TestServer::start().await;
    let first = credentials(&server);
    assert!(
        first.app_id.bytes().all(|b| b.is_ascii_digit()) && first.app_id.len() >= 9,
        "{}",
        first.app_id
    );
    assert!(first.key.len() >= 32 && first.secret.len() >= 64);
    assert_ne!(first.key, first.secret);
    assert_ne!(first, PusherCredentials::demo());
    // The secret is kept, never printed in its Debug form.
    assert!(!format!("{first:?}").contains(&first.secret));
    server.restart().await;
    assert_eq!(credentials(&server), first);
    // Flags win over the stored ones, without replacing them.
    let flagged = PusherCredentials {
        app_id: "77".into(),
        key: "flag-key".into(),
        secret: "flag-secret".into(),
    };
    let given = flagged.clone();
    server
        .restart_with(move |c| c.pusher_credentials = Some(given))
        .await;
    assert_eq!(credentials(&server), flagged);
    server.restart().await;
    assert_eq!(credentials(&server), first);
    // Another database, other credentials.
    let other = TestServer::start().await;
    assert_ne!(credentials(&other).secret, first.secret);
}

#[tokio::test]
async fn demo_uses_the_well_known_credentials() {
    let server = TestServer::start_with(|c| c.demo = true).await;
    assert_eq!(credentials(&server), PusherCredentials::demo());
    let (status, creds) = server.get("/api/v1/admin/pusher", &server.admin).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        creds,
        json!({"app_id": "app-id", "key": "app-key", "secret": "app-secret"})
    );
}

#[tokio::test]
async fn every_node_of_a_cluster_has_the_same_credentials() {
    // A cluster is always on PostgreSQL and Redis (liveplan-testkit's `Cluster`).
    let cluster = Cluster::start(2).await;
    let (a, b) = (credentials(cluster.node(0)), credentials(cluster.node(1)));
    assert_eq!(a, b);
    let (status, from_b) = cluster
        .node(1)
        .get("/api/v1/admin/pusher", &cluster.node(1).admin)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(from_b["secret"], a.secret);
}

#[tokio::test]
async fn the_endpoints_are_in_the_openapi_document() {
    let server = TestServer::start().await;
    let (status, doc) = server
        .call(reqwest::Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    for (path, method) in [
        ("/api/v1/pusher/auth", "post"),
        ("/api/v1/pusher/user-auth", "post"),
        ("/api/v1/admin/pusher", "get"),
    ] {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{path} {method} is not documented");
        for code in ["200", "400", "401", "403"] {
            assert!(
                operation["responses"][code].is_object(),
                "{path} {method}: no {code}"
            );
        }
    }
}

/// Two nodes starting at the same moment on a new database agree on the generated credentials
/// (the first to hold the system stream makes them; the other reads them). The second node is
/// started bare, without the bootstrap administrator, whose creation is not what is tested.
#[tokio::test]
async fn nodes_starting_together_agree_on_the_generated_credentials() {
    let backend = liveplan_testkit::backend::Backend::postgres(
        &liveplan_testkit::backend::postgres_server_url(),
    );
    let url = backend
        .database_url()
        .expect("a PostgreSQL database")
        .to_owned();
    let redis = PrivateRedis::start();
    let redis_url = redis.url();
    let second_dir = tempfile::tempdir().unwrap();
    let mut second = config(second_dir.path());
    liveplan_testkit::cluster::cluster_config(&mut second, &redis_url);
    second.database_url = Some(url);
    second.admin_email = None;
    second.admin_password = None;
    let (first, second) = tokio::join!(
        TestServer::start_on_backend(backend, |c| {
            liveplan_testkit::cluster::cluster_config(c, &redis_url)
        }),
        liveplan_server::start(second, "127.0.0.1:0".parse().unwrap()),
    );
    let second = second.expect("the second node starts");
    assert_eq!(credentials(&first), *second.state.pusher);
    assert_ne!(credentials(&first), PusherCredentials::demo());
    second.shutdown().await.unwrap();
}
