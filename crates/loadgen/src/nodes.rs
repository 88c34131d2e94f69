//! `run` across the nodes of one liveplan cluster (issue 16): subscribers spread round-robin
//! over several node URLs, changes published through one of them (or another), latency reported
//! per node and overall, and the server CPU summed over the node processes.

use crate::args::{self, Sources};
use crate::stats::Latency;
use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;

/// Nodes a run may spread over, and node processes it may read: a cluster on one machine has
/// a handful; more would be a typo.
pub const MAX_NODES: usize = 16;

#[derive(Args, Debug, Clone, Default)]
pub struct NodeArgs {
    /// A node of a liveplan cluster (`http://host:port`, loopback): subscriber i connects to
    /// node i mod N, minting its ticket there. Repeatable, in order; without it the subscribers
    /// go to `--server`, which is then ignored.
    #[arg(long = "node")]
    pub nodes: Vec<String>,
    /// Where the project, users and changes are made (REST or Bryntum publisher): any node of
    /// the cluster. Default: the first `--node`, else `--server`.
    #[arg(long)]
    pub publish_url: Option<String>,
    /// Pid of a node process: the server CPU per delivery is summed over these (and
    /// `--server-pid`, whose RSS alone is reported). Repeatable.
    #[arg(long = "node-pid")]
    pub node_pids: Vec<u32>,
}

impl NodeArgs {
    /// Refuses what could not be a cluster run on this machine; the addresses themselves are
    /// resolved (and held to loopback) by [`args::resolve_target`] when the run starts.
    pub fn check(&self, bryntum_server: bool, subscriber_servers: &[String]) -> anyhow::Result<()> {
        if !self.nodes.is_empty() && !subscriber_servers.is_empty() {
            bail!("--node and --subscriber-servers say the same thing: give one");
        }
        if subscriber_servers.len() > MAX_NODES {
            bail!("at most {MAX_NODES} --subscriber-servers");
        }
        let spread =
            !self.nodes.is_empty() || self.publish_url.is_some() || !subscriber_servers.is_empty();
        if bryntum_server && spread {
            bail!(
                "--node, --publish-url and --subscriber-servers name liveplan nodes; a \
                 --bryntum-server is one server"
            );
        }
        if self.nodes.len() > MAX_NODES || self.node_pids.len() > MAX_NODES {
            bail!("at most {MAX_NODES} --node and {MAX_NODES} --node-pid");
        }
        let mut seen = std::collections::HashSet::new();
        for url in &self.nodes {
            let authority = args::parse_base_url(url).with_context(|| format!("--node {url:?}"))?;
            if !seen.insert(authority) {
                bail!("--node {url} is given twice");
            }
        }
        // The publish URL may be one of the nodes.
        if let Some(url) = &self.publish_url {
            args::parse_base_url(url).with_context(|| format!("--publish-url {url:?}"))?;
        }
        if self.node_pids.contains(&0) {
            bail!("--node-pid 0 is not a process");
        }
        Ok(())
    }

    /// The URL changes are published through, if not `--server`.
    pub fn publish_url<'a>(&'a self, server: &'a str) -> &'a str {
        self.publish_url
            .as_deref()
            .or(self.nodes.first().map(String::as_str))
            .unwrap_or(server)
    }

    /// The subscribers' node URLs: `--node`, else `--subscriber-servers` (the same spread with
    /// the publisher on `--server`), else `--server` alone.
    pub fn subscriber_urls<'a>(
        &'a self,
        server: &'a str,
        subscriber_servers: &'a [String],
    ) -> Vec<&'a str> {
        match (self.nodes.as_slice(), subscriber_servers) {
            ([], []) => vec![server],
            ([], spread) | (spread, _) => spread.iter().map(String::as_str).collect(),
        }
    }

    /// The processes whose CPU is the server's, each once (`--server-pid` is usually one of
    /// the nodes too).
    pub fn cpu_pids(&self, server_pid: Option<u32>) -> Vec<u32> {
        let mut pids: Vec<u32> = Vec::new();
        for pid in server_pid.into_iter().chain(self.node_pids.iter().copied()) {
            if !pids.contains(&pid) {
                pids.push(pid);
            }
        }
        pids
    }
}

/// The node subscriber `index` connects to.
pub fn node_of(index: usize, nodes: usize) -> usize {
    index % nodes.max(1)
}

/// Each node's subscribers' targets, checked like `--server` (loopback only).
pub fn resolve_nodes(
    urls: &[&str],
    connections: usize,
    sources: Sources,
) -> anyhow::Result<Vec<args::Target>> {
    urls.iter()
        .map(|url| args::resolve_target(url, connections, sources))
        .collect()
}

/// One node's share of a run.
#[derive(Debug, Serialize)]
pub struct NodeSummary {
    pub url: String,
    pub subscribers: usize,
    /// Deliveries of our changes timed on this node's subscribers.
    pub delivered: u64,
    pub latency: Latency,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    fn parse(extra: &[&str]) -> anyhow::Result<crate::args::RunArgs> {
        let argv = ["liveplan-loadgen", "run", "--state", "/tmp/s.json"]
            .into_iter()
            .chain(extra.iter().copied());
        match Cli::try_parse_from(argv)?.command {
            Command::Run(a) => a.check().map(|()| a),
            _ => unreachable!(),
        }
    }

    #[test]
    fn nodes_spread_round_robin_and_publish_through_the_first_unless_told() {
        let a = parse(&[
            "--node",
            "http://127.0.0.1:9001",
            "--node",
            "http://127.0.0.1:9002",
            "--node",
            "http://127.0.0.1:9003",
        ])
        .unwrap();
        let n = &a.nodes;
        assert_eq!(n.subscriber_urls("x", &[]).len(), 3);
        assert_eq!(
            n.publish_url("http://127.0.0.1:8080"),
            "http://127.0.0.1:9001"
        );
        assert_eq!(
            (0..6).map(|i| node_of(i, 3)).collect::<Vec<_>>(),
            [0, 1, 2, 0, 1, 2]
        );
        let b = parse(&[
            "--node",
            "http://127.0.0.1:9002",
            "--publish-url",
            "http://127.0.0.1:9001",
            "--node-pid",
            "6",
            "--node-pid",
            "7",
            "--node-pid",
            "8",
            "--server-pid",
            "6",
        ])
        .unwrap();
        assert_eq!(b.nodes.publish_url("s"), "http://127.0.0.1:9001");
        assert_eq!(b.nodes.cpu_pids(b.common.server_pid), [6, 7, 8]);
        // Without --node, all goes to --server, as before.
        let c = parse(&[]).unwrap();
        assert_eq!(c.nodes.subscriber_urls("http://s:1", &[]), ["http://s:1"]);
        // --subscriber-servers: the same spread, publishing on --server.
        let d = parse(&[
            "--subscriber-servers",
            "http://127.0.0.1:2,http://127.0.0.1:3",
        ])
        .unwrap();
        let spread = &d.common.subscriber_servers;
        assert_eq!(
            d.nodes.subscriber_urls("http://s:1", spread),
            ["http://127.0.0.1:2", "http://127.0.0.1:3"]
        );
        assert_eq!(d.nodes.publish_url("http://s:1"), "http://s:1");
        let both = [
            "--subscriber-servers",
            "http://127.0.0.1:2",
            "--node",
            "http://127.0.0.1:3",
        ];
        assert!(parse(&both).is_err());
        assert_eq!(c.nodes.publish_url("http://s:1"), "http://s:1");
        assert!(c.nodes.cpu_pids(None).is_empty());
    }

    #[test]
    fn node_arguments_are_bounded_and_checked() {
        assert!(parse(&["--node", "https://127.0.0.1:1"]).is_err());
        assert!(parse(&["--node", "http://127.0.0.1:1/api"]).is_err());
        assert!(parse(&["--node", "http://u:p@127.0.0.1:1"]).is_err());
        assert!(parse(&["--publish-url", "127.0.0.1:1"]).is_err());
        assert!(parse(&["--node-pid", "0"]).is_err());
        let twice = [
            "--node",
            "http://127.0.0.1:1",
            "--node",
            "http://127.0.0.1:1/",
        ];
        assert!(parse(&twice).is_err());
        // The publish URL may be one of the nodes.
        let same = [
            "--node",
            "http://127.0.0.1:1",
            "--publish-url",
            "http://127.0.0.1:1",
        ];
        assert!(parse(&same).is_ok());
        let many: Vec<String> = (0..=MAX_NODES)
            .flat_map(|i| ["--node".into(), format!("http://127.0.0.1:{}", 9000 + i)])
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(parse(&many).is_err());
        assert!(parse(&many[2..]).is_ok());
        let pids: Vec<String> = (1..=MAX_NODES + 1)
            .flat_map(|i| ["--node-pid".into(), i.to_string()])
            .collect();
        let pids: Vec<&str> = pids.iter().map(String::as_str).collect();
        assert!(parse(&pids).is_err());
        // A Bryntum-protocol server is one server.
        let external = ["--bryntum-server", "ws://127.0.0.1:8090"];
        assert!(parse(&[&external[..], &["--node", "http://127.0.0.1:1"]].concat()).is_err());
        assert!(
            parse(&[&external[..], &["--publish-url", "http://127.0.0.1:1"]].concat()).is_err()
        );
    }

    #[test]
    fn a_pusher_server_needs_its_app_and_takes_its_own_publisher() {
        use crate::args::PublisherName;
        let app = ["--pusher-app", "lg-app:lg-key:lg-secret"];
        let nodes = [
            "--node",
            "http://127.0.0.1:6001",
            "--node",
            "http://127.0.0.1:6002",
        ];
        let a = parse(&[&["--dialect", "pusher"][..], &app, &nodes].concat()).unwrap();
        assert_eq!(a.publisher().unwrap(), PublisherName::Pusher);
        assert!(parse(&[&["--dialect", "pusher"][..], &nodes].concat()).is_err());
        assert!(
            parse(&app).is_err(),
            "--pusher-app without --dialect pusher"
        );
        assert!(parse(&["--publisher", "pusher"]).is_err());
        let rest = ["--dialect", "pusher", "--publisher", "rest"];
        assert!(parse(&[&rest[..], &app].concat()).is_err());
        let bad_app = ["--dialect", "pusher", "--pusher-app", "lg-app:lg-key"];
        assert!(parse(&bad_app).is_err());
        let external = [
            "--bryntum-server",
            "ws://127.0.0.1:8090",
            "--dialect",
            "pusher",
        ];
        assert!(parse(&[&external[..], &app].concat()).is_err());
    }

    #[test]
    fn nodes_stay_on_loopback() {
        let none = Sources::default();
        assert!(resolve_nodes(&["http://127.0.0.1:1", "http://10.0.0.1:2"], 10, none).is_err());
        let t = resolve_nodes(&["http://127.0.0.1:1", "http://[::1]:2"], 10, none).unwrap();
        assert_eq!(t[1].base, "http://[::1]:2");
    }
}
