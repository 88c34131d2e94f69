//! Integers in records' extra fields (issue 20, defect 7): every integer of 64 bits comes back
//! digit for digit; one beyond, which would come back as a float (2^64 as
//! `1.8446744073709552e19`), is refused with 422 and nothing is written.

use liveplan_testkit::*;
use reqwest::StatusCode;
use serde_json::Value;

async fn post_text(
    server: &TestServer,
    token: &str,
    path: &str,
    text: &str,
) -> (StatusCode, String) {
    let response = server
        .http
        .post(format!("{}{path}", server.base))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(text.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn integers_come_back_exactly_or_are_refused() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let project = server.project(&admin, "Big numbers").await;
    let tasks = format!("/api/v1/projects/{project}/tasks");

    // Kept exactly: the ends of i64 and u64, and beyond a float's 53 bits.
    for number in [
        "18446744073709551615",
        "-9223372036854775808",
        "9007199254740993",
    ] {
        let body = format!(r#"{{"name": "T", "extra": {number}, "nested": {{"n": [{number}]}}}}"#);
        let (status, text) = post_text(&server, &admin, &tasks, &body).await;
        assert_eq!(status, StatusCode::CREATED, "{number}: {text}");
        let created: Value = serde_json::from_str(&text).unwrap();
        let id = created["id"].as_str().unwrap();
        let (_, again) = server.get(&format!("{tasks}/{id}"), &admin).await;
        for record in [&created, &again] {
            assert_eq!(record["extra"].to_string(), number);
            assert_eq!(record["nested"]["n"][0].to_string(), number);
        }
    }

    // Refused: 2^64, and any integer beyond 64 bits wherever it sits, JavaScript's spelling of
    // 2^64 included.
    let before = server.record_names(&admin, &project, "tasks").await.len();
    for body in [
        r#"{"name": "T", "extra": 18446744073709551616}"#,
        r#"{"name": "T", "extra": {"deep": [1, -18446744073709551617]}}"#,
        r#"{"name": "T", "extra": 123456789012345678901234567890}"#,
        r#"{"name": "T", "extra": 18446744073709552000}"#,
    ] {
        let (status, text) = post_text(&server, &admin, &tasks, body).await;
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_error(
            status,
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("64 bits"),
            "{answer}"
        );
    }
    // A string holding the digits is data like any other.
    let (status, text) = post_text(
        &server,
        &admin,
        &tasks,
        r#"{"name": "T", "extra": "18446744073709551616"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    assert_eq!(
        server.record_names(&admin, &project, "tasks").await.len(),
        before + 1,
        "nothing refused was written"
    );

    // A PATCH is read the same way.
    let created: Value = serde_json::from_str(&text).unwrap();
    let one = format!("{tasks}/{}", created["id"].as_str().unwrap());
    let response = server
        .http
        .patch(format!("{}{one}", server.base))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(r#"{"extra": 18446744073709551616}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let (_, still) = server.get(&one, &admin).await;
    assert_eq!(still["extra"], "18446744073709551616");
}
