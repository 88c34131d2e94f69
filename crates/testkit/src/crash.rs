//! Crashes that lose the end of the log, for the durability tests (CONTRACT §12).
//!
//! [`TestServer::disk_image`] notes what a crash at that moment would leave on disk if the
//! operating system (SQLite) or PostgreSQL had written out everything up to it and nothing
//! after; [`TestServer::crash_back_to`], with the server stopped, puts the store back there.
//! - SQLite in the fast mode syncs its write-ahead log only at checkpoints, so a crash of the
//!   operating system may lose any suffix of the log since the last one. The image is a copy
//!   of the database file and its log between two commits (a prefix of the log); going back
//!   writes both back and drops the shared-memory index, which a crash takes with it.
//! - PostgreSQL with `synchronous_commit=off` may lose the last commits in a crash of the
//!   server, whose recovery also empties every unlogged table. The image holds each stream's
//!   last seq; going back deletes the events after it, lowers the counters and empties the
//!   unlogged `crash_sentinel`. (The rows those commits changed stay: only the log matters to
//!   what clients are told.)

use crate::server::TestServer;
use sqlx::Connection;
use std::path::PathBuf;

/// What the store held at one moment (see the module).
pub enum DiskImage {
    Sqlite { db: Vec<u8>, wal: Option<Vec<u8>> },
    Postgres { streams: Vec<(String, i64)> },
}

fn wal_of(file: &std::path::Path) -> PathBuf {
    let mut wal = file.to_path_buf().into_os_string();
    wal.push("-wal");
    wal.into()
}

fn shm_of(file: &std::path::Path) -> PathBuf {
    let mut shm = file.to_path_buf().into_os_string();
    shm.push("-shm");
    shm.into()
}

impl TestServer {
    /// The store as a crash now would leave it (see the module). Call it between requests.
    pub async fn disk_image(&self) -> DiskImage {
        match self.backend().database_url() {
            None => {
                let file = self.db_path();
                DiskImage::Sqlite {
                    db: std::fs::read(&file).expect("the SQLite file"),
                    wal: std::fs::read(wal_of(&file)).ok(),
                }
            }
            Some(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                let streams = sqlx::query_as("SELECT stream, last_seq FROM streams")
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
                conn.close().await.unwrap();
                DiskImage::Postgres { streams }
            }
        }
    }

    /// Puts the (stopped) server's store back to `image`, as a crash would.
    pub async fn crash_back_to(&self, image: DiskImage) {
        assert!(!self.is_running(), "stop the server first");
        match image {
            DiskImage::Sqlite { db, wal } => {
                let file = self.db_path();
                std::fs::write(&file, db).unwrap();
                match wal {
                    Some(wal) => std::fs::write(wal_of(&file), wal).unwrap(),
                    None => {
                        let _ = std::fs::remove_file(wal_of(&file));
                    }
                }
                let _ = std::fs::remove_file(shm_of(&file));
            }
            DiskImage::Postgres { streams } => {
                let url = self.backend().database_url().expect("PostgreSQL");
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                let mut tx = conn.begin().await.unwrap();
                let (names, seqs): (Vec<String>, Vec<i64>) = streams.into_iter().unzip();
                sqlx::query(
                    "DELETE FROM events e WHERE NOT EXISTS (SELECT 1 FROM unnest($1::text[], $2::bigint[]) AS kept(stream, seq) WHERE kept.stream = e.stream AND e.seq <= kept.seq)",
                )
                .bind(&names)
                .bind(&seqs)
                .execute(&mut *tx)
                .await
                .unwrap();
                sqlx::query("DELETE FROM streams WHERE NOT (stream = ANY($1))")
                    .bind(&names)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                sqlx::query(
                    "UPDATE streams s SET last_seq = kept.seq FROM unnest($1::text[], $2::bigint[]) AS kept(stream, seq) WHERE kept.stream = s.stream",
                )
                .bind(&names)
                .bind(&seqs)
                .execute(&mut *tx)
                .await
                .unwrap();
                sqlx::query("TRUNCATE crash_sentinel")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                conn.close().await.unwrap();
            }
        }
    }
}
