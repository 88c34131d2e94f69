//! The Bryntum Gantt WebSocket (CONTRACT §8): upgrade `/ws/v1/bryntum` (or any server speaking
//! Bryntum's gantt-websocket-server protocol), log in with a ticket (liveplan) or a name and
//! password (other servers), load the project's `dataset` (which subscribes the socket), then
//! read `project_change` messages. Bryntum frames carry no tab id, so the send time comes from
//! the task name the publisher writes (`lg <ns>`), and the position from the revision id
//! (`server-<seq>`).

use super::native_ws::{NativeWs, connect_from};
use super::{Connection, Delivery, Dialect, Kind, User, last_string_field};
use anyhow::{Context, bail};
use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::net::{IpAddr, SocketAddr};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// How a socket proves who it is.
pub enum Login {
    /// liveplan: a ticket minted with the user's Bearer token (password logins are rate
    /// limited per account and address, far below a thousand sockets a minute).
    Ticket(NativeWs),
    /// Any other server: `login {login: user.id, password}`.
    Password(String),
}

pub struct Bryntum {
    /// `ws://host:port/path`.
    pub url: String,
    pub addr: SocketAddr,
    /// Sent as it is: liveplan takes a uuid or a number, the demo server only numbers.
    pub project: Value,
    pub login: Login,
}

impl Bryntum {
    /// The socket of `user`, logged in and with `dataset` requested; nothing read yet. Both
    /// requests go out at once, as a Bryntum client sends them: a server handles a socket's
    /// messages in order.
    pub async fn connect(
        &self,
        user: &User,
        source: IpAddr,
    ) -> anyhow::Result<WebSocketStream<TcpStream>> {
        let login = match &self.login {
            Login::Ticket(tickets) => {
                json!({"command": "login", "data": {"ticket": tickets.ticket(user).await?}})
            }
            Login::Password(password) => {
                json!({"command": "login", "data": {"login": user.id, "password": password}})
            }
        };
        let stream = connect_from(source, self.addr).await?;
        // Datasets are larger than native frames; a 16 KiB buffer grows when one needs it.
        let config = WebSocketConfig::default()
            .read_buffer_size(16 * 1024)
            .write_buffer_size(0);
        let (mut socket, _) =
            tokio_tungstenite::client_async_with_config(&self.url, stream, Some(config))
                .await
                .context("WebSocket handshake")?;
        socket.send(Message::text(login.to_string())).await?;
        let dataset = json!({"command": "dataset", "data": {"project": self.project}});
        socket.send(Message::text(dataset.to_string())).await?;
        Ok(socket)
    }
}

#[async_trait]
impl Dialect for Bryntum {
    fn name(&self) -> &'static str {
        "bryntum"
    }

    /// Open once the dataset has arrived: only then is the socket subscribed, so no revision
    /// published afterwards can miss it, and a server still busy with logins and datasets
    /// (the demo server sends every login's `users` list to every socket) is still opening.
    async fn open(&self, user: &User, source: IpAddr) -> anyhow::Result<Box<dyn Connection>> {
        let mut socket = self.connect(user, source).await?;
        await_dataset(&mut socket).await?;
        Ok(Box::new(BryntumConnection { socket }))
    }
}

/// Reads a freshly connected socket up to its `dataset` answer; returns the client id the
/// login answer gave (if any) and the dataset message.
pub async fn await_dataset(
    socket: &mut WebSocketStream<TcpStream>,
) -> anyhow::Result<(Option<String>, String)> {
    let mut client = None;
    loop {
        let text = super::next_text(socket, "the dataset").await?;
        let text = text.as_str();
        if is_refusal(text) {
            bail!("refused: {}", text.chars().take(300).collect::<String>());
        }
        if text.starts_with(r#"{"command":"login""#) {
            client = last_string_field(text, "client").map(str::to_owned);
        } else if text.starts_with(r#"{"command":"dataset""#) {
            return Ok((client, text.to_owned()));
        }
    }
}

/// True for the answers that mean the socket was not let in, or that the server choked on
/// what it sent (the demo server answers an exception with `{"command":"error","message"}`).
pub fn is_refusal(text: &str) -> bool {
    text.starts_with(r#"{"command":"login","error""#)
        || text.starts_with(r#"{"command":"dataset","error""#)
        || text.starts_with(r#"{"command":"error""#)
}

struct BryntumConnection {
    socket: WebSocketStream<TcpStream>,
}

/// What a Bryntum message means to the measurement.
pub fn classify(text: &str) -> Delivery {
    let command = last_string_field(text, "command");
    if command != Some("project_change") || text.contains(r#""error":"#) {
        // login, users, join, dataset, errors: not deliveries.
        return Delivery {
            kind: Kind::Other,
            seq: None,
            sent_ns: None,
        };
    }
    let seq = last_string_field(text, "revision")
        .and_then(|r| r.strip_prefix("server-"))
        .and_then(|n| n.parse().ok());
    let sent_ns = last_string_field(text, "name")
        .and_then(|n| n.strip_prefix("lg "))
        .and_then(|n| n.parse().ok());
    Delivery {
        kind: Kind::Event,
        seq,
        sent_ns,
    }
}

#[async_trait]
impl Connection for BryntumConnection {
    async fn next(&mut self) -> anyhow::Result<Option<Delivery>> {
        loop {
            match self.socket.next().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(Message::Text(text))) => {
                    let text = text.as_str();
                    if is_refusal(text) {
                        bail!("refused: {text}");
                    }
                    return Ok(Some(classify(text)));
                }
                Some(Ok(Message::Close(Some(f)))) => {
                    bail!("closed by the server: {} {}", u16::from(f.code), f.reason)
                }
                Some(Ok(Message::Close(None))) => return Ok(None),
                Some(Ok(_)) => continue,
            }
        }
    }
}

/// The ids of up to `max` tasks of a `dataset` answer (leaves first: renaming them touches no
/// parent), as the JSON values the server gave, since the demo server's ids are numbers and
/// liveplan's strings.
pub fn task_ids(dataset_answer: &Value, max: usize) -> Vec<Value> {
    fn walk(rows: &Value, leaves: &mut Vec<Value>, parents: &mut Vec<Value>) {
        for row in rows.as_array().into_iter().flatten() {
            let children = &row["children"];
            let is_parent = children.as_array().is_some_and(|c| !c.is_empty());
            if let Some(id) = row.get("id").filter(|id| !id.is_null()) {
                if is_parent {
                    parents.push(id.clone());
                } else {
                    leaves.push(id.clone());
                }
            }
            walk(children, leaves, parents);
        }
    }
    let (mut leaves, mut parents) = (Vec::new(), Vec::new());
    walk(
        &dataset_answer["data"]["dataset"]["tasksData"],
        &mut leaves,
        &mut parents,
    );
    leaves.append(&mut parents);
    leaves.truncate(max);
    leaves
}

/// One `project_change` renaming `task` to `lg <sent_ns>`, shaped as a Bryntum Gantt 7.3 client
/// sends a rename (see the shared real-client transcript): the change and its `$input`.
pub fn rename_message(
    project: &Value,
    client: Option<&str>,
    local_revision: u64,
    task: &Value,
    sent_ns: u64,
) -> String {
    let name = format!("lg {sent_ns}");
    json!({
        "command": "project_change",
        "data": {
            "project": project,
            "revisions": [{
                "revision": format!("local-{local_revision}"),
                "clientId": client,
                "changes": {
                    "tasks": {
                        "updated": [{"name": name, "id": task}],
                        "$input": {"updated": [{"id": task, "name": name}]}
                    }
                }
            }],
            "client": client
        }
    })
    .to_string()
}

/// True for a refused revision: liveplan answers `{command: "project_change", error}`, the
/// demo server `{command, data: {project}, error}`.
pub fn is_refused_change(text: &str) -> bool {
    text.starts_with(r#"{"command":"project_change""#) && !text.contains(r#""revisions":"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_are_classified() {
        let change = r#"{"command":"project_change","data":{"revisions":[{"revision":"server-41","localRevision":null,"client":null,"changes":{"tasks":{"updated":[{"id":"t","name":"lg 5000","parentId":null}]}}}],"project":"p"}}"#;
        assert_eq!(
            classify(change),
            Delivery {
                kind: Kind::Event,
                seq: Some(41),
                sent_ns: Some(5000)
            }
        );
        let users = r#"{"command":"users","data":{"users":["a"]}}"#;
        assert_eq!(classify(users).kind, Kind::Other);
        let foreign = r#"{"command":"project_change","data":{"revisions":[{"revision":"server-3","changes":{"tasks":{"updated":[{"id":"t","name":"typed by a user"}]}}}],"project":"p"}}"#;
        assert_eq!(classify(foreign).sent_ns, None);
    }

    #[test]
    fn the_demo_servers_echo_is_classified() {
        // What gantt-websocket-server 1.0.3 sends back for `rename_message` (numeric ids).
        let echo = r#"{"command":"project_change","data":{"revisions":[{"revision":"server-7","localRevision":"local-3","client":"client-2","changes":{"tasks":{"updated":[{"name":"lg 77","id":11}],"$input":{"updated":[{"id":11,"name":"lg 77"}]}}}}],"project":1,"userName":"lg-publisher"}}"#;
        assert_eq!(
            classify(echo),
            Delivery {
                kind: Kind::Event,
                seq: Some(7),
                sent_ns: Some(77)
            }
        );
        assert!(!is_refused_change(echo));
        assert!(is_refused_change(
            r#"{"command":"project_change","data":{"project":1},"error":"Subscription to project is required. Load project first"}"#
        ));
        assert!(is_refused_change(
            r#"{"command":"project_change","error":"unknown task"}"#
        ));
        assert!(is_refusal(
            r#"{"command":"login","error":"Wrong username/password"}"#
        ));
        assert!(is_refusal(
            r#"{"command":"error","message":"Project 9 not found"}"#
        ));
        assert!(!is_refusal(
            r#"{"command":"login","data":{"client":"client-1","userName":"lg0"}}"#
        ));
    }

    #[test]
    fn renames_look_like_a_clients_and_round_trip() {
        let text = rename_message(&json!(1), Some("client-4"), 9, &json!(11), 123);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["command"], "project_change");
        assert_eq!(v["data"]["project"], 1);
        assert_eq!(v["data"]["client"], "client-4");
        let revision = &v["data"]["revisions"][0];
        assert_eq!(revision["revision"], "local-9");
        assert_eq!(revision["clientId"], "client-4");
        assert_eq!(
            revision["changes"]["tasks"]["updated"],
            json!([{"name": "lg 123", "id": 11}])
        );
        assert_eq!(
            revision["changes"]["tasks"]["$input"]["updated"],
            json!([{"id": 11, "name": "lg 123"}])
        );
        // The subscriber's scan finds the send time in what the publisher wrote.
        assert_eq!(classify(&text).sent_ns, Some(123));
        let uuid = rename_message(&json!("p-uuid"), None, 1, &json!("t-uuid"), 5);
        assert!(uuid.contains(r#""project":"p-uuid""#) && uuid.contains(r#""id":"t-uuid""#));
    }

    #[test]
    fn task_ids_prefer_leaves_and_keep_their_json_type() {
        let answer = json!({"command": "dataset", "data": {"project": 1, "dataset": {"tasksData": [
            {"id": 1000, "children": [
                {"id": 1, "children": [{"id": 11}, {"id": 12, "children": []}]},
                {"id": 2, "children": [{"id": 21}]}
            ]},
            {"id": "x"}
        ]}}});
        assert_eq!(
            task_ids(&answer, 10),
            vec![
                json!(11),
                json!(12),
                json!(21),
                json!("x"),
                json!(1000),
                json!(1),
                json!(2)
            ]
        );
        assert_eq!(task_ids(&answer, 2), vec![json!(11), json!(12)]);
        assert!(task_ids(&json!({"command": "dataset"}), 5).is_empty());
    }
}
