//! A Bryntum Gantt client as the tests need it: a WebSocket speaking `{"command", "data"}`.

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(15);

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The `revision` of every `project_change` received, in order.
    pub revisions: Vec<String>,
}

/// A project made by the administrator with `owner` (a new user, password `<owner>-password`)
/// as its Owner and one task named `task` of one day: (administrator token, owner token,
/// project id).
pub async fn owned_project(
    server: &crate::TestServer,
    owner: &str,
    project_name: &str,
    task: &str,
) -> (String, String, String) {
    let root = server.admin().await;
    let (owner_id, owner_token) = server.user(&root, owner).await;
    let project = server.project(&root, project_name).await;
    server.add_member(&root, &project, &owner_id, 400).await;
    server
        .create(
            &owner_token,
            &project,
            "tasks",
            json!({"name": task, "duration": 1}),
        )
        .await;
    (root, owner_token, project)
}

impl Client {
    /// A client logged in as `user` (password `<user>-password`) with `project`'s dataset.
    pub async fn on_dataset(server: &crate::TestServer, user: &str, project: Value) -> Client {
        let mut client = Client::connect(&server.base).await;
        client.login(user, &format!("{user}-password")).await;
        client.dataset(project).await;
        client
    }

    pub async fn connect(base: &str) -> Client {
        let url = format!("{}/ws/v1/bryntum", base.replacen("http", "ws", 1));
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")
            .expect("connect");
        Client {
            ws,
            revisions: Vec::new(),
        }
    }

    pub async fn send(&mut self, value: Value) {
        self.send_text(value.to_string()).await;
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// The next text message as JSON.
    pub async fn recv(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a message in time")
                .expect("the socket is open")
                .expect("a frame");
            match message {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(text.as_str()).expect("JSON");
                    if value["command"] == "project_change" {
                        for revision in value["data"]["revisions"].as_array().into_iter().flatten()
                        {
                            if let Some(id) = revision["revision"].as_str() {
                                self.revisions.push(id.to_owned());
                            }
                        }
                    }
                    return value;
                }
                Message::Close(frame) => panic!("closed: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// Skips messages until one with `command`.
    pub async fn recv_command(&mut self, command: &str) -> Value {
        loop {
            let message = self.recv().await;
            if message["command"] == command {
                return message;
            }
        }
    }

    /// Whether a message arrives within `wait`.
    pub async fn quiet_for(&mut self, wait: Duration) -> Option<Value> {
        match tokio::time::timeout(wait, self.ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str(text.as_str()).ok(),
            _ => None,
        }
    }

    /// The close code the server sends next.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => continue,
                _ => return None,
            }
        }
    }

    /// Logs in and returns the `login` answer's data.
    pub async fn login(&mut self, login: &str, password: &str) -> Value {
        self.send(json!({"command": "login", "data": {"login": login, "password": password}}))
            .await;
        let answer = self.recv_command("login").await;
        assert!(answer.get("error").is_none(), "{answer}");
        answer["data"].clone()
    }

    /// Loads a project's dataset and returns it.
    pub async fn dataset(&mut self, project: Value) -> Value {
        self.send(json!({"command": "dataset", "data": {"project": project}}))
            .await;
        let answer = self.recv_command("dataset").await;
        assert!(answer.get("error").is_none(), "{answer}");
        answer["data"]["dataset"].clone()
    }

    /// Sends one revision and returns the echo of it (skipping others' revisions).
    pub async fn change(&mut self, project: &Value, local: &str, changes: Value) -> Value {
        self.send(
            json!({"command": "project_change", "data": {"project": project, "revisions": [
                {"revision": local, "changes": changes}
            ]}}),
        )
        .await;
        loop {
            let message = self.recv().await;
            assert!(message.get("error").is_none(), "{message}");
            if message["command"] == "project_change"
                && message["data"]["revisions"][0]["localRevision"] == local
            {
                return message["data"]["revisions"][0].clone();
            }
        }
    }
}

/// Every task of a dataset's tree, flattened.
pub fn flatten_tasks(tasks: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for task in tasks.as_array().into_iter().flatten() {
        let mut copy = task.clone();
        if let Some(object) = copy.as_object_mut() {
            object.remove("children");
        }
        out.push(copy);
        out.extend(flatten_tasks(&task["children"]));
    }
    out
}
