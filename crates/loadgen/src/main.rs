//! liveplan-loadgen: opens N live subscribers (native WebSocket, SSE or Bryntum WebSocket) on one
//! project of a liveplan server on this machine, publishes R changes a second through the REST
//! API (or as Bryntum `project_change` revisions), and reports commit-to-delivery latency,
//! deliveries/s, the server's CPU per delivered event and its RSS per connection. `idle` only
//! opens and holds connections, for memory per connection. `--bryntum-server` points the same
//! Bryntum subscribers and publisher at another server speaking that protocol (Bryntum's own
//! demo server), so the two can be compared under one workload.
//!
//! Latency is measured from just before the publishing PATCH (or revision) is sent to the
//! moment a subscriber has read the frame, so it includes the write's own commit (reported
//! separately as the round trip); events carry only a millisecond commit timestamp, too coarse
//! to use.
//!
//! Over 800 lines on purpose: a run's phases (open, baseline, publish, drain, report) share one
//! set of counters and must stay in one order; the dialects, setup, stats and the floor live
//! in their own modules.

mod args;
mod dialect;
mod floor;
mod nodes;
mod procfs;
mod publish;
mod setup;
mod stats;
mod whiteboards;
mod writers;
mod ywire;

use anyhow::{Context, bail};
use args::{Cli, Command, Common, DialectName, IdleArgs, PublisherName, RunArgs, Target};
use clap::Parser;
use dialect::bryntum::{Bryntum, Login};
use dialect::{Connection, Dialect, Kind, User};
use futures::StreamExt;
use serde::Serialize;
use setup::Api;
use stats::{Latency, Recorder, SeqTracker, SeqVerdict, now_ns, per, rss_per_connection};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    now_ns(); // fix the epoch of all timestamps before anything else runs
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Run(args) => {
            args.check()?;
            let summary = runtime.block_on(run(args))?;
            print_run(&summary);
            println!(
                "{}",
                serde_json::to_string(&serde_json::json!({ "liveplan_loadgen": summary }))?
            );
            Ok(())
        }
        Command::Idle(args) => {
            args.check()?;
            runtime.block_on(idle(args))
        }
        Command::Writers(args) => {
            args.check()?;
            let summary = runtime.block_on(writers::writers(args))?;
            println!(
                "{} writers on {} projects: {:.0} changes/s ({} in {:.1} s, {} failed), p50 {} µs, p99 {} µs, load {:?}",
                summary.writers,
                summary.projects,
                summary.changes_per_second,
                summary.changes,
                summary.seconds,
                summary.failed,
                summary.latency_p50_us,
                summary.latency_p99_us,
                summary.load_average_1m
            );
            if let Some(error) = &summary.first_error {
                println!("first error: {error}");
            }
            println!(
                "{}",
                serde_json::to_string(&serde_json::json!({ "liveplan_loadgen_writers": summary }))?
            );
            Ok(())
        }
        Command::Prepare(args) => {
            args.check()?;
            runtime.block_on(prepare_only(args))
        }
        Command::Floor(args) => {
            args.check()?;
            ensure_file_limit(args.connections)?;
            let summary = floor::floor(&args)?;
            println!(
                "floor            {} writes{} of {} B to {} connections in {:.1} s: writer CPU {:.2} s \
                 → {:.2} µs per write (sink {:.2} s); load average {:.2}",
                summary.writes,
                if summary.io_uring { " (io_uring)" } else { "" },
                summary.frame_bytes,
                summary.connections,
                summary.window_secs,
                summary.writer_cpu_secs,
                summary.writer_cpu_us_per_write,
                summary.sink_cpu_secs,
                summary.load_average
            );
            println!(
                "{}",
                serde_json::to_string(&serde_json::json!({ "liveplan_loadgen": summary }))?
            );
            Ok(())
        }
        Command::Whiteboards(args) => {
            args.check()?;
            runtime.block_on(whiteboards::whiteboards(args))
        }
        Command::FloorSink => {
            ensure_file_limit(0)?;
            runtime.block_on(floor::sink())
        }
    }
}

/// Raises the soft open-files limit to the hard one and checks the connections fit.
fn ensure_file_limit(connections: usize) -> anyhow::Result<u64> {
    let limit = rlimit::increase_nofile_limit(u64::MAX).context("raising RLIMIT_NOFILE")?;
    // Sockets of the REST clients, the runtime and stdio come on top of the subscribers.
    let needed = connections as u64 + 512;
    if limit < needed {
        bail!(
            "{connections} connections need about {needed} file descriptors; the hard limit is \
             {limit} (raise it with `ulimit -Hn` as a user allowed to, or open fewer)"
        );
    }
    Ok(limit)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// What every mode prepares: the member users, the dialect to subscribe with and, on liveplan,
/// the admin's token, a project and its tasks.
struct Prepared {
    target: Target,
    /// `None` for a `--bryntum-server`, which has no REST API.
    liveplan: Option<Liveplan>,
    users: Vec<User>,
    /// The subscribers' dialect on each node (`--node`; one without), and the nodes' URLs.
    dialects: Vec<Arc<dyn Dialect>>,
    node_urls: Vec<String>,
    /// The Bryntum dialect on the publishing target, for Bryntum publishers.
    bryntum: Option<Arc<Bryntum>>,
    /// The app of a Pusher-protocol server (`--dialect pusher`).
    pusher: Option<dialect::pusher::App>,
}

struct Liveplan {
    api: Api,
    admin: User,
    project_id: String,
    task_ids: Vec<String>,
}

/// The project and users a run works with; `prepare` writes it, `--state` reads it.
#[derive(Serialize, serde::Deserialize)]
struct State {
    project_id: String,
    task_ids: Vec<String>,
    admin: User,
    users: Vec<User>,
}

async fn make_state(
    api: &Api,
    common: &Common,
    connections: usize,
    tasks: usize,
) -> anyhow::Result<State> {
    let admin = Api::login(
        &api.http,
        &api.base,
        common.admin_email.as_deref().unwrap_or_default(),
        common.admin_password.as_deref().unwrap_or_default(),
    )
    .await
    .context("logging in as the administrator (LIVEPLAN_ADMIN_EMAIL/PASSWORD)")?;
    let (project_id, task_ids) = api.project_with_tasks(&admin.token, tasks).await?;
    let user_count = connections.div_ceil(common.per_user);
    let t = Instant::now();
    let users = api
        .member_users(&admin.token, &project_id, user_count, common.source_base())
        .await?;
    eprintln!(
        "project {project_id}: {} task(s), {user_count} member user(s) ready in {:.1} s",
        task_ids.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(State {
        project_id,
        task_ids,
        admin,
        users,
    })
}

async fn prepare_only(a: args::PrepareArgs) -> anyhow::Result<()> {
    let target = args::resolve_target(&a.common.server, a.connections, a.common.sources())?;
    let api = Api::new(&target.base)?;
    let state = make_state(&api, &a.common, a.connections, a.tasks).await?;
    std::fs::write(&a.out, serde_json::to_vec(&state)?)
        .with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!("state written to {}", a.out.display());
    Ok(())
}

async fn prepare(
    common: &Common,
    cluster: &nodes::NodeArgs,
    connections: usize,
    tasks: usize,
) -> anyhow::Result<Prepared> {
    if let Some(url) = &common.bryntum_server {
        return prepare_external(common, url, connections);
    }
    if common.dialect()? == DialectName::Pusher {
        return prepare_pusher(common, cluster, connections);
    }
    let target = args::resolve_target(
        cluster.publish_url(&common.server),
        connections,
        common.sources(),
    )?;
    let node_targets = nodes::resolve_nodes(
        &cluster.subscriber_urls(&common.server, &common.subscriber_servers),
        connections,
        common.sources(),
    )?;
    let limit = ensure_file_limit(connections)?;
    let api = Api::new(&target.base)?;
    eprintln!(
        "target {} · {} source address(es) · open-files limit {limit}",
        target.base,
        target.sources.len()
    );
    let state = match &common.state {
        Some(path) => {
            let state: State = serde_json::from_slice(
                &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
            )?;
            if state.users.len() * common.per_user < connections || state.task_ids.len() < tasks {
                bail!(
                    "{} holds {} users and {} tasks: too few for {connections} connections at \
                     --per-user {} and {tasks} tasks",
                    path.display(),
                    state.users.len(),
                    state.task_ids.len(),
                    common.per_user
                );
            }
            state
        }
        None => make_state(&api, common, connections, tasks).await?,
    };
    let State {
        project_id,
        mut task_ids,
        admin,
        users,
    } = state;
    task_ids.truncate(tasks.max(1));
    let name = common.dialect()?;
    let (_, bryntum) = liveplan_dialect(name, &target, &project_id, &api.http)?;
    let dialects = node_targets
        .iter()
        .map(|node| Ok(liveplan_dialect(name, node, &project_id, &api.http)?.0))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if node_targets.len() > 1 || target.base != node_targets[0].base {
        let urls: Vec<&str> = node_targets.iter().map(|t| t.base.as_str()).collect();
        eprintln!(
            "subscribers round-robin over {} node(s) {}; changes through {}",
            urls.len(),
            urls.join(" "),
            target.base
        );
    }
    Ok(Prepared {
        node_urls: node_targets.into_iter().map(|t| t.base).collect(),
        dialects,
        target,
        liveplan: Some(Liveplan {
            api,
            admin,
            project_id,
            task_ids,
        }),
        users,
        bryntum,
        pusher: None,
    })
}

/// A Pusher-protocol server's nodes (soketi): nothing to make; every subscriber joins the one
/// public channel, and "users" only pace the openings as on liveplan.
fn prepare_pusher(
    common: &Common,
    cluster: &nodes::NodeArgs,
    connections: usize,
) -> anyhow::Result<Prepared> {
    let app = dialect::pusher::App::parse(common.pusher_app.as_deref().unwrap_or_default())?;
    let target = args::resolve_target(
        cluster.publish_url(&common.server),
        connections,
        common.sources(),
    )?;
    let node_targets = nodes::resolve_nodes(
        &cluster.subscriber_urls(&common.server, &common.subscriber_servers),
        connections,
        common.sources(),
    )?;
    let limit = ensure_file_limit(connections)?;
    eprintln!(
        "Pusher-protocol server: subscribers over {} node(s), events through {} · open-files \
         limit {limit}",
        node_targets.len(),
        target.base
    );
    let dialects = node_targets
        .iter()
        .map(|t| -> Arc<dyn Dialect> {
            Arc::new(dialect::pusher::Pusher {
                ws_base: t.base.replacen("http://", "ws://", 1),
                addr: t.addr,
                app_key: app.key.clone(),
            })
        })
        .collect();
    let users = (0..connections.div_ceil(common.per_user))
        .map(|i| User {
            id: format!("lg{i}"),
            token: String::new(),
        })
        .collect();
    Ok(Prepared {
        node_urls: node_targets.into_iter().map(|t| t.base).collect(),
        dialects,
        target,
        liveplan: None,
        users,
        bryntum: None,
        pusher: Some(app),
    })
}

/// A node's subscriber dialect, and the Bryntum one again when that is it (for publishers).
type NodeDialect = (Arc<dyn Dialect>, Option<Arc<Bryntum>>);

/// The subscribers' dialect on one liveplan node (tickets are minted on the node they are
/// used on), and the Bryntum dialect again when that is it.
fn liveplan_dialect(
    name: DialectName,
    target: &Target,
    project_id: &str,
    http: &reqwest::Client,
) -> anyhow::Result<NodeDialect> {
    let tickets = || dialect::native_ws::NativeWs {
        base: target.base.clone(),
        addr: target.addr,
        project_id: project_id.to_owned(),
        http: http.clone(),
    };
    Ok(match name {
        DialectName::Ws => (Arc::new(tickets()), None),
        DialectName::Bryntum => {
            let b = Arc::new(Bryntum {
                url: format!(
                    "{}/ws/v1/bryntum",
                    target.base.replacen("http://", "ws://", 1)
                ),
                addr: target.addr,
                project: project_id.to_owned().into(),
                login: Login::Ticket(tickets()),
            });
            (b.clone(), Some(b))
        }
        DialectName::Pusher => bail!("a liveplan server does not speak --dialect pusher"),
        DialectName::Sse => (
            Arc::new(dialect::sse::Sse::new(
                target.base.clone(),
                project_id.to_owned(),
                &target.sources,
            )?),
            None,
        ),
    })
}

/// A server speaking Bryntum's protocol that is not liveplan: nothing to make, subscribers are
/// names (`lg0`, `lg1`, …, one per `--per-user` subscribers, as on liveplan).
fn prepare_external(common: &Common, url: &str, connections: usize) -> anyhow::Result<Prepared> {
    let (target, path) = args::resolve_ws_target(url, connections, common.sources())?;
    let limit = ensure_file_limit(connections)?;
    eprintln!(
        "Bryntum-protocol server {}{path} · {} source address(es) · open-files limit {limit}",
        target.base,
        target.sources.len()
    );
    let users = (0..connections.div_ceil(common.per_user))
        .map(|i| User {
            id: format!("lg{i}"),
            token: String::new(),
        })
        .collect();
    let bryntum = Arc::new(Bryntum {
        url: format!("{}{path}", target.base),
        addr: target.addr,
        project: common.bryntum_project(),
        login: Login::Password(common.bryntum_password.clone()),
    });
    Ok(Prepared {
        node_urls: vec![target.base.clone()],
        target,
        liveplan: None,
        users,
        dialects: vec![bryntum.clone()],
        bryntum: Some(bryntum),
        pusher: None,
    })
}

/// The subscribers, once open.
struct Fleet {
    recorder: Arc<Recorder>,
    stop: watch::Sender<bool>,
    alive: Arc<AtomicU64>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
    opened: usize,
    failed: usize,
    open_secs: f64,
}

fn note_error(errors: &std::sync::Mutex<Vec<String>>, e: String) {
    let mut errors = errors.lock().unwrap_or_else(|e| e.into_inner());
    // A few examples say what went wrong; thousands of copies would not say more.
    if errors.len() < 5 {
        errors.push(e);
    }
}

/// Reads one connection until told to stop, recording every delivery.
async fn subscriber(
    index: usize,
    node: usize,
    mut connection: Box<dyn Connection>,
    recorder: Arc<Recorder>,
    mut stop: watch::Receiver<bool>,
    alive: Arc<AtomicU64>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
) {
    let c = &recorder.counters;
    let mut seqs = SeqTracker::default();
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            next = connection.next() => match next {
                Ok(Some(d)) => {
                    let now = now_ns();
                    if let Some(seq) = d.seq {
                        match seqs.observe(seq) {
                            SeqVerdict::InOrder => {}
                            SeqVerdict::Gap(n) => { c.gaps.fetch_add(n, Ordering::Relaxed); }
                            SeqVerdict::Duplicate => { c.duplicates.fetch_add(1, Ordering::Relaxed); }
                        }
                    }
                    match (d.kind, d.sent_ns) {
                        (Kind::Event, Some(sent)) => {
                            recorder.record_node_latency(node, index, now.saturating_sub(sent));
                            c.measured.fetch_add(1, Ordering::Relaxed);
                        }
                        (Kind::Resync, _) => { c.resyncs.fetch_add(1, Ordering::Relaxed); }
                        _ => { c.other.fetch_add(1, Ordering::Relaxed); }
                    }
                }
                Ok(None) => {
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                    note_error(&errors, "the server ended the stream".into());
                    break;
                }
                Err(e) => {
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                    note_error(&errors, format!("{e:#}"));
                    break;
                }
            }
        }
    }
    alive.fetch_sub(1, Ordering::Relaxed);
}

/// Opens `count` subscribers: subscriber i connects as user i / per_user (so a user's
/// connections open together) from source address i mod k.
async fn open_fleet(p: &Prepared, common: &Common, count: usize) -> Fleet {
    let recorder = Arc::new(Recorder::new(p.dialects.len()));
    let (stop, stop_rx) = watch::channel(false);
    let alive = Arc::new(AtomicU64::new(0));
    let errors: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(common.connect_timeout);
    let sources: &[IpAddr] = &p.target.sources;
    let mut attempts = futures::stream::iter(0..count)
        .map(|i| {
            let user = &p.users[i / common.per_user];
            let source = sources[i % sources.len()];
            let dialect = p.dialects[nodes::node_of(i, p.dialects.len())].clone();
            async move { (i, dialect.open(user, source).await) }
        })
        .buffer_unordered(common.connect_concurrency);
    let (mut opened, mut failed) = (0usize, 0usize);
    let mut last_report = Instant::now();
    loop {
        let next = tokio::time::timeout_at(deadline.into(), attempts.next()).await;
        match next {
            Err(_) => {
                eprintln!(
                    "connect timeout: giving up after {} s",
                    common.connect_timeout
                );
                failed += count - opened - failed;
                break;
            }
            Ok(None) => break,
            Ok(Some((i, Ok(connection)))) => {
                opened += 1;
                alive.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(subscriber(
                    i,
                    nodes::node_of(i, p.dialects.len()),
                    connection,
                    recorder.clone(),
                    stop_rx.clone(),
                    alive.clone(),
                    errors.clone(),
                ));
            }
            Ok(Some((_, Err(e)))) => {
                failed += 1;
                note_error(&errors, format!("open: {e:#}"));
            }
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            eprintln!(
                "  opened {opened} / {count} ({failed} failed) in {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let open_secs = started.elapsed().as_secs_f64();
    eprintln!("opened {opened} / {count} ({failed} failed) in {open_secs:.1} s");
    Fleet {
        recorder,
        stop,
        alive,
        errors,
        opened,
        failed,
        open_secs,
    }
}

#[derive(Serialize)]
struct Machine {
    server_pid: Option<u32>,
    source_addrs: usize,
    /// 1-minute load average when the run ended: other work on the machine shows up here.
    load_average: Option<f64>,
}

impl Machine {
    fn now(server_pid: Option<u32>, source_addrs: usize) -> Machine {
        Machine {
            server_pid,
            source_addrs,
            load_average: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|l| l.split_whitespace().next()?.parse().ok()),
        }
    }
}

#[derive(Serialize)]
struct RunSummary {
    mode: &'static str,
    /// liveplan's base URL, or the `--bryntum-server`.
    server: String,
    dialect: &'static str,
    publisher: &'static str,
    subscribers: usize,
    opened: usize,
    open_failed: usize,
    open_secs: f64,
    /// From the last connection open to the start of publishing.
    settle_secs: f64,
    rate: u32,
    duration_secs: u64,
    published_ok: u64,
    published_failed: u64,
    published_skipped: u64,
    expected_deliveries: u64,
    delivered: u64,
    missing: i64,
    gaps: u64,
    duplicates: u64,
    resyncs: u64,
    other_messages: u64,
    dropped_connections: u64,
    window_secs: f64,
    deliveries_per_sec: f64,
    latency: Latency,
    /// Per `--node` (one entry without): its subscribers' latency.
    nodes: Vec<nodes::NodeSummary>,
    /// Send to answer of each change: the REST round trip, or for a Bryntum publisher send to
    /// its own revision coming back.
    rest_round_trip: Latency,
    server_cpu_secs: Option<f64>,
    server_cpu_us_per_delivery: Option<f64>,
    /// Server CPU per change with nobody subscribed (the write path alone).
    server_cpu_us_per_publish_alone: Option<f64>,
    /// Server CPU per delivery once the write path is subtracted: the fan-out's own cost.
    server_cpu_us_per_delivery_marginal: Option<f64>,
    /// CPU of the `--server-rx-pid` threads (the server's receive path outside its process)
    /// over the same window.
    #[serde(skip_serializing_if = "Option::is_none")]
    server_rx_cpu_secs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_rx_cpu_us_per_delivery: Option<f64>,
    loadgen_cpu_secs: Option<f64>,
    server_rss_before_mib: Option<f64>,
    server_rss_connected_mib: Option<f64>,
    server_rss_after_mib: Option<f64>,
    server_rss_per_connection_bytes: Option<f64>,
    loadgen_rss_mib: Option<f64>,
    machine: Machine,
    errors: Vec<String>,
}

/// Waits `--settle` seconds, then for as long as messages still arrive (up to
/// `--connect-timeout`): Bryntum's demo server sends every socket the whole `users` list on
/// each login, and at 2,000 sockets that backlog takes minutes to drain; revisions published
/// into it would time the backlog, not the delivery.
async fn settle(fleet: &Fleet, c: &Common) -> f64 {
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(c.settle)).await;
    let counters = &fleet.recorder.counters;
    let seen = || {
        fleet.recorder.count(&counters.other)
            + fleet.recorder.count(&counters.measured)
            + fleet.recorder.count(&counters.resyncs)
    };
    let give_up = started + Duration::from_secs(c.connect_timeout);
    let mut last = seen();
    while Instant::now() < give_up {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = seen();
        if now == last {
            break;
        }
        last = now;
    }
    let secs = started.elapsed().as_secs_f64();
    if secs > c.settle as f64 + 1.5 {
        eprintln!("settled after {secs:.0} s (messages kept arriving)");
    }
    secs
}

/// Whoever makes the changes: the same workload for every dialect and server it can drive.
enum Publisher {
    /// liveplan's REST API, or a Pusher server's HTTP API.
    Http {
        http: reqwest::Client,
        base: String,
        changes: Arc<publish::Changes>,
    },
    Bryntum(publish::BryntumPublishers),
}

impl Publisher {
    async fn new(p: &Prepared, a: &RunArgs) -> anyhow::Result<Publisher> {
        match (a.publisher()?, &p.liveplan, &p.bryntum) {
            (PublisherName::Rest, Some(l), _) => Ok(Publisher::Http {
                http: l.api.http.clone(),
                base: p.target.base.clone(),
                changes: Arc::new(publish::Changes::Tasks {
                    token: l.admin.token.clone(),
                    project_id: l.project_id.clone(),
                    task_ids: l.task_ids.clone(),
                }),
            }),
            (PublisherName::Pusher, _, _) => {
                let app = p.pusher.clone().context("no --pusher-app")?;
                Ok(Publisher::Http {
                    http: setup::Api::new(&p.target.base)?.http,
                    base: p.target.base.clone(),
                    changes: Arc::new(publish::Changes::Pusher(app)),
                })
            }
            (PublisherName::Bryntum, liveplan, Some(dialect)) => {
                // On liveplan the project's owner publishes (tickets); elsewhere, names.
                let users: Vec<User> = (0..a.bryntum_publishers)
                    .map(|j| match liveplan {
                        Some(l) => l.admin.clone(),
                        None => User {
                            id: format!("lg-publisher-{j}"),
                            token: String::new(),
                        },
                    })
                    .collect();
                let publishers =
                    publish::BryntumPublishers::open(dialect, &users, p.target.sources[0], a.tasks)
                        .await?;
                eprintln!(
                    "{} Bryntum publisher socket(s) renaming {} task(s)",
                    users.len(),
                    publishers.task_count()
                );
                Ok(Publisher::Bryntum(publishers))
            }
            _ => bail!("this publisher cannot drive this server and dialect"),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Publisher::Http { changes, .. } => match **changes {
                publish::Changes::Tasks { .. } => "rest",
                publish::Changes::Pusher(_) => "pusher",
            },
            Publisher::Bryntum(_) => "bryntum",
        }
    }

    async fn publish(&mut self, a: &RunArgs, secs: u64) -> publish::Outcome {
        match self {
            Publisher::Http {
                http,
                base,
                changes,
            } => {
                let plan = publish::Plan {
                    base: base.clone(),
                    changes: changes.clone(),
                    rate: a.rate,
                    duration: Duration::from_secs(secs),
                    max_in_flight: a.max_in_flight,
                };
                publish::publish(http.clone(), plan).await
            }
            Publisher::Bryntum(publishers) => {
                publishers
                    .publish(
                        a.rate,
                        Duration::from_secs(secs),
                        a.max_in_flight,
                        Duration::from_secs(a.drain),
                    )
                    .await
            }
        }
    }
}

async fn run(a: RunArgs) -> anyhow::Result<RunSummary> {
    let c = &a.common;
    let p = prepare(c, &a.nodes, a.subscribers, a.tasks).await?;
    let mut publisher = Publisher::new(&p, &a).await?;
    // The server's CPU: `--server-pid` and every `--node-pid`, summed.
    let cpu_pids = a.nodes.cpu_pids(c.server_pid);
    let server_cpu_now = || procfs::cpu_secs_of(&cpu_pids);
    let baseline_us_per_publish = if a.baseline > 0 && !cpu_pids.is_empty() {
        eprintln!(
            "baseline: publishing {} changes/s for {} s with no subscriber",
            a.rate, a.baseline
        );
        let x = server_cpu_now();
        let outcome = publisher.publish(&a, a.baseline).await;
        // Let the last writes' after-commit work (scheduler, hub) finish inside the window.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let y = server_cpu_now();
        x.zip(y)
            .and_then(|(x, y)| per((y - x) * 1e6, outcome.ok as f64))
    } else {
        None
    };
    let before = procfs::sample_both(c.server_pid);
    let fleet = open_fleet(&p, c, a.subscribers).await;
    if fleet.opened == 0 {
        bail!(
            "no subscriber could connect: {:?}",
            fleet.errors.lock().unwrap_or_else(|e| e.into_inner())
        );
    }
    let settle_secs = settle(&fleet, c).await;
    let connected = procfs::sample_both(c.server_pid);
    let cpu_connected = server_cpu_now();
    let rx_connected = procfs::cpu_secs_of(&c.server_rx_pids);
    let counters = &fleet.recorder.counters;
    let measured_before = fleet.recorder.count(&counters.measured);

    eprintln!(
        "publishing {} changes/s for {} s to {} subscribers",
        a.rate, a.duration, fleet.opened
    );
    let window = Instant::now();
    let outcome = publisher.publish(&a, a.duration).await;
    // Wait for the deliveries still on their way, but not for connections that died.
    let drain_until = Instant::now() + Duration::from_secs(a.drain);
    let mut last_delivery = Instant::now();
    let mut last_count = fleet.recorder.count(&counters.measured);
    loop {
        let expected = outcome.ok * fleet.alive.load(Ordering::Relaxed);
        let delivered = fleet.recorder.count(&counters.measured) - measured_before;
        if delivered >= expected || Instant::now() >= drain_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now_count = fleet.recorder.count(&counters.measured);
        if now_count != last_count {
            last_count = now_count;
            last_delivery = Instant::now();
        }
    }
    // The window ends at the last delivery, not at the end of a fruitless drain wait.
    let window_secs = (last_delivery.max(window + outcome.elapsed) - window).as_secs_f64();
    let after = procfs::sample_both(c.server_pid);
    let cpu_after = server_cpu_now();
    let rx_after = procfs::cpu_secs_of(&c.server_rx_pids);
    let _ = fleet.stop.send(true);
    let publisher_name = publisher.name();
    if let Publisher::Bryntum(publishers) = publisher {
        publishers.close().await;
    }

    let delivered = fleet.recorder.count(&counters.measured) - measured_before;
    let expected = outcome.ok * fleet.opened as u64;
    let server_cpu = cpu_connected.zip(cpu_after).map(|(x, y)| y - x);
    let rx_cpu = rx_connected.zip(rx_after).map(|(x, y)| y - x);
    let me_cpu = match (connected.me, after.me) {
        (Some(x), Some(y)) => Some(y.cpu_secs - x.cpu_secs),
        _ => None,
    };
    let mut errors = fleet
        .errors
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if let Some(e) = &outcome.first_error {
        errors.push(format!("publish: {e}"));
    }
    let summary = RunSummary {
        mode: "run",
        server: server_name(c, &p),
        dialect: p.dialects[0].name(),
        publisher: publisher_name,
        subscribers: a.subscribers,
        opened: fleet.opened,
        open_failed: fleet.failed,
        open_secs: fleet.open_secs,
        settle_secs,
        rate: a.rate,
        duration_secs: a.duration,
        published_ok: outcome.ok,
        published_failed: outcome.failed,
        published_skipped: outcome.skipped,
        expected_deliveries: expected,
        delivered,
        missing: expected as i64 - delivered as i64,
        gaps: fleet.recorder.count(&counters.gaps),
        duplicates: fleet.recorder.count(&counters.duplicates),
        resyncs: fleet.recorder.count(&counters.resyncs),
        other_messages: fleet.recorder.count(&counters.other),
        dropped_connections: fleet.recorder.count(&counters.dropped),
        window_secs,
        deliveries_per_sec: per(delivered as f64, window_secs).unwrap_or(0.0),
        latency: Latency::of(&fleet.recorder.merged()),
        nodes: node_summaries(&p, &fleet, a.subscribers),
        rest_round_trip: Latency::of(&outcome.rest.unwrap_or_else(stats::new_histogram)),
        server_cpu_secs: server_cpu,
        server_cpu_us_per_delivery: server_cpu.and_then(|s| per(s * 1e6, delivered as f64)),
        server_cpu_us_per_publish_alone: baseline_us_per_publish,
        server_cpu_us_per_delivery_marginal: match (server_cpu, baseline_us_per_publish) {
            (Some(s), Some(b)) => per(s * 1e6 - b * outcome.ok as f64, delivered as f64),
            _ => None,
        },
        server_rx_cpu_secs: rx_cpu,
        server_rx_cpu_us_per_delivery: rx_cpu.and_then(|s| per(s * 1e6, delivered as f64)),
        loadgen_cpu_secs: me_cpu,
        server_rss_before_mib: before.server.map(|s| mib(s.rss_bytes)),
        server_rss_connected_mib: connected.server.map(|s| mib(s.rss_bytes)),
        server_rss_after_mib: after.server.map(|s| mib(s.rss_bytes)),
        server_rss_per_connection_bytes: match (before.server, connected.server) {
            (Some(x), Some(y)) => rss_per_connection(x.rss_bytes, y.rss_bytes, fleet.opened),
            _ => None,
        },
        loadgen_rss_mib: after.me.map(|s| mib(s.rss_bytes)),
        machine: Machine::now(c.server_pid, p.target.sources.len()),
        errors,
    };
    Ok(summary)
}

fn node_summaries(p: &Prepared, fleet: &Fleet, subscribers: usize) -> Vec<nodes::NodeSummary> {
    let n = p.node_urls.len();
    p.node_urls
        .iter()
        .enumerate()
        .map(|(k, url)| {
            let h = fleet.recorder.merged_node(k);
            nodes::NodeSummary {
                url: url.clone(),
                subscribers: (0..subscribers)
                    .filter(|&i| nodes::node_of(i, n) == k)
                    .count(),
                delivered: h.len(),
                latency: Latency::of(&h),
            }
        })
        .collect()
}

fn opt(v: Option<f64>, unit: &str, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$} {unit}"))
        .unwrap_or_else(|| "n/a".into())
}

fn server_name(c: &Common, p: &Prepared) -> String {
    match &c.bryntum_server {
        Some(url) => url.clone(),
        None if p.pusher.is_some() => format!("pusher {}", p.target.base),
        None => format!("liveplan {}", p.target.base),
    }
}

fn print_run(s: &RunSummary) {
    println!(
        "== liveplan-loadgen run: {} subscribers over {} on {}, {} publisher ==",
        s.subscribers, s.dialect, s.server, s.publisher
    );
    println!(
        "connections      {} opened, {} failed, in {:.1} s; {} dropped during the run",
        s.opened, s.open_failed, s.open_secs, s.dropped_connections
    );
    println!(
        "published        {} ok, {} failed, {} skipped at {}/s for {} s",
        s.published_ok, s.published_failed, s.published_skipped, s.rate, s.duration_secs
    );
    println!(
        "delivered        {} of {} expected (missing {}, gaps {}, duplicates {}, resyncs {}, other {})",
        s.delivered,
        s.expected_deliveries,
        s.missing,
        s.gaps,
        s.duplicates,
        s.resyncs,
        s.other_messages
    );
    println!("latency          {}", s.latency.line());
    if s.nodes.len() > 1 {
        for node in &s.nodes {
            println!(
                "  node {:<22} {} subscribers: {}",
                node.url,
                node.subscribers,
                node.latency.line()
            );
        }
    }
    if s.publisher == "rest" {
        println!("REST round trip  {}", s.rest_round_trip.line());
    } else if s.publisher == "pusher" {
        println!("HTTP API trip    {}", s.rest_round_trip.line());
    } else {
        println!("echo round trip  {}", s.rest_round_trip.line());
    }
    println!(
        "throughput       {:.0} deliveries/s over {:.2} s",
        s.deliveries_per_sec, s.window_secs
    );
    println!(
        "server CPU       {} → {} per delivered event",
        opt(s.server_cpu_secs, "s", 2),
        opt(s.server_cpu_us_per_delivery, "µs", 2)
    );
    println!(
        "                 {} per change with no subscriber → {} per delivery for the fan-out alone",
        opt(s.server_cpu_us_per_publish_alone, "µs", 1),
        opt(s.server_cpu_us_per_delivery_marginal, "µs", 2)
    );
    if s.server_rx_cpu_secs.is_some() {
        println!(
            "server rx CPU    {} → {} per delivered event (--server-rx-pid, outside the server)",
            opt(s.server_rx_cpu_secs, "s", 2),
            opt(s.server_rx_cpu_us_per_delivery, "µs", 2)
        );
    }
    println!(
        "loadgen CPU      {}  (load average {:.2} at the end: both share the cores)",
        opt(s.loadgen_cpu_secs, "s", 2),
        s.machine.load_average.unwrap_or(f64::NAN)
    );
    println!(
        "server RSS       {} before connecting, {} connected, {} after → {} per connection",
        opt(s.server_rss_before_mib, "MiB", 1),
        opt(s.server_rss_connected_mib, "MiB", 1),
        opt(s.server_rss_after_mib, "MiB", 1),
        opt(s.server_rss_per_connection_bytes, "B", 0)
    );
    for e in &s.errors {
        println!("error            {e}");
    }
}

#[derive(Serialize)]
struct IdleSummary {
    mode: &'static str,
    server: String,
    dialect: &'static str,
    connections: usize,
    opened: usize,
    open_failed: usize,
    open_secs: f64,
    held_secs: u64,
    dropped_connections: u64,
    server_rss_before_mib: Option<f64>,
    server_rss_connected_mib: Option<f64>,
    server_rss_per_connection_bytes: Option<f64>,
    server_cpu_secs_while_held: Option<f64>,
    loadgen_rss_mib: Option<f64>,
    machine: Machine,
    errors: Vec<String>,
}

async fn idle(a: IdleArgs) -> anyhow::Result<()> {
    let c = &a.common;
    let p = prepare(c, &nodes::NodeArgs::default(), a.connections, 0).await?;
    let before = procfs::sample_both(c.server_pid);
    let fleet = open_fleet(&p, c, a.connections).await;
    tokio::time::sleep(Duration::from_secs(c.settle)).await;
    let connected = procfs::sample_both(c.server_pid);
    eprintln!("holding {} connections for {} s", fleet.opened, a.hold);
    tokio::time::sleep(Duration::from_secs(a.hold)).await;
    let after = procfs::sample_both(c.server_pid);
    let _ = fleet.stop.send(true);
    let summary = IdleSummary {
        mode: "idle",
        server: server_name(c, &p),
        dialect: p.dialects[0].name(),
        connections: a.connections,
        opened: fleet.opened,
        open_failed: fleet.failed,
        open_secs: fleet.open_secs,
        held_secs: a.hold,
        dropped_connections: fleet.recorder.count(&fleet.recorder.counters.dropped),
        server_rss_before_mib: before.server.map(|s| mib(s.rss_bytes)),
        server_rss_connected_mib: connected.server.map(|s| mib(s.rss_bytes)),
        server_rss_per_connection_bytes: match (before.server, connected.server) {
            (Some(x), Some(y)) => rss_per_connection(x.rss_bytes, y.rss_bytes, fleet.opened),
            _ => None,
        },
        server_cpu_secs_while_held: match (connected.server, after.server) {
            (Some(x), Some(y)) => Some(y.cpu_secs - x.cpu_secs),
            _ => None,
        },
        loadgen_rss_mib: connected.me.map(|s| mib(s.rss_bytes)),
        machine: Machine::now(c.server_pid, p.target.sources.len()),
        errors: fleet
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
    };
    println!(
        "== liveplan-loadgen idle: {} connections over {} ==",
        a.connections, summary.dialect
    );
    println!(
        "connections      {} opened, {} failed, in {:.1} s; {} dropped while held {} s",
        summary.opened, summary.open_failed, summary.open_secs, summary.dropped_connections, a.hold
    );
    println!(
        "server RSS       {} before, {} connected → {} per connection",
        opt(summary.server_rss_before_mib, "MiB", 1),
        opt(summary.server_rss_connected_mib, "MiB", 1),
        opt(summary.server_rss_per_connection_bytes, "B", 0)
    );
    println!(
        "server CPU       {} while held",
        opt(summary.server_cpu_secs_while_held, "s", 2)
    );
    println!(
        "loadgen RSS      {}",
        opt(summary.loadgen_rss_mib, "MiB", 1)
    );
    for e in &summary.errors {
        println!("error            {e}");
    }
    println!(
        "{}",
        serde_json::to_string(&serde_json::json!({ "liveplan_loadgen": summary }))?
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Bryntum publisher and subscribers against a real liveplan on port 0: every revision
    /// reaches every subscriber, in order, and is timed.
    #[test]
    fn bryntum_revisions_reach_every_bryntum_subscriber_of_a_real_server() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut config = liveplan_server::Config::new(dir.path().to_path_buf());
        config.scheduler = false;
        config.admin_email = Some("root@loadgen.test".into());
        config.admin_password = Some("root-password-0123".into());
        let summary = runtime.block_on(async {
            let server = liveplan_server::start(config, "127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            let url = format!("http://{}", server.address);
            let cli = Cli::try_parse_from([
                "liveplan-loadgen",
                "run",
                "--server",
                &url,
                "--admin-email",
                "root@loadgen.test",
                "--admin-password",
                "root-password-0123",
                "--dialect",
                "bryntum",
                "--publisher",
                "bryntum",
                "-n",
                "6",
                "--per-user",
                "3",
                "-r",
                "20",
                "-d",
                "1",
                "--tasks",
                "3",
                "--baseline",
                "0",
                "--settle",
                "1",
                "--source-addrs",
                "1",
            ])
            .unwrap();
            let Command::Run(args) = cli.command else {
                unreachable!()
            };
            args.check().unwrap();
            let summary = run(args).await.unwrap();
            server.shutdown().await.unwrap();
            summary
        });
        assert_eq!(summary.publisher, "bryntum");
        assert_eq!(summary.opened, 6, "{:?}", summary.errors);
        assert_eq!(summary.published_ok, 20, "{:?}", summary.errors);
        assert_eq!(summary.delivered, 6 * 20, "{:?}", summary.errors);
        assert_eq!(summary.rest_round_trip.count, 20);
        assert_eq!(summary.latency.count, 6 * 20);
        assert_eq!((summary.gaps, summary.duplicates), (0, 0));
        assert_eq!(summary.dropped_connections, 0);
        assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    }
}
