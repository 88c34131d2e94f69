//! Real `pusher-js` 8 clients (Node build, `tests/node/pusher-driver.cjs`): commands in, what
//! the clients saw out, one JSON line each. The driver's auth requests (channel authorization
//! and sign-in) are answered here, signed with the app's credentials for the presence member
//! and user each client is, as an app's auth endpoint would.

use crate::GUARD;
use crate::node::spawn_script;
use liveplan_server::pusher::credentials::PusherCredentials;
use liveplan_server::pusher::signature::{channel_auth, user_auth};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

pub struct PusherJs {
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    credentials: PusherCredentials,
    /// Presence channel data per client.
    pub members: HashMap<String, String>,
    /// Sign-in user data per client.
    pub users: HashMap<String, String>,
    /// Lines read while waiting for others, oldest first.
    pub seen: Vec<Value>,
}

impl PusherJs {
    pub async fn start(credentials: PusherCredentials) -> PusherJs {
        let mut child = spawn_script("pusher-driver.cjs");
        PusherJs {
            stdin: child.stdin.take().expect("stdin"),
            lines: BufReader::new(child.stdout.take().expect("stdout")).lines(),
            _child: child,
            credentials,
            members: HashMap::new(),
            users: HashMap::new(),
            seen: Vec::new(),
        }
    }

    pub async fn command(&mut self, command: Value) {
        let line = format!("{command}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("the driver reads");
        self.stdin.flush().await.expect("the driver reads");
    }

    /// Connects `client` to the node on `port` as presence member `member` (and, unless
    /// `users` says otherwise, signs in as `{id: member.user_id}`); its socket id.
    pub async fn connect(&mut self, client: &str, port: u16, member: Value) -> String {
        self.members.insert(client.to_owned(), member.to_string());
        let user = json!({ "id": member["user_id"] }).to_string();
        self.users.entry(client.to_owned()).or_insert(user);
        let key = self.credentials.key.clone();
        self.command(json!({"op": "connect", "client": client, "key": key, "port": port}))
            .await;
        let connected = self
            .expect(|l| l["type"] == "connected" && l["client"] == client)
            .await;
        connected["socket_id"]
            .as_str()
            .expect("a socket id")
            .to_owned()
    }

    /// Subscribes `client` to `channel`, binding `bind`; waits for the subscription unless it
    /// is a presence channel (whose members come as their own line: [`Self::members`]).
    pub async fn subscribe(&mut self, client: &str, channel: &str, bind: &[&str]) {
        self.command(
            json!({"op": "subscribe", "client": client, "channel": channel, "bind": bind}),
        )
        .await;
        if !channel.starts_with("presence-") {
            self.expect(|l| {
                l["client"] == client
                    && l["channel"] == channel
                    && l["event"] == "pusher:subscription_succeeded"
            })
            .await;
        }
    }

    /// The members list a presence subscription got.
    pub async fn members(&mut self, client: &str, channel: &str) -> Value {
        self.expect(|l| l["type"] == "members" && l["client"] == client && l["channel"] == channel)
            .await["members"]
            .clone()
    }

    /// The first line that passes `wanted` (within [`GUARD`]).
    pub async fn expect(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        self.expect_within(GUARD, &wanted)
            .await
            .unwrap_or_else(|| panic!("not seen; saw {:#?}", self.seen))
    }

    /// The first line that passes `wanted` within `wait`: one set aside earlier, else the next
    /// read (answering auth requests meanwhile).
    pub async fn expect_within(
        &mut self,
        wait: Duration,
        wanted: &impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        if let Some(at) = self.seen.iter().position(wanted) {
            return Some(self.seen.remove(at));
        }
        let deadline = tokio::time::Instant::now() + wait;
        for _ in 0..2000 {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .ok()?
                .expect("driver output")
                .expect("the driver is running");
            let line: Value = serde_json::from_str(&line).expect("a JSON line");
            if line["type"] == "auth_request" {
                self.answer_auth(&line).await;
                continue;
            }
            if wanted(&line) {
                return Some(line);
            }
            self.seen.push(line);
        }
        panic!("too many lines; saw {:#?}", self.seen);
    }

    async fn answer_auth(&mut self, request: &Value) {
        let text = |key: &str| request[key].as_str().unwrap_or_default().to_owned();
        let (client, socket_id, channel) = (text("client"), text("socket_id"), text("channel"));
        let credentials = &self.credentials;
        let answer = if channel == "#user" {
            let user_data = self.users.get(&client).cloned().unwrap_or_default();
            json!({"op": "auth", "client": client, "channel": channel,
                "auth": user_auth(credentials, &socket_id, &user_data), "user_data": user_data})
        } else if channel.starts_with("presence-") {
            let data = self.members.get(&client).cloned().unwrap_or_default();
            json!({"op": "auth", "client": client, "channel": channel,
                "auth": channel_auth(credentials, &socket_id, &channel, Some(&data)),
                "channel_data": data})
        } else {
            json!({"op": "auth", "client": client, "channel": channel,
                "auth": channel_auth(credentials, &socket_id, &channel, None)})
        };
        self.command(answer).await;
    }

    /// Whether a line was already seen (and set aside) by an earlier `expect`.
    pub fn saw(&self, wanted: impl Fn(&Value) -> bool) -> bool {
        self.seen.iter().any(wanted)
    }

    /// How many lines set aside so far pass `wanted`.
    pub fn count(&self, wanted: impl Fn(&Value) -> bool) -> usize {
        self.seen.iter().filter(|l| wanted(l)).count()
    }

    /// A client event from `from` on `channel` that every client of `to` has received: what
    /// those nodes said before it (on the same paths) has arrived too.
    pub async fn sync(&mut self, from: &str, channel: &str, to: &[&str], tag: u32) {
        self.command(json!({"op": "trigger", "client": from, "channel": channel,
            "event": "client-sync", "data": {"tag": tag}}))
            .await;
        for client in to {
            self.expect(|l| {
                l["client"] == *client && l["event"] == "client-sync" && l["data"]["tag"] == tag
            })
            .await;
        }
    }
}
