//! The real third-party JavaScript clients the tests drive (`crates/server/tests/node/`): making
//! their packages ready, and a Node script spoken to in JSON lines (commands in on stdin, what
//! its clients saw out on stdout).

use crate::GUARD;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The folder of the tests' Node packages.
pub fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../server/tests/node")
}

/// Whether the tests' Node packages can be used: `false` (with a loud message naming `what`,
/// which is skipped) when npm is missing; installs them (`npm install`, from the lockfile) when
/// one of `modules` is not there yet. One install at a time in a test binary: its tests run
/// side by side and would otherwise write `node_modules` together.
pub async fn npm_ready(modules: &[&str], what: &str) -> bool {
    static INSTALL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let npm = Command::new("npm").arg("--version").output().await;
    if !npm.is_ok_and(|o| o.status.success()) {
        eprintln!("\n!!!!!!!!\n!!! SKIPPED {what}: npm is not installed.\n!!!!!!!!\n");
        return false;
    }
    let dir = node_dir();
    let _one_at_a_time = INSTALL.lock().await;
    if modules
        .iter()
        .any(|module| !dir.join("node_modules").join(module).exists())
    {
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .await
            .expect("npm install runs");
        assert!(status.success(), "npm install in tests/node failed");
    }
    true
}

/// `node script` in [`node_dir`] with piped stdin and stdout, killed when dropped.
pub fn spawn_script(script: &str) -> Child {
    Command::new("node")
        .arg(script)
        .current_dir(node_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs")
}

/// A Node script of [`node_dir`] that takes JSON commands, one a line, and prints JSON lines.
pub struct NodeDriver {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// Lines read while waiting for others, oldest first.
    pub seen: Vec<Value>,
}

impl NodeDriver {
    /// Starts `script` and waits for its `{"type":"ready"}` line.
    pub async fn start(script: &str) -> NodeDriver {
        let mut child = spawn_script(script);
        let mut driver = NodeDriver {
            stdin: child.stdin.take().expect("stdin"),
            lines: BufReader::new(child.stdout.take().expect("stdout")).lines(),
            child,
            seen: Vec::new(),
        };
        driver.expect(|line| line["type"] == "ready").await;
        driver
    }

    pub async fn send(&mut self, command: Value) {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .expect("the driver reads");
    }

    /// The first line (seen already, or next within [`GUARD`]) for which `wanted` holds.
    pub async fn expect(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.seen.iter().position(&wanted) {
            return self.seen.remove(i);
        }
        let deadline = tokio::time::Instant::now() + GUARD;
        loop {
            let line = match tokio::time::timeout_at(deadline, self.lines.next_line()).await {
                Ok(line) => line.expect("driver output").expect("the driver is running"),
                Err(_) => panic!("not seen in time; seen instead: {:?}", self.seen),
            };
            let value: Value = serde_json::from_str(&line).expect("a JSON line");
            assert_ne!(value["type"], "error", "the driver failed: {value}");
            if wanted(&value) {
                return value;
            }
            self.seen.push(value);
        }
    }

    /// Kills the script (its sockets drop without a close).
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// Runs the real `pusher` server SDK (`pusher-sdk.cjs`) once: `ops` against the app of
/// `credentials` on the node at `port`; one answer per op.
pub async fn pusher_sdk(
    credentials: &liveplan_server::pusher::credentials::PusherCredentials,
    port: u16,
    ops: Vec<Value>,
) -> Vec<Value> {
    let config = serde_json::json!({
        "appId": credentials.app_id,
        "key": credentials.key,
        "secret": credentials.secret,
        "host": "127.0.0.1",
        "port": port,
    });
    let count = ops.len();
    let mut child = spawn_script("pusher-sdk.cjs");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(
            serde_json::json!({ "config": config, "ops": ops })
                .to_string()
                .as_bytes(),
        )
        .await
        .expect("the SDK reads");
    drop(stdin);
    let output = tokio::time::timeout(GUARD * 2, child.wait_with_output())
        .await
        .expect("the SDK finishes in time")
        .expect("its output");
    assert!(output.status.success(), "node failed");
    let answers: Vec<Value> = String::from_utf8(output.stdout)
        .expect("UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(answers.len(), count, "{answers:?}");
    answers
}
