//! The app channels' log (`store::app_channels`): serials per channel, pruning by count and
//! age, positions, the idle cleanup and the wipe.

use super::*;
use store::{AppChannelEventRow, AppLogRetention, Timestamp};

/// Before every event of these cases (and within every database's range of times).
const EVER: Timestamp = Timestamp::UNIX_EPOCH;

fn keep_all() -> AppLogRetention {
    AppLogRetention {
        keep_events: 1_000,
        keep_since: EVER,
    }
}

fn names(channels: &[&str]) -> Vec<String> {
    channels.iter().map(|c| (*c).to_owned()).collect()
}

async fn append(
    store: &Arc<dyn Store>,
    channels: &[&str],
    event: &str,
    at: Timestamp,
    retention: AppLogRetention,
) -> Vec<AppChannelEventRow> {
    let mut tx = store.write().await.unwrap();
    let appended = tx
        .append_app_event(&names(channels), event, "{\"ü\":\"✓\"}", at, retention)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    appended
}

fn serials(events: &[AppChannelEventRow]) -> Vec<(String, i64)> {
    events
        .iter()
        .map(|e| (e.channel.clone(), e.serial))
        .collect()
}

fn pairs(expected: &[(&str, i64)]) -> Vec<(String, i64)> {
    expected
        .iter()
        .map(|(c, s)| ((*c).to_owned(), *s))
        .collect()
}

/// Each channel counts its own serials from 1; one append to several channels gives each the
/// next of its own, in the caller's order (a channel named twice gets one event); events read
/// back as written; a channel never written has no position.
pub async fn app_channel_serials_are_per_channel(store: Arc<dyn Store>) {
    let at = now();
    let first = append(&store, &["b", "a"], "e1", at, keep_all()).await;
    assert_eq!(serials(&first), pairs(&[("b", 1), ("a", 1)]));
    assert_eq!(first[0].event, "e1");
    assert_eq!(first[0].data, "{\"ü\":\"✓\"}");
    assert_eq!(first[0].at, at);
    append(&store, &["a"], "e2", at, keep_all()).await;
    let twice = append(&store, &["a", "c", "a"], "e3", at, keep_all()).await;
    assert_eq!(serials(&twice), pairs(&[("a", 3), ("c", 1), ("a", 3)]));
    let mut ops = store.read().await.unwrap();
    let a = ops.read_app_events("a", 0, 100, EVER).await.unwrap();
    assert_eq!(
        a.iter()
            .map(|e| (e.serial, e.event.as_str()))
            .collect::<Vec<_>>(),
        [(1, "e1"), (2, "e2"), (3, "e3")]
    );
    assert_eq!(a[0], first[1], "read back as written");
    let position = ops.app_channel_position("a", EVER).await.unwrap().unwrap();
    assert_eq!((position.first_serial, position.last_serial), (1, 3));
    let b = ops.app_channel_position("b", EVER).await.unwrap().unwrap();
    assert_eq!((b.first_serial, b.last_serial), (1, 1));
    assert!(!position.stream_id.is_empty());
    assert_ne!(
        position.stream_id, b.stream_id,
        "each channel its own stream"
    );
    assert_eq!(ops.app_channel_position("never", EVER).await.unwrap(), None);
    assert!(
        ops.read_app_events("never", 0, 10, EVER)
            .await
            .unwrap()
            .is_empty()
    );
    // A read handle refuses to append.
    assert!(
        ops.append_app_event(&names(&["a"]), "e", "d", at, keep_all())
            .await
            .is_err()
    );
    drop(ops);
    // The stream of a channel stays the same across appends.
    append(&store, &["a"], "e4", at, keep_all()).await;
    let mut ops = store.read().await.unwrap();
    let again = ops.app_channel_position("a", EVER).await.unwrap().unwrap();
    assert_eq!(again.stream_id, position.stream_id);
    assert_eq!(again.last_serial, 4);
}

/// `after` returns the events above a serial, oldest first, at most `limit` of them.
pub async fn app_channel_reads_page_after_a_serial(store: Arc<dyn Store>) {
    let at = now();
    for i in 1..=5 {
        append(&store, &["p"], &format!("e{i}"), at, keep_all()).await;
    }
    let mut ops = store.read().await.unwrap();
    let page = ops.read_app_events("p", 1, 2, EVER).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.serial).collect::<Vec<_>>(),
        [2, 3],
        "limited"
    );
    let rest = ops.read_app_events("p", 3, 100, EVER).await.unwrap();
    assert_eq!(rest.iter().map(|e| e.serial).collect::<Vec<_>>(), [4, 5]);
    assert!(
        ops.read_app_events("p", 5, 100, EVER)
            .await
            .unwrap()
            .is_empty(),
        "nothing after the last"
    );
}

/// An append keeps only the newest `keep_events` of its channels, and leaves other channels
/// alone.
pub async fn app_channels_keep_their_last_events(store: Arc<dyn Store>) {
    let at = now();
    let keep3 = AppLogRetention {
        keep_events: 3,
        keep_since: EVER,
    };
    for _ in 0..5 {
        append(&store, &["kept", "other"], "e", at, keep_all()).await;
    }
    append(&store, &["kept"], "e", at, keep3).await;
    let mut ops = store.read().await.unwrap();
    let kept = ops.read_app_events("kept", 0, 100, EVER).await.unwrap();
    assert_eq!(kept.iter().map(|e| e.serial).collect::<Vec<_>>(), [4, 5, 6]);
    let position = ops
        .app_channel_position("kept", EVER)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((position.first_serial, position.last_serial), (4, 6));
    let other = ops.read_app_events("other", 0, 100, EVER).await.unwrap();
    assert_eq!(other.len(), 5, "another channel is not pruned");
}

/// Events older than the retention's time go at the next append, and reads never return one
/// older than their `not_before`. A channel whose every event expired keeps its stream and
/// serial: the next event goes on from there.
pub async fn app_channel_events_expire(store: Arc<dyn Store>) {
    let day = chrono::Duration::hours(24);
    let t0 = now() - chrono::Duration::days(3);
    append(&store, &["old"], "e1", t0, keep_all()).await;
    append(
        &store,
        &["old"],
        "e2",
        t0 + chrono::Duration::hours(1),
        keep_all(),
    )
    .await;
    let mut ops = store.read().await.unwrap();
    let before = ops
        .app_channel_position("old", EVER)
        .await
        .unwrap()
        .unwrap();
    // A day and a half later, as a reader sees it: nothing is young enough.
    let later = t0 + day + chrono::Duration::hours(12);
    assert!(
        ops.read_app_events("old", 0, 100, later - day)
            .await
            .unwrap()
            .is_empty()
    );
    let expired = ops
        .app_channel_position("old", later - day)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (expired.first_serial, expired.last_serial),
        (3, 2),
        "every event expired: first is last + 1"
    );
    assert_eq!(expired.stream_id, before.stream_id);
    // Half an hour after the first event's day is up, only the second is young enough.
    let one_left = ops
        .read_app_events("old", 0, 100, t0 + chrono::Duration::minutes(30))
        .await
        .unwrap();
    assert_eq!(one_left.iter().map(|e| e.serial).collect::<Vec<_>>(), [2]);
    drop(ops);
    // An append then drops what expired, and goes on from the kept serial.
    let appended = append(
        &store,
        &["old"],
        "e3",
        later,
        AppLogRetention {
            keep_events: 1_000,
            keep_since: later - day,
        },
    )
    .await;
    assert_eq!(appended[0].serial, 3);
    let mut ops = store.read().await.unwrap();
    let all = ops.read_app_events("old", 0, 100, EVER).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.serial).collect::<Vec<_>>(),
        [3],
        "expired events are gone from the store"
    );
    let position = ops
        .app_channel_position("old", later - day)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            position.stream_id.as_str(),
            position.first_serial,
            position.last_serial
        ),
        (before.stream_id.as_str(), 3, 3)
    );
}

/// A rolled-back append leaves neither an event nor a counter behind.
pub async fn a_rolled_back_app_append_leaves_nothing(store: Arc<dyn Store>) {
    let mut tx = store.write().await.unwrap();
    tx.append_app_event(&names(&["gone"]), "e", "d", now(), keep_all())
        .await
        .unwrap();
    drop(tx);
    let mut ops = store.read().await.unwrap();
    assert_eq!(ops.app_channel_position("gone", EVER).await.unwrap(), None);
    drop(ops);
    let appended = append(&store, &["gone"], "e", now(), keep_all()).await;
    assert_eq!(appended[0].serial, 1);
}

/// The idle cleanup forgets channels last written before its time, at most `limit` per call;
/// a forgotten channel starts again at serial 1 under a new stream. Busy channels stay.
pub async fn idle_app_channels_are_forgotten_in_batches(store: Arc<dyn Store>) {
    let recent = now();
    let long_ago = recent - chrono::Duration::days(2);
    for channel in ["idle-1", "idle-2", "idle-3"] {
        append(&store, &[channel], "e", long_ago, keep_all()).await;
    }
    append(&store, &["busy"], "e", long_ago, keep_all()).await;
    append(&store, &["busy"], "e", recent, keep_all()).await;
    let mut ops = store.read().await.unwrap();
    let old_stream = ops
        .app_channel_position("idle-1", EVER)
        .await
        .unwrap()
        .unwrap()
        .stream_id;
    assert!(
        ops.forget_idle_app_channels(recent, 10).await.is_err(),
        "a read handle refuses to forget"
    );
    drop(ops);
    let cutoff = recent - chrono::Duration::days(1);
    let mut forgotten = Vec::new();
    for _ in 0..5 {
        let mut tx = store.write().await.unwrap();
        let n = tx.forget_idle_app_channels(cutoff, 2).await.unwrap();
        tx.commit().await.unwrap();
        forgotten.push(n);
        if n == 0 {
            break;
        }
    }
    assert_eq!(forgotten, [2, 1, 0]);
    let mut ops = store.read().await.unwrap();
    for channel in ["idle-1", "idle-2", "idle-3"] {
        assert_eq!(
            ops.app_channel_position(channel, EVER).await.unwrap(),
            None,
            "{channel} forgotten"
        );
        assert!(
            ops.read_app_events(channel, 0, 10, EVER)
                .await
                .unwrap()
                .is_empty()
        );
    }
    let busy = ops
        .app_channel_position("busy", EVER)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((busy.first_serial, busy.last_serial), (1, 2), "busy stays");
    drop(ops);
    let again = append(&store, &["idle-1"], "e", recent, keep_all()).await;
    assert_eq!(again[0].serial, 1, "serials restart");
    let mut ops = store.read().await.unwrap();
    let renewed = ops
        .app_channel_position("idle-1", EVER)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(renewed.stream_id, old_stream, "under a new stream");
}

/// Deleting every app channel (an import) forgets them all; each starts anew under a new
/// stream.
pub async fn deleting_app_channels_renews_their_streams(store: Arc<dyn Store>) {
    append(&store, &["x", "y"], "e", now(), keep_all()).await;
    append(&store, &["x"], "e", now(), keep_all()).await;
    let mut ops = store.read().await.unwrap();
    let old = ops.app_channel_position("x", EVER).await.unwrap().unwrap();
    assert!(ops.delete_app_channels().await.is_err(), "read handle");
    drop(ops);
    let mut tx = store.write().await.unwrap();
    tx.delete_app_channels().await.unwrap();
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    assert_eq!(ops.app_channel_position("y", EVER).await.unwrap(), None);
    drop(ops);
    let appended = append(&store, &["x"], "e", now(), keep_all()).await;
    assert_eq!(appended[0].serial, 1);
    let mut ops = store.read().await.unwrap();
    let new = ops.app_channel_position("x", EVER).await.unwrap().unwrap();
    assert_ne!(new.stream_id, old.stream_id);
}

/// Concurrent appends, some to one channel and some to two in either order, leave each
/// channel's serials exactly 1..=n: none lost, none twice, and no deadlock.
pub async fn concurrent_app_appends_keep_serials_gap_free(store: Arc<dyn Store>) {
    const TASKS: usize = 6;
    const EACH: usize = 10;
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let channels: &[&str] = match task % 3 {
                    0 => &["one"],
                    1 => &["one", "two"],
                    _ => &["two", "one"],
                };
                let mut got = Vec::new();
                for _ in 0..EACH {
                    let mut attempts = 0;
                    loop {
                        attempts += 1;
                        let mut tx = store.write().await.unwrap();
                        let result = tx
                            .append_app_event(&names(channels), "e", "d", now(), keep_all())
                            .await;
                        match result {
                            Ok(events) => {
                                tx.commit().await.unwrap();
                                got.extend(serials(&events));
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
    let mut one = Vec::new();
    let mut two = Vec::new();
    for task in tasks {
        for (channel, serial) in task.await.unwrap() {
            match channel.as_str() {
                "one" => one.push(serial),
                _ => two.push(serial),
            }
        }
    }
    one.sort_unstable();
    two.sort_unstable();
    assert_eq!(one, (1..=(TASKS * EACH) as i64).collect::<Vec<_>>());
    assert_eq!(two, (1..=(TASKS * EACH * 2 / 3) as i64).collect::<Vec<_>>());
    let mut ops = store.read().await.unwrap();
    let stored = ops.read_app_events("one", 0, 1_000, EVER).await.unwrap();
    assert_eq!(stored.len(), TASKS * EACH);
}
