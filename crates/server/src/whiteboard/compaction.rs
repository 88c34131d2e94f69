//! The background compaction: boards holding many stored rows get them merged into one state
//! (`store::whiteboards`: in one transaction, through the last seq read, so updates stored
//! meanwhile stay as they are). Loading a compacted board reads one row instead of thousands.

use super::content;
use std::sync::Arc;
use std::time::Duration;
use store::Store;
use tokio::sync::watch;
use uuid::Uuid;

/// A board is compacted once it holds more rows than this.
pub const COMPACT_ABOVE: u32 = 200;
/// Boards compacted per round.
const PER_ROUND: u32 = 16;
const EVERY: Duration = Duration::from_secs(30);
const PAGE: u32 = 500;

/// Runs [`compact_some`] every 30 s until `stop` says so.
pub fn spawn(store: Arc<dyn Store>, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if let Err(err) = compact_some(&*store, COMPACT_ABOVE).await {
                tracing::warn!(error = %err, "whiteboard compaction failed");
            }
        }
    });
}

/// Compacts up to one round of boards holding more than `above` rows; returns how many.
pub async fn compact_some(store: &dyn Store, above: u32) -> Result<usize, store::StoreError> {
    let boards = store
        .read()
        .await?
        .whiteboards_to_compact(above, PER_ROUND)
        .await?;
    let mut done = 0;
    for board in boards {
        if compact(store, board).await? {
            done += 1;
        }
    }
    Ok(done)
}

/// Merges the board's stored rows into one state; `false` when there was nothing to merge or a
/// stored row does not apply (then it is left alone).
pub async fn compact(store: &dyn Store, board: Uuid) -> Result<bool, store::StoreError> {
    let doc = content::new_doc();
    let mut through = 0;
    let mut rows_read = 0;
    loop {
        let rows = store
            .read()
            .await?
            .read_whiteboard_updates(board, through, PAGE)
            .await?;
        let full = rows.len() == PAGE as usize;
        for row in rows {
            if !content::apply(&doc, &row.update) {
                tracing::warn!(%board, seq = row.seq, "a stored whiteboard update does not apply; not compacted");
                return Ok(false);
            }
            through = row.seq;
            rows_read += 1;
        }
        if !full {
            break;
        }
    }
    if rows_read < 2 {
        return Ok(false);
    }
    let Some(state) = content::state(&doc) else {
        tracing::warn!(%board, "the board's document cannot be encoded; not compacted");
        return Ok(false);
    };
    let mut tx = store.write().await?;
    tx.compact_whiteboard(board, through, &state).await?;
    tx.commit().await?;
    Ok(true)
}
