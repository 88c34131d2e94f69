//! The one place that names the store's backends: a database URL in, a [`Store`] out. Everything
//! else in the server and the domain sees only `Arc<dyn Store>`.

use std::path::Path;
use std::sync::Arc;
use store::{Store, StoreError};

/// The file name of the embedded store inside the data directory.
pub const SQLITE_FILE: &str = "liveplan.db";

/// Opens the store `database_url` names, by its scheme, applying its migrations; without a URL,
/// the embedded SQLite store in `<data_dir>/liveplan.db` (CONTRACT §1).
pub async fn open_store(
    database_url: Option<&str>,
    data_dir: &Path,
) -> Result<Arc<dyn Store>, StoreError> {
    let Some(url) = database_url else {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Database(Box::new(e)))?;
        let store = store_sqlite::SqliteStore::open_file(&data_dir.join(SQLITE_FILE)).await?;
        return Ok(Arc::new(store));
    };
    match scheme_of(url) {
        Some("sqlite") => Ok(Arc::new(store_sqlite::open(url).await?)),
        Some("postgres" | "postgresql") => Ok(Arc::new(store_postgres::open(url).await?)),
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
