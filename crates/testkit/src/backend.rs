//! Which database a test's server runs on, chosen by `LIVEPLAN_TEST_DATABASE_URL`:
//!
//! - unset or empty: SQLite in a fresh temporary directory (the default, and all there is today);
//! - `postgres://…` / `postgresql://…`: the PostgreSQL backend, one fresh database per test.
//!   The server cannot run on PostgreSQL yet, so this refuses with a message saying so; the
//!   seam is [`Backend::from_env`], which is where a fresh database will be created and named
//!   in the server's configuration.
//!
//! Every backend keeps a temporary data directory: attachments live on disk whatever holds
//! the rows.

use std::path::{Path, PathBuf};

pub const DATABASE_URL_VAR: &str = "LIVEPLAN_TEST_DATABASE_URL";

/// The storage of one test's server; it outlives restarts and is removed when dropped.
pub struct Backend {
    dir: tempfile::TempDir,
}

impl Backend {
    /// The backend the environment asks for. Panics with the reason when it cannot be had:
    /// a test run that asked for PostgreSQL must not quietly run on SQLite.
    pub fn from_env() -> Backend {
        let url = std::env::var(DATABASE_URL_VAR).unwrap_or_default();
        let url = url.trim();
        if !url.is_empty() {
            if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                panic!(
                    "{DATABASE_URL_VAR} asks for PostgreSQL, but the server has no PostgreSQL \
                     backend yet; unset it to run on SQLite"
                );
            }
            panic!("{DATABASE_URL_VAR} must be empty (SQLite) or a postgres:// URL");
        }
        Backend {
            dir: tempfile::tempdir().expect("a temporary data directory"),
        }
    }

    /// The server's data directory (`Config::data_dir`).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The SQLite database file, for the few tests that check what is (not) in it on disk.
    pub fn sqlite_file(&self) -> PathBuf {
        self.dir.path().join("liveplan.db")
    }
}
