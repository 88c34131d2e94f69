//! The binary under SIGTERM with live clients: the native WebSocket hears 1001, the SSE stream
//! ends, and the process exits 0 (CONTRACT §1).

use liveplan_testkit::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_liveplan");

#[tokio::test]
async fn sigterm_closes_live_connections_with_1001_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--demo"])
        .env("LIVEPLAN_DATA_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn liveplan");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("listening line");
    let base = line
        .trim()
        .strip_prefix("liveplan listening on ")
        .expect(&line)
        .to_owned();
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": "admin"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_owned();
    let projects: Value = http
        .get(format!("{base}/api/v1/projects"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let project = projects[0]["id"].as_str().unwrap().to_owned();
    let ticket: Value = http
        .post(format!("{base}/api/v1/ws/ticket/"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ws = ws_connect(
        addr,
        &format!(
            "/ws/v1/projects/{project}/?ticket={}",
            ticket["ticket"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(ws_json(&mut ws).await["event_type"], "presence_join");
    let response = http
        .get(format!("{base}/api/v1/projects/{project}/events"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let mut sse = SseReader::new(response);
    assert_eq!(sse.next().await.unwrap().json()["type"], "connected");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(ws_close_code(&mut ws).await, Some(1001));
    sse.ended().await;
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}
