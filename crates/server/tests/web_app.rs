//! The browser app (CONTRACT §13): served from the binary at `/` with the right headers, and
//! driven in real Chromium (Debian's `chromium` through `playwright-core`, never a downloaded
//! browser; web/tests/browser.mjs): two people editing one project live in the Gantt and the
//! board, presence appearing and leaving, a tab taken offline catching up with nothing missed
//! and no reload, a whiteboard stroke and a remote cursor, a viewer who can change nothing.
//! The browser run takes the screenshots the README shows (into docs/screenshots/ with
//! LIVEPLAN_SCREENSHOTS=1). Runs on the
//! backend `LIVEPLAN_TEST_DATABASE_URL` picks.
//!
//! Needs `npm` and `/usr/bin/chromium` (scripts/test.sh installs both); without them the browser
//! test is skipped loudly, except under CI, where it fails.

use liveplan_testkit::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use uuid::Uuid;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn chromium() -> PathBuf {
    std::env::var_os("LIVEPLAN_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

async fn browser_ready() -> bool {
    let npm = Command::new("npm").arg("--version").output().await;
    let missing = if !npm.is_ok_and(|o| o.status.success()) {
        Some("npm is not installed")
    } else if !chromium().exists() {
        Some("Debian's chromium is not installed (apt-get install chromium)")
    } else {
        None
    };
    if let Some(why) = missing {
        assert!(
            std::env::var_os("CI").is_none(),
            "web_app: {why}; CI must run the browser test"
        );
        eprintln!("\n!!!!!!!!\n!!! SKIPPED web_app browser test: {why}.\n!!!!!!!!\n");
        return false;
    }
    let web = repo().join("web");
    if !web.join("node_modules/playwright-core").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&web)
            .status()
            .await
            .expect("npm ci runs");
        assert!(status.success(), "npm ci in web/ failed");
    }
    true
}

#[tokio::test]
async fn the_app_is_served_from_the_binary_with_its_headers() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let index = http.get(server.url("/")).send().await.unwrap();
    assert_eq!(index.status(), StatusCode::OK);
    let headers = index.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-cache");
    let csp = headers["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let socket = format!("ws://{}", server.addr());
    assert!(
        csp.contains(&format!("connect-src 'self' {socket} ")),
        "{csp}"
    );
    let html = index.text().await.unwrap();
    assert!(html.contains(r#"<div id="app">"#), "{html}");
    assert!(!html.contains("<script>"), "no inline script: {html}");

    // Every asset the page names: hashed, immutable, with its content type.
    let assets: Vec<&str> = html
        .split('"')
        .filter(|part| part.starts_with("/assets/"))
        .collect();
    assert!(assets.iter().any(|a| a.ends_with(".js")), "{html}");
    assert!(assets.iter().any(|a| a.ends_with(".css")), "{html}");
    for asset in assets {
        let answer = http.get(server.url(asset)).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{asset}");
        let kind = if asset.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(answer.headers()["content-type"], kind, "{asset}");
        assert_eq!(
            answer.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert!(!answer.bytes().await.unwrap().is_empty());
    }

    // Everything else keeps its JSON 404, the API's and the sockets' paths first.
    for path in [
        "/api/v1/no-such-thing",
        "/api/nothing",
        "/ws/nothing",
        "/assets/missing.js",
        "/no-such-page",
    ] {
        let answer = http.get(server.url(path)).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(
            answer.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{path}"
        );
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    // A write to the app's path is not routed to it.
    let post = http.post(server.url("/")).send().await.unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
}

/// A user the administrator makes, who signs in through the app's form: (id, email).
async fn person(server: &TestServer, name: &str) -> (Uuid, String) {
    let email = format!(
        "{}-{}@example.test",
        name.to_lowercase(),
        Uuid::now_v7().simple()
    );
    let (status, user) = server
        .post(
            "/api/v1/users",
            &server.admin,
            json!({"email": email, "password": PASSWORD, "display_name": name}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    (
        Uuid::parse_str(user["id"].as_str().unwrap()).unwrap(),
        email,
    )
}

/// The project the browsers edit: a phase with three tasks in a chain, a milestone, and one
/// task on its own.
async fn plan(server: &TestServer, owner: &str) -> String {
    let (status, project) = server
        .post(
            "/api/v1/projects",
            owner,
            json!({"name": "Browser plan", "start_date": "2026-03-02"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{project}");
    let project = project["id"].as_str().unwrap().to_owned();
    let phase = server
        .create(
            owner,
            &project,
            "tasks",
            json!({"name": "Phase one", "status": "todo"}),
        )
        .await;
    let mut ids = Vec::new();
    for (name, duration) in [("Write spec", 3), ("Design", 4), ("Build", 5)] {
        let task = server
            .create(
                owner,
                &project,
                "tasks",
                json!({"name": name, "duration": duration, "parent_id": phase["id"], "status": "todo", "start_date": "2026-03-02"}),
            )
            .await;
        ids.push(task["id"].as_str().unwrap().to_owned());
    }
    let launch = server
        .create(
            owner,
            &project,
            "tasks",
            json!({"name": "Launch", "duration": 0, "is_milestone": true, "status": "todo"}),
        )
        .await;
    ids.push(launch["id"].as_str().unwrap().to_owned());
    server
        .create(
            owner,
            &project,
            "tasks",
            json!({"name": "Side errand", "duration": 2, "status": "todo"}),
        )
        .await;
    for pair in ids.windows(2) {
        server
            .create(
                owner,
                &project,
                "dependencies",
                json!({"predecessor_id": pair[0], "successor_id": pair[1], "type": "FS"}),
            )
            .await;
    }
    project
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_a_viewer_and_an_offline_tab_in_real_chromium() {
    if !browser_ready().await {
        return;
    }
    // The scheduler runs, as in production: the Gantt shows its outputs.
    let server = TestServer::start_relaxed_with(|c| c.scheduler = true).await;
    let (a_id, a_login) = person(&server, "Ada").await;
    let (b_id, b_login) = person(&server, "Bo").await;
    let (viewer_id, viewer_login) = person(&server, "Vic").await;
    let project = plan(&server, &server.admin).await;
    let project_id = Uuid::parse_str(&project).unwrap();
    server.new_member(project_id, a_id, 200).await;
    server.new_member(project_id, b_id, 100).await;
    server.new_member(project_id, viewer_id, 1).await;
    let board = server
        .create(
            &server.admin,
            &project,
            "whiteboards",
            json!({"name": "Ideas"}),
        )
        .await;
    let board = board["id"].as_str().unwrap().to_owned();
    // The README's pictures are refreshed when asked (LIVEPLAN_SCREENSHOTS=1); otherwise the
    // run's own go to a scratch folder, so a test run leaves the checkout as it was.
    let scratch = tempfile::tempdir().unwrap();
    let screenshots = if std::env::var_os("LIVEPLAN_SCREENSHOTS").is_some() {
        repo().join("docs/screenshots")
    } else {
        scratch.path().to_owned()
    };
    std::fs::create_dir_all(&screenshots).unwrap();
    let config = json!({
        "base": server.url(""),
        "project": project,
        "password": PASSWORD,
        "chromium": chromium(),
        "users": {
            "a": {"login": a_login, "id": a_id},
            "b": {"login": b_login, "id": b_id},
            "viewer": {"login": viewer_login, "id": viewer_id},
        },
        "whiteboard": board,
        "screenshots": screenshots,
        "rename": "Write spec",
        "lengthen": "Design",
    });

    let mut child = Command::new("node")
        .arg("tests/browser.mjs")
        .current_dir(repo().join("web"))
        .env("LIVEPLAN_WEB_TEST", config.to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut steps = Vec::new();
    let mut done = None;
    let run = async {
        while let Some(line) = lines.next_line().await.expect("driver output") {
            eprintln!("browser: {line}");
            let value: Value = serde_json::from_str(&line).expect("JSON line");
            match value["type"].as_str() {
                Some("step") => steps.push(value["name"].as_str().unwrap().to_owned()),
                Some("done") => done = Some(value),
                Some("error") => panic!("the browser test failed: {}", value["message"]),
                _ => {}
            }
        }
        child.wait().await.expect("node exits")
    };
    let status = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the browser test ends within 300 s");
    assert!(status.success(), "the driver exited with {status}");
    assert_eq!(
        steps,
        [
            "login refused",
            "signed in",
            "presence appears",
            "task added live",
            "rename live",
            "bars move live",
            "card moved live",
            "presence leaves",
            "presence returns",
            "offline and back, nothing missed",
            "whiteboard stroke live",
            "remote cursor",
            "viewer cannot change anything",
        ]
    );
    let done = done.expect("the driver reports what it did");

    // What the browsers did is what the server holds.
    let server = &server;
    let task = |id: &str| {
        let path = format!("/api/v1/projects/{project}/tasks/{id}");
        async move { server.get(&path, &server.admin).await.1 }
    };
    let added = task(done["added"].as_str().unwrap()).await;
    assert_eq!(added["name"], "Added by A");
    assert_eq!(added["status"], "in_progress");
    let renamed = task(done["renamed"].as_str().unwrap()).await;
    assert_eq!(renamed["name"], "Renamed while A was away");
    let lengthened = task(done["lengthened"].as_str().unwrap()).await;
    assert_eq!(lengthened["duration"].as_f64(), Some(9.0), "{lengthened}");
    let names = server.record_names(&server.admin, &project, "tasks").await;
    for name in ["Offline two", "Offline three", "Seen by the viewer"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    assert!(
        !names.iter().any(|n| n == "Forced by the viewer"),
        "the viewer's forced write changed nothing: {names:?}"
    );
    assert!(
        done["viewerError"]
            .as_str()
            .unwrap()
            .contains("member role"),
        "the server's own message is shown: {done}"
    );
    let (_, content) = server
        .get(
            &format!("/api/v1/projects/{project}/whiteboards/{board}/content"),
            &server.admin,
        )
        .await;
    let elements = content["elements"].as_array().expect("elements");
    assert_eq!(elements.len(), 1, "{content}");
    assert_eq!(elements[0]["type"], "path");
    assert_eq!(elements[0]["created_by"], json!(a_id));
    assert!(elements[0]["points"].as_array().unwrap().len() >= 6);
    for shot in ["gantt.png", "board.png"] {
        assert!(
            std::fs::metadata(screenshots.join(shot)).unwrap().len() > 1000,
            "{shot} saved"
        );
    }
}
