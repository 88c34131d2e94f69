//! Which database a test's server runs on, chosen by `LIVEPLAN_TEST_DATABASE_URL`:
//!
//! - unset or empty: SQLite in a fresh temporary directory;
//! - `postgres://…` / `postgresql://…`: the PostgreSQL backend on that server, in a fresh,
//!   uniquely named database per [`Backend`] (so per `TestServer`, which keeps it across
//!   restarts), dropped when the `Backend` is dropped, also when the test panics.
//!
//! Every backend keeps a temporary data directory: attachments live on disk whatever holds
//! the rows.
//!
//! The database is created and dropped on a thread of its own with a runtime of its own, since
//! `Drop` cannot await.

use sqlx::Connection;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

pub const DATABASE_URL_VAR: &str = "LIVEPLAN_TEST_DATABASE_URL";

/// The bound on creating or dropping a test database, connection included.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The storage of one test's server; it outlives restarts and is removed when dropped.
pub struct Backend {
    dir: tempfile::TempDir,
    postgres: Option<PostgresDatabase>,
    /// A PostgreSQL database the test owns itself ([`Backend::at_url`]): used, never dropped.
    given: Option<String>,
}

/// A database of its own on the PostgreSQL server of `LIVEPLAN_TEST_DATABASE_URL`.
struct PostgresDatabase {
    /// The URL of the server's database the test run was given: where `CREATE`/`DROP` run.
    admin_url: String,
    name: String,
    /// `admin_url` with the database replaced by `name`: what the server is given.
    url: String,
}

impl Backend {
    /// The backend the environment asks for. Panics with the reason when it cannot be had:
    /// a test run that asked for PostgreSQL must not quietly run on SQLite.
    pub fn from_env() -> Backend {
        match database_url_from_env() {
            Some(server_url) => Backend::postgres(&server_url),
            None => Backend::sqlite(),
        }
    }

    /// SQLite in a fresh temporary directory, whatever the environment asks for: for a test
    /// about moving data between backends.
    pub fn sqlite() -> Backend {
        let dir = tempfile::tempdir().expect("a temporary data directory");
        Backend {
            dir,
            postgres: None,
            given: None,
        }
    }

    /// A fresh database on the PostgreSQL server `server_url` names (its database is where
    /// `CREATE DATABASE` runs). Panics with the reason when it cannot be made.
    pub fn postgres(server_url: &str) -> Backend {
        let dir = tempfile::tempdir().expect("a temporary data directory");
        let name = format!("liveplan_test_{}", uuid::Uuid::now_v7().simple());
        let url = with_database(server_url, &name);
        administer(server_url, format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("creating the test database {name}: {e}"));
        Backend {
            dir,
            postgres: Some(PostgresDatabase {
                admin_url: server_url.to_string(),
                name,
                url,
            }),
            given: None,
        }
    }

    /// The PostgreSQL database at `url`, which the test made and will remove itself (a private
    /// server it starts and stops, say): nothing is created or dropped here.
    pub fn at_url(url: &str) -> Backend {
        Backend {
            dir: tempfile::tempdir().expect("a temporary data directory"),
            postgres: None,
            given: Some(url.to_string()),
        }
    }

    /// Whether this test runs on PostgreSQL: for the few tests that are about SQLite's file.
    pub fn is_postgres(&self) -> bool {
        self.database_url().is_some()
    }

    /// What `Config::database_url` must be: the fresh PostgreSQL database, or `None` for the
    /// SQLite store in [`Backend::data_dir`].
    pub fn database_url(&self) -> Option<&str> {
        self.postgres
            .as_ref()
            .map(|db| db.url.as_str())
            .or(self.given.as_deref())
    }

    /// The server's data directory (`Config::data_dir`).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether `needle` is stored anywhere in the database: on SQLite anywhere in its file and
    /// its write-ahead log, on PostgreSQL in any column of any row of the store's tables.
    pub async fn stores_text(&self, needle: &str) -> bool {
        match self.database_url() {
            None => {
                let file = self.sqlite_file();
                let mut wal = file.clone().into_os_string();
                wal.push("-wal");
                let db = std::fs::read(&file).expect("the SQLite file");
                let wal = std::fs::read(wal).unwrap_or_default();
                let contains =
                    |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
                contains(&db) || contains(&wal)
            }
            Some(url) => postgres_stores_text(url, needle)
                .await
                .unwrap_or_else(|e| panic!("searching the test database: {e}")),
        }
    }

    /// The SQLite database file, for the few tests that check what is (not) in it on disk.
    pub fn sqlite_file(&self) -> PathBuf {
        self.dir.path().join("liveplan.db")
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let Some(db) = self.postgres.take() else {
            return;
        };
        // FORCE: a server the test leaked (or a panic left running) still holds connections.
        let dropped = administer(
            &db.admin_url,
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db.name),
        );
        if let Err(e) = dropped {
            // Panicking in a drop during a panic aborts the run; a leftover database is only
            // clutter on a test server, so say which one and go on.
            eprintln!("could not drop the test database {}: {e}", db.name);
        }
    }
}

/// Whether the environment asks for PostgreSQL, without creating anything: for tests that
/// must decide before they start a server.
pub fn postgres_requested() -> bool {
    database_url_from_env().is_some()
}

/// The PostgreSQL server for tests that need one whatever backend the run is on (moving data
/// between backends): `LIVEPLAN_TEST_POSTGRES_URL`, else `LIVEPLAN_TEST_DATABASE_URL` when
/// that is one, else the one on 127.0.0.1:5432 as `postgres`, database `test` (as the store's
/// own PostgreSQL tests; `.ci/run` makes sure one runs).
pub fn postgres_server_url() -> String {
    let var = |name| {
        std::env::var(name)
            .ok()
            .filter(|url: &String| !url.trim().is_empty())
    };
    var("LIVEPLAN_TEST_POSTGRES_URL")
        .or_else(database_url_from_env)
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The PostgreSQL server URL of `LIVEPLAN_TEST_DATABASE_URL`, `None` for SQLite.
fn database_url_from_env() -> Option<String> {
    let url = std::env::var(DATABASE_URL_VAR).unwrap_or_default();
    let url = url.trim();
    if url.is_empty() {
        return None;
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Some(url.to_string());
    }
    panic!("{DATABASE_URL_VAR} must be empty (SQLite) or a postgres:// URL");
}

/// `url` with its database (the path's last part) replaced by `name`, its query kept.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    // `postgres://host` has no path: the database is appended after the authority.
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let server = match base[after_scheme..].find('/') {
        Some(slash) => &base[..after_scheme + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

/// Whether any row of any table of the database at `url` holds `needle` in its text form.
async fn postgres_stores_text(url: &str, needle: &str) -> Result<bool, sqlx::Error> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(table_name) FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&mut conn)
    .await?;
    let mut found = false;
    for table in tables {
        // The table's name comes from the catalogue, quoted by the server itself.
        let query =
            format!("SELECT EXISTS (SELECT 1 FROM {table} t WHERE strpos(t::text, $1) > 0)");
        let hit: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(query))
            .bind(needle)
            .fetch_one(&mut conn)
            .await?;
        found |= hit;
    }
    conn.close().await?;
    Ok(found)
}

/// Runs one administrative statement on `admin_url`, on a thread and runtime of its own, bounded
/// by [`ADMIN_TIMEOUT`].
fn administer(admin_url: &str, statement: String) -> Result<(), String> {
    let admin_url = admin_url.to_string();
    let (done, outcome) = mpsc::channel();
    std::thread::spawn(move || {
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|runtime| {
                runtime.block_on(async {
                    let work = async {
                        let mut conn = sqlx::PgConnection::connect(&admin_url).await?;
                        sqlx::query(sqlx::AssertSqlSafe(statement))
                            .execute(&mut conn)
                            .await?;
                        conn.close().await
                    };
                    match tokio::time::timeout(ADMIN_TIMEOUT, work).await {
                        Ok(result) => result.map_err(|e| e.to_string()),
                        Err(_) => Err(format!("no answer within {ADMIN_TIMEOUT:?}")),
                    }
                })
            });
        // The receiver may have given up; nothing is left to tell then.
        let _ = done.send(result);
    });
    outcome
        .recv_timeout(ADMIN_TIMEOUT + Duration::from_secs(5))
        .unwrap_or_else(|_| Err(format!("no answer within {ADMIN_TIMEOUT:?}")))
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_is_replaced_and_the_query_kept() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/test?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgresql://h:1", "x"), "postgresql://h:1/x");
    }
}
