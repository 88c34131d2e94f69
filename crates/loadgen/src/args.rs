//! The command line, and the checks that keep every run bounded and on this machine.
//!
//! Over 800 lines on purpose: every flag sits next to the bound that keeps it safe (counts,
//! rates, durations, loopback-only addresses); split up, a flag could lose its check unseen.

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

/// Upper bounds. They exist so that a typo cannot turn the load generator into a denial of
/// service against the machine it runs on; raise them deliberately if a bigger box needs it.
pub const MAX_CONNECTIONS: usize = 200_000;
pub const MAX_RATE: u32 = 10_000;
pub const MAX_SECS: u64 = 3_600;
/// 127.0.0.2 ..= 127.0.0.251: enough source addresses for ~7 million connections.
pub const MAX_SOURCE_ADDRS: usize = 250;
/// The first source address unless `--source-base` names another.
pub const DEFAULT_SOURCE_BASE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

#[derive(Parser, Debug)]
#[command(
    name = "liveplan-loadgen",
    version,
    about = "Opens many live subscribers on one liveplan project (or on a project of another server \
             speaking Bryntum's protocol), publishes changes through the REST API or as Bryntum \
             revisions and measures delivery latency, server CPU per delivery and RSS per \
             connection. Loopback targets only (or, with a private --source-base, a private \
             address from a network namespace of its own: two emulated hosts on this machine)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Subscribers plus a publisher: latency, deliveries/s, CPU per delivery, RSS per connection.
    Run(RunArgs),
    /// Open connections and hold them without publishing: RSS per idle connection.
    Idle(IdleArgs),
    /// Make the project, tasks and member users only, and write them to a state file for
    /// `run`/`idle --state`: restart the server in between so its RSS is not inflated by the
    /// password hashing of the setup.
    Prepare(PrepareArgs),
    /// No server: write a frame to each of N loopback connections R times a second, one write
    /// per connection and frame, and report the writer's CPU per write, the floor under any
    /// server's CPU per delivery on this machine.
    Floor(FloorArgs),
    /// Committed changes per second through HTTP: N closed-loop writers on P projects.
    Writers(crate::writers::WritersArgs),
    /// y-websocket whiteboards (liveplan, `@y/websocket-server` or hocuspocus): relay latency
    /// and server CPU per delivered update, RSS per open board, or the load of a big document.
    Whiteboards(crate::whiteboards::WhiteboardArgs),
    /// The reading end of `floor` (started by it).
    #[command(hide = true)]
    FloorSink,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum DialectName {
    /// Native WebSocket, `/ws/v1/projects/{id}/?ticket=…` (CONTRACT §6).
    Ws,
    /// Server-Sent Events, `/api/v1/projects/{id}/events` with a Bearer token (CONTRACT §7).
    Sse,
    /// The Bryntum Gantt WebSocket `/ws/v1/bryntum`, ticket login + `dataset` (CONTRACT §8).
    Bryntum,
    /// Pusher Channels protocol 7 on another server (soketi): `/app/{key}` of each `--node`,
    /// one public channel; changes through the HTTP API of `--publish-url`. Needs
    /// `--pusher-app`; implies `--publisher pusher`.
    Pusher,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum PublisherName {
    /// `PATCH /api/v1/projects/{id}/tasks/{task}` with `X-Tab-Id` (liveplan only).
    Rest,
    /// A Bryntum socket sending `project_change` revisions, as a Bryntum Gantt client does.
    Bryntum,
    /// Signed `POST /apps/{id}/events` of the Pusher HTTP API (with `--dialect pusher`).
    Pusher,
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Base URL of the server; must be a loopback address (see `--source-base` for the one
    /// exception).
    #[arg(long, env = "LIVEPLAN_URL", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Other nodes of `--server`'s cluster (comma-separated base URLs, loopback like
    /// `--server`): the subscribers are spread over them round robin instead of connecting to
    /// `--server`, while setup and the REST publisher stay on `--server`, so every delivery
    /// crosses nodes (CONTRACT §9). Native WebSocket and SSE subscribers only.
    #[arg(long, value_delimiter = ',')]
    pub subscriber_servers: Vec<String>,
    /// A system administrator (the server's bootstrap admin): creates the project and users.
    /// Not needed with `--state` or `--bryntum-server`.
    #[arg(long, env = "LIVEPLAN_ADMIN_EMAIL")]
    pub admin_email: Option<String>,
    #[arg(long, env = "LIVEPLAN_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// What the subscribers speak (default `ws`; `bryntum` with `--bryntum-server`).
    #[arg(long, value_enum)]
    pub dialect: Option<DialectName>,
    /// Drive another server that speaks Bryntum's gantt-websocket-server protocol at this
    /// `ws://host:port[/path]` instead of liveplan (e.g. Bryntum's own demo server), with the
    /// same subscriber and publisher code: no REST setup, subscribers log in by name and
    /// password, the changes are `project_change` revisions. Implies `--dialect bryntum` and
    /// `--publisher bryntum`; `--server` is then ignored.
    #[arg(long)]
    pub bryntum_server: Option<String>,
    /// The project to load on a `--bryntum-server` (a number is sent as a JSON number, as the
    /// demo server's ids are).
    #[arg(long, default_value = "1")]
    pub bryntum_project: String,
    /// Password of the `--bryntum-server` logins; subscriber i logs in as `lg<i / per-user>`,
    /// the publisher as `lg-publisher`. The demo server admits any unknown name with any
    /// password.
    #[arg(long, default_value = "")]
    pub bryntum_password: String,
    /// The app of a Pusher-protocol server (`--dialect pusher`), `id:key:secret`.
    #[arg(long, env = "LOADGEN_PUSHER_APP", hide_env_values = true)]
    pub pusher_app: Option<String>,
    /// Pid of the server, to read its CPU time and RSS from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// A thread doing the server's receive path outside the server process (the kernel thread
    /// polling the server's end of the veth pair, `bench.sh` with `NETNS=napi`): `run` reports
    /// its CPU time beside the server's, per delivery. Repeatable.
    #[arg(long = "server-rx-pid")]
    pub server_rx_pids: Vec<u32>,
    /// How many source addresses (127.0.0.2, 127.0.0.3, …) the subscribers are spread over;
    /// each gives ~28,000 ephemeral ports. Default: enough for the connection count.
    #[arg(long)]
    pub source_addrs: Option<usize>,
    /// The first source address, instead of 127.0.0.2; the others follow it (base + 1, …),
    /// and logins use them too. A private IPv4 base (10/8, 172.16/12, 192.168/16) is for a
    /// load generator in a network namespace of its own, joined to the server's by a veth pair
    /// (`bench.sh` with `NETNS=1`): it lets the server be a private address as well, and only
    /// then, and only in a named network namespace (`ip netns exec`) without a default route.
    #[arg(long)]
    pub source_base: Option<Ipv4Addr>,
    /// Subscribers sharing one user. Tickets are limited to 120 a minute per user and SSE has a
    /// per-user connection cap, so large runs need many users.
    #[arg(long, default_value_t = 100)]
    pub per_user: usize,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 128)]
    pub connect_concurrency: usize,
    /// Seconds to wait after the last connection opened before measuring, so the server's
    /// connection setup (and presence fan-out) has finished; `run` then also waits while
    /// messages still arrive.
    #[arg(long, default_value_t = 3)]
    pub settle: u64,
    /// A state file written by `prepare`: use its project and users instead of making them.
    #[arg(long)]
    pub state: Option<std::path::PathBuf>,
    /// Give up opening connections after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub connect_timeout: u64,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: Common,
    /// Subscribers on the project.
    #[arg(long, short = 'n', default_value_t = 1_000)]
    pub subscribers: usize,
    /// Changes published per second (a task's name: a REST PATCH, or a Bryntum revision).
    #[arg(long, short = 'r', default_value_t = 20)]
    pub rate: u32,
    /// How changes are made: REST PATCHes as the administrator, or `project_change` revisions
    /// from one Bryntum socket (needs `--dialect bryntum`; the only choice with
    /// `--bryntum-server`).
    /// (Default `rest`; `bryntum` with `--bryntum-server`.)
    #[arg(long, value_enum)]
    pub publisher: Option<PublisherName>,
    /// Bryntum publisher sockets, taking the changes in turn: liveplan closes a socket that
    /// sends more than 50 messages a second, so rates above 40/s need more than one.
    #[arg(long, default_value_t = 1)]
    pub bryntum_publishers: usize,
    /// Seconds of publishing.
    #[arg(long, short = 'd', default_value_t = 20)]
    pub duration: u64,
    /// Seconds to wait for the last deliveries after publishing stops.
    #[arg(long, default_value_t = 10)]
    pub drain: u64,
    /// Publish requests in flight at most; a tick finding them all busy is skipped and counted.
    #[arg(long, default_value_t = 64)]
    pub max_in_flight: usize,
    /// Seconds of publishing at the same rate before any subscriber connects, to measure the
    /// server's CPU per write alone; the marginal CPU per delivery subtracts it. 0 skips it.
    #[arg(long, default_value_t = 10)]
    pub baseline: u64,
    /// Tasks the changes rotate over.
    #[arg(long, default_value_t = 16)]
    pub tasks: usize,
    #[command(flatten)]
    pub nodes: crate::nodes::NodeArgs,
}

#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connections to open and hold.
    #[arg(long, short = 'n', default_value_t = 10_000)]
    pub connections: usize,
    /// Seconds to hold them after measuring.
    #[arg(long, default_value_t = 10)]
    pub hold: u64,
}

#[derive(Args, Debug, Clone)]
pub struct PrepareArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connections the state must serve (users = connections / --per-user).
    #[arg(long, short = 'n')]
    pub connections: usize,
    /// Tasks to make for `run` to change.
    #[arg(long, default_value_t = 16)]
    pub tasks: usize,
    /// Where to write the state.
    #[arg(long)]
    pub out: std::path::PathBuf,
}

impl PrepareArgs {
    pub fn check(&self) -> anyhow::Result<()> {
        if self.common.bryntum_server.is_some() {
            bail!("prepare makes liveplan users; a --bryntum-server needs no preparation");
        }
        self.common.check(self.connections)?;
        if self.tasks > 1_000 {
            bail!("--tasks must be ≤ 1000");
        }
        Ok(())
    }
}

/// Where the server is and where connections come from, after validation.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://host:port` (or `ws://host:port` for a `--bryntum-server`) without a trailing
    /// slash.
    pub base: String,
    pub addr: SocketAddr,
    pub sources: Vec<IpAddr>,
}

/// True for addresses that never leave this machine.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Splits `http://host:port[/]` into host and port. Only plain http: the target is loopback.
pub fn parse_base_url(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("--server must start with http:// (got {url:?})"))?;
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') {
        bail!("--server must be http://host:port with no path or credentials (got {url:?})");
    }
    parse_authority(authority, url)
}

/// Splits `ws://host:port[/path]` into host, port and path (`/` when absent). Only plain ws:
/// the target is loopback.
pub fn parse_ws_url(url: &str) -> anyhow::Result<(String, u16, String)> {
    let rest = url
        .strip_prefix("ws://")
        .with_context(|| format!("--bryntum-server must start with ws:// (got {url:?})"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = parse_authority(authority, url)?;
    Ok((host, port, path.to_owned()))
}

fn parse_authority(authority: &str, url: &str) -> anyhow::Result<(String, u16)> {
    if authority.is_empty() || authority.contains('@') {
        bail!("{url:?} must name host:port, with no path or credentials");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .with_context(|| format!("unclosed [ in {url:?}"))?;
        let port = after.strip_prefix(':').unwrap_or("80");
        (host.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), port),
            None => (authority.to_owned(), "80"),
        }
    };
    let port: u16 = port
        .parse()
        .with_context(|| format!("bad port in {url:?}"))?;
    Ok((host, port))
}

/// Resolves the server and refuses anything that is not loopback, so the tool cannot be
/// pointed at someone else's machine; the one exception is a private address reached with a
/// private `--source-base` from a named network namespace without a default route (two
/// emulated hosts on one machine, `bench.sh` with `NETNS=1`).
pub fn resolve_target(url: &str, connections: usize, sources: Sources) -> anyhow::Result<Target> {
    let (host, port) = parse_base_url(url)?;
    resolve(url, "http", &host, port, connections, sources)
}

/// [`resolve_target`] for a `--bryntum-server`; the path is returned beside the target, whose
/// `base` is `ws://host:port`.
pub fn resolve_ws_target(
    url: &str,
    connections: usize,
    sources: Sources,
) -> anyhow::Result<(Target, String)> {
    let (host, port, path) = parse_ws_url(url)?;
    Ok((resolve(url, "ws", &host, port, connections, sources)?, path))
}

/// `--source-addrs` and `--source-base`: how many source addresses, from which.
#[derive(Copy, Clone, Debug, Default)]
pub struct Sources {
    pub count: Option<usize>,
    pub base: Option<Ipv4Addr>,
}

/// The targets a run may have: loopback, or, with a private `--source-base`, a private IPv4
/// address (a veth peer in another network namespace of this machine).
fn allowed_target(ip: IpAddr, source_base: Option<Ipv4Addr>) -> bool {
    match source_base {
        Some(base) if base.is_private() => matches!(ip, IpAddr::V4(v4) if v4.is_private()),
        _ => is_loopback(ip),
    }
}

/// True when this process runs in a named network namespace (`ip netns add`, found in
/// /run/netns as `ip netns identify` finds it) that has no IPv4 default route: the bench
/// script's `ip netns exec`, where only directly connected subnets (its veth) can be reached.
/// Anything unreadable counts as false.
fn in_isolated_network_namespace() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(own) = std::fs::metadata("/proc/self/ns/net") else {
        return false;
    };
    let named = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| {
            std::fs::metadata(entry.path())
                .is_ok_and(|ns| ns.dev() == own.dev() && ns.ino() == own.ino())
        });
    // /proc/self/net/route: a header, then one line per route; the destination is column 2.
    let default_route = std::fs::read_to_string("/proc/self/net/route").map_or(true, |routes| {
        routes
            .lines()
            .skip(1)
            .any(|route| route.split_whitespace().nth(1) == Some("00000000"))
    });
    named && !default_route
}

fn resolve(
    url: &str,
    scheme: &str,
    host: &str,
    port: u16,
    connections: usize,
    sources: Sources,
) -> anyhow::Result<Target> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .collect();
    if addrs.is_empty() || addrs.iter().any(|a| !allowed_target(a.ip(), sources.base)) {
        bail!(
            "refusing {url}: the load generator only targets loopback addresses (127.0.0.0/8, \
             ::1), or private IPv4 ones with a private --source-base"
        );
    }
    if addrs.iter().any(|a| !is_loopback(a.ip())) && !in_isolated_network_namespace() {
        bail!(
            "refusing {url}: a private target is only allowed from a named network namespace \
             without a default route (`ip netns exec`, as bench.sh NETNS=1 does)"
        );
    }
    // Prefer IPv4: only 127.0.0.0/8 offers several source addresses.
    let addr = addrs
        .iter()
        .copied()
        .find(SocketAddr::is_ipv4)
        .unwrap_or(addrs[0]);
    let sources = source_addresses(addr.ip(), connections, sources)?;
    let bracketed = match addr.ip() {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    Ok(Target {
        base: format!("{scheme}://{bracketed}:{port}"),
        addr,
        sources,
    })
}

/// Ephemeral ports a single source address can use towards one server (the default
/// `ip_local_port_range` 32768–60999), with some headroom for the REST client.
const PORTS_PER_SOURCE: usize = 25_000;

/// Source address `i` counting from `base` (127.0.0.2 by default): `base + i`, if that is
/// still an address of the same kind (loopback, or private).
pub fn nth_source(base: Ipv4Addr, i: usize) -> anyhow::Result<IpAddr> {
    let ip = u32::try_from(i)
        .ok()
        .and_then(|i| u32::from(base).checked_add(i))
        .map(Ipv4Addr::from)
        .filter(|ip| ip.is_loopback() == base.is_loopback() && ip.is_private() == base.is_private())
        .with_context(|| format!("source address {base} + {i} leaves {base}'s range"))?;
    Ok(IpAddr::V4(ip))
}

/// The source addresses 127.0.0.2, 127.0.0.3, … or `--source-base`, `--source-base` + 1, …
/// (`::1` alone for an IPv6 server).
pub fn source_addresses(
    server: IpAddr,
    connections: usize,
    sources: Sources,
) -> anyhow::Result<Vec<IpAddr>> {
    let wanted = sources.count;
    if server.is_ipv6() {
        if wanted.is_some_and(|k| k > 1) || sources.base.is_some() {
            bail!("an IPv6 loopback server allows only one source address (::1)");
        }
        return Ok(vec![server]);
    }
    let k = wanted.unwrap_or_else(|| connections.div_ceil(PORTS_PER_SOURCE).max(4));
    if k == 0 || k > MAX_SOURCE_ADDRS {
        bail!("--source-addrs must be 1..={MAX_SOURCE_ADDRS}");
    }
    if connections > k * PORTS_PER_SOURCE {
        bail!(
            "{connections} connections need at least {} source addresses (--source-addrs)",
            connections.div_ceil(PORTS_PER_SOURCE)
        );
    }
    let base = sources.base.unwrap_or(DEFAULT_SOURCE_BASE);
    (0..k).map(|i| nth_source(base, i)).collect()
}

impl Common {
    /// The first source address: `--source-base`, or 127.0.0.2.
    pub fn source_base(&self) -> Ipv4Addr {
        self.source_base.unwrap_or(DEFAULT_SOURCE_BASE)
    }

    /// `--source-addrs` and `--source-base`.
    pub fn sources(&self) -> Sources {
        Sources {
            count: self.source_addrs,
            base: self.source_base,
        }
    }

    pub fn check(&self, connections: usize) -> anyhow::Result<()> {
        if connections == 0 || connections > MAX_CONNECTIONS {
            bail!("the connection count must be 1..={MAX_CONNECTIONS}");
        }
        if self.per_user == 0 || self.per_user > 110 {
            // 120 tickets a minute per user; stay below so a run never waits on the limiter.
            bail!("--per-user must be 1..=110");
        }
        if self.connect_concurrency == 0 || self.connect_concurrency > 4_096 {
            bail!("--connect-concurrency must be 1..=4096");
        }
        if self.settle > 600 || self.connect_timeout == 0 || self.connect_timeout > MAX_SECS {
            bail!("--settle must be ≤ 600 and --connect-timeout 1..={MAX_SECS}");
        }
        let pusher = self.dialect()? == DialectName::Pusher;
        match (&self.pusher_app, pusher) {
            (Some(app), true) => {
                crate::dialect::pusher::App::parse(app)?;
            }
            (None, true) => bail!("--dialect pusher needs --pusher-app id:key:secret"),
            (Some(_), false) => bail!("--pusher-app is for --dialect pusher"),
            (None, false) => {}
        }
        let no_admin = self.admin_email.is_none() || self.admin_password.is_none();
        if self.bryntum_server.is_none() && self.state.is_none() && no_admin && !pusher {
            bail!(
                "--admin-email and --admin-password (or LIVEPLAN_ADMIN_EMAIL/PASSWORD) are needed \
                 to prepare a liveplan server, unless --state names a prepared one"
            );
        }
        Ok(())
    }

    /// The subscribers' dialect once `--bryntum-server` is taken into account.
    pub fn dialect(&self) -> anyhow::Result<DialectName> {
        match (&self.bryntum_server, self.dialect) {
            (None, d) => Ok(d.unwrap_or(DialectName::Ws)),
            (Some(_), None | Some(DialectName::Bryntum)) => Ok(DialectName::Bryntum),
            (Some(_), Some(_)) => bail!("--bryntum-server speaks only --dialect bryntum"),
        }
    }

    /// `--bryntum-project` as the JSON value to send: the demo server compares project ids as
    /// numbers, so a string "1" would not name its project 1.
    pub fn bryntum_project(&self) -> serde_json::Value {
        match self.bryntum_project.parse::<u64>() {
            Ok(n) => n.into(),
            Err(_) => self.bryntum_project.clone().into(),
        }
    }
}

impl RunArgs {
    pub fn check(&self) -> anyhow::Result<()> {
        self.common.check(self.subscribers)?;
        self.nodes.check(
            self.common.bryntum_server.is_some(),
            &self.common.subscriber_servers,
        )?;
        if self.rate == 0 || self.rate > MAX_RATE {
            bail!("--rate must be 1..={MAX_RATE} changes per second");
        }
        if self.duration == 0 || self.duration > MAX_SECS {
            bail!("--duration must be 1..={MAX_SECS} seconds");
        }
        if self.baseline > MAX_SECS {
            bail!("--baseline must be ≤ {MAX_SECS} seconds");
        }
        if self.drain > 600 {
            bail!("--drain must be ≤ 600 seconds");
        }
        if self.tasks == 0 || self.tasks > 1_000 {
            bail!("--tasks must be 1..=1000");
        }
        if self.max_in_flight == 0 || self.max_in_flight > 1_024 {
            bail!("--max-in-flight must be 1..=1024");
        }
        if self.publisher()? == PublisherName::Bryntum {
            if self.bryntum_publishers == 0 || self.bryntum_publishers > 64 {
                bail!("--bryntum-publishers must be 1..=64");
            }
            if self.rate as usize > 40 * self.bryntum_publishers {
                bail!(
                    "{} revisions/s over {} socket(s) is more than liveplan's 50 messages a \
                     second per socket allows with margin: raise --bryntum-publishers",
                    self.rate,
                    self.bryntum_publishers
                );
            }
        }
        Ok(())
    }

    /// The publisher once `--dialect` and `--bryntum-server` are taken into account.
    pub fn publisher(&self) -> anyhow::Result<PublisherName> {
        let dialect = self.common.dialect()?;
        let external = self.common.bryntum_server.is_some();
        match (dialect, self.publisher) {
            (DialectName::Pusher, None | Some(PublisherName::Pusher)) => {
                return Ok(PublisherName::Pusher);
            }
            (DialectName::Pusher, Some(_)) => bail!("--dialect pusher takes --publisher pusher"),
            (_, Some(PublisherName::Pusher)) => bail!("--publisher pusher needs --dialect pusher"),
            _ => {}
        }
        match self.publisher {
            None if external => Ok(PublisherName::Bryntum),
            None => Ok(PublisherName::Rest),
            Some(PublisherName::Rest) if external => {
                bail!("--bryntum-server has no REST API: use --publisher bryntum")
            }
            // Bryntum revisions carry no tab id, so only Bryntum subscribers can time them.
            Some(PublisherName::Bryntum) if dialect != DialectName::Bryntum => {
                bail!("--publisher bryntum needs --dialect bryntum")
            }
            Some(p) => Ok(p),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct FloorArgs {
    /// Connections to write to.
    #[arg(long, short = 'n', default_value_t = 1_000)]
    pub connections: usize,
    /// Frames a second to each connection.
    #[arg(long, short = 'r', default_value_t = 50)]
    pub rate: u32,
    /// Seconds to write for.
    #[arg(long, short = 'd', default_value_t = 20)]
    pub duration: u64,
    /// Bytes per frame (a native WS `task_updated` frame of the `run` workload is ~520).
    #[arg(long, default_value_t = 520)]
    pub size: usize,
    /// CPUs for the sink (e.g. 1), through `taskset`, to keep it off the writer's core.
    #[arg(long)]
    pub sink_cpus: Option<String>,
    /// Send each round's frames through io_uring (tokio-uring: one submission for up to 1,024
    /// sends) instead of one `write` system call each: what batching the system calls of a
    /// fan-out would save.
    #[arg(long)]
    pub io_uring: bool,
}

impl FloorArgs {
    pub fn check(&self) -> anyhow::Result<()> {
        if self.connections == 0 || self.connections > 20_000 {
            bail!("-n must be 1 ..= 20000 (one source address)");
        }
        if self.rate == 0 || self.rate > MAX_RATE {
            bail!("-r must be 1 ..= {MAX_RATE}");
        }
        if self.duration == 0 || self.duration > MAX_SECS {
            bail!("-d must be 1 ..= {MAX_SECS}");
        }
        if self.size == 0 || self.size > 1 << 20 {
            bail!("--size must be 1 ..= 1 MiB");
        }
        Ok(())
    }
}

impl IdleArgs {
    pub fn check(&self) -> anyhow::Result<()> {
        self.common.check(self.connections)?;
        if self.hold > MAX_SECS {
            bail!("--hold must be ≤ {MAX_SECS} seconds");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_loopback() {
        assert!(is_loopback("127.0.0.1".parse().unwrap()));
        assert!(is_loopback("127.9.8.7".parse().unwrap()));
        assert!(is_loopback("::1".parse().unwrap()));
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_loopback("10.0.0.1".parse().unwrap()));
        assert!(!is_loopback("0.0.0.0".parse().unwrap()));
        assert!(!is_loopback("::".parse().unwrap()));
        assert!(!is_loopback("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn base_urls_parse_and_refuse_odd_shapes() {
        assert_eq!(
            parse_base_url("http://127.0.0.1:8080").unwrap(),
            ("127.0.0.1".into(), 8080)
        );
        assert_eq!(
            parse_base_url("http://127.0.0.1:8080/").unwrap(),
            ("127.0.0.1".into(), 8080)
        );
        assert_eq!(parse_base_url("http://[::1]:9").unwrap(), ("::1".into(), 9));
        assert_eq!(
            parse_base_url("http://localhost").unwrap(),
            ("localhost".into(), 80)
        );
        assert!(parse_base_url("https://127.0.0.1:1").is_err());
        assert!(parse_base_url("http://127.0.0.1:1/api").is_err());
        assert!(parse_base_url("http://u:p@127.0.0.1:1").is_err());
        assert!(parse_base_url("http://127.0.0.1:http").is_err());
    }

    #[test]
    fn non_loopback_targets_are_refused() {
        let none = Sources::default();
        assert!(resolve_target("http://10.1.2.3:8080", 10, none).is_err());
        assert!(resolve_target("http://0.0.0.0:8080", 10, none).is_err());
        let t = resolve_target("http://127.0.0.1:8080/", 10, none).unwrap();
        assert_eq!(t.base, "http://127.0.0.1:8080");
        assert!(t.sources.iter().all(|s| is_loopback(*s)));
    }

    #[test]
    fn private_targets_need_a_private_source_base_and_a_namespace_of_their_own() {
        let private = Sources {
            count: None,
            base: Some("10.77.1.1".parse().unwrap()),
        };
        let loopback = Sources {
            count: None,
            base: Some("127.0.0.9".parse().unwrap()),
        };
        assert!(allowed_target("10.77.0.1".parse().unwrap(), private.base));
        assert!(allowed_target("192.168.3.4".parse().unwrap(), private.base));
        assert!(!allowed_target("10.77.0.1".parse().unwrap(), None));
        assert!(!allowed_target("10.77.0.1".parse().unwrap(), loopback.base));
        assert!(allowed_target("127.0.0.1".parse().unwrap(), loopback.base));
        assert!(!allowed_target("8.8.8.8".parse().unwrap(), private.base));
        assert!(!allowed_target("127.0.0.1".parse().unwrap(), private.base));
        assert!(!allowed_target("::1".parse().unwrap(), private.base));
        // Refused unless the test itself runs under `ip netns exec` in an isolated namespace.
        if !in_isolated_network_namespace() {
            assert!(resolve_target("http://10.77.0.1:8080", 10, private).is_err());
        }
        let t = resolve_target("http://127.0.0.1:8080", 10, loopback).unwrap();
        assert_eq!(t.sources[0], "127.0.0.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn sources_cover_the_connection_count() {
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let count = |k| Sources {
            count: Some(k),
            base: None,
        };
        let none = Sources::default();
        let s = source_addresses(v4, 50_000, none).unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(s[0], "127.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(source_addresses(v4, 200_000, none).unwrap().len(), 8);
        assert!(source_addresses(v4, 100_000, count(2)).is_err());
        assert!(source_addresses(v4, 10, count(0)).is_err());
        assert!(source_addresses(v4, 10, count(251)).is_err());
        assert_eq!(
            *source_addresses(v4, 10, count(250))
                .unwrap()
                .last()
                .unwrap(),
            "127.0.0.251".parse::<IpAddr>().unwrap()
        );
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(source_addresses(v6, 10, none).unwrap(), vec![v6]);
        assert!(source_addresses(v6, 10, count(2)).is_err());
        let based = Sources {
            count: Some(3),
            base: Some("10.77.1.254".parse().unwrap()),
        };
        let s = source_addresses("10.77.0.1".parse().unwrap(), 10, based).unwrap();
        let want: Vec<IpAddr> = ["10.77.1.254", "10.77.1.255", "10.77.2.0"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(s, want);
        // Consecutive addresses stay in the base's kind: no walking out of 10/8 or 127/8.
        assert!(nth_source("10.255.255.255".parse().unwrap(), 1).is_err());
        assert!(nth_source("127.255.255.255".parse().unwrap(), 1).is_err());
        assert!(nth_source("255.255.255.255".parse().unwrap(), 1).is_err());
        assert_eq!(
            nth_source(DEFAULT_SOURCE_BASE, 249).unwrap(),
            "127.0.0.251".parse::<IpAddr>().unwrap()
        );
    }

    fn run(extra: &[&str]) -> anyhow::Result<()> {
        let mut argv = vec![
            "liveplan-loadgen",
            "run",
            "--admin-email",
            "a@b.c",
            "--admin-password",
            "x",
        ];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv)?.command {
            Command::Run(args) => args.check(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn runs_are_bounded() {
        assert!(run(&[]).is_ok());
        assert!(run(&["-n", "0"]).is_err());
        assert!(run(&["-n", "200001"]).is_err());
        assert!(run(&["-r", "0"]).is_err());
        assert!(run(&["-r", "10001"]).is_err());
        assert!(run(&["-d", "0"]).is_err());
        assert!(run(&["-d", "3601"]).is_err());
        assert!(run(&["--per-user", "500"]).is_err());
        assert!(run(&["--dialect", "bryntum"]).is_ok());
        assert!(run(&["--dialect", "sse", "-n", "10000", "-r", "50"]).is_ok());
    }

    fn parse_run(argv: &[&str]) -> anyhow::Result<RunArgs> {
        let argv = std::iter::once("liveplan-loadgen")
            .chain(std::iter::once("run"))
            .chain(argv.iter().copied());
        match Cli::try_parse_from(argv)?.command {
            Command::Run(args) => args.check().map(|()| args),
            _ => unreachable!(),
        }
    }

    #[test]
    fn bryntum_publishers_need_bryntum_subscribers() {
        let admin = ["--admin-email", "a@b.c", "--admin-password", "x"];
        let with = |extra: &[&str]| parse_run(&[&admin[..], extra].concat());
        let a = with(&["--dialect", "bryntum", "--publisher", "bryntum"]).unwrap();
        assert_eq!(a.publisher().unwrap(), PublisherName::Bryntum);
        assert_eq!(a.common.dialect().unwrap(), DialectName::Bryntum);
        assert_eq!(
            with(&["--dialect", "bryntum"])
                .unwrap()
                .publisher()
                .unwrap(),
            PublisherName::Rest
        );
        assert_eq!(
            with(&[]).unwrap().common.dialect().unwrap(),
            DialectName::Ws
        );
        // Revisions carry no tab id: native or SSE subscribers could not time them.
        assert!(with(&["--publisher", "bryntum"]).is_err());
        assert!(with(&["--dialect", "sse", "--publisher", "bryntum"]).is_err());
        // One socket may send 50 messages a second on liveplan.
        assert!(with(&["--dialect", "bryntum", "--publisher", "bryntum", "-r", "60"]).is_err());
        let many = [
            "--dialect",
            "bryntum",
            "--publisher",
            "bryntum",
            "-r",
            "60",
            "--bryntum-publishers",
            "2",
        ];
        assert!(with(&many).is_ok());
        assert!(
            with(&[
                "--dialect",
                "bryntum",
                "--publisher",
                "bryntum",
                "--bryntum-publishers",
                "0"
            ])
            .is_err()
        );
    }

    #[test]
    fn an_external_bryntum_server_needs_no_admin_and_speaks_only_bryntum() {
        let a = parse_run(&["--bryntum-server", "ws://127.0.0.1:8090", "-n", "100"]).unwrap();
        assert_eq!(a.common.dialect().unwrap(), DialectName::Bryntum);
        assert_eq!(a.publisher().unwrap(), PublisherName::Bryntum);
        assert_eq!(a.common.bryntum_project(), serde_json::json!(1));
        assert_eq!(a.common.bryntum_password, "");
        let named = parse_run(&[
            "--bryntum-server",
            "ws://127.0.0.1:8090",
            "--bryntum-project",
            "p-7",
        ])
        .unwrap();
        assert_eq!(named.common.bryntum_project(), serde_json::json!("p-7"));
        let external = ["--bryntum-server", "ws://127.0.0.1:8090"];
        assert!(parse_run(&[&external[..], &["--dialect", "ws"]].concat()).is_err());
        assert!(parse_run(&[&external[..], &["--publisher", "rest"]].concat()).is_err());
        assert!(parse_run(&[&external[..], &["--dialect", "bryntum"]].concat()).is_ok());
        // liveplan without --state still needs the administrator.
        if std::env::var_os("LIVEPLAN_ADMIN_EMAIL").is_none() {
            assert!(parse_run(&["-n", "10"]).is_err());
        }
        assert!(parse_run(&["-n", "10", "--state", "/tmp/state.json"]).is_ok());
        let prepare = Cli::try_parse_from([
            "liveplan-loadgen",
            "prepare",
            "-n",
            "10",
            "--out",
            "/tmp/x",
            "--bryntum-server",
            "ws://127.0.0.1:8090",
        ])
        .unwrap();
        match prepare.command {
            Command::Prepare(p) => assert!(p.check().is_err()),
            _ => unreachable!(),
        }
    }

    #[test]
    fn ws_urls_parse_and_stay_on_loopback() {
        assert_eq!(
            parse_ws_url("ws://127.0.0.1:8090").unwrap(),
            ("127.0.0.1".into(), 8090, "/".into())
        );
        assert_eq!(
            parse_ws_url("ws://[::1]:9/ws/v1/bryntum").unwrap(),
            ("::1".into(), 9, "/ws/v1/bryntum".into())
        );
        assert!(parse_ws_url("http://127.0.0.1:8090").is_err());
        assert!(parse_ws_url("wss://127.0.0.1:8090").is_err());
        assert!(parse_ws_url("ws://u:p@127.0.0.1:8090").is_err());
        let none = Sources::default();
        assert!(resolve_ws_target("ws://10.0.0.1:8090", 10, none).is_err());
        let (t, path) = resolve_ws_target("ws://127.0.0.1:8090/x", 10, none).unwrap();
        assert_eq!(t.base, "ws://127.0.0.1:8090");
        assert_eq!(path, "/x");
    }

    #[test]
    fn floor_runs_are_bounded() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["liveplan-loadgen", "floor"];
            argv.extend_from_slice(extra);
            match Cli::try_parse_from(argv).unwrap().command {
                Command::Floor(f) => f,
                _ => unreachable!(),
            }
        };
        let defaults = parse(&[]);
        assert!(defaults.check().is_ok());
        assert_eq!(
            (defaults.connections, defaults.rate, defaults.size),
            (1_000, 50, 520)
        );
        for bad in [
            &["-n", "0"][..],
            &["-n", "20001"],
            &["-r", "0"],
            &["-d", "0"],
            &["--size", "0"],
            &["--size", "2000000"],
        ] {
            assert!(parse(bad).check().is_err(), "{bad:?}");
        }
    }
}
