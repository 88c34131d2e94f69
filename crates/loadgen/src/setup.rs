//! Everything the run needs, made through the public REST API (CONTRACT §3, §4): the admin's
//! token, a fresh project with tasks to change, and enough member users for the subscribers.

use crate::dialect::User;
use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use std::net::Ipv4Addr;

/// Logins are limited to 60 a minute per client address; stay under it per source address.
const LOGINS_PER_ADDRESS: usize = 50;
/// Password of the load generator's users; they exist only on benchmark servers.
const USER_PASSWORD: &str = "loadgen-password-0123456789";

pub async fn expect_json(response: Response, what: &str) -> anyhow::Result<Value> {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{what}: {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("{what}: answer is not JSON"))
}

fn id_of(value: &Value, what: &str) -> anyhow::Result<String> {
    value["id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{what}: no id in the answer"))
}

pub struct Api {
    pub base: String,
    pub http: Client,
}

impl Api {
    pub fn new(base: &str) -> anyhow::Result<Api> {
        Ok(Api {
            base: base.to_owned(),
            http: Client::builder().no_proxy().tcp_nodelay(true).build()?,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    /// Logs in; returns the access token and the user's id.
    pub async fn login(
        client: &Client,
        base: &str,
        email: &str,
        password: &str,
    ) -> anyhow::Result<User> {
        let response = client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .context("login")?;
        let body = expect_json(response, &format!("login as {email}")).await?;
        let token = body["access_token"]
            .as_str()
            .context("login: no access_token")?;
        Ok(User {
            id: id_of(&body["user"], "login")?,
            token: token.to_owned(),
        })
    }

    pub async fn post(
        &self,
        token: &str,
        path: &str,
        body: Value,
        what: &str,
    ) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .with_context(|| what.to_owned())?;
        expect_json(response, what).await
    }

    /// A new project owned by the admin, with `tasks` tasks to change.
    pub async fn project_with_tasks(
        &self,
        admin: &str,
        tasks: usize,
    ) -> anyhow::Result<(String, Vec<String>)> {
        let name = format!("loadgen {}", std::process::id());
        let project = self
            .post(
                admin,
                "/projects",
                json!({ "name": name }),
                "creating the project",
            )
            .await?;
        let project_id = id_of(&project, "project")?;
        let mut task_ids = Vec::with_capacity(tasks);
        for i in 0..tasks {
            let task = self
                .post(
                    admin,
                    &format!("/projects/{project_id}/tasks"),
                    json!({ "name": format!("loadgen task {i}"), "duration": 1 }),
                    "creating a task",
                )
                .await?;
            task_ids.push(id_of(&task, "task")?);
        }
        Ok((project_id, task_ids))
    }

    /// `count` users (created on first use, reused by later runs), logged in, and made Members
    /// of the project. Logins are spread over source addresses because of the per-address limit.
    pub async fn member_users(
        &self,
        admin: &str,
        project_id: &str,
        count: usize,
        source_base: Ipv4Addr,
    ) -> anyhow::Result<Vec<User>> {
        let addresses = count
            .div_ceil(LOGINS_PER_ADDRESS)
            .clamp(1, crate::args::MAX_SOURCE_ADDRS);
        if count > addresses * LOGINS_PER_ADDRESS {
            bail!("{count} users need more logins than the per-address limit allows in a minute");
        }
        let login_clients: Vec<Client> = (0..addresses)
            .map(|i| {
                let source = crate::args::nth_source(source_base, i)?;
                Ok(Client::builder().no_proxy().local_address(source).build()?)
            })
            .collect::<anyhow::Result<_>>()?;
        // Password hashing (argon2) dominates; a few at a time keeps both cores busy without
        // queueing hundreds of blocking tasks in the server.
        futures::stream::iter(0..count)
            .map(|i| {
                let login_client = login_clients[i % addresses].clone();
                async move {
                    let email = format!("lg-{i}@loadgen.test");
                    let created = self
                        .http
                        .post(self.url("/users"))
                        .bearer_auth(admin)
                        .json(&json!({
                            "email": email,
                            "password": USER_PASSWORD,
                            "username": format!("lg{i}"),
                            "display_name": format!("Loadgen {i}"),
                        }))
                        .send()
                        .await
                        .context("creating a user")?;
                    if created.status() != StatusCode::CONFLICT {
                        expect_json(created, "creating a user").await?;
                    }
                    let user = Api::login(&login_client, &self.base, &email, USER_PASSWORD).await?;
                    self.post(
                        admin,
                        &format!("/projects/{project_id}/members"),
                        json!({ "user_id": user.id, "role": 100 }),
                        "adding a member",
                    )
                    .await?;
                    anyhow::Ok(user)
                }
            })
            .buffered(4)
            .try_collect()
            .await
    }
}
