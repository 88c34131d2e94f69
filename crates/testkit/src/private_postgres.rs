//! [`PrivatePostgres`]: a PostgreSQL server of the test's own, in a temporary directory on a
//! free port of 127.0.0.1, that the test can stop (as a crash does) and start again: for the
//! tests of what the node does while its database is gone (`tests/store_faults.rs`).
//!
//! It runs Debian's `initdb` and `pg_ctl` (`/usr/lib/postgresql/<version>/bin`, the newest
//! found, else from `PATH`). Both refuse to run as root, so under root they run as the
//! `postgres` user (`runuser`), in a directory given to it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The bound on `pg_ctl start` and `stop` (`--timeout`, in seconds).
const PG_CTL_TIMEOUT_SECS: u64 = 60;

pub struct PrivatePostgres {
    bin: PathBuf,
    /// Holds the cluster (`data`), its socket and its log; removed on drop.
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
    running: bool,
}

impl PrivatePostgres {
    /// Where `initdb` is, or why there is none.
    pub fn binaries() -> Result<PathBuf, String> {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = entry.path().join("bin");
                bin.join("initdb").is_file().then_some((version, bin))
            })
            .collect();
        versions.sort();
        if let Some((_, bin)) = versions.pop() {
            return Ok(bin);
        }
        let on_path = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .find(|dir| dir.join("initdb").is_file());
        on_path.ok_or_else(|| {
            "no initdb in /usr/lib/postgresql/*/bin or on PATH (Debian's postgresql package)"
                .to_string()
        })
    }

    /// Makes a new cluster (user `postgres`, trust authentication, 127.0.0.1 only) and starts
    /// it. Panics with the tool's output when that fails.
    pub fn start() -> PrivatePostgres {
        let bin = Self::binaries().unwrap_or_else(|why| panic!("{why}"));
        let dir = tempfile::tempdir().expect("a temporary directory");
        let as_postgres = is_root();
        if as_postgres {
            let (uid, gid) = postgres_ids();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("giving the directory to postgres");
        }
        let mut server = PrivatePostgres {
            bin,
            dir,
            port: free_port(),
            as_postgres,
            running: false,
        };
        let data = server.data();
        server.run(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        server.start_again();
        server
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops it at once, as a crash or a power cut would (`pg_ctl stop -m immediate`): no
    /// transaction gets to finish, every connection is cut, and the next start recovers from
    /// the write-ahead log.
    pub fn kill(&mut self) {
        let data = self.data();
        self.run(
            "pg_ctl",
            &[
                "stop",
                "-D",
                path_str(&data),
                "-m",
                "immediate",
                "-w",
                "-t",
                &PG_CTL_TIMEOUT_SECS.to_string(),
            ],
        );
        self.running = false;
    }

    /// Writes out everything committed so far (`CHECKPOINT`), commits made with
    /// `synchronous_commit=off` included, so a crash after it loses only later ones.
    pub async fn checkpoint(&self) {
        use sqlx::Connection;
        let work = async {
            let mut conn = sqlx::PgConnection::connect(&self.url()).await.unwrap();
            sqlx::query("CHECKPOINT").execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        };
        tokio::time::timeout(crate::GUARD, work)
            .await
            .expect("the checkpoint ends in time");
    }

    /// Starts it (again) on the same port and waits until it accepts connections.
    pub fn start_again(&mut self) {
        let data = self.data();
        let log = self.dir.path().join("postgres.log");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            path_str(self.dir.path())
        );
        self.run(
            "pg_ctl",
            &[
                "start",
                "-D",
                path_str(&data),
                "-l",
                path_str(&log),
                "-o",
                &options,
                "-w",
                "-t",
                &PG_CTL_TIMEOUT_SECS.to_string(),
            ],
        );
        self.running = true;
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs one of the server's tools, as `postgres` under root; panics with its output when it
    /// fails (the server's log included, which says why a start failed).
    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        // The tools' own timeouts (`-t`) bound them; initdb finishes on its own.
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("running {tool}: {e}"));
        if !output.status.success() {
            let log =
                std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default();
            panic!(
                "{tool} {args:?} failed: {}\n{}{}\nserver log:\n{log}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
            );
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            // A test that panicked leaves it running: stop it before its files go. A failure
            // here must not panic during a panic; the directory goes anyway.
            let data = self.data();
            let program = self.bin.join("pg_ctl");
            let args = ["stop", "-D", path_str(&data), "-m", "immediate", "-w"];
            let mut command = if self.as_postgres {
                let mut command = Command::new("runuser");
                command.args(["-u", "postgres", "--"]).arg(&program);
                command
            } else {
                Command::new(&program)
            };
            let _ = command.args(args).output();
        }
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a temporary path in UTF-8")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// The `postgres` user's uid and gid, from `id`.
fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("running id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("the postgres user exists (Debian's postgresql package makes it)")
    };
    (id("-u"), id("-g"))
}

/// A port nobody listens on now. Another process could take it before the server does; the
/// start then fails loudly, which is rare enough for a test.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}
