//! The HTTP API's handlers against a recording fake directory, with requests signed as the
//! SDKs sign them.

use super::*;
use async_trait::async_trait;
use axum::body::Body;
use axum::http::Request;
use md5::Digest;
use std::sync::Mutex;
use tower::ServiceExt;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Published {
    channels: Vec<String>,
    event: String,
    data: String,
    exclude_socket: Option<String>,
}

#[derive(Default)]
struct FakeDirectory {
    published: Mutex<Vec<Published>>,
    terminated: Mutex<Vec<String>>,
    prefixes: Mutex<Vec<Option<String>>>,
    unavailable: bool,
}

#[async_trait]
impl ChannelDirectory for FakeDirectory {
    async fn publish(&self, p: Publication<'_>) -> Result<Vec<(String, i64)>, DirectoryError> {
        if self.unavailable {
            return Err(DirectoryError::Unavailable);
        }
        self.published.lock().unwrap().push(Published {
            channels: p.channels.to_vec(),
            event: p.event.to_owned(),
            data: p.data.to_owned(),
            exclude_socket: p.exclude_socket.map(str::to_owned),
        });
        Ok(p.channels.iter().map(|c| (c.clone(), 1)).collect())
    }
    async fn occupied_channels(
        &self,
        prefix: Option<&str>,
    ) -> Result<Vec<ChannelInfo>, DirectoryError> {
        self.prefixes
            .lock()
            .unwrap()
            .push(prefix.map(str::to_owned));
        Ok(vec![
            info("presence-room", 3, Some(2)),
            info("news", 5, None),
        ])
    }
    async fn channel(&self, name: &str) -> Result<ChannelInfo, DirectoryError> {
        Ok(if name == "presence-room" {
            info(name, 3, Some(2))
        } else if name == "news" {
            info(name, 5, None)
        } else {
            info(name, 0, name.starts_with("presence-").then_some(0))
        })
    }
    async fn presence_users(&self, _: &str) -> Result<Vec<String>, DirectoryError> {
        Ok(vec!["u1".to_owned(), "u2".to_owned()])
    }
    async fn terminate_user_connections(&self, user_id: &str) -> Result<(), DirectoryError> {
        self.terminated.lock().unwrap().push(user_id.to_owned());
        Ok(())
    }
}

fn info(name: &str, subscriptions: u64, users: Option<u64>) -> ChannelInfo {
    ChannelInfo {
        name: name.to_owned(),
        subscription_count: subscriptions,
        user_count: users,
    }
}

fn credentials() -> PusherCredentials {
    PusherCredentials {
        app_id: "42".to_owned(),
        key: "the-key".to_owned(),
        secret: "the-secret".to_owned(),
    }
}

fn app(directory: Arc<FakeDirectory>) -> Router {
    router(PusherHttpState {
        credentials: Arc::new(credentials()),
        directory,
    })
}

/// A request signed as the SDKs do, with `secret` and a timestamp `age` seconds old.
fn signed_with(
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    body: &str,
    secret: &str,
    age: i64,
) -> Request<Body> {
    let mut query: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    query.push(("auth_key".to_owned(), "the-key".to_owned()));
    query.push(("auth_timestamp".to_owned(), (now_secs() - age).to_string()));
    query.push(("auth_version".to_owned(), "1.0".to_owned()));
    if !body.is_empty() {
        query.push((
            "body_md5".to_owned(),
            hex::encode(md5::Md5::digest(body.as_bytes())),
        ));
    }
    let signature = signature::hmac_hex(
        secret,
        signature::api_string_to_sign(method, path, &query).as_bytes(),
    );
    query.push(("auth_signature".to_owned(), signature));
    let encoded: Vec<String> = query
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect();
    Request::builder()
        .method(method)
        .uri(format!("{path}?{}", encoded.join("&")))
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn signed(method: &str, path: &str, params: &[(&str, &str)], body: &str) -> Request<Body> {
    signed_with(method, path, params, body, "the-secret", 0)
}

async fn call(app: Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn an_event_is_published_to_its_channels_without_the_excluded_socket() {
    let directory = Arc::new(FakeDirectory::default());
    let body =
        r#"{"name":"greet","data":"{\"a\":1}","channels":["news","private-x"],"socket_id":"1.2"}"#;
    let (status, answer) = call(
        app(directory.clone()),
        signed("POST", "/apps/42/events", &[], body),
    )
    .await;
    assert_eq!((status, answer), (StatusCode::OK, json!({})));
    assert_eq!(
        *directory.published.lock().unwrap(),
        vec![Published {
            channels: vec!["news".to_owned(), "private-x".to_owned()],
            event: "greet".to_owned(),
            data: r#"{"a":1}"#.to_owned(),
            exclude_socket: Some("1.2".to_owned()),
        }]
    );
}

#[tokio::test]
async fn info_describes_the_channels_after_publishing() {
    let directory = Arc::new(FakeDirectory::default());
    let body = r#"{"name":"e","data":"d","channel":"presence-room","info":"user_count,subscription_count"}"#;
    let (status, answer) = call(app(directory), signed("POST", "/apps/42/events", &[], body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer,
        json!({"channels":{"presence-room":{"user_count":2,"subscription_count":3}}})
    );
    // user_count on a channel that is not presence is refused before anything is published.
    let directory = Arc::new(FakeDirectory::default());
    let body = r#"{"name":"e","data":"d","channel":"news","info":"user_count"}"#;
    let (status, _) = call(
        app(directory.clone()),
        signed("POST", "/apps/42/events", &[], body),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(directory.published.lock().unwrap().is_empty());
}

#[tokio::test]
async fn signatures_timestamps_and_body_digests_are_checked() {
    let directory = Arc::new(FakeDirectory::default());
    let body = r#"{"name":"e","data":"d","channel":"news"}"#;
    let wrong_secret = signed_with("POST", "/apps/42/events", &[], body, "nope", 0);
    let (status, answer) = call(app(directory.clone()), wrong_secret).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(answer["error"].as_str().unwrap().contains("signature"));
    let stale = signed_with("POST", "/apps/42/events", &[], body, "the-secret", 601);
    let (status, answer) = call(app(directory.clone()), stale).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(answer["error"].as_str().unwrap().contains("expired"));
    let fresh_enough = signed_with("POST", "/apps/42/events", &[], body, "the-secret", 590);
    assert_eq!(
        call(app(directory.clone()), fresh_enough).await.0,
        StatusCode::OK
    );
    // The body changed after signing: body_md5 no longer matches.
    let mut tampered = signed("POST", "/apps/42/events", &[], body);
    *tampered.body_mut() = Body::from(r#"{"name":"e","data":"X","channel":"news"}"#);
    let (status, answer) = call(app(directory.clone()), tampered).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(answer["error"].as_str().unwrap().contains("body_md5"));
    // A signed request without the auth parameters at all.
    let bare = Request::builder()
        .method("POST")
        .uri("/apps/42/events")
        .body(Body::from(body))
        .unwrap();
    assert_eq!(
        call(app(directory.clone()), bare).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(directory.published.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn another_app_id_is_not_found() {
    let directory = Arc::new(FakeDirectory::default());
    let body = r#"{"name":"e","data":"d","channel":"news"}"#;
    let (status, answer) = call(app(directory), signed("POST", "/apps/43/events", &[], body)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer, json!({"error":"Unknown app"}));
}

#[tokio::test]
async fn limits_are_pusher_s() {
    let directory = Arc::new(FakeDirectory::default());
    let too_many: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
    let body = json!({"name":"e","data":"d","channels":too_many}).to_string();
    assert_eq!(
        call(
            app(directory.clone()),
            signed("POST", "/apps/42/events", &[], &body)
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    let hundred: Vec<String> = (0..100).map(|i| format!("c{i}")).collect();
    let body = json!({"name":"e","data":"d","channels":hundred}).to_string();
    assert_eq!(
        call(
            app(directory.clone()),
            signed("POST", "/apps/42/events", &[], &body)
        )
        .await
        .0,
        StatusCode::OK
    );
    let body = json!({"name":"e","data":"x".repeat(10 * 1024 + 1),"channel":"news"}).to_string();
    assert_eq!(
        call(
            app(directory.clone()),
            signed("POST", "/apps/42/events", &[], &body)
        )
        .await
        .0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let body = json!({"name":"e".repeat(201),"data":"d","channel":"news"}).to_string();
    assert_eq!(
        call(
            app(directory.clone()),
            signed("POST", "/apps/42/events", &[], &body)
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    for bad in [
        json!({"name":"e","data":{"not":"a string"},"channel":"news"}),
        json!({"data":"d","channel":"news"}),
        json!({"name":"e","data":"d"}),
        json!({"name":"e","data":"d","channel":"bad name"}),
        json!({"name":"e","data":"d","channel":"news","socket_id":"nope"}),
        json!({"name":"pusher:subscription_succeeded","data":"d","channel":"news"}),
        json!({"name":"e","data":"d","channels":[]}),
    ] {
        let body = bad.to_string();
        assert_eq!(
            call(
                app(directory.clone()),
                signed("POST", "/apps/42/events", &[], &body)
            )
            .await
            .0,
            StatusCode::BAD_REQUEST,
            "{body}"
        );
    }
    let huge = "x".repeat(MAX_BODY + 1);
    assert_eq!(
        call(
            app(directory.clone()),
            signed("POST", "/apps/42/events", &[], &huge)
        )
        .await
        .0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(directory.published.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn liveplan_channels_are_not_published_to() {
    let directory = Arc::new(FakeDirectory::default());
    let id = uuid::Uuid::now_v7();
    for channel in [
        format!("private-project-{id}"),
        format!("presence-project-{id}"),
        format!("private-user-{id}"),
        format!("presence-whiteboard-{id}"),
        "private-project-squatted".to_owned(),
    ] {
        let body = json!({"name":"e","data":"d","channels":["news", channel]}).to_string();
        let (status, answer) = call(
            app(directory.clone()),
            signed("POST", "/apps/42/events", &[], &body),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{channel}");
        assert!(answer["error"].is_string());
    }
    assert!(directory.published.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_batch_is_checked_whole_then_published() {
    let directory = Arc::new(FakeDirectory::default());
    let body = json!({"batch":[
        {"name":"a","data":"1","channel":"news"},
        {"name":"b","data":"2","channel":"presence-room","info":"user_count"},
    ]})
    .to_string();
    let (status, answer) = call(
        app(directory.clone()),
        signed("POST", "/apps/42/batch_events", &[], &body),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, json!({"batch":[{}, {"user_count":2}]}));
    assert_eq!(directory.published.lock().unwrap().len(), 2);
    let eleven: Vec<Value> = (0..11)
        .map(|i| json!({"name":"a","data":i.to_string(),"channel":"news"}))
        .collect();
    let body = json!({ "batch": eleven }).to_string();
    assert_eq!(
        call(
            app(directory.clone()),
            signed("POST", "/apps/42/batch_events", &[], &body)
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    // One bad event refuses the batch: nothing of it is published.
    let body = json!({"batch":[
        {"name":"a","data":"1","channel":"news"},
        {"name":"b","data":"2","channel":format!("private-user-{}", uuid::Uuid::now_v7())},
    ]})
    .to_string();
    assert_eq!(
        call(
            app(directory.clone()),
            signed("POST", "/apps/42/batch_events", &[], &body)
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(directory.published.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn channels_are_listed_and_described() {
    let directory = Arc::new(FakeDirectory::default());
    let (status, answer) = call(
        app(directory.clone()),
        signed("GET", "/apps/42/channels", &[], ""),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, json!({"channels":{"presence-room":{},"news":{}}}));
    let (status, answer) = call(
        app(directory.clone()),
        signed(
            "GET",
            "/apps/42/channels",
            &[("filter_by_prefix", "presence-"), ("info", "user_count")],
            "",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer,
        json!({"channels":{"presence-room":{"user_count":2}}})
    );
    assert_eq!(
        directory
            .prefixes
            .lock()
            .unwrap()
            .last()
            .unwrap()
            .as_deref(),
        Some("presence-")
    );
    let (status, _) = call(
        app(directory.clone()),
        signed("GET", "/apps/42/channels", &[("info", "user_count")], ""),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, answer) = call(
        app(directory.clone()),
        signed(
            "GET",
            "/apps/42/channels/presence-room",
            &[("info", "user_count,subscription_count")],
            "",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer,
        json!({"occupied":true,"user_count":2,"subscription_count":3})
    );
    let (_, answer) = call(
        app(directory.clone()),
        signed("GET", "/apps/42/channels/empty", &[], ""),
    )
    .await;
    assert_eq!(answer, json!({"occupied":false}));
    let (status, _) = call(
        app(directory.clone()),
        signed(
            "GET",
            "/apps/42/channels/news",
            &[("info", "user_count")],
            "",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn presence_users_and_terminations() {
    let directory = Arc::new(FakeDirectory::default());
    let (status, answer) = call(
        app(directory.clone()),
        signed("GET", "/apps/42/channels/presence-room/users", &[], ""),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, json!({"users":[{"id":"u1"},{"id":"u2"}]}));
    let (status, _) = call(
        app(directory.clone()),
        signed("GET", "/apps/42/channels/news/users", &[], ""),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, answer) = call(
        app(directory.clone()),
        signed(
            "POST",
            "/apps/42/users/user-7/terminate_connections",
            &[],
            "{}",
        ),
    )
    .await;
    assert_eq!((status, answer), (StatusCode::OK, json!({})));
    assert_eq!(
        *directory.terminated.lock().unwrap(),
        vec!["user-7".to_owned()]
    );
}

#[tokio::test]
async fn an_unavailable_directory_is_a_503_with_retry_after() {
    let directory = Arc::new(FakeDirectory {
        unavailable: true,
        ..FakeDirectory::default()
    });
    let body = r#"{"name":"e","data":"d","channel":"news"}"#;
    let response = app(directory)
        .oneshot(signed("POST", "/apps/42/events", &[], body))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "5");
}

#[tokio::test]
async fn send_to_user_publishes_to_the_server_to_user_channel() {
    let directory = Arc::new(FakeDirectory::default());
    let body = r##"{"name":"hello","data":"{}","channels":["#server-to-user-u1"]}"##;
    let (status, _) = call(
        app(directory.clone()),
        signed("POST", "/apps/42/events", &[], body),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        directory.published.lock().unwrap()[0].channels,
        vec!["#server-to-user-u1".to_owned()]
    );
    for bad in ["#server-to-user-", "#other"] {
        let body = json!({"name":"hello","data":"{}","channels":[bad]}).to_string();
        let (status, _) = call(
            app(directory.clone()),
            signed("POST", "/apps/42/events", &[], &body),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(directory.published.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_unreadable_path_is_a_json_400() {
    let directory = Arc::new(FakeDirectory::default());
    let request = Request::builder()
        .uri("/apps/42/channels/%FF")
        .body(Body::empty())
        .unwrap();
    let (status, answer) = call(app(directory), request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["error"].is_string(), "{answer}");
}
