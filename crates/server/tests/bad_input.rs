//! Bad input gets the documented status and JSON error body, and changes nothing: the row
//! counts, record versions and stream seqs in the SQLite file are the same afterwards.

use liveplan_testkit::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    body: Body,
    headers: Vec<(&'static str, String)>,
    status: u16,
    code: &'static str,
}

enum Body {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

fn case(
    name: &'static str,
    method: Method,
    path: String,
    body: Body,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        name,
        method,
        path,
        body,
        headers: vec![],
        status,
        code,
    }
}

#[tokio::test]
async fn bad_input_is_refused_clearly_and_changes_nothing() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let project = server.project(&admin, "Guarded").await;
    let foreign = server.project(&admin, "Foreign").await;
    let task = server
        .create(&admin, &project, "tasks", json!({ "name": "T" }))
        .await;
    let task_id = task["id"].as_str().unwrap().to_owned();
    let foreign_task = server
        .create(&admin, &foreign, "tasks", json!({ "name": "F" }))
        .await;
    let foreign_task_id = foreign_task["id"].as_str().unwrap().to_owned();
    let (member_id, _) = server.user(&admin, "someone").await;
    let membership = server.add_member(&admin, &project, &member_id, 100).await;
    let p = format!("/api/v1/projects/{project}");
    let tasks = format!("{p}/tasks");
    let one = format!("{p}/tasks/{task_id}");
    let huge = "x".repeat(2 * 1024 * 1024);
    let mut cases = vec![
        case(
            "malformed json",
            Method::POST,
            tasks.clone(),
            Body::Raw("application/json", b"{\"name\": ".to_vec()),
            400,
            "malformed_body",
        ),
        case(
            "not json",
            Method::POST,
            tasks.clone(),
            Body::Raw("text/plain", b"name=x".to_vec()),
            415,
            "unsupported_media_type",
        ),
        case(
            "array body",
            Method::POST,
            tasks.clone(),
            Body::Json(json!([{ "name": "x" }])),
            400,
            "invalid_request",
        ),
        case(
            "wrong type",
            Method::POST,
            tasks.clone(),
            Body::Json(json!({ "name": 12 })),
            422,
            "validation_failed",
        ),
        case(
            "missing name",
            Method::POST,
            tasks.clone(),
            Body::Json(json!({ "duration": 1 })),
            422,
            "validation_failed",
        ),
        case(
            "negative duration",
            Method::POST,
            tasks.clone(),
            Body::Json(json!({ "name": "x", "duration": -2 })),
            422,
            "validation_failed",
        ),
        case(
            "unknown enum",
            Method::POST,
            tasks.clone(),
            Body::Json(json!({ "name": "x", "constraint_type": "whenever" })),
            422,
            "validation_failed",
        ),
        case(
            "bad date",
            Method::POST,
            tasks.clone(),
            Body::Json(json!({ "name": "x", "start_date": "2026-13-01" })),
            422,
            "validation_failed",
        ),
        case(
            "bad id in body",
            Method::POST,
            tasks.clone(),
            Body::Json(json!({ "name": "x", "parent_id": "nope" })),
            422,
            "validation_failed",
        ),
        case(
            "parent in another project",
            Method::POST,
            tasks.clone(),
            Body::Json(json!({ "name": "x", "parent_id": foreign_task_id })),
            422,
            "validation_failed",
        ),
        case(
            "dependency across projects",
            Method::POST,
            format!("{p}/dependencies"),
            Body::Json(json!({ "predecessor_id": task_id, "successor_id": foreign_task_id })),
            422,
            "validation_failed",
        ),
        case(
            "dependency onto itself",
            Method::POST,
            format!("{p}/dependencies"),
            Body::Json(json!({ "predecessor_id": task_id, "successor_id": task_id })),
            422,
            "validation_failed",
        ),
        case(
            "unknown dependency type",
            Method::POST,
            format!("{p}/dependencies"),
            Body::Json(json!({ "predecessor_id": task_id, "successor_id": task_id, "type": "XX" })),
            422,
            "validation_failed",
        ),
        case(
            "role outside the five",
            Method::PATCH,
            format!("{p}/members/{membership}"),
            Body::Json(json!({ "role": 150 })),
            422,
            "validation_failed",
        ),
        case(
            "role as text",
            Method::POST,
            format!("{p}/members"),
            Body::Json(json!({ "user_id": member_id, "role": "admin" })),
            422,
            "validation_failed",
        ),
        case(
            "oversized body",
            Method::PATCH,
            one.clone(),
            Body::Json(json!({ "name": "x", "description": huge })),
            413,
            "payload_too_large",
        ),
        case(
            "bad path id",
            Method::GET,
            format!("{p}/tasks/not-a-uuid"),
            Body::None,
            404,
            "not_found",
        ),
        case(
            "unknown collection",
            Method::GET,
            format!("{p}/gizmos"),
            Body::None,
            404,
            "not_found",
        ),
        case(
            "unknown record",
            Method::PATCH,
            format!("{p}/tasks/01900000-0000-7000-8000-00000000dead"),
            Body::Json(json!({ "name": "x" })),
            404,
            "not_found",
        ),
        case(
            "bad query",
            Method::GET,
            format!("{p}/log?since=abc"),
            Body::None,
            400,
            "invalid_request",
        ),
        case(
            "unknown endpoint",
            Method::GET,
            "/api/v1/nothing-here".into(),
            Body::None,
            404,
            "not_found",
        ),
        case(
            "wrong method",
            Method::PUT,
            one.clone(),
            Body::Json(json!({})),
            405,
            "method_not_allowed",
        ),
        case(
            "blank name on patch",
            Method::PATCH,
            one.clone(),
            Body::Json(json!({ "name": "   " })),
            422,
            "validation_failed",
        ),
        case(
            "null required",
            Method::PATCH,
            one.clone(),
            Body::Json(json!({ "name": null })),
            422,
            "validation_failed",
        ),
        case(
            "too many extra fields",
            Method::PATCH,
            one.clone(),
            Body::Json(Value::Object(
                (0..201).map(|i| (format!("f{i}"), json!(i))).collect(),
            )),
            422,
            "validation_failed",
        ),
    ];
    let mut stale = case(
        "stale If-Match",
        Method::PATCH,
        one.clone(),
        Body::Json(json!({ "name": "y" })),
        412,
        "version_mismatch",
    );
    stale.headers.push(("if-match", "\"7\"".into()));
    cases.push(stale);
    let mut garbled = case(
        "garbled If-Match",
        Method::PATCH,
        one.clone(),
        Body::Json(json!({ "name": "y" })),
        400,
        "invalid_request",
    );
    garbled.headers.push(("if-match", "yesterday".into()));
    cases.push(garbled);
    let mut tab = case(
        "bad X-Tab-Id",
        Method::PATCH,
        one.clone(),
        Body::Json(json!({ "name": "y" })),
        400,
        "invalid_request",
    );
    tab.headers.push(("x-tab-id", "x".repeat(500)));
    cases.push(tab);

    let before = server.fingerprint().await;
    for case in cases {
        let mut request = server
            .http
            .request(case.method.clone(), format!("{}{}", server.base, case.path))
            .bearer_auth(&admin);
        for (name, value) in &case.headers {
            request = request.header(*name, value);
        }
        request = match case.body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Raw(content_type, bytes) => {
                request.header("content-type", content_type).body(bytes)
            }
        };
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status.as_u16(), case.status, "{}: {body}", case.name);
        assert_eq!(body["error"]["code"], case.code, "{}: {body}", case.name);
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{}",
            case.name
        );
        let text = body.to_string();
        assert!(
            !text.contains("sqlx") && !text.contains("SQLITE") && !text.contains("panicked"),
            "{}: {text}",
            case.name
        );
    }
    assert_eq!(
        server.fingerprint().await,
        before,
        "no bad request changed anything"
    );
}

#[tokio::test]
async fn forged_expired_and_missing_tokens_are_refused() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let project = server.project(&admin, "Locked").await;
    let path = format!("/api/v1/projects/{project}/tasks");
    let before = server.fingerprint().await;
    let mut forged = admin.clone();
    forged.pop();
    forged.push(if admin.ends_with('A') { 'B' } else { 'A' });
    // A token signed with another key, and one whose exp has passed.
    let other_key = jsonwebtoken::EncodingKey::from_secret(b"not the server's secret");
    let claims = |exp: i64| json!({ "sub": "01900000-0000-7000-8000-000000000001", "sid": "01900000-0000-7000-8000-000000000002", "iat": 0, "exp": exp });
    let foreign = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims(4_000_000_000),
        &other_key,
    )
    .unwrap();
    let expired =
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims(1), &other_key).unwrap();
    for token in [
        None,
        Some(forged.as_str()),
        Some(foreign.as_str()),
        Some(expired.as_str()),
        Some(""),
    ] {
        let (status, body) = server
            .call(Method::POST, &path, token, Some(json!({ "name": "x" })))
            .await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "not_authenticated");
        let (status, body) = server.call(Method::GET, &path, token, None).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "not_authenticated");
    }
    let response = server
        .http
        .get(format!("{}{path}", server.base))
        .header("authorization", "Basic YTpi")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(server.fingerprint().await, before);
}
