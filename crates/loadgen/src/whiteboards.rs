//! `whiteboards`: y-websocket whiteboards under load (issue 18, "Performance"), against
//! liveplan (CONTRACT §11: REST setup, a ticket per connection) or a reference server —
//! `@y/websocket-server` (the room in the URL) or hocuspocus (one socket URL, the document's
//! name and a token in the messages) — with the same client code, so they can be compared in
//! one run.
//!
//! - `relay`: B boards × E editors; each editor sends a small Yjs update (a map entry whose
//!   value carries the sender and the send time) R times a second; every other editor of the
//!   board times it on arrival. Reports latency, the server's CPU per delivered update (and
//!   per update it received), the idle CPU beside it.
//! - `memory`: B boards with one client each (synced, one small edit, one awareness state):
//!   the server's RSS growth divided by B.
//! - `load`: one client writes a document of M MiB in chunks, leaves (the server unloads it),
//!   then fresh clients connect one after another and are timed until their copy holds it all.
//!
//! Editors keep no copy of the board (they never apply what they receive), so the load
//! generator's cores go to sending and timing; only `load` applies the document it receives.
//!
//! Over 800 lines on purpose: the three modes share one client (connect, sync, edit), one
//! setup and one report format, and each mode's phases must stay in one order; the wire
//! itself is in `ywire`.

use crate::args::{self, Sources, Target};
use crate::dialect::User;
use crate::dialect::native_ws::connect_from;
use crate::procfs;
use crate::setup::Api;
use crate::stats::{Latency, Recorder, now_ns, per};
use crate::ywire::{self, Framing, Incoming};
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use futures::{SinkExt, StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::json;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, Map, ReadTxn, StateVector, Transact};

pub const MAX_BOARDS: usize = 20_000;
pub const MAX_EDITORS: usize = 500;
pub const MAX_CONNECTIONS: usize = 20_000;
pub const MAX_RATE: f64 = 100.0;
pub const MAX_DOC_MIB: usize = 48;
pub const MAX_LOADS: usize = 20;
/// A chunk of the `load` document: under liveplan's 1 MiB update limit.
const CHUNK: usize = 256 * 1024;
/// Errors kept for the report (the first ones say what went wrong; the rest repeat them).
const MAX_ERRORS: usize = 20;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerKind {
    /// liveplan: `/ws/v1/whiteboards/{id}?ticket=…`, boards and users made through REST.
    Liveplan,
    /// `@y/websocket-server`: `ws://host:port/{room}`.
    YWebsocket,
    /// hocuspocus: `ws://host:port/`, the document's name and a token in every message.
    Hocuspocus,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Relay,
    Memory,
    Load,
}

#[derive(Args, Debug, Clone)]
pub struct WhiteboardArgs {
    /// What to measure.
    #[arg(long, value_enum)]
    pub mode: Mode,
    /// Which server `--server` is.
    #[arg(long, value_enum, default_value = "liveplan")]
    pub kind: ServerKind,
    /// Base URL of the server, `http://host:port` (loopback only).
    #[arg(long, env = "LIVEPLAN_URL", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// liveplan's system administrator (makes the project, boards and member users).
    #[arg(long, env = "LIVEPLAN_ADMIN_EMAIL")]
    pub admin_email: Option<String>,
    #[arg(long, env = "LIVEPLAN_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Pid of the server, to read its CPU time and RSS from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Boards (`relay`, `memory`).
    #[arg(long, short = 'b', default_value_t = 1)]
    pub boards: usize,
    /// Editors per board (`relay`; `memory` has one client per board).
    #[arg(long, short = 'e', default_value_t = 50)]
    pub editors: usize,
    /// Updates a second each editor sends (`relay`).
    #[arg(long, short = 'r', default_value_t = 2.0)]
    pub rate: f64,
    /// Seconds of sending (`relay`).
    #[arg(long, short = 'd', default_value_t = 20)]
    pub duration: u64,
    /// Seconds to wait for the last deliveries after sending stops.
    #[arg(long, default_value_t = 10)]
    pub drain: u64,
    /// Seconds between the last connection and the measurement; the server's CPU over this
    /// quiet time is reported as its idle rate.
    #[arg(long, default_value_t = 5)]
    pub settle: u64,
    /// Size of the document `load` writes, in MiB.
    #[arg(long, default_value_t = 10)]
    pub doc_mib: usize,
    /// Fresh clients timed loading it, one after another.
    #[arg(long, default_value_t = 3)]
    pub loads: usize,
    /// Seconds after the last client of the `load` board left, for the server to store and
    /// unload it, before the next client connects.
    #[arg(long, default_value_t = 3)]
    pub unload_wait: u64,
    /// liveplan connections per member user (tickets are limited to 120 a minute per user).
    #[arg(long, default_value_t = 100)]
    pub per_user: usize,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 32)]
    pub connect_concurrency: usize,
}

impl WhiteboardArgs {
    pub fn connections(&self) -> usize {
        match self.mode {
            Mode::Relay => self.boards * self.editors,
            Mode::Memory => self.boards,
            Mode::Load => 1,
        }
    }

    pub fn check(&self) -> anyhow::Result<()> {
        if self.boards == 0 || self.boards > MAX_BOARDS {
            bail!("--boards must be 1..={MAX_BOARDS}");
        }
        if self.mode == Mode::Relay && (self.editors < 2 || self.editors > MAX_EDITORS) {
            bail!("--editors must be 2..={MAX_EDITORS} (a relay needs a receiver)");
        }
        if self.connections() > MAX_CONNECTIONS {
            bail!("at most {MAX_CONNECTIONS} connections (boards × editors)");
        }
        if !(self.rate > 0.0 && self.rate <= MAX_RATE) {
            bail!("--rate must be in (0, {MAX_RATE}] updates a second per editor");
        }
        if self.duration == 0
            || self.duration > args::MAX_SECS
            || self.drain > args::MAX_SECS
            || self.settle > args::MAX_SECS
            || self.unload_wait > args::MAX_SECS
        {
            bail!(
                "durations must be at most {} s (and -d at least 1)",
                args::MAX_SECS
            );
        }
        if self.doc_mib == 0 || self.doc_mib > MAX_DOC_MIB {
            bail!("--doc-mib must be 1..={MAX_DOC_MIB}");
        }
        if self.loads == 0 || self.loads > MAX_LOADS {
            bail!("--loads must be 1..={MAX_LOADS}");
        }
        if self.per_user == 0 || self.connect_concurrency == 0 || self.connect_concurrency > 1024 {
            bail!("--per-user must be at least 1, --connect-concurrency 1..=1024");
        }
        if self.kind == ServerKind::Liveplan
            && (self.admin_email.is_none() || self.admin_password.is_none())
        {
            bail!("liveplan needs --admin-email and --admin-password (or LIVEPLAN_ADMIN_*)");
        }
        args::resolve_target(&self.server, self.connections(), Sources::default())?;
        Ok(())
    }
}

/// Where connections go and how they authenticate.
struct Ctx {
    kind: ServerKind,
    target: Target,
    ws_base: String,
    /// liveplan: the member users whose tokens mint the tickets, and the client minting them.
    users: Vec<User>,
    http: reqwest::Client,
    per_user: usize,
}

/// One board as its clients name it: liveplan's record id, a room or document name elsewhere.
#[derive(Clone)]
struct Board(String);

fn framing(kind: ServerKind, board: &Board) -> Framing {
    match kind {
        ServerKind::Hocuspocus => Framing::Hocuspocus(board.0.clone()),
        _ => Framing::Plain,
    }
}

/// Ticket requests in flight at once (each holds a keep-alive connection in the server).
static TICKETS_IN_FLIGHT: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

impl Ctx {
    async fn new(a: &WhiteboardArgs) -> anyhow::Result<Ctx> {
        let target = args::resolve_target(&a.server, a.connections(), Sources::default())?;
        let ws_base = target.base.replacen("http://", "ws://", 1);
        let api = Api::new(&target.base)?;
        Ok(Ctx {
            kind: a.kind,
            ws_base,
            users: Vec::new(),
            http: api.http,
            per_user: a.per_user,
            target,
        })
    }

    fn source(&self, i: usize) -> std::net::IpAddr {
        self.target.sources[i % self.target.sources.len()]
    }

    async fn ticket(&self, user: &User) -> anyhow::Result<String> {
        let _slot = TICKETS_IN_FLIGHT
            .acquire()
            .await
            .context("limiter closed")?;
        let response = self
            .http
            .post(format!("{}/api/v1/ws/ticket/", self.target.base))
            .bearer_auth(&user.token)
            .send()
            .await
            .context("minting a ticket")?;
        let body = crate::setup::expect_json(response, "ticket").await?;
        body["ticket"]
            .as_str()
            .map(str::to_owned)
            .context("no ticket in the answer")
    }

    /// The URL connection `i` opens for `board` (minting its ticket on liveplan).
    async fn url(&self, i: usize, board: &Board) -> anyhow::Result<String> {
        Ok(match self.kind {
            ServerKind::Liveplan => {
                let user = &self.users[(i / self.per_user) % self.users.len()];
                let ticket = self.ticket(user).await?;
                format!(
                    "{}/ws/v1/whiteboards/{}?ticket={ticket}",
                    self.ws_base, board.0
                )
            }
            ServerKind::YWebsocket => format!("{}/{}", self.ws_base, board.0),
            ServerKind::Hocuspocus => format!("{}/", self.ws_base),
        })
    }
}

/// Makes `boards` boards: on liveplan a project, its boards and enough member users through
/// REST; elsewhere names unique to this run (documents are made on first connection).
async fn prepare(
    a: &WhiteboardArgs,
    ctx: &mut Ctx,
    boards: usize,
    connections: usize,
) -> anyhow::Result<Vec<Board>> {
    let run = format!("lg{}x{}", std::process::id(), now_ns() % 1_000_000);
    if ctx.kind != ServerKind::Liveplan {
        return Ok((0..boards).map(|i| Board(format!("{run}-{i}"))).collect());
    }
    let api = Api::new(&ctx.target.base)?;
    let admin = Api::login(
        &api.http,
        &api.base,
        a.admin_email.as_deref().unwrap_or_default(),
        a.admin_password.as_deref().unwrap_or_default(),
    )
    .await
    .context("logging in as the administrator")?;
    let t = Instant::now();
    let project = api
        .post(
            &admin.token,
            "/projects",
            json!({ "name": format!("whiteboards {run}") }),
            "creating the project",
        )
        .await?;
    let project_id = project["id"].as_str().context("project id")?.to_owned();
    let path = format!("/projects/{project_id}/whiteboards");
    let made: Vec<Board> = futures::stream::iter(0..boards)
        .map(|i| {
            let (api, token, path) = (&api, &admin.token, &path);
            async move {
                let board = api
                    .post(
                        token,
                        path,
                        json!({ "name": format!("board {i}") }),
                        "creating a whiteboard",
                    )
                    .await?;
                anyhow::Ok(Board(
                    board["id"].as_str().context("whiteboard id")?.to_owned(),
                ))
            }
        })
        .buffered(8)
        .try_collect()
        .await?;
    ctx.users = api
        .member_users(
            &admin.token,
            &project_id,
            connections.div_ceil(ctx.per_user),
            args::DEFAULT_SOURCE_BASE,
        )
        .await?;
    eprintln!(
        "liveplan project {project_id}: {boards} board(s), {} member user(s) in {:.1} s",
        ctx.users.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(made)
}

/// An open, synced client of one board.
struct Client {
    ws: WebSocketStream<TcpStream>,
    framing: Framing,
    /// The Yjs client id its updates are made with.
    client_id: u64,
    doc: Doc,
}

/// How long one handshake may take before the connection counts as failed.
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

fn ws_config(big: bool) -> WebSocketConfig {
    // Small read buffers: thousands of editors would otherwise make the load generator's own
    // memory the limit. The `load` client needs room for the whole document in one frame.
    let config = WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    if big {
        config
    } else {
        config.read_buffer_size(4096).write_buffer_size(0)
    }
}

/// Opens connection `i` to `board` and syncs it (our step 1 answered with step 2; the server's
/// step 1 answered too). With `apply`, what arrives is applied to the client's document.
async fn open(
    ctx: &Ctx,
    i: usize,
    board: &Board,
    client_id: u64,
    big: bool,
) -> anyhow::Result<Client> {
    let url = ctx.url(i, board).await?;
    let stream = connect_from(ctx.source(i), ctx.target.addr).await?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config(big)))
        .await
        .context("WebSocket handshake")?;
    let mut client = Client {
        ws,
        framing: framing(ctx.kind, board),
        client_id,
        doc: Doc::with_client_id(client_id),
    };
    tokio::time::timeout(SYNC_TIMEOUT, client.sync(false))
        .await
        .context("no sync step 2 in time")??;
    Ok(client)
}

impl Client {
    async fn send(&mut self, frame: Vec<u8>) -> anyhow::Result<()> {
        self.ws
            .send(Message::binary(frame))
            .await
            .context("sending")
    }

    /// The next binary frame; `None` when the socket closed.
    async fn next_frame(&mut self) -> anyhow::Result<Option<bytes::Bytes>> {
        loop {
            match self.ws.next().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(Message::Binary(b))) => return Ok(Some(b)),
                Some(Ok(Message::Close(Some(f)))) => {
                    bail!("closed by the server: {} {}", u16::from(f.code), f.reason)
                }
                Some(Ok(Message::Close(None))) => return Ok(None),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Sends our step 1 (hocuspocus: after the auth message) and reads until the server's step
    /// 2 arrives, answering its step 1 on the way; with `apply`, step 2 and updates are applied.
    async fn sync(&mut self, apply: bool) -> anyhow::Result<()> {
        if let Some(auth) = self.framing.auth("loadgen") {
            self.send(auth).await?;
        }
        let sv = self.doc.transact().state_vector().encode_v1();
        let step1 = self.framing.sync(ywire::SYNC_STEP1, &sv);
        self.send(step1).await?;
        loop {
            let Some(frame) = self.next_frame().await? else {
                bail!("closed before sync step 2");
            };
            match self.framing.parse(&frame) {
                Incoming::Step1(sv) => self.answer_step1(sv).await?,
                Incoming::Step2(update) => {
                    if apply {
                        self.apply(update)?;
                    }
                    return Ok(());
                }
                Incoming::Update(update) if apply => self.apply(update)?,
                Incoming::Auth(ywire::AUTH_PERMISSION_DENIED) => bail!("permission denied"),
                Incoming::Malformed => bail!("a malformed message from the server"),
                _ => {}
            }
        }
    }

    async fn answer_step1(&mut self, sv: &[u8]) -> anyhow::Result<()> {
        let sv = StateVector::decode_v1(sv).context("the server's state vector")?;
        let update = self.doc.transact().encode_state_as_update_v1(&sv);
        let step2 = self.framing.sync(ywire::SYNC_STEP2, &update);
        self.send(step2).await
    }

    fn apply(&self, update: &[u8]) -> anyhow::Result<()> {
        let update = yrs::Update::decode_v1(update).context("an update that does not decode")?;
        self.doc
            .transact_mut()
            .apply_update(update)
            .context("an update that does not apply")
    }

    /// One edit: `key` set to `value` in the top-level map `m`; returns the update.
    fn edit(&self, key: &str, value: String) -> Vec<u8> {
        let map = self.doc.get_or_insert_map("m");
        let mut txn = self.doc.transact_mut();
        map.insert(&mut txn, key, value);
        txn.encode_update_v1()
    }

    /// A cursor, as y-websocket clients announce themselves.
    fn presence(&self) -> Vec<u8> {
        self.framing.awareness(
            self.client_id,
            1,
            &format!(
                r##"{{"user":{{"name":"lg{}","color":"#3366ff"}},"cursor":{{"x":10,"y":20}}}}"##,
                self.client_id
            ),
        )
    }

    async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.ws.close(None)).await;
    }
}

/// Yjs client ids of this run: unique per process and below 2^53.
fn client_id(i: usize) -> u64 {
    ((u64::from(std::process::id()) & 0x3f_ffff) << 24) | (i as u64 + 1)
}

struct Opened {
    clients: Vec<(usize, usize, Client)>,
    failed: usize,
    secs: f64,
    errors: Vec<String>,
}

/// Opens `per_board` clients on each board (connection i on board i / per_board), at most
/// `--connect-concurrency` at a time.
async fn open_all(ctx: &Ctx, boards: &[Board], per_board: usize, concurrency: usize) -> Opened {
    let t = Instant::now();
    let total = boards.len() * per_board;
    let done = AtomicUsize::new(0);
    let results: Vec<(usize, anyhow::Result<Client>)> = futures::stream::iter(0..total)
        .map(|i| {
            let board = &boards[i / per_board];
            let done = &done;
            async move {
                let opened = open(ctx, i, board, client_id(i), false).await;
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_multiple_of(500) {
                    eprintln!("  {n}/{total} connections");
                }
                (i, opened)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut opened = Opened {
        clients: Vec::with_capacity(total),
        failed: 0,
        secs: 0.0,
        errors: Vec::new(),
    };
    for (i, result) in results {
        match result {
            Ok(client) => opened.clients.push((i / per_board, i, client)),
            Err(e) => {
                opened.failed += 1;
                if opened.errors.len() < MAX_ERRORS {
                    opened.errors.push(format!("connection {i}: {e:#}"));
                }
            }
        }
    }
    opened.clients.sort_by_key(|(_, i, _)| *i);
    opened.secs = t.elapsed().as_secs_f64();
    opened
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn server_sample(pid: Option<u32>) -> Option<procfs::Sample> {
    pid.and_then(|p| procfs::sample(&p.to_string()).ok())
}

#[derive(Default)]
struct RelayCounters {
    sent: AtomicU64,
    delivered: AtomicU64,
    /// Our own updates sent back to us (`@y/websocket-server` and hocuspocus echo them).
    echoes: AtomicU64,
    /// Updates that arrived without a marker, or from another run.
    other_updates: AtomicU64,
    dropped: AtomicU64,
    send_errors: AtomicU64,
}

#[derive(Debug, Serialize)]
pub struct RelaySummary {
    pub kind: ServerKind,
    pub boards: usize,
    pub editors_per_board: usize,
    pub rate_per_editor: f64,
    pub duration_secs: u64,
    pub opened: usize,
    pub open_failed: usize,
    pub open_secs: f64,
    pub sent: u64,
    pub expected_deliveries: u64,
    pub delivered: u64,
    pub echoes: u64,
    pub other_updates: u64,
    pub dropped_connections: u64,
    pub send_errors: u64,
    pub window_secs: f64,
    pub latency: Latency,
    pub server_cpu_secs: Option<f64>,
    pub server_idle_cpu_per_sec: Option<f64>,
    pub server_cpu_us_per_delivery: Option<f64>,
    /// The CPU above the idle rate (keepalives, access checks, timers) per delivery.
    pub server_cpu_us_per_delivery_above_idle: Option<f64>,
    pub server_cpu_us_per_update_received: Option<f64>,
    pub server_rss_connected_mib: Option<f64>,
    pub server_rss_after_mib: Option<f64>,
    pub loadgen_cpu_secs: Option<f64>,
    pub load_average_1m: Option<f64>,
    pub errors: Vec<String>,
}

async fn relay(a: &WhiteboardArgs) -> anyhow::Result<RelaySummary> {
    let mut ctx = Ctx::new(a).await?;
    crate::ensure_file_limit(a.connections())?;
    let boards = prepare(a, &mut ctx, a.boards, a.connections()).await?;
    eprintln!(
        "opening {} editors on {} board(s) of {:?}",
        a.connections(),
        a.boards,
        a.kind
    );
    let opened = open_all(&ctx, &boards, a.editors, a.connect_concurrency).await;
    if opened.clients.is_empty() {
        bail!("no editor could connect: {:?}", opened.errors);
    }
    eprintln!(
        "{} editors open in {:.1} s ({} failed); settling {} s",
        opened.clients.len(),
        opened.secs,
        opened.failed,
        a.settle
    );
    let counters = Arc::new(RelayCounters::default());
    let recorder = Arc::new(Recorder::default());
    let errors = Arc::new(Mutex::new(opened.errors.clone()));
    let (stop_tx, stop) = watch::channel(false);
    let period = Duration::from_secs_f64(1.0 / a.rate);
    // Editors are started now and read from the start (awareness, keepalives), but send only
    // from `start`, each at its own offset within the period so sends do not come in waves.
    let quiet_from = Instant::now();
    let idle_before = server_sample(a.server_pid);
    let start = tokio::time::Instant::now() + Duration::from_secs(a.settle);
    let send_until = start + Duration::from_secs(a.duration);
    let count = opened.clients.len();
    let mut tasks = tokio::task::JoinSet::new();
    for (k, (_, i, client)) in opened.clients.into_iter().enumerate() {
        let offset = period.mul_f64(k as f64 / count as f64);
        let editor = Editor {
            id: i as u64,
            client,
            counters: counters.clone(),
            recorder: recorder.clone(),
            errors: errors.clone(),
            stop: stop.clone(),
        };
        tasks.spawn(editor.run(start + offset, period, send_until));
    }
    tokio::time::sleep_until(start).await;
    let idle_after = server_sample(a.server_pid);
    let idle_secs = quiet_from.elapsed().as_secs_f64();
    let me_before = procfs::sample("self").ok();
    let window = Instant::now();
    tokio::time::sleep_until(send_until).await;
    // The updates are now out; wait for the deliveries still on their way.
    let sent = counters.sent.load(Ordering::Relaxed);
    let expected = sent * (a.editors as u64 - 1);
    let drain_until = Instant::now() + Duration::from_secs(a.drain);
    let mut last_count = counters.delivered.load(Ordering::Relaxed);
    let mut last_delivery = Instant::now();
    loop {
        let delivered = counters.delivered.load(Ordering::Relaxed);
        if delivered != last_count {
            last_count = delivered;
            last_delivery = Instant::now();
        }
        if delivered >= expected || Instant::now() >= drain_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = server_sample(a.server_pid);
    let me_after = procfs::sample("self").ok();
    let window_secs = last_delivery.duration_since(window).as_secs_f64();
    let load_average_1m = load_average();
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}

    let delivered = counters.delivered.load(Ordering::Relaxed);
    let idle_rate = idle_before
        .zip(idle_after)
        .and_then(|(x, y)| per(y.cpu_secs - x.cpu_secs, idle_secs));
    let server_cpu = idle_after.zip(after).map(|(x, y)| y.cpu_secs - x.cpu_secs);
    let errors = errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(RelaySummary {
        kind: a.kind,
        boards: a.boards,
        editors_per_board: a.editors,
        rate_per_editor: a.rate,
        duration_secs: a.duration,
        opened: count,
        open_failed: opened.failed,
        open_secs: opened.secs,
        sent,
        expected_deliveries: expected,
        delivered,
        echoes: counters.echoes.load(Ordering::Relaxed),
        other_updates: counters.other_updates.load(Ordering::Relaxed),
        dropped_connections: counters.dropped.load(Ordering::Relaxed),
        send_errors: counters.send_errors.load(Ordering::Relaxed),
        window_secs,
        latency: Latency::of(&recorder.merged()),
        server_cpu_secs: server_cpu,
        server_idle_cpu_per_sec: idle_rate,
        server_cpu_us_per_delivery: server_cpu.and_then(|s| per(s * 1e6, delivered as f64)),
        server_cpu_us_per_delivery_above_idle: server_cpu
            .zip(idle_rate)
            .and_then(|(s, i)| per((s - i * window_secs) * 1e6, delivered as f64)),
        server_cpu_us_per_update_received: server_cpu.and_then(|s| per(s * 1e6, sent as f64)),
        server_rss_connected_mib: idle_after.map(|s| mib(s.rss_bytes)),
        server_rss_after_mib: after.map(|s| mib(s.rss_bytes)),
        loadgen_cpu_secs: me_before
            .zip(me_after)
            .map(|(x, y)| y.cpu_secs - x.cpu_secs),
        load_average_1m,
        errors,
    })
}

struct Editor {
    id: u64,
    client: Client,
    counters: Arc<RelayCounters>,
    recorder: Arc<Recorder>,
    errors: Arc<Mutex<Vec<String>>>,
    stop: watch::Receiver<bool>,
}

impl Editor {
    fn error(&self, what: String) {
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.len() < MAX_ERRORS {
            errors.push(what);
        }
    }

    async fn run(
        mut self,
        first: tokio::time::Instant,
        period: Duration,
        send_until: tokio::time::Instant,
    ) {
        let mut ticks = tokio::time::interval_at(first, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let key = format!("e{}", self.id);
        let mut seq = 0u64;
        let mut sending = true;
        loop {
            tokio::select! {
                _ = ticks.tick(), if sending => {
                    if tokio::time::Instant::now() >= send_until {
                        sending = false;
                        continue;
                    }
                    let update = self.client.edit(&key, ywire::marker(self.id, seq, now_ns()));
                    let frame = self.client.framing.sync(ywire::SYNC_UPDATE, &update);
                    seq += 1;
                    if let Err(e) = self.client.send(frame).await {
                        self.counters.send_errors.fetch_add(1, Ordering::Relaxed);
                        self.error(format!("editor {}: {e:#}", self.id));
                        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                }
                frame = self.client.next_frame() => match frame {
                    Ok(Some(frame)) => self.received(&frame).await,
                    Ok(None) => {
                        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        self.error(format!("editor {}: closed by the server", self.id));
                        return;
                    }
                    Err(e) => {
                        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        self.error(format!("editor {}: {e:#}", self.id));
                        return;
                    }
                },
                _ = self.stop.changed() => break,
            }
        }
        self.client.close().await;
    }

    async fn received(&mut self, frame: &[u8]) {
        let now = now_ns();
        match self.client.framing.parse(frame) {
            Incoming::Update(update) | Incoming::Step2(update) => {
                let marks = ywire::markers(update);
                if marks.is_empty() {
                    self.counters.other_updates.fetch_add(1, Ordering::Relaxed);
                }
                for (editor, _seq, sent_ns) in marks {
                    if editor == self.id {
                        self.counters.echoes.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.recorder.record_node_latency(
                            0,
                            self.id as usize,
                            now.saturating_sub(sent_ns),
                        );
                        self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Incoming::Step1(sv) => {
                let sv = sv.to_vec();
                if let Err(e) = self.client.answer_step1(&sv).await {
                    self.error(format!("editor {}: {e:#}", self.id));
                }
            }
            _ => {}
        }
    }
}

#[derive(Debug, Serialize)]
pub struct MemorySummary {
    pub kind: ServerKind,
    pub boards: usize,
    pub opened: usize,
    pub open_failed: usize,
    pub open_secs: f64,
    pub server_rss_before_mib: Option<f64>,
    pub server_rss_open_mib: Option<f64>,
    pub server_rss_per_board_bytes: Option<f64>,
    pub load_average_1m: Option<f64>,
    pub errors: Vec<String>,
}

async fn memory(a: &WhiteboardArgs) -> anyhow::Result<MemorySummary> {
    let mut ctx = Ctx::new(a).await?;
    crate::ensure_file_limit(a.boards)?;
    let boards = prepare(a, &mut ctx, a.boards, a.boards).await?;
    // The setup's own allocations settle before the baseline.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = server_sample(a.server_pid);
    let mut opened = open_all(&ctx, &boards, 1, a.connect_concurrency).await;
    // Each board gets what a real one has: one edit and one cursor.
    let mut failed_edits = 0;
    for (_, i, client) in &mut opened.clients {
        let update = client.edit("note", format!("board of client {i}: a first stroke"));
        let frame = client.framing.sync(ywire::SYNC_UPDATE, &update);
        let presence = client.presence();
        if client.send(frame).await.is_err() || client.send(presence).await.is_err() {
            failed_edits += 1;
        }
    }
    if failed_edits > 0 {
        opened
            .errors
            .push(format!("{failed_edits} client(s) failed to edit"));
    }
    eprintln!(
        "{} boards open in {:.1} s; settling {} s",
        opened.clients.len(),
        opened.secs,
        a.settle
    );
    // Read what the servers send meanwhile (their relays of our awareness), as clients do.
    let settle_until = Instant::now() + Duration::from_secs(a.settle);
    let mut readers = tokio::task::JoinSet::new();
    let count = opened.clients.len();
    for (_, _, mut client) in opened.clients {
        readers.spawn(async move {
            let _ = tokio::time::timeout_at(settle_until.into(), async {
                while let Ok(Some(_)) = client.next_frame().await {}
            })
            .await;
            client
        });
    }
    let mut clients = Vec::with_capacity(count);
    while let Some(client) = readers.join_next().await {
        if let Ok(client) = client {
            clients.push(client);
        }
    }
    let open = server_sample(a.server_pid);
    let load_average_1m = load_average();
    futures::stream::iter(clients)
        .for_each_concurrent(64, Client::close)
        .await;
    Ok(MemorySummary {
        kind: a.kind,
        boards: a.boards,
        opened: count,
        open_failed: opened.failed,
        open_secs: opened.secs,
        server_rss_before_mib: before.map(|s| mib(s.rss_bytes)),
        server_rss_open_mib: open.map(|s| mib(s.rss_bytes)),
        server_rss_per_board_bytes: before
            .zip(open)
            .and_then(|(x, y)| per(y.rss_bytes as f64 - x.rss_bytes as f64, count as f64)),
        load_average_1m,
        errors: opened.errors,
    })
}

#[derive(Debug, Serialize)]
pub struct LoadSummary {
    pub kind: ServerKind,
    pub doc_bytes: usize,
    pub chunks: usize,
    pub write_secs: f64,
    /// Each fresh client: from the TCP connect to its first sync step 2, and to holding the
    /// whole document; and the server's CPU over it.
    pub loads: Vec<OneLoad>,
    pub server_rss_after_write_mib: Option<f64>,
    pub server_rss_loaded_mib: Option<f64>,
    pub load_average_1m: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct OneLoad {
    pub first_step2_ms: f64,
    pub complete_ms: f64,
    pub server_cpu_secs: Option<f64>,
}

/// Deterministic text that does not repeat within a chunk (the servers store it as it is).
fn filler(seed: usize, len: usize) -> String {
    let mut x = seed as u64 | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect()
}

/// How many of the chunks a client's document holds.
fn chunks_held(doc: &Doc) -> u32 {
    let map = doc.get_or_insert_map("m");
    map.len(&doc.transact())
}

async fn load(a: &WhiteboardArgs) -> anyhow::Result<LoadSummary> {
    let mut ctx = Ctx::new(a).await?;
    // One ticket for the writer and one per load.
    let connections = a.loads + 1;
    let boards = prepare(a, &mut ctx, 1, connections).await?;
    let board = &boards[0];
    let doc_bytes = a.doc_mib << 20;
    let chunks = doc_bytes.div_ceil(CHUNK);
    let t = Instant::now();
    let mut writer = open(&ctx, 0, board, client_id(0), true).await?;
    for c in 0..chunks {
        let update = writer.edit(&format!("c{c}"), filler(c, CHUNK));
        let frame = writer.framing.sync(ywire::SYNC_UPDATE, &update);
        writer.send(frame).await?;
    }
    // The servers answer messages in order: the answer to a step 1 sent after the last chunk
    // means every chunk was taken.
    tokio::time::timeout(SYNC_TIMEOUT, writer.sync(false))
        .await
        .context("the writer's last sync")??;
    let write_secs = t.elapsed().as_secs_f64();
    eprintln!("wrote {chunks} chunks of {CHUNK} B in {write_secs:.1} s");
    writer.close().await;
    let after_write = server_sample(a.server_pid);
    let mut loads = Vec::with_capacity(a.loads);
    let mut loaded = None;
    for k in 0..a.loads {
        tokio::time::sleep(Duration::from_secs(a.unload_wait)).await;
        // The ticket is minted before the clock starts: the load is what is timed.
        let i = k + 1;
        let url = ctx.url(i, board).await?;
        let cpu_before = server_sample(a.server_pid);
        let t = Instant::now();
        let stream = connect_from(ctx.source(i), ctx.target.addr).await?;
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config(true)))
                .await
                .context("WebSocket handshake")?;
        let mut client = Client {
            ws,
            framing: framing(ctx.kind, board),
            client_id: client_id(i),
            doc: Doc::with_client_id(client_id(i)),
        };
        tokio::time::timeout(SYNC_TIMEOUT, client.sync(true))
            .await
            .context("no sync step 2 in time")??;
        let first_step2_ms = t.elapsed().as_secs_f64() * 1e3;
        // `@y/websocket-server` may answer before its store has loaded (then the document
        // follows as an update): read on until it is all here.
        let deadline = Instant::now() + SYNC_TIMEOUT;
        while chunks_held(&client.doc) < chunks as u32 {
            let frame = tokio::time::timeout_at(deadline.into(), client.next_frame())
                .await
                .context("the document never arrived whole")??
                .context("closed before the document arrived whole")?;
            match client.framing.parse(&frame) {
                Incoming::Update(u) | Incoming::Step2(u) => client.apply(u)?,
                Incoming::Step1(sv) => {
                    let sv = sv.to_vec();
                    client.answer_step1(&sv).await?;
                }
                _ => {}
            }
        }
        let complete_ms = t.elapsed().as_secs_f64() * 1e3;
        let cpu_after = server_sample(a.server_pid);
        loaded = cpu_after;
        eprintln!("load {k}: first step 2 {first_step2_ms:.0} ms, whole {complete_ms:.0} ms");
        loads.push(OneLoad {
            first_step2_ms,
            complete_ms,
            server_cpu_secs: cpu_before
                .zip(cpu_after)
                .map(|(x, y)| y.cpu_secs - x.cpu_secs),
        });
        client.close().await;
    }
    Ok(LoadSummary {
        kind: a.kind,
        doc_bytes,
        chunks,
        write_secs,
        loads,
        server_rss_after_write_mib: after_write.map(|s| mib(s.rss_bytes)),
        server_rss_loaded_mib: loaded.map(|s| mib(s.rss_bytes)),
        load_average_1m: load_average(),
    })
}

fn opt(v: Option<f64>, unit: &str, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$} {unit}"))
        .unwrap_or_else(|| "n/a".into())
}

/// Runs the mode and prints its report (a text block, then one JSON line).
pub async fn whiteboards(a: WhiteboardArgs) -> anyhow::Result<()> {
    let kind = format!("{:?}", a.kind);
    match a.mode {
        Mode::Relay => {
            let s = relay(&a).await?;
            println!(
                "== whiteboards relay on {kind}: {} board(s) × {} editors at {}/s for {} s ==",
                s.boards, s.editors_per_board, s.rate_per_editor, s.duration_secs
            );
            println!(
                "editors          {} open, {} failed, in {:.1} s; {} dropped",
                s.opened, s.open_failed, s.open_secs, s.dropped_connections
            );
            println!(
                "updates          {} sent; {} of {} deliveries (echoes {}, unmarked {})",
                s.sent, s.delivered, s.expected_deliveries, s.echoes, s.other_updates
            );
            println!("latency          {}", s.latency.line());
            println!(
                "server CPU       {} over {:.2} s → {} per delivery, {} per update received \
                 (idle {} a second → {} per delivery above idle)",
                opt(s.server_cpu_secs, "s", 2),
                s.window_secs,
                opt(s.server_cpu_us_per_delivery, "µs", 2),
                opt(s.server_cpu_us_per_update_received, "µs", 1),
                opt(s.server_idle_cpu_per_sec, "s", 3),
                opt(s.server_cpu_us_per_delivery_above_idle, "µs", 2),
            );
            println!(
                "server RSS       {} connected, {} after; loadgen CPU {}; load average {}",
                opt(s.server_rss_connected_mib, "MiB", 1),
                opt(s.server_rss_after_mib, "MiB", 1),
                opt(s.loadgen_cpu_secs, "s", 2),
                opt(s.load_average_1m, "", 2)
            );
            for e in &s.errors {
                println!("error            {e}");
            }
            println!("{}", json!({ "liveplan_loadgen_whiteboards": s }));
        }
        Mode::Memory => {
            let s = memory(&a).await?;
            println!("== whiteboards memory on {kind}: {} board(s) ==", s.boards);
            println!(
                "boards           {} open ({} failed) in {:.1} s",
                s.opened, s.open_failed, s.open_secs
            );
            println!(
                "server RSS       {} before, {} open → {} per open board; load average {}",
                opt(s.server_rss_before_mib, "MiB", 1),
                opt(s.server_rss_open_mib, "MiB", 1),
                opt(s.server_rss_per_board_bytes, "B", 0),
                opt(s.load_average_1m, "", 2)
            );
            for e in &s.errors {
                println!("error            {e}");
            }
            println!("{}", json!({ "liveplan_loadgen_whiteboards": s }));
        }
        Mode::Load => {
            let s = load(&a).await?;
            println!(
                "== whiteboards load on {kind}: {} B in {} chunks ==",
                s.doc_bytes, s.chunks
            );
            println!("written          in {:.2} s", s.write_secs);
            for (k, l) in s.loads.iter().enumerate() {
                println!(
                    "load {k}           first step 2 {:.0} ms, whole document {:.0} ms, server CPU {}",
                    l.first_step2_ms,
                    l.complete_ms,
                    opt(l.server_cpu_secs, "s", 2)
                );
            }
            println!(
                "server RSS       {} after the write, {} loaded; load average {}",
                opt(s.server_rss_after_write_mib, "MiB", 1),
                opt(s.server_rss_loaded_mib, "MiB", 1),
                opt(s.load_average_1m, "", 2)
            );
            println!("{}", json!({ "liveplan_loadgen_whiteboards": s }));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    fn parse(extra: &[&str]) -> WhiteboardArgs {
        let mut argv = vec![
            "liveplan-loadgen",
            "whiteboards",
            "--admin-email",
            "root@loadgen.test",
            "--admin-password",
            "root-password-0123",
        ];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Whiteboards(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn runs_are_bounded_and_stay_on_loopback() {
        assert!(parse(&["--mode", "relay"]).check().is_ok());
        for bad in [
            &["--mode", "relay", "-e", "1"][..],
            &["--mode", "relay", "-b", "1000", "-e", "50"],
            &["--mode", "relay", "-r", "0"],
            &["--mode", "relay", "-r", "1000"],
            &["--mode", "load", "--doc-mib", "0"],
            &["--mode", "load", "--loads", "0"],
            &["--mode", "memory", "-b", "0"],
            &["--mode", "memory", "--server", "http://10.1.2.3:80"],
        ] {
            assert!(parse(bad).check().is_err(), "{bad:?}");
        }
        let peer = parse(&["--mode", "memory", "--kind", "hocuspocus"]);
        assert!(peer.check().is_ok());
        assert_eq!(peer.connections(), 1);
    }

    /// Every mode against a real liveplan on port 0: each editor's updates reach every other
    /// editor of its board exactly once, memory opens every board, and a fresh client loads
    /// the whole document after the board was unloaded.
    #[test]
    fn every_mode_against_a_real_liveplan() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut config = liveplan_server::Config::new(dir.path().to_path_buf());
        config.scheduler = false;
        config.admin_email = Some("root@loadgen.test".into());
        config.admin_password = Some("root-password-0123".into());
        runtime.block_on(async {
            let server = liveplan_server::start(config, "127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            let url = format!("http://{}", server.address);
            let common = ["--server", url.as_str(), "--settle", "0", "--per-user", "4"];

            let a = parse(&[&common[..], &["--mode", "relay", "-b", "2", "-e", "3"]].concat());
            let a = WhiteboardArgs {
                rate: 10.0,
                duration: 1,
                ..a
            };
            a.check().unwrap();
            let relayed = relay(&a).await.unwrap();
            assert_eq!(relayed.opened, 6, "{:?}", relayed.errors);
            assert!(relayed.sent > 0);
            assert_eq!(relayed.delivered, relayed.sent * 2, "{:?}", relayed.errors);
            assert_eq!(relayed.latency.count, relayed.delivered);
            // liveplan relays an update to the other clients only.
            assert_eq!((relayed.echoes, relayed.dropped_connections), (0, 0));
            assert!(relayed.errors.is_empty(), "{:?}", relayed.errors);

            let a = parse(&[&common[..], &["--mode", "memory", "-b", "3"]].concat());
            let memory = memory(&a).await.unwrap();
            assert_eq!((memory.opened, memory.open_failed), (3, 0));
            assert!(memory.errors.is_empty(), "{:?}", memory.errors);

            let a = parse(
                &[
                    &common[..],
                    &["--mode", "load", "--doc-mib", "1", "--loads", "2"],
                    &["--unload-wait", "1"],
                ]
                .concat(),
            );
            let loaded = load(&a).await.unwrap();
            assert_eq!(loaded.chunks, 4);
            assert_eq!(loaded.loads.len(), 2);
            server.shutdown().await.unwrap();
        });
    }

    #[test]
    fn filler_is_deterministic_and_unrepetitive() {
        let a = filler(3, 1000);
        assert_eq!(a, filler(3, 1000));
        assert_ne!(a, filler(4, 1000));
        assert!(a.bytes().all(|b| b.is_ascii_lowercase()));
        assert_ne!(&a[..500], &a[500..]);
    }
}
