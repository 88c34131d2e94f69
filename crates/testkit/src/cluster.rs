//! Several liveplan nodes as one cluster (CONTRACT §9): [`Cluster`] starts N in-process
//! [`TestServer`] nodes on ONE PostgreSQL database and one [`PrivateRedis`], and can run more
//! nodes as child processes of the real binary ([`BinaryNode`]) for a test that kills one with
//! SIGKILL. [`Endpoint`] is what a client needs of a node (its address and an HTTP client), the
//! same for both kinds, so a client can move from a node to another.
//!
//! Multi-node tests need PostgreSQL whatever the run's backend: the database is made on
//! [`crate::backend::postgres_server_url`] (`LIVEPLAN_TEST_POSTGRES_URL`, …) by the first node,
//! as [`Backend`] does, and dropped with it; the others attach to it.
//!
//! The nodes' registry heartbeat is shortened ([`NODE_HEARTBEAT`], [`NODE_EXPIRY`]) so that a
//! killed node's entry goes in about a second.

use crate::GUARD;
use crate::backend::{Backend, postgres_server_url};
use crate::private_redis::PrivateRedis;
use crate::rest::{ADMIN_EMAIL, ADMIN_PASSWORD};
use crate::server::{TestServer, relax_rates};
use crate::sse::SseReader;
use crate::ws::{Ws, ws_connect};
use liveplan_server::Config;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use uuid::Uuid;

/// The registry heartbeat of cluster nodes in tests.
pub const NODE_HEARTBEAT: Duration = Duration::from_millis(200);
/// How long a silent node counts as live in tests.
pub const NODE_EXPIRY: Duration = Duration::from_millis(1000);

/// What every cluster node's configuration gets: the Redis URL, the short registry timings and
/// [`relax_rates`].
pub fn cluster_config(config: &mut Config, redis_url: &str) {
    relax_rates(config);
    config.redis_url = Some(redis_url.to_string());
    config.node_heartbeat = NODE_HEARTBEAT;
    config.node_expiry = NODE_EXPIRY;
}

/// N nodes on one PostgreSQL database and one private Redis.
pub struct Cluster {
    /// In start order; node 0 owns the database (it is dropped with it).
    pub nodes: Vec<TestServer>,
    pub redis: PrivateRedis,
    database_url: String,
}

impl Cluster {
    /// `n` nodes (at least 1), each with `tune` applied after [`cluster_config`].
    pub async fn start(n: usize) -> Cluster {
        Self::start_with(n, |_| {}).await
    }

    pub async fn start_with(n: usize, tune: impl Fn(&mut Config)) -> Cluster {
        assert!(n >= 1, "a cluster has a node");
        let redis = PrivateRedis::start();
        let redis_url = redis.url();
        let first = TestServer::start_on_backend(Backend::postgres(&postgres_server_url()), |c| {
            cluster_config(c, &redis_url);
            tune(c);
        })
        .await;
        let database_url = first
            .backend()
            .database_url()
            .expect("a PostgreSQL database")
            .to_string();
        let mut cluster = Cluster {
            nodes: vec![first],
            redis,
            database_url,
        };
        for _ in 1..n {
            cluster.add_node_with(&tune).await;
        }
        cluster
    }

    /// Starts one more in-process node; returns its index.
    pub async fn add_node(&mut self) -> usize {
        self.add_node_with(|_| {}).await
    }

    pub async fn add_node_with(&mut self, tune: impl Fn(&mut Config)) -> usize {
        let redis_url = self.redis.url();
        let node = TestServer::start_with_database_url(&self.database_url, |c| {
            cluster_config(c, &redis_url);
            tune(c);
        })
        .await;
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    pub fn node(&self, i: usize) -> &TestServer {
        &self.nodes[i]
    }

    /// The database every node runs on.
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    pub fn redis_url(&self) -> String {
        self.redis.url()
    }

    /// Every in-process node's endpoint, in order.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.nodes.iter().map(TestServer::endpoint).collect()
    }

    /// Runs the real binary as one more node of this cluster (`bin` is the test's
    /// `env!("CARGO_BIN_EXE_liveplan")`), with `extra` arguments; panics when it does not start.
    pub fn spawn_binary(&self, bin: &Path, extra: &[&str]) -> BinaryNode {
        let mut args = vec!["--redis-url".to_string(), self.redis.url()];
        args.extend(extra.iter().map(|a| a.to_string()));
        BinaryNode::spawn(bin, &self.database_url, &args).unwrap_or_else(|failed| {
            panic!(
                "the binary node did not start ({}):\n{}",
                failed.status, failed.stderr
            )
        })
    }

    /// Stops every in-process node (the others' registry entries go with them); the database
    /// and Redis stay until the cluster is dropped.
    pub async fn stop_all(&mut self) {
        for node in self.nodes.iter_mut().rev() {
            node.stop().await;
        }
    }
}

/// What a client needs of a node: where it listens and an HTTP client.
#[derive(Clone)]
pub struct Endpoint {
    /// `http://` and the address.
    pub base: String,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
}

impl Endpoint {
    pub fn new(addr: SocketAddr) -> Endpoint {
        Endpoint {
            base: format!("http://{addr}"),
            addr,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A POST with a JSON body; `None` when the node does not answer (it is down).
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Option<(u16, Value)> {
        let request = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send();
        let response = tokio::time::timeout(GUARD, request).await.ok()?.ok()?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Some((status, body))
    }

    /// An access token for `login`/`password`.
    pub async fn login(&self, login: &str, password: &str) -> String {
        let (status, body) = self
            .post_anonymous(
                "/api/v1/auth/login",
                json!({"username": login, "password": password}),
            )
            .await
            .expect("the node answers");
        assert_eq!(status, 200, "login: {body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    async fn post_anonymous(&self, path: &str, body: Value) -> Option<(u16, Value)> {
        let request = self.http.post(self.url(path)).json(&body).send();
        let response = tokio::time::timeout(GUARD, request).await.ok()?.ok()?;
        let status = response.status().as_u16();
        Some((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// A single-use WebSocket ticket; `None` when the node is down.
    pub async fn ticket(&self, token: &str) -> Option<String> {
        let (status, body) = self.post("/api/v1/ws/ticket/", token, json!({})).await?;
        (status == 200).then(|| body["ticket"].as_str().unwrap().to_owned())
    }

    /// A native socket on `project`, optionally resuming after `since`; `None` when the node
    /// is down.
    pub async fn ws_project(&self, token: &str, project: Uuid, since: Option<i64>) -> Option<Ws> {
        let ticket = self.ticket(token).await?;
        let mut path = format!("/ws/v1/projects/{project}/?ticket={ticket}");
        if let Some(since) = since {
            path.push_str(&format!("&since={since}"));
        }
        let url = format!("ws://{}{path}", self.addr);
        let connect = tokio_tungstenite::connect_async(url);
        let (ws, _) = tokio::time::timeout(GUARD, connect).await.ok()?.ok()?;
        Some(ws)
    }

    /// The project's SSE stream, resuming after `last_event_id`; `None` when the node is down.
    pub async fn sse(
        &self,
        token: &str,
        project: Uuid,
        last_event_id: Option<i64>,
    ) -> Option<SseReader> {
        let mut request = self
            .http
            .get(self.url(&format!("/api/v1/projects/{project}/events")))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = tokio::time::timeout(GUARD, request.send())
            .await
            .ok()?
            .ok()?;
        (response.status() == 200).then(|| SseReader::new(response))
    }
}

impl TestServer {
    /// This node as an [`Endpoint`].
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            base: self.base.clone(),
            addr: self.addr(),
            http: self.http.clone(),
        }
    }
}

/// A `liveplan serve` child process on `127.0.0.1:0`; killed on drop.
pub struct BinaryNode {
    child: Option<Child>,
    pub endpoint: Endpoint,
    /// Its data directory; its stderr is in `stderr.log` there.
    dir: tempfile::TempDir,
}

/// How a binary node that did not start ended.
#[derive(Debug)]
pub struct StartFailure {
    pub status: std::process::ExitStatus,
    pub stderr: String,
}

impl BinaryNode {
    /// Runs `bin serve --listen 127.0.0.1:0 --database-url <database_url>` with the short
    /// registry timings, the bootstrap administrator of [`crate::rest`] and `args`, and waits
    /// (at most [`GUARD`]) for it to listen, or to exit: then its status and stderr.
    pub fn spawn(
        bin: &Path,
        database_url: &str,
        args: &[String],
    ) -> Result<BinaryNode, StartFailure> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let stderr_path = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).expect("the stderr file");
        let mut child = Command::new(bin)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                database_url,
            ])
            .args([
                "--node-heartbeat-ms",
                &NODE_HEARTBEAT.as_millis().to_string(),
                "--node-expiry-ms",
                &NODE_EXPIRY.as_millis().to_string(),
            ])
            .args(args)
            .env("LIVEPLAN_DATA_DIR", dir.path())
            .env("LIVEPLAN_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("LIVEPLAN_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env_remove("LIVEPLAN_REDIS_URL")
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("its stdout");
        let (line_tx, line_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = line_tx.send(line);
        });
        let line = line_rx.recv_timeout(GUARD).unwrap_or_default();
        let base = line
            .trim()
            .strip_prefix("liveplan listening on ")
            .map(str::to_owned);
        let Some(base) = base else {
            let _ = child.kill();
            let status = child.wait().expect("its exit status");
            return Err(StartFailure {
                status,
                stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
            });
        };
        let addr: SocketAddr = base
            .trim_start_matches("http://")
            .parse()
            .expect("the listening address");
        Ok(BinaryNode {
            child: Some(child),
            endpoint: Endpoint::new(addr),
            dir,
        })
    }

    /// Runs the binary with `args` after `serve` (no defaults added) and waits, at most
    /// [`GUARD`], for it to exit by itself: for a start that must fail.
    pub fn run_to_exit(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> StartFailure {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut command = Command::new(bin);
        command
            .arg("serve")
            .args(args)
            .env("LIVEPLAN_DATA_DIR", dir.path())
            .env_remove("LIVEPLAN_REDIS_URL")
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("spawn liveplan");
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let pid = child.id();
        std::thread::spawn(move || {
            let _ = done_tx.send(child.wait_with_output());
        });
        match done_rx.recv_timeout(GUARD) {
            Ok(Ok(output)) => StartFailure {
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            },
            _ => {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                panic!("liveplan {args:?} did not exit within {GUARD:?}");
            }
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.endpoint.addr
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// SIGKILL: no goodbye to its clients, no leaving the registry.
    pub fn kill(&mut self) {
        self.signal("-KILL");
    }

    /// SIGTERM: a clean stop (clients hear 1001, the node leaves the registry).
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        self.signal("-TERM")
    }

    fn signal(&mut self, signal: &str) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + GUARD;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = child.kill();
                    return child.wait().ok();
                }
            }
        }
    }
}

impl Drop for BinaryNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether a node at `addr` accepts connections now.
pub fn listening(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// A WebSocket to `path` on `addr` (the ticket in it already minted).
pub async fn ws_at(addr: SocketAddr, path: &str) -> Ws {
    ws_connect(addr, path).await
}

/// Reads one client's events of `project` until it holds `target` (from `done`), over the
/// native WebSocket or SSE, starting on `endpoints[0]`: whenever its connection ends or a node
/// does not answer, it moves to the next node (round robin) and resumes with its last seq, as a
/// client behind a load balancer does. Every seq must be the one after the last (no gap, no
/// duplicate). At most `max_connections` connections, each read bounded by [`GUARD`].
pub async fn follow_across(
    endpoints: Vec<Endpoint>,
    token: String,
    project: Uuid,
    sse: bool,
    max_connections: usize,
    mut done: tokio::sync::watch::Receiver<i64>,
) -> Vec<i64> {
    use crate::follow::{Read, sse_read, ws_read};
    let mut got: Vec<i64> = Vec::new();
    let finished = |got: &[i64], target: i64| target > 0 && got.last() == Some(&target);
    for attempt in 0..max_connections {
        let endpoint = &endpoints[attempt % endpoints.len()];
        let since = got.last().copied().unwrap_or(0);
        let mut conn = if sse {
            match endpoint.sse(&token, project, Some(since)).await {
                Some(reader) => crate::follow::Conn::Sse(reader),
                None => continue,
            }
        } else {
            match endpoint.ws_project(&token, project, Some(since)).await {
                Some(ws) => crate::follow::Conn::Ws(ws),
                None => continue,
            }
        };
        loop {
            if finished(&got, *done.borrow()) {
                return got;
            }
            let read = tokio::select! {
                read = async {
                    match &mut conn {
                        crate::follow::Conn::Ws(ws) => ws_read(ws).await,
                        crate::follow::Conn::Sse(reader) => sse_read(reader).await,
                    }
                } => read,
                _ = done.changed() => continue,
            };
            match read {
                Read::Event(seq) => {
                    let expected = got.last().copied().unwrap_or(0) + 1;
                    assert_eq!(
                        seq, expected,
                        "a gap or a duplicate (sse: {sse}, node {})",
                        endpoint.addr
                    );
                    got.push(seq);
                }
                Read::Resync(latest) => panic!("unexpected resync to {latest}"),
                Read::Other => {}
                Read::Closed => break,
            }
        }
    }
    panic!("still not through after {max_connections} connections; got {got:?}");
}
