//! Server-Sent Events (CONTRACT §7) over a streaming HTTP client: auth, headers, framing,
//! replay, keepalive, the per-user cap, the aliases, the project-list and user streams, and the
//! cross-project leak check on every stream (native WebSocket included).

use liveplan_testkit::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashSet;
use uuid::Uuid;

async fn head(server: &TestServer, project: Uuid) -> i64 {
    server.log_seqs(project).await.last().copied().unwrap_or(0)
}

#[tokio::test]
async fn auth_headers_and_framing() {
    let server = TestServer::start_relaxed().await;
    let project = server.new_project("Framing").await;
    let (member, token) = server.new_user("framer").await;
    server.new_member(project, member, 1).await; // a Viewer may read SSE
    let (_, outsider) = server.new_user("outsider").await;
    let path = format!("/api/v1/projects/{project}/events");

    // 401 without credentials, as JSON.
    let response = server.http.get(server.url(&path)).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_authenticated");
    // 404 for a project the user cannot see, one that does not exist, an id that cannot exist.
    for p in [
        path.clone(),
        format!("/api/v1/projects/{}/events", Uuid::now_v7()),
        "/api/v1/projects/nope/events".to_owned(),
    ] {
        let token = if p == path { &outsider } else { &token };
        let (status, body) = server.call(Method::GET, &p, Some(token), None).await;
        assert_eq!(status, 404, "{p}");
        assert_eq!(body["error"]["code"], "not_found");
    }

    // The session cookie works like Bearer (browsers' EventSource).
    let response = server
        .http
        .get(server.url(&path))
        .header("Cookie", format!("liveplan_session={token}"))
        .header("Accept-Encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut sse = SseReader::new(response);
    let h = &sse.headers;
    assert_eq!(h["content-type"], "text/event-stream");
    assert_eq!(h["cache-control"], "no-cache, no-transform");
    assert_eq!(h["x-accel-buffering"], "no");
    assert!(h.get("content-encoding").is_none(), "never compressed");
    let first = sse.next().await.unwrap();
    assert_eq!(first.id, None);
    assert_eq!(
        first.json(),
        json!({"type": "connected", "userId": member.to_string()})
    );

    // One message per event: id = seq, PUNT name, full record, tabId, RFC 3339 timestamp.
    let created: Value = server
        .http
        .post(server.url(&format!("/api/v1/projects/{project}/tasks")))
        .bearer_auth(&server.admin)
        .header("X-Tab-Id", "tab-42")
        .json(&json!({"name": "Pour slab"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let message = sse.event().await.unwrap();
    let seq = head(&server, project).await;
    assert_eq!(message.id, Some(seq.to_string()));
    let data = message.json();
    assert_eq!(data["type"], "ticket.created");
    assert_eq!(data["tabId"], "tab-42");
    assert_eq!(data["data"]["id"], created["id"]);
    assert_eq!(data["data"]["name"], "Pour slab");
    let ts = data["timestamp"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");

    // A board move is ticket.moved, a plain edit ticket.updated; no tab is null.
    let task = created["id"].as_str().unwrap();
    let task_path = format!("/api/v1/projects/{project}/tasks/{task}");
    server
        .ok(
            Method::PATCH,
            &server.admin,
            &task_path,
            json!({"status": "done"}),
        )
        .await;
    server
        .ok(
            Method::PATCH,
            &server.admin,
            &task_path,
            json!({"name": "Pour the slab"}),
        )
        .await;
    let moved = sse.event().await.unwrap().json();
    assert_eq!(moved["type"], "ticket.moved");
    assert_eq!(moved["tabId"], Value::Null);
    assert_eq!(sse.event().await.unwrap().json()["type"], "ticket.updated");
}

#[tokio::test]
async fn last_event_id_replays_or_resyncs() {
    let server = TestServer::start_relaxed().await;
    let project = server.new_project("Replay").await;
    for i in 0..4 {
        server.task(&server.admin, project, &format!("t{i}")).await;
    }
    let latest = head(&server, project).await;
    assert_eq!(latest, 5);
    let path = format!("/api/v1/projects/{project}/events");

    // Header.
    let mut sse = server.sse(&server.admin, &path, Some(2)).await;
    assert_eq!(sse.data().await.unwrap().json()["type"], "connected");
    for seq in 3..=5 {
        assert_eq!(sse.event().await.unwrap().id, Some(seq.to_string()));
    }
    // Query parameter.
    let mut sse = server
        .sse(&server.admin, &format!("{path}?last_event_id=4"), None)
        .await;
    sse.data().await.unwrap();
    assert_eq!(sse.event().await.unwrap().id, Some("5".into()));
    // Garbage and positions beyond the log: resync_required first, then live.
    for bad in ["x", "-1", "77"] {
        let mut sse = server
            .sse(&server.admin, &format!("{path}?last_event_id={bad}"), None)
            .await;
        sse.data().await.unwrap();
        let message = sse.event().await.unwrap();
        assert_eq!(message.id, None);
        assert_eq!(
            message.json(),
            json!({"type": "resync_required", "data": {"latest_seq": 5}})
        );
    }
}

/// The keepalive comes when the server's manual clock (liveplan-testkit's "Time") has moved by
/// the configured silence; the period is longer than the read guard, so a keepalive on the
/// real clock would fail the test.
#[tokio::test]
async fn keepalive_comments_and_the_connection_cap() {
    let silence = 2 * GUARD;
    let server = TestServer::start_relaxed_with(|c| {
        c.live.sse_keepalive = silence;
        c.live.sse_max_per_user = 2;
        c.clock = Clock::manual();
    })
    .await;
    let (_, token) = server.new_user("capped").await;
    let mut first = server.sse(&token, "/api/v1/users/events", None).await;
    assert_eq!(first.next().await.unwrap().json()["type"], "connected");
    server.advance(silence);
    let keepalive = first.next().await.unwrap();
    assert_eq!(keepalive.comment.as_deref(), Some("keepalive"));
    assert_eq!(keepalive.data, None);
    let _second = server.sse(&token, "/api/v1/projects/events", None).await;
    let (status, body) = server
        .call(Method::GET, "/api/v1/users/events", Some(&token), None)
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    // Other users have their own allowance.
    let _admin = server
        .sse(&server.admin, "/api/v1/users/events", None)
        .await;
}

#[tokio::test]
async fn aliases_resolve_ids_and_keys() {
    let server = TestServer::start_relaxed().await;
    let project = server
        .ok(
            Method::POST,
            &server.admin,
            "/api/v1/projects",
            json!({"name": "Keyed", "key": "KEYD"}),
        )
        .await;
    let id = project["id"].as_str().unwrap().to_owned();
    for path in [
        format!("/api/projects/{id}/events"),
        "/api/projects/KEYD/events".to_owned(),
        "/api/projects/events".to_owned(),
        "/api/users/events".to_owned(),
    ] {
        let mut sse = server.sse(&server.admin, &path, None).await;
        assert_eq!(
            sse.next().await.unwrap().json()["type"],
            "connected",
            "{path}"
        );
    }
    let (status, _) = server
        .call(
            Method::GET,
            "/api/projects/NOPE/events",
            Some(&server.admin),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn project_list_stream_follows_memberships() {
    let server = TestServer::start_relaxed().await;
    let mine = server.new_project("Mine").await;
    let theirs = server.new_project("Theirs").await;
    let (user, token) = server.new_user("lister").await;
    let membership = server.new_member(mine, user, 1).await;
    let mut list = server.sse(&token, "/api/v1/projects/events", None).await;
    assert_eq!(list.data().await.unwrap().json()["type"], "connected");

    let rename = |project: Uuid, name: &'static str| {
        let server = &server;
        async move {
            server
                .ok(
                    Method::PATCH,
                    &server.admin,
                    &format!("/api/v1/projects/{project}"),
                    json!({"name": name}),
                )
                .await;
        }
    };
    rename(theirs, "Theirs 2").await;
    rename(mine, "Mine 2").await;
    let message = list.event().await.unwrap().json();
    assert_eq!(message["type"], "project.updated");
    assert_eq!(message["data"]["name"], "Mine 2", "nothing of Theirs");

    // Added to Theirs: its events now arrive.
    server.new_member(theirs, user, 100).await;
    rename(theirs, "Theirs 3").await;
    assert_eq!(
        list.event().await.unwrap().json()["data"]["name"],
        "Theirs 3"
    );
    // Removed from Mine: its events stop, the stream goes on.
    server
        .call(
            Method::DELETE,
            &format!("/api/v1/projects/{mine}/members/{membership}"),
            Some(&server.admin),
            None,
        )
        .await;
    rename(mine, "Mine 3").await;
    let other = server.new_project("Admin only").await;
    rename(theirs, "Theirs 4").await;
    let message = list.event().await.unwrap().json();
    assert_eq!(message["data"]["name"], "Theirs 4", "{message}");
    // A project the user is made Owner of at creation shows up from its creation.
    let _ = other;
}

#[tokio::test]
async fn user_stream_carries_own_updates() {
    let server = TestServer::start_relaxed().await;
    let (user, token) = server.new_user("self").await;
    let (other, _) = server.new_user("other").await;
    let mut users = server.sse(&token, "/api/v1/users/events", None).await;
    assert_eq!(users.data().await.unwrap().json()["type"], "connected");
    server
        .ok(
            Method::PATCH,
            &server.admin,
            &format!("/api/v1/users/{other}"),
            json!({"display_name": "Someone else"}),
        )
        .await;
    server
        .ok(
            Method::PATCH,
            &token,
            "/api/v1/users/me",
            json!({"display_name": "Me myself"}),
        )
        .await;
    let message = users.event().await.unwrap();
    assert!(message.id.is_some());
    let data = message.json();
    assert_eq!(data["type"], "user.updated");
    assert_eq!(data["data"]["id"], json!(user));
    assert_eq!(data["data"]["display_name"], "Me myself");
}

/// Two projects with writes in both; a member of one only watches every stream they may
/// open. Nothing of the other project reaches them anywhere.
#[tokio::test]
async fn nothing_leaks_across_projects() {
    let server = TestServer::start_relaxed().await;
    let mine = server.new_project("Mine").await;
    let secret = server.new_project("Secret").await;
    let (user, token) = server.new_user("watcher").await;
    server.new_member(mine, user, 100).await;
    let at = head(&server, mine).await;
    let mut ws = server.ws_project(&token, mine, Some(0)).await;
    let mut sse = server
        .sse(&token, &format!("/api/v1/projects/{mine}/events"), Some(0))
        .await;
    let mut list = server.sse(&token, "/api/v1/projects/events", Some(0)).await;
    let mut users = server.sse(&token, "/api/v1/users/events", Some(0)).await;
    let _ = at;

    let mut allowed = HashSet::new();
    let mut forbidden = HashSet::new();
    for i in 0..5 {
        let a = server.task(&server.admin, mine, &format!("mine {i}")).await;
        allowed.insert(a["id"].as_str().unwrap().to_owned());
        let b = server
            .task(&server.admin, secret, &format!("secret {i}"))
            .await;
        forbidden.insert(b["id"].as_str().unwrap().to_owned());
        server
            .ok(
                Method::PATCH,
                &server.admin,
                &format!("/api/v1/projects/{secret}"),
                json!({"name": format!("Secret {i}")}),
            )
            .await;
    }
    server
        .ok(
            Method::PATCH,
            &server.admin,
            &format!("/api/v1/projects/{mine}"),
            json!({"name": "Mine, end"}),
        )
        .await;
    server
        .ok(
            Method::PATCH,
            &token,
            "/api/v1/users/me",
            json!({"display_name": "end"}),
        )
        .await;
    let last = server.task(&server.admin, mine, "end").await;
    let last = last["id"].as_str().unwrap().to_owned();
    let secret_text = secret.to_string();

    // WS: every task frame is one of mine, up to the last one.
    loop {
        let frame = ws_event(&mut ws).await;
        let text = frame.to_string();
        assert!(!text.contains(&secret_text));
        assert!(
            forbidden.iter().all(|id| !text.contains(id.as_str())),
            "{text}"
        );
        if frame["payload"]["id"] == json!(last) {
            break;
        }
    }
    loop {
        let message = sse.event().await.unwrap();
        let text = message.data.clone().unwrap();
        assert!(!text.contains(&secret_text));
        assert!(
            forbidden.iter().all(|id| !text.contains(id.as_str())),
            "{text}"
        );
        if message.json()["data"]["id"] == json!(last) {
            break;
        }
    }
    loop {
        let message = list.event().await.unwrap();
        let text = message.data.clone().unwrap();
        assert!(!text.contains(&secret_text), "{text}");
        if message.json()["data"]["name"] == "Mine, end" {
            break;
        }
    }
    loop {
        let message = users.event().await.unwrap().json();
        if message["type"] == "connected" {
            continue;
        }
        assert_eq!(message["data"]["id"], json!(user), "{message}");
        if message["data"]["display_name"] == "end" {
            break;
        }
    }
}
