//! Helpers for the live transport tests: a real server on port 0, REST calls over loopback, a
//! tokio-tungstenite client and a streaming SSE reader. Every wait has a bound so a broken
//! server fails the test instead of hanging it; no wait depends on timing otherwise.
#![allow(dead_code)]

pub mod follow;

use futures::{SinkExt, StreamExt};
use liveplan_server::{Config, RunningServer};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

/// The failure guard on every wait.
pub const GUARD: Duration = Duration::from_secs(30);

pub const ADMIN_EMAIL: &str = "admin@example.test";
pub const ADMIN_PASSWORD: &str = "admin-password-1";
pub const PASSWORD: &str = "user-password-1";

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::new(dir.to_path_buf());
    // The scheduler's own events would interleave with the sequences these tests check.
    config.scheduler = false;
    config.admin_email = Some(ADMIN_EMAIL.into());
    config.admin_password = Some(ADMIN_PASSWORD.into());
    // Tests log in and mint tickets far faster than people do.
    config.rates.logins_per_account_per_minute = 100_000;
    config.rates.logins_per_address_per_minute = 100_000;
    config.rates.tickets_per_user_per_minute = 100_000;
    config
}

pub struct TestServer {
    pub server: RunningServer,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    pub admin: String,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        tune(&mut config);
        let server = liveplan_server::start(config, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let http = reqwest::Client::new();
        let mut this = TestServer {
            server,
            dir,
            http,
            admin: String::new(),
        };
        this.admin = this.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        this
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.address
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let response = self
            .http
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "login {email}");
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// A JSON call; returns the status and the body (Null when empty).
    pub async fn call(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, body)
    }

    pub async fn ok(&self, method: reqwest::Method, token: &str, path: &str, body: Value) -> Value {
        let (status, body) = self.call(method, token, path, Some(body)).await;
        assert!((200..300).contains(&status), "{path}: {status} {body}");
        body
    }

    /// A new user, logged in: (user id, access token).
    pub async fn user(&self, name: &str) -> (Uuid, String) {
        let email = format!("{name}-{}@example.test", Uuid::now_v7().simple());
        let user = self
            .ok(
                reqwest::Method::POST,
                &self.admin,
                "/api/v1/users",
                json!({"email": email, "password": PASSWORD, "display_name": name}),
            )
            .await;
        let id = Uuid::parse_str(user["id"].as_str().unwrap()).unwrap();
        (id, self.login(&email, PASSWORD).await)
    }

    /// A project made by the admin, who is its Owner.
    pub async fn project(&self, name: &str) -> Uuid {
        let project = self
            .ok(
                reqwest::Method::POST,
                &self.admin,
                "/api/v1/projects",
                json!({"name": name}),
            )
            .await;
        Uuid::parse_str(project["id"].as_str().unwrap()).unwrap()
    }

    /// Adds a member; returns the membership id.
    pub async fn add_member(&self, project: Uuid, user: Uuid, role: i64) -> Uuid {
        let member = self
            .ok(
                reqwest::Method::POST,
                &self.admin,
                &format!("/api/v1/projects/{project}/members"),
                json!({"user_id": user, "role": role}),
            )
            .await;
        Uuid::parse_str(member["membership_id"].as_str().unwrap()).unwrap()
    }

    pub async fn task(&self, token: &str, project: Uuid, name: &str) -> Value {
        self.ok(
            reqwest::Method::POST,
            token,
            &format!("/api/v1/projects/{project}/tasks"),
            json!({"name": name}),
        )
        .await
    }

    pub async fn ticket(&self, token: &str) -> String {
        let body = self
            .ok(
                reqwest::Method::POST,
                token,
                "/api/v1/ws/ticket/",
                json!({}),
            )
            .await;
        body["ticket"].as_str().unwrap().to_owned()
    }

    /// Every seq the project's log holds, in order.
    pub async fn log_seqs(&self, project: Uuid) -> Vec<i64> {
        let mut seqs = Vec::new();
        loop {
            let since = seqs.last().copied().unwrap_or(0);
            let (status, body) = self
                .call(
                    reqwest::Method::GET,
                    &self.admin,
                    &format!("/api/v1/projects/{project}/log?since={since}&limit=1000"),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{body}");
            let page: Vec<i64> = body["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["seq"].as_i64().unwrap())
                .collect();
            if page.is_empty() {
                return seqs;
            }
            seqs.extend(page);
        }
    }

    pub async fn ws(&self, path: &str) -> Ws {
        ws_connect(self.addr(), path).await
    }

    /// A native socket on `project` for the user of `token`, optionally resuming after `since`.
    pub async fn ws_project(&self, token: &str, project: Uuid, since: Option<i64>) -> Ws {
        let ticket = self.ticket(token).await;
        let mut path = format!("/ws/v1/projects/{project}/?ticket={ticket}");
        if let Some(since) = since {
            path.push_str(&format!("&since={since}"));
        }
        self.ws(&path).await
    }

    pub async fn sse(&self, token: &str, path: &str, last_event_id: Option<i64>) -> SseReader {
        let mut request = self.http.get(self.url(path)).bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = tokio::time::timeout(GUARD, request.send())
            .await
            .expect("SSE response in time")
            .unwrap();
        assert_eq!(response.status(), 200, "SSE {path}");
        SseReader::new(response)
    }
}

pub async fn ws_connect(addr: SocketAddr, path: &str) -> Ws {
    let url = format!("ws://{addr}{path}");
    let (ws, _) = tokio::time::timeout(GUARD, tokio_tungstenite::connect_async(url))
        .await
        .expect("upgrade in time")
        .expect("upgrade accepted");
    ws
}

/// What a socket yields next, ignoring pings: a JSON frame or the close code.
#[derive(Debug, PartialEq)]
pub enum WsNext {
    Json(Value),
    Closed(Option<u16>),
}

pub async fn ws_next(ws: &mut Ws) -> WsNext {
    loop {
        let message = tokio::time::timeout(GUARD, ws.next())
            .await
            .expect("a frame in time");
        match message {
            None | Some(Err(_)) => return WsNext::Closed(None),
            Some(Ok(Message::Text(text))) => {
                return WsNext::Json(serde_json::from_str(&text).expect("JSON frame"));
            }
            Some(Ok(Message::Close(frame))) => {
                return WsNext::Closed(frame.map(|f| u16::from(f.code)));
            }
            Some(Ok(_)) => {}
        }
    }
}

/// The next JSON frame; fails on a close.
pub async fn ws_json(ws: &mut Ws) -> Value {
    match ws_next(ws).await {
        WsNext::Json(value) => value,
        other => panic!("expected a frame, got {other:?}"),
    }
}

/// The next frame that is not presence.
pub async fn ws_event(ws: &mut Ws) -> Value {
    loop {
        let frame = ws_json(ws).await;
        let kind = frame["event_type"].as_str().unwrap_or_default();
        if !kind.starts_with("presence_") {
            return frame;
        }
    }
}

/// Reads until the close frame and returns its code, skipping other frames.
pub async fn ws_close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        if let WsNext::Closed(code) = ws_next(ws).await {
            return code;
        }
    }
}

pub async fn ws_send(ws: &mut Ws, message: Message) {
    ws.send(message).await.expect("send");
}

pub fn code(c: CloseCode) -> u16 {
    u16::from(c)
}

/// One SSE block: its fields, or a comment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseMessage {
    pub id: Option<String>,
    pub data: Option<String>,
    pub comment: Option<String>,
}

impl SseMessage {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().expect("data")).expect("JSON data")
    }
}

/// Reads an SSE body block by block, as it streams.
pub struct SseReader {
    pub response: Option<reqwest::Response>,
    pub headers: reqwest::header::HeaderMap,
    buffer: Vec<u8>,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> SseReader {
        SseReader {
            headers: response.headers().clone(),
            response: Some(response),
            buffer: Vec::new(),
        }
    }

    /// The next block; `None` when the stream ended.
    pub async fn next(&mut self) -> Option<SseMessage> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let text = String::from_utf8(block).expect("UTF-8");
                let mut message = SseMessage::default();
                for line in text.lines().filter(|l| !l.is_empty()) {
                    if let Some(rest) = line.strip_prefix(':') {
                        message.comment = Some(rest.trim().to_owned());
                    } else if let Some((field, value)) = line.split_once(':') {
                        let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
                        match field {
                            "id" => message.id = Some(value),
                            "data" => message.data = Some(value),
                            _ => {}
                        }
                    }
                }
                return Some(message);
            }
            let response = self.response.as_mut()?;
            let chunk = tokio::time::timeout(GUARD, response.chunk())
                .await
                .expect("SSE data in time");
            match chunk {
                Ok(Some(bytes)) => self.buffer.extend_from_slice(&bytes),
                _ => {
                    self.response = None;
                    return None;
                }
            }
        }
    }

    /// The next message with data (comments skipped).
    pub async fn data(&mut self) -> Option<SseMessage> {
        loop {
            let message = self.next().await?;
            if message.data.is_some() {
                return Some(message);
            }
        }
    }

    /// The next message that is not presence.
    pub async fn event(&mut self) -> Option<SseMessage> {
        loop {
            let message = self.data().await?;
            let kind = message.json()["type"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if !kind.starts_with("presence.") {
                return Some(message);
            }
        }
    }

    /// Reads until the stream ends; fails if it does not.
    pub async fn ended(&mut self) {
        while self.next().await.is_some() {}
    }
}

/// The bootstrap administrator as a domain actor, for committing straight through a domain
/// (faster than REST, or while the server is down).
pub async fn admin_actor(domain: &domain::Domain) -> domain::Actor {
    let admin = domain
        .find_user_by_login(ADMIN_EMAIL)
        .await
        .unwrap()
        .unwrap();
    domain::Actor {
        user_id: admin.id,
        is_admin: true,
        tab_id: None,
    }
}
