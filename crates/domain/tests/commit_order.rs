//! The listener sees each stream's events in commit order even when writers race: a listener
//! that is slow on its first call must not let a later writer's events overtake it.

use liveplan_domain::tx::Tx;
use liveplan_domain::{CommitListener, Domain};
use proto::{Event, EventType, StreamKey};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store_sqlite::SqliteStore;

/// Records every seq it is handed; the first call sleeps, as a busy listener might, which
/// leaves a window for a second writer to commit and reach the listener first.
#[derive(Default)]
struct SlowFirst {
    slept: AtomicBool,
    seen: Mutex<Vec<i64>>,
}

impl CommitListener for SlowFirst {
    fn committed(&self, events: &[Event]) {
        if !self.slept.swap(true, Ordering::SeqCst) {
            // The listener contract is synchronous, so a blocking sleep is what a slow one does.
            std::thread::sleep(Duration::from_millis(300));
        }
        let mut seen = self.seen.lock().unwrap();
        seen.extend(events.iter().filter_map(|e| e.seq));
    }
}

/// Each writer runs on a thread and runtime of its own, as concurrent requests on a busy
/// server do: a writer woken when the store's writer is released must be free to run while
/// the listener still sleeps (on a shared runtime the woken task could wait behind it).
#[test]
fn racing_writers_reach_the_listener_in_commit_order() {
    const WRITERS: usize = 4;
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let store = runtime()
        .block_on(SqliteStore::open_in_dir(dir.path()))
        .unwrap();
    let listener = Arc::new(SlowFirst::default());
    let domain = Domain::new(Arc::new(store), listener.clone());
    std::thread::scope(|scope| {
        for i in 0..WRITERS {
            let domain = &domain;
            scope.spawn(move || {
                runtime().block_on(async {
                    tokio::time::timeout(Duration::from_secs(30), write_one(domain, i))
                        .await
                        .expect("the writer finishes in time");
                });
            });
        }
    });
    let seen = listener.seen.lock().unwrap().clone();
    assert_eq!(seen, (1..=WRITERS as i64).collect::<Vec<_>>());
}

/// One transaction appending one event to the `system` stream.
async fn write_one(domain: &Domain, writer: usize) {
    let mut tx = Tx::begin(domain, None).await.unwrap();
    tx.emit(
        StreamKey::System,
        EventType::ProjectUpdated,
        json!({ "writer": writer }),
        json!({}),
        None,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}
