//! The whiteboards' documents (`store::whiteboards`): updates in order per board, compaction,
//! snapshots, and what goes with the whiteboard record.

use super::*;
use store::{WhiteboardSnapshotRow, WhiteboardUpdateRow};

/// A project with one whiteboard record per name; returns the boards' ids.
async fn boards(store: &Arc<dyn Store>, count: usize) -> Vec<Uuid> {
    let project_id = Uuid::now_v7();
    let mut tx = store.write().await.unwrap();
    tx.insert_project(&project(project_id)).await.unwrap();
    let mut ids = Vec::new();
    for n in 0..count {
        let board = record(
            project_id,
            "whiteboards",
            json!({ "name": format!("b{n}") }),
        );
        tx.insert_record(&board, &[]).await.unwrap();
        ids.push(board.id);
    }
    tx.commit().await.unwrap();
    ids
}

async fn append(store: &Arc<dyn Store>, board: Uuid, update: &[u8]) -> i64 {
    let mut tx = store.write().await.unwrap();
    let seq = tx
        .append_whiteboard_update(board, update, now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    seq
}

async fn all(store: &Arc<dyn Store>, board: Uuid, after: i64) -> Vec<(i64, Vec<u8>)> {
    let mut ops = store.read().await.unwrap();
    ops.read_whiteboard_updates(board, after, 1_000)
        .await
        .unwrap()
        .into_iter()
        .map(|row: WhiteboardUpdateRow| (row.seq, row.update))
        .collect()
}

fn rows(expected: &[(i64, &[u8])]) -> Vec<(i64, Vec<u8>)> {
    expected.iter().map(|(s, u)| (*s, u.to_vec())).collect()
}

/// Each board numbers its own updates from 1; reads page after a seq in seq order and give the
/// bytes back as written; a rolled-back append leaves nothing (its seq is not used); a read
/// handle refuses to append; a board without a record refuses updates.
pub async fn whiteboard_updates_are_ordered_per_board(store: Arc<dyn Store>) {
    let ids = boards(&store, 2).await;
    let (a, b) = (ids[0], ids[1]);
    assert_eq!(append(&store, a, &[1, 0, 255]).await, 1);
    assert_eq!(append(&store, a, &[2]).await, 2);
    assert_eq!(append(&store, b, &[9]).await, 1, "each board its own seqs");
    let mut tx = store.write().await.unwrap();
    assert_eq!(
        tx.append_whiteboard_update(a, &[66], now()).await.unwrap(),
        3
    );
    drop(tx);
    assert_eq!(
        append(&store, a, &[3]).await,
        3,
        "a rolled-back seq is not used"
    );
    assert_eq!(
        all(&store, a, 0).await,
        rows(&[(1, &[1, 0, 255]), (2, &[2]), (3, &[3])])
    );
    assert_eq!(all(&store, a, 1).await, rows(&[(2, &[2]), (3, &[3])]));
    assert_eq!(all(&store, a, 3).await, rows(&[]));
    let mut ops = store.read().await.unwrap();
    let page = ops.read_whiteboard_updates(a, 0, 2).await.unwrap();
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(page[0].board_id, a);
    assert_eq!(ops.whiteboard_latest_seq(a).await.unwrap(), 3);
    assert_eq!(ops.whiteboard_latest_seq(b).await.unwrap(), 1);
    assert_eq!(ops.whiteboard_latest_seq(Uuid::now_v7()).await.unwrap(), 0);
    assert!(
        ops.append_whiteboard_update(a, &[4], now()).await.is_err(),
        "a read handle cannot append"
    );
    drop(ops);
    let mut tx = store.write().await.unwrap();
    assert!(
        tx.append_whiteboard_update(Uuid::now_v7(), &[1], now())
            .await
            .is_err(),
        "no such board"
    );
    drop(tx);
    assert_eq!(append(&store, a, &[4]).await, 4);
}

/// A compaction replaces the updates through a seq by one state at that seq and keeps the later
/// ones; seqs go on; a reader inside the compacted range reads the state next; a compaction
/// past the last seq (or below 1) fails and changes nothing; boards with many rows are listed
/// as candidates.
pub async fn compacting_a_whiteboard_keeps_later_updates(store: Arc<dyn Store>) {
    let ids = boards(&store, 2).await;
    let (a, b) = (ids[0], ids[1]);
    for n in 1..=4u8 {
        append(&store, a, &[n]).await;
    }
    append(&store, b, &[7]).await;
    let mut ops = store.read().await.unwrap();
    assert_eq!(ops.whiteboards_to_compact(1, 10).await.unwrap(), [a]);
    assert!(
        ops.compact_whiteboard(a, 2, &[0]).await.is_err(),
        "a read handle cannot compact"
    );
    drop(ops);
    for beyond in [5, 0, -1] {
        let mut tx = store.write().await.unwrap();
        assert!(
            tx.compact_whiteboard(a, beyond, &[0]).await.is_err(),
            "compacting through {beyond}"
        );
    }
    let mut tx = store.write().await.unwrap();
    assert!(
        tx.compact_whiteboard(Uuid::now_v7(), 1, &[0])
            .await
            .is_err()
    );
    drop(tx);
    assert_eq!(
        all(&store, a, 0).await.len(),
        4,
        "failed compactions changed nothing"
    );
    let mut tx = store.write().await.unwrap();
    tx.compact_whiteboard(a, 3, b"state").await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(all(&store, a, 0).await, rows(&[(3, b"state"), (4, &[4])]));
    assert_eq!(all(&store, a, 1).await, rows(&[(3, b"state"), (4, &[4])]));
    assert_eq!(
        all(&store, b, 0).await,
        rows(&[(1, &[7])]),
        "other boards untouched"
    );
    assert_eq!(append(&store, a, &[5]).await, 5, "seqs go on");
    let mut tx = store.write().await.unwrap();
    tx.compact_whiteboard(a, 5, b"all").await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(all(&store, a, 0).await, rows(&[(5, b"all")]));
    let mut ops = store.read().await.unwrap();
    assert_eq!(
        ops.whiteboards_to_compact(1, 10).await.unwrap(),
        Vec::<Uuid>::new()
    );
    assert_eq!(ops.whiteboard_latest_seq(a).await.unwrap(), 5);
}

/// Snapshots are kept whole, listed oldest first without their states; a taken id is a
/// conflict, a board without a record refused; deleting the whiteboard record takes its
/// updates and snapshots.
pub async fn whiteboard_snapshots_are_kept_and_go_with_the_board(store: Arc<dyn Store>) {
    let ids = boards(&store, 2).await;
    let (a, b) = (ids[0], ids[1]);
    append(&store, a, &[1]).await;
    let first_at = now();
    let first = WhiteboardSnapshotRow {
        id: Uuid::now_v7(),
        board_id: a,
        name: "first ✓".into(),
        state: vec![0, 1, 2, 255],
        created_at: first_at,
    };
    let second = WhiteboardSnapshotRow {
        id: Uuid::now_v7(),
        board_id: a,
        name: "second".into(),
        state: vec![],
        created_at: first_at + chrono::Duration::seconds(1),
    };
    let mut tx = store.write().await.unwrap();
    tx.insert_whiteboard_snapshot(&second).await.unwrap();
    tx.insert_whiteboard_snapshot(&first).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.write().await.unwrap();
    conflict_words(tx.insert_whiteboard_snapshot(&first).await);
    drop(tx);
    let mut tx = store.write().await.unwrap();
    let orphan = WhiteboardSnapshotRow {
        id: Uuid::now_v7(),
        board_id: Uuid::now_v7(),
        ..first.clone()
    };
    assert!(tx.insert_whiteboard_snapshot(&orphan).await.is_err());
    drop(tx);
    let mut ops = store.read().await.unwrap();
    assert!(ops.insert_whiteboard_snapshot(&orphan).await.is_err());
    drop(ops);
    let mut ops = store.read().await.unwrap();
    assert_eq!(
        ops.list_whiteboard_snapshots(a).await.unwrap(),
        [first.info(), second.info()]
    );
    assert_eq!(ops.list_whiteboard_snapshots(b).await.unwrap(), []);
    assert_eq!(
        ops.get_whiteboard_snapshot(first.id).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        ops.get_whiteboard_snapshot(second.id).await.unwrap(),
        Some(second)
    );
    assert_eq!(
        ops.get_whiteboard_snapshot(Uuid::now_v7()).await.unwrap(),
        None
    );
    drop(ops);
    let mut tx = store.write().await.unwrap();
    tx.delete_record(a).await.unwrap();
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    assert_eq!(ops.list_whiteboard_snapshots(a).await.unwrap(), []);
    assert_eq!(ops.get_whiteboard_snapshot(first.id).await.unwrap(), None);
    assert_eq!(ops.whiteboard_latest_seq(a).await.unwrap(), 0);
    assert_eq!(ops.read_whiteboard_updates(a, 0, 10).await.unwrap(), []);
}

/// Appends to one board from many writers at once get seqs 1..N, each once, and a reader
/// following the board by "after the last seq it read" sees every one.
pub async fn concurrent_whiteboard_appends_keep_seqs_gap_free(store: Arc<dyn Store>) {
    const TASKS: usize = 6;
    const EACH: usize = 10;
    let board = boards(&store, 1).await[0];
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                for n in 0..EACH {
                    let mut attempts = 0;
                    loop {
                        attempts += 1;
                        let mut tx = store.write().await.unwrap();
                        match tx
                            .append_whiteboard_update(board, &[task as u8, n as u8], now())
                            .await
                        {
                            Ok(seq) => {
                                tx.commit().await.unwrap();
                                got.push(seq);
                                break;
                            }
                            Err(StoreError::Retryable) if attempts < 5 => continue,
                            Err(error) => panic!("append failed: {error:?}"),
                        }
                    }
                }
                got
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.extend(task.await.unwrap());
    }
    seqs.sort_unstable();
    let expected: Vec<i64> = (1..=(TASKS * EACH) as i64).collect();
    assert_eq!(seqs, expected);
    let stored: Vec<i64> = all(&store, board, 0)
        .await
        .iter()
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(stored, expected);
}
