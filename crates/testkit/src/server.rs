//! [`TestServer`]: a real liveplan server, in-process, on `127.0.0.1:0`.

use crate::backend::Backend;
use crate::proxy::Proxy;
use crate::rest::{ADMIN_EMAIL, ADMIN_PASSWORD};
use liveplan_server::{AppState, Config, RunningServer};
use proto::StreamKey;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use store::Page;

/// The configuration every test server starts from.
pub fn config(dir: &Path) -> Config {
    let mut config = Config::new(dir.to_path_buf());
    // The scheduler's own events would interleave with the sequences the tests check;
    // tests/schedule.rs turns it on.
    config.scheduler = false;
    config.admin_email = Some(ADMIN_EMAIL.into());
    config.admin_password = Some(ADMIN_PASSWORD.into());
    config
}

/// [`config`] on `backend`'s store: its data directory and, on PostgreSQL, its database.
fn backend_config(backend: &Backend) -> Config {
    let mut config = config(backend.data_dir());
    config.database_url = backend.database_url().map(str::to_string);
    config
}

/// Raises the login and ticket rate limits, for tests that log in and mint tickets far faster
/// than people do (the rate-limit tests keep the real ones).
pub fn relax_rates(config: &mut Config) {
    config.rates.logins_per_account_per_minute = 100_000;
    config.rates.logins_per_address_per_minute = 100_000;
    config.rates.tickets_per_user_per_minute = 100_000;
}

pub struct TestServer {
    running: Option<RunningServer>,
    backend: Backend,
    /// `http://` and the server's address.
    pub base: String,
    pub http: reqwest::Client,
    /// An access token of the bootstrap administrator, logged in at start.
    pub admin: String,
}

impl TestServer {
    /// A server with the production rate limits.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_on_backend(Backend::from_env(), tune).await
    }

    /// A server with [`relax_rates`] on the PostgreSQL database at `url`, which the test owns
    /// (it neither is made nor dropped here), whatever `LIVEPLAN_TEST_DATABASE_URL` says.
    pub async fn start_with_database_url(url: &str, tune: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_on_backend(Backend::at_url(url), |config| {
            relax_rates(config);
            tune(config);
        })
        .await
    }

    /// A server on `backend` rather than the one the environment picks (moving data between
    /// backends).
    pub async fn start_on_backend(backend: Backend, tune: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = backend_config(&backend);
        tune(&mut config);
        let running = launch(config, "127.0.0.1:0".parse().unwrap()).await;
        let mut server = TestServer {
            base: format!("http://{}", running.address),
            running: Some(running),
            backend,
            http: reqwest::Client::new(),
            admin: String::new(),
        };
        server.admin = server.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        server
    }

    /// A server with [`relax_rates`].
    pub async fn start_relaxed() -> TestServer {
        Self::start_with(relax_rates).await
    }

    /// [`TestServer::start_relaxed`], with the configuration adjusted further.
    pub async fn start_relaxed_with(tune: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_with(|config| {
            relax_rates(config);
            tune(config);
        })
        .await
    }

    /// Whether the server runs (it does from start until [`TestServer::stop`]).
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// The test's storage.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The running server; panics while it is stopped.
    pub fn running(&self) -> &RunningServer {
        self.running.as_ref().expect("the server is running")
    }

    pub fn state(&self) -> &AppState {
        &self.running().state
    }

    /// Moves the server's clock forward; the server must have been started with
    /// `config.clock = Clock::manual()` (the crate's "Time").
    pub fn advance(&self, by: std::time::Duration) {
        self.state().config.clock.advance(by);
    }

    pub fn addr(&self) -> SocketAddr {
        self.running().address
    }

    /// `http://` + the server's address + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn data_dir(&self) -> &Path {
        self.backend.data_dir()
    }

    /// The storage of the stopped server, to go on with without it.
    pub fn into_backend(self) -> Backend {
        assert!(self.running.is_none(), "stop the server first");
        self.backend
    }

    /// Whether the server runs on PostgreSQL (`LIVEPLAN_TEST_DATABASE_URL`).
    pub fn is_postgres(&self) -> bool {
        self.backend.is_postgres()
    }

    /// Whether `needle` is stored anywhere in the server's database ([`Backend::stores_text`]).
    pub async fn stores_text(&self, needle: &str) -> bool {
        self.backend.stores_text(needle).await
    }

    /// The SQLite database file.
    pub fn db_path(&self) -> PathBuf {
        self.backend.sqlite_file()
    }

    /// Stops the server the way SIGTERM does (live clients hear it go); the data stays.
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await.expect("clean shutdown");
        }
    }

    /// Stops the server and starts a new one on the same data.
    pub async fn restart(&mut self) {
        self.restart_with(|_| {}).await
    }

    /// Like [`TestServer::restart`], with the configuration adjusted.
    pub async fn restart_with(&mut self, adjust: impl FnOnce(&mut Config)) {
        self.stop().await;
        let mut config = backend_config(&self.backend);
        adjust(&mut config);
        let running = launch(config, "127.0.0.1:0".parse().unwrap()).await;
        self.base = format!("http://{}", running.address);
        self.running = Some(running);
    }

    /// Starts the (stopped) server again on the same data, with the configuration adjusted.
    pub async fn start_again_with(&mut self, adjust: impl FnOnce(&mut Config)) {
        assert!(self.running.is_none(), "stop the server first");
        let mut config = backend_config(&self.backend);
        adjust(&mut config);
        let running = launch(config, "127.0.0.1:0".parse().unwrap()).await;
        self.base = format!("http://{}", running.address);
        self.http = reqwest::Client::new();
        self.running = Some(running);
    }

    /// Stops the server and starts a new one on the same data and the same address, so that
    /// clients that reconnect on their own find it again. The configuration is the relaxed one.
    pub async fn restart_on_same_address(&mut self) {
        let address = self.addr();
        self.stop().await;
        self.start_on(address).await;
    }

    /// Starts the (stopped) server again on `address`, with the relaxed configuration.
    pub async fn start_on(&mut self, address: SocketAddr) {
        assert!(self.running.is_none(), "stop the server first");
        let mut config = backend_config(&self.backend);
        relax_rates(&mut config);
        let running = launch(config, address).await;
        self.base = format!("http://{}", running.address);
        // The old client's pooled connections went with the old server.
        self.http = reqwest::Client::new();
        self.running = Some(running);
    }

    /// Runs `write` on a domain of its own over the server's data while the server is stopped,
    /// as the CLI does: its commits reach no live client.
    pub async fn offline<T>(&self, write: impl AsyncFnOnce(&domain::Domain) -> T) -> T {
        assert!(self.running.is_none(), "stop the server first");
        let store = liveplan_server::backends::open_store(
            self.backend.database_url(),
            self.backend.data_dir(),
        )
        .await
        .expect("the store opens");
        let domain = domain::Domain::new(store.clone(), Arc::new(domain::NoListener));
        let result = write(&domain).await;
        store.close().await;
        result
    }

    /// [`TestServer::offline`]: `count` tasks named `<prefix> 0`, `<prefix> 1`, … made by
    /// the administrator while the server is stopped.
    pub async fn offline_tasks(&self, project: uuid::Uuid, prefix: &str, count: usize) {
        self.offline(async |domain| {
            let actor = crate::admin_actor(domain).await;
            let tasks = domain::collections::by_name("tasks").expect("the tasks collection");
            for i in 0..count {
                domain
                    .create_record(
                        &actor,
                        project,
                        tasks,
                        &serde_json::json!({"name": format!("{prefix} {i}")}),
                    )
                    .await
                    .expect("an offline task");
            }
        })
        .await
    }

    /// A proxy in front of the server whose connections the test can cut.
    pub async fn proxy(&self) -> Proxy {
        Proxy::start(self.addr()).await
    }

    /// What the store holds, read through the `Store` API in one snapshot: the ground truth
    /// for "nothing changed".
    pub async fn fingerprint(&self) -> Fingerprint {
        fingerprint(&*self.state().domain.store).await
    }
}

async fn launch(config: Config, address: SocketAddr) -> RunningServer {
    liveplan_server::start(config, address)
        .await
        .expect("the server starts")
}

/// Counts and versions of every kind of row the `Store` API lists, and every stream's seqs.
/// Sessions and tickets are not listed by that API, so they are not in it.
pub type Fingerprint = Vec<(String, i64)>;

async fn fingerprint(store: &dyn store::Store) -> Fingerprint {
    let mut ops = store.snapshot().await.expect("a snapshot");
    let mut out: Fingerprint = Vec::new();
    let users = ops.list_users().await.unwrap();
    let projects = ops.list_projects().await.unwrap();
    out.push(("users".into(), users.len() as i64));
    out.push(("projects".into(), projects.len() as i64));
    let mut streams = vec![StreamKey::System];
    streams.extend(users.iter().map(|u| StreamKey::User(u.id)));
    let (mut memberships, mut records, mut refs) = (0, 0, 0);
    let mut versions = Vec::new();
    for project in &projects {
        streams.push(StreamKey::Project(project.id));
        memberships += ops.list_memberships(project.id).await.unwrap().len() as i64;
        for collection in domain::collections::ALL {
            for record in ops
                .list_records(project.id, collection.name, Page::ALL)
                .await
                .unwrap()
            {
                records += 1;
                refs += ops.list_referrers(record.id).await.unwrap().len() as i64;
                versions.push((record.id.to_string(), record.version));
            }
        }
    }
    out.push(("memberships".into(), memberships));
    out.push(("records".into(), records));
    out.push(("record_refs".into(), refs));
    let mut events = 0;
    for stream in streams {
        let latest = ops.latest_seq(stream).await.unwrap();
        let mut after = 0;
        loop {
            let page = ops.read_events(stream, after, 1000).await.unwrap();
            match page.last().and_then(|e| e.seq) {
                Some(seq) => {
                    events += page.len() as i64;
                    after = seq;
                }
                None => break,
            }
        }
        out.push((stream.to_text(), latest));
    }
    out.push(("events".into(), events));
    versions.sort();
    out.extend(versions);
    out
}
