//! REST calls over loopback: `(status, JSON)` for every call, and the setup most tests share
//! (users, projects, members, tasks, tickets).

use crate::server::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

pub const ADMIN_EMAIL: &str = "root@example.test";
pub const ADMIN_PASSWORD: &str = "root-password-1";
/// The password of users made by [`TestServer::new_user`].
pub const PASSWORD: &str = "user-password-1";

impl TestServer {
    /// A JSON call; returns the status and the body (`Null` when empty, a string when not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.url(path));
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

    /// A call that must succeed (2xx); returns the body.
    pub async fn ok(&self, method: Method, token: &str, path: &str, body: Value) -> Value {
        let (status, body) = self.call(method, path, Some(token), Some(body)).await;
        assert!(status.is_success(), "{path}: {status} {body}");
        body
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

    /// A new session of the bootstrap administrator.
    pub async fn admin(&self) -> String {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// Creates a user `{name}@example.test` and returns (id, token).
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

    /// Creates a project as `owner`; returns its id.
    pub async fn project(&self, owner: &str, name: &str) -> String {
        let (status, body) = self
            .post("/api/v1/projects", owner, json!({ "name": name }))
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

    /// A new user with a unique email, made by the administrator and logged in:
    /// (user id, access token).
    pub async fn new_user(&self, name: &str) -> (Uuid, String) {
        let email = format!("{name}-{}@example.test", Uuid::now_v7().simple());
        let user = self
            .ok(
                Method::POST,
                &self.admin,
                "/api/v1/users",
                json!({"email": email, "password": PASSWORD, "display_name": name}),
            )
            .await;
        let id = Uuid::parse_str(user["id"].as_str().unwrap()).unwrap();
        (id, self.login(&email, PASSWORD).await)
    }

    /// A project made by the administrator, who is its Owner.
    pub async fn new_project(&self, name: &str) -> Uuid {
        let project = self
            .ok(
                Method::POST,
                &self.admin,
                "/api/v1/projects",
                json!({"name": name}),
            )
            .await;
        Uuid::parse_str(project["id"].as_str().unwrap()).unwrap()
    }

    /// The administrator adds `user` to `project`; returns the membership id.
    pub async fn new_member(&self, project: Uuid, user: Uuid, role: i64) -> Uuid {
        let member = self
            .ok(
                Method::POST,
                &self.admin,
                &format!("/api/v1/projects/{project}/members"),
                json!({"user_id": user, "role": role}),
            )
            .await;
        Uuid::parse_str(member["membership_id"].as_str().unwrap()).unwrap()
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

    pub async fn task(&self, token: &str, project: Uuid, name: &str) -> Value {
        self.ok(
            Method::POST,
            token,
            &format!("/api/v1/projects/{project}/tasks"),
            json!({"name": name}),
        )
        .await
    }

    /// `count` tasks named `<prefix> 0`, `<prefix> 1`, … made by the administrator.
    pub async fn admin_tasks(&self, project: Uuid, prefix: &str, count: usize) {
        for i in 0..count {
            self.task(&self.admin, project, &format!("{prefix} {i}"))
                .await;
        }
    }

    /// The names of a collection's records, as `token` lists them.
    pub async fn record_names(&self, token: &str, project: &str, collection: &str) -> Vec<String> {
        let (_, records) = self
            .get(&format!("/api/v1/projects/{project}/{collection}"), token)
            .await;
        records
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(|r| r["name"].as_str().map(str::to_owned))
            .collect()
    }

    pub async fn ticket(&self, token: &str) -> String {
        let body = self
            .ok(Method::POST, token, "/api/v1/ws/ticket/", json!({}))
            .await;
        body["ticket"].as_str().unwrap().to_owned()
    }

    /// One page of a project's log after `since`.
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

    /// Every seq the project's log holds, in order.
    pub async fn log_seqs(&self, project: Uuid) -> Vec<i64> {
        let project = project.to_string();
        let mut seqs = Vec::new();
        loop {
            let since = seqs.last().copied().unwrap_or(0);
            let body = self.log(&self.admin, &project, since).await;
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
}

/// Asserts the JSON error shape and code.
pub fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
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
