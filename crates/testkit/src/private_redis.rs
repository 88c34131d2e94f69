//! [`PrivateRedis`]: a `redis-server` of the test's own on a free port of 127.0.0.1, with no
//! persistence (`--save "" --appendonly no`), in a temporary directory, run as the current
//! user, that the test can stop, kill and start again on the same port: for the tests of a
//! cluster whose Redis goes away (`tests/many_nodes.rs`).
//!
//! Debian's `redis-server` package provides the binary (`scripts/test.sh` installs it);
//! `LIVEPLAN_TEST_REDIS_SERVER` may name another (Valkey's `valkey-server` takes the same
//! arguments).

use crate::GUARD;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REDIS_SERVER_VAR: &str = "LIVEPLAN_TEST_REDIS_SERVER";

pub struct PrivateRedis {
    program: String,
    /// Its working directory and log; removed on drop.
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts a new server and waits until it answers `PING`. Panics with the reason (and the
    /// server's log) when it cannot.
    pub fn start() -> PrivateRedis {
        let program = std::env::var(REDIS_SERVER_VAR)
            .ok()
            .filter(|p| !p.trim().is_empty())
            .unwrap_or_else(|| "redis-server".into());
        let mut redis = PrivateRedis {
            program,
            dir: tempfile::tempdir().expect("a temporary directory"),
            port: free_port(),
            child: None,
        };
        redis.start_again();
        redis
    }

    /// `redis://127.0.0.1:<port>`: what `--redis-url` is given.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts it (again) on the same port, as an empty server (nothing is persisted), and waits
    /// until it answers `PING`, at most [`GUARD`].
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        let log = self.dir.path().join("redis.log");
        let port = self.port.to_string();
        let started = Instant::now();
        // The port may still be held for a moment by the process just killed: retry the start.
        loop {
            let mut child = Command::new(&self.program)
                .args([
                    "--port",
                    &port,
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--logfile",
                    log.to_str().expect("a UTF-8 temporary path"),
                ])
                .current_dir(self.dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot run {} ({e}): install Debian's redis-server package",
                        self.program
                    )
                });
            let ready = wait_ready(self.address(), &mut child, started + GUARD);
            if ready {
                self.child = Some(child);
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
            if Instant::now() >= started + GUARD {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("redis-server did not start on port {port} within {GUARD:?}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it the polite way (SIGTERM: it closes its clients' connections and exits).
    pub fn stop(&mut self) {
        self.signal("-TERM");
    }

    /// Kills it (SIGKILL): connections are cut with no goodbye, as in a crash.
    pub fn kill(&mut self) {
        self.signal("-KILL");
    }

    /// Stops it and starts it again on the same port (an empty server).
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    fn signal(&mut self, signal: &str) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status();
        let deadline = Instant::now() + GUARD;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
            }
        }
    }

    /// Sends one command (`args`, the command's name first) and returns the raw reply's first
    /// line (`:2`, `+OK`, `$5`, …): for a test that looks at, or meddles with, what the cluster
    /// keeps in Redis.
    pub fn command(&self, args: &[&str]) -> String {
        let mut stream = TcpStream::connect_timeout(&self.address(), GUARD).expect("connect");
        stream.set_read_timeout(Some(GUARD)).unwrap();
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        stream.write_all(&request).expect("send");
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        while !reply.ends_with(b"\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => reply.push(byte[0]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&reply).trim_end().to_string()
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether the server at `address` answers `PING` before `deadline`; `false` at once when the
/// process exited (the port was taken, say).
fn wait_ready(address: SocketAddr, child: &mut Child, deadline: Instant) -> bool {
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        if ping(address) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn ping(address: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}
