//! A real server on port 0 with a real SQLite file, and a small HTTP client that returns
//! `(status, JSON)` for every call.
#![allow(dead_code)]

use liveplan_server::{Config, RunningServer, start};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::PathBuf;

pub const ADMIN_EMAIL: &str = "root@example.test";
pub const ADMIN_PASSWORD: &str = "root-password-1";

pub struct TestServer {
    pub server: Option<RunningServer>,
    pub dir: tempfile::TempDir,
    pub base: String,
    pub http: reqwest::Client,
}

pub fn config(dir: PathBuf) -> Config {
    let mut config = Config::new(dir);
    // The scheduler's own events would interleave with the sequences these tests check;
    // tests/schedule.rs turns it on.
    config.scheduler = false;
    config.admin_email = Some(ADMIN_EMAIL.into());
    config.admin_password = Some(ADMIN_PASSWORD.into());
    config
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = config(dir.path().to_path_buf());
        adjust(&mut config);
        let server = start(config, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("server starts");
        let base = format!("http://{}", server.address);
        TestServer {
            server: Some(server),
            dir,
            base,
            http: reqwest::Client::builder().build().unwrap(),
        }
    }

    /// Stops the server and starts a new one on the same data directory.
    pub async fn restart(&mut self) {
        self.restart_with(|_| {}).await
    }

    /// Like [`TestServer::restart`], with the configuration adjusted.
    pub async fn restart_with(&mut self, adjust: impl FnOnce(&mut Config)) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("clean shutdown");
        }
        let mut config = config(self.dir.path().to_path_buf());
        adjust(&mut config);
        let server = start(config, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("server restarts");
        self.base = format!("http://{}", server.address);
        self.server = Some(server);
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("liveplan.db")
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    pub async fn login(&self, login: &str, password: &str) -> String {
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({ "email": login, "password": password })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login {login}: {body}");
        body["access_token"].as_str().expect("token").to_owned()
    }

    pub async fn admin(&self) -> String {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// Creates a user and returns (id, token).
    pub async fn user(&self, admin: &str, name: &str) -> (String, String) {
        let email = format!("{name}@example.test");
        let password = format!("{name}-password");
        let (status, body) = self
            .post(
                "/api/v1/users",
                admin,
                json!({ "email": email, "password": password, "username": name }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["id"].as_str().unwrap().to_owned();
        (id, self.login(&email, &password).await)
    }

    pub async fn project(&self, admin: &str, name: &str) -> String {
        let (status, body) = self
            .post("/api/v1/projects", admin, json!({ "name": name }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    pub async fn add_member(&self, owner: &str, project: &str, user_id: &str, role: i64) -> String {
        let (status, body) = self
            .post(
                &format!("/api/v1/projects/{project}/members"),
                owner,
                json!({ "user_id": user_id, "role": role }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["membership_id"].as_str().unwrap().to_owned()
    }

    pub async fn create(&self, token: &str, project: &str, collection: &str, body: Value) -> Value {
        let (status, created) = self
            .post(
                &format!("/api/v1/projects/{project}/{collection}"),
                token,
                body,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{collection}: {created}");
        created
    }

    pub async fn log(&self, token: &str, project: &str, since: i64) -> Value {
        let (status, body) = self
            .get(
                &format!("/api/v1/projects/{project}/log?since={since}&limit=1000"),
                token,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Row counts of every table and the latest seq of every stream, read straight from the
    /// SQLite file: the ground truth for "nothing changed".
    pub async fn fingerprint(&self) -> Vec<(String, i64)> {
        use sqlx::Connection;
        let url = format!("sqlite://{}?mode=ro", self.db_path().display());
        let mut conn = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("open db");
        let mut out = Vec::new();
        for table in [
            "users",
            "sessions",
            "projects",
            "memberships",
            "records",
            "record_refs",
            "events",
            "ws_tickets",
        ] {
            let sql = match table {
                "users" => "SELECT COUNT(*) FROM users",
                "sessions" => "SELECT COUNT(*) FROM sessions",
                "projects" => "SELECT COUNT(*) FROM projects",
                "memberships" => "SELECT COUNT(*) FROM memberships",
                "records" => "SELECT COUNT(*) FROM records",
                "record_refs" => "SELECT COUNT(*) FROM record_refs",
                "events" => "SELECT COUNT(*) FROM events",
                _ => "SELECT COUNT(*) FROM ws_tickets",
            };
            let count: i64 = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
            out.push((table.to_owned(), count));
        }
        let streams: Vec<(String, i64)> =
            sqlx::query_as("SELECT stream, last_seq FROM streams ORDER BY stream")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        out.extend(streams);
        let versions: Vec<(String, i64)> =
            sqlx::query_as("SELECT id, version FROM records ORDER BY id")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        out.extend(versions);
        conn.close().await.ok();
        out
    }
}

/// Asserts the JSON error shape and code.
pub fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}
