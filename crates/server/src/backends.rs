//! The one place that names the store's backends: a database URL in, a [`Store`] out. Everything
//! else in the server and the domain sees only `Arc<dyn Store>`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use store::{Durability, Store, StoreError};

/// The file name of the embedded store inside the data directory.
pub const SQLITE_FILE: &str = "liveplan.db";

/// How a store is opened beyond its URL.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// `--durability` (CONTRACT §12).
    pub durability: Durability,
    /// SQLite only: where the boot id is read (`/proc/sys/kernel/random/boot_id` when `None`);
    /// tests name a file of their own to simulate a restart of the operating system.
    pub boot_id_file: Option<PathBuf>,
}

/// Opens the store `database_url` names, by its scheme, applying its migrations; without a URL,
/// the embedded SQLite store in `<data_dir>/liveplan.db` (CONTRACT §1). Full durability.
pub async fn open_store(
    database_url: Option<&str>,
    data_dir: &Path,
) -> Result<Arc<dyn Store>, StoreError> {
    open_store_with(database_url, data_dir, &OpenOptions::default()).await
}

/// [`open_store`] with `options`.
pub async fn open_store_with(
    database_url: Option<&str>,
    data_dir: &Path,
    options: &OpenOptions,
) -> Result<Arc<dyn Store>, StoreError> {
    let sqlite = store_sqlite::SqliteOptions {
        durability: options.durability,
        boot_id_file: options.boot_id_file.clone(),
    };
    let Some(url) = database_url else {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Database(Box::new(e)))?;
        let store =
            store_sqlite::SqliteStore::open_file_with(&data_dir.join(SQLITE_FILE), sqlite).await?;
        return Ok(Arc::new(store));
    };
    match scheme_of(url) {
        Some("sqlite") => Ok(Arc::new(store_sqlite::open_with(url, sqlite).await?)),
        Some("postgres" | "postgresql") => Ok(Arc::new(
            store_postgres::open_with(url, options.durability).await?,
        )),
        // The URL itself is never repeated: it may hold a password.
        Some(other) => Err(StoreError::database(format!(
            "no store for database URLs of scheme {other:?}"
        ))),
        None => Err(StoreError::database("the database URL has no scheme")),
    }
}

fn scheme_of(url: &str) -> Option<&str> {
    url.split_once(':')
        .map(|(scheme, _)| scheme)
        .filter(|s| !s.is_empty())
}
