//! Per-project webhooks (`store::webhooks`): the rows, the lease (one owner at a time), the
//! cursor (only its owner, only forward), what is due, the deliveries (one per seq, bounded),
//! and what goes with the project.

use super::*;
use store::{WebhookDeliveryRow, WebhookRow};

async fn a_project(store: &Arc<dyn Store>) -> Uuid {
    let id = Uuid::now_v7();
    let mut tx = store.write().await.unwrap();
    tx.insert_project(&project(id)).await.unwrap();
    tx.commit().await.unwrap();
    id
}

fn webhook(project_id: Uuid, url: &str) -> WebhookRow {
    let at = now();
    WebhookRow {
        id: Uuid::now_v7(),
        project_id,
        url: url.into(),
        events: vec!["task.created".into(), "*".into()],
        secret: "s3cret ✓".into(),
        active: true,
        cursor: 0,
        created_at: at,
        updated_at: at,
    }
}

async fn insert(store: &Arc<dyn Store>, row: &WebhookRow) {
    let mut tx = store.write().await.unwrap();
    tx.insert_webhook(row).await.unwrap();
    tx.commit().await.unwrap();
}

async fn append_to(store: &Arc<dyn Store>, project_id: Uuid, count: usize) {
    let mut tx = store.write().await.unwrap();
    for _ in 0..count {
        tx.append_event(event(StreamKey::Project(project_id)))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
}

fn delivery(webhook_id: Uuid, seq: i64) -> WebhookDeliveryRow {
    let at = now();
    WebhookDeliveryRow {
        id: Uuid::now_v7(),
        webhook_id,
        seq,
        event: "task.created".into(),
        outcome: "pending".into(),
        attempts: 0,
        response_status: None,
        error: None,
        created_at: at,
        updated_at: at,
    }
}

/// Webhooks are kept as written and listed oldest first per project; a change touches url,
/// events, secret, active and updated_at only; deletes say whether there was one; a taken id is
/// a conflict, a missing project refused, and a read handle cannot write.
pub async fn webhooks_are_kept_changed_and_deleted(store: Arc<dyn Store>) {
    let p = a_project(&store).await;
    let other = a_project(&store).await;
    let mut first = webhook(p, "http://hooks.example/a");
    first.cursor = 7;
    let second = webhook(p, "https://hooks.example/b?x=1");
    insert(&store, &first).await;
    insert(&store, &second).await;
    insert(&store, &webhook(other, "http://elsewhere.example/")).await;
    let mut ops = store.read().await.unwrap();
    assert_eq!(
        ops.get_webhook(first.id).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(ops.get_webhook(Uuid::now_v7()).await.unwrap(), None);
    assert_eq!(
        ops.list_webhooks(p).await.unwrap(),
        vec![first.clone(), second.clone()]
    );
    assert_eq!(ops.list_webhooks(Uuid::now_v7()).await.unwrap(), vec![]);
    assert!(
        ops.insert_webhook(&webhook(p, "http://x.example/"))
            .await
            .is_err(),
        "a read handle cannot insert"
    );
    drop(ops);

    let mut changed = first.clone();
    changed.url = "http://hooks.example/changed".into();
    changed.events = vec!["task.deleted".into()];
    changed.secret = "other".into();
    changed.active = false;
    changed.cursor = 99;
    changed.updated_at = first.updated_at + chrono::Duration::seconds(3);
    let mut tx = store.write().await.unwrap();
    assert!(tx.update_webhook(&changed).await.unwrap());
    assert!(
        !tx.update_webhook(&webhook(p, "http://none.example/"))
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    let stored = ops.get_webhook(first.id).await.unwrap().unwrap();
    assert_eq!(stored.cursor, 7, "a change never moves the cursor");
    assert_eq!(
        stored,
        WebhookRow {
            cursor: 7,
            ..changed.clone()
        }
    );
    drop(ops);

    let mut tx = store.write().await.unwrap();
    conflict_words(tx.insert_webhook(&second).await);
    drop(tx);
    let mut tx = store.write().await.unwrap();
    assert!(
        tx.insert_webhook(&webhook(Uuid::now_v7(), "http://x.example/"))
            .await
            .is_err(),
        "no such project"
    );
    drop(tx);
    let mut tx = store.write().await.unwrap();
    assert!(tx.delete_webhook(second.id).await.unwrap());
    assert!(!tx.delete_webhook(second.id).await.unwrap());
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    assert_eq!(ops.list_webhooks(p).await.unwrap(), vec![stored]);
}

/// One owner at a time: a free lease is taken, a held one refused to others until it expires,
/// renewed by its owner; only the owner moves the cursor, only from the value it read and only
/// forward; a release by another changes nothing, the owner's frees it (with a retry time that
/// keeps the webhook from being due until then).
pub async fn a_webhook_lease_has_one_owner(store: Arc<dyn Store>) {
    let p = a_project(&store).await;
    let hook = webhook(p, "http://hooks.example/");
    insert(&store, &hook).await;
    append_to(&store, p, 3).await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let t0 = now();
    let later = |s: i64| t0 + chrono::Duration::seconds(s);
    let mut tx = store.write().await.unwrap();
    assert!(
        tx.take_webhook_lease(hook.id, a, t0, later(30))
            .await
            .unwrap()
    );
    assert!(
        !tx.take_webhook_lease(hook.id, b, later(1), later(31))
            .await
            .unwrap(),
        "held by a"
    );
    assert!(
        tx.take_webhook_lease(hook.id, a, later(2), later(32))
            .await
            .unwrap(),
        "its owner renews"
    );
    assert!(
        !tx.take_webhook_lease(Uuid::now_v7(), a, t0, later(30))
            .await
            .unwrap(),
        "no such webhook"
    );
    assert!(!tx.advance_webhook_cursor(hook.id, b, 0, 1).await.unwrap());
    assert!(tx.advance_webhook_cursor(hook.id, a, 0, 2).await.unwrap());
    assert!(
        !tx.advance_webhook_cursor(hook.id, a, 0, 3).await.unwrap(),
        "a stale cursor does not move it"
    );
    tx.commit().await.unwrap();
    let mut tx = store.write().await.unwrap();
    assert!(
        tx.advance_webhook_cursor(hook.id, a, 2, 2).await.is_err(),
        "never backwards or in place"
    );
    drop(tx);
    let mut tx = store.write().await.unwrap();
    assert!(
        tx.take_webhook_lease(hook.id, b, later(33), later(60))
            .await
            .unwrap(),
        "an expired lease goes to whoever asks"
    );
    assert!(
        !tx.advance_webhook_cursor(hook.id, a, 2, 3).await.unwrap(),
        "the old owner lost it"
    );
    tx.release_webhook_lease(hook.id, a, None).await.unwrap();
    assert!(
        !tx.take_webhook_lease(hook.id, a, later(34), later(60))
            .await
            .unwrap(),
        "a release by another changed nothing"
    );
    tx.release_webhook_lease(hook.id, b, Some(later(100)))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    assert_eq!(ops.get_webhook(hook.id).await.unwrap().unwrap().cursor, 2);
    assert!(
        ops.due_webhooks(later(99), 10).await.unwrap().is_empty(),
        "waiting for its retry"
    );
    assert_eq!(
        ops.due_webhooks(later(100), 10)
            .await
            .unwrap()
            .iter()
            .map(|w| w.id)
            .collect::<Vec<_>>(),
        [hook.id]
    );
    assert!(
        ops.take_webhook_lease(hook.id, a, later(100), later(130))
            .await
            .is_err(),
        "a read handle cannot lease"
    );
    drop(ops);
    let mut tx = store.write().await.unwrap();
    assert!(
        tx.take_webhook_lease(hook.id, a, later(35), later(60))
            .await
            .unwrap(),
        "free again"
    );
}

/// Due: active, behind its project stream's last seq, not leased, no retry waiting. The lowest
/// cursor of a project's active webhooks is what retention must keep after.
pub async fn due_webhooks_are_behind_their_stream(store: Arc<dyn Store>) {
    let p = a_project(&store).await;
    let q = a_project(&store).await;
    append_to(&store, p, 2).await;
    let mut caught_up = webhook(p, "http://hooks.example/1");
    caught_up.cursor = 2;
    let mut behind = webhook(p, "http://hooks.example/2");
    behind.cursor = 1;
    let mut inactive = webhook(p, "http://hooks.example/3");
    inactive.active = false;
    let quiet = webhook(q, "http://hooks.example/4");
    for row in [&caught_up, &behind, &inactive, &quiet] {
        insert(&store, row).await;
    }
    let due = |ops: Vec<WebhookRow>| ops.into_iter().map(|w| w.id).collect::<Vec<_>>();
    let mut ops = store.read().await.unwrap();
    assert_eq!(due(ops.due_webhooks(now(), 10).await.unwrap()), [behind.id]);
    assert_eq!(ops.min_webhook_cursor(p).await.unwrap(), Some(1));
    assert_eq!(ops.min_webhook_cursor(q).await.unwrap(), Some(0));
    assert_eq!(ops.min_webhook_cursor(Uuid::now_v7()).await.unwrap(), None);
    drop(ops);
    append_to(&store, p, 1).await;
    append_to(&store, q, 1).await;
    let mut ops = store.read().await.unwrap();
    let mut expected = vec![caught_up.id, behind.id, quiet.id];
    expected.sort();
    assert_eq!(due(ops.due_webhooks(now(), 10).await.unwrap()), expected);
    assert_eq!(ops.due_webhooks(now(), 1).await.unwrap().len(), 1);
    drop(ops);
    let mut tx = store.write().await.unwrap();
    let t = now();
    assert!(
        tx.take_webhook_lease(
            behind.id,
            Uuid::now_v7(),
            t,
            t + chrono::Duration::seconds(30)
        )
        .await
        .unwrap()
    );
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    assert!(
        !due(ops.due_webhooks(now(), 10).await.unwrap()).contains(&behind.id),
        "leased"
    );
}

/// One delivery per (webhook, seq), kept as written and changed in place, listed newest first,
/// pruned to the newest; deleting the webhook takes its deliveries, deleting the project its
/// webhooks.
pub async fn webhook_deliveries_are_one_per_seq_and_go_with_the_project(store: Arc<dyn Store>) {
    let p = a_project(&store).await;
    let hook = webhook(p, "http://hooks.example/");
    let other = webhook(p, "http://hooks.example/other");
    insert(&store, &hook).await;
    insert(&store, &other).await;
    let mut tx = store.write().await.unwrap();
    for seq in 1..=5 {
        tx.insert_webhook_delivery(&delivery(hook.id, seq))
            .await
            .unwrap();
    }
    tx.insert_webhook_delivery(&delivery(other.id, 1))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.write().await.unwrap();
    conflict_words(tx.insert_webhook_delivery(&delivery(hook.id, 3)).await);
    drop(tx);
    let mut tx = store.write().await.unwrap();
    assert!(
        tx.insert_webhook_delivery(&delivery(Uuid::now_v7(), 1))
            .await
            .is_err(),
        "no such webhook"
    );
    drop(tx);
    let mut ops = store.read().await.unwrap();
    let mut third = ops.get_webhook_delivery(hook.id, 3).await.unwrap().unwrap();
    assert_eq!(
        (third.webhook_id, third.seq, third.attempts),
        (hook.id, 3, 0)
    );
    assert_eq!(ops.get_webhook_delivery(hook.id, 9).await.unwrap(), None);
    assert!(
        ops.insert_webhook_delivery(&delivery(hook.id, 9))
            .await
            .is_err()
    );
    drop(ops);
    third.outcome = "gave_up".into();
    third.attempts = 5;
    third.response_status = Some(503);
    third.error = Some("HTTP 503 ✓".into());
    third.updated_at = third.created_at + chrono::Duration::seconds(9);
    let mut tx = store.write().await.unwrap();
    assert!(tx.update_webhook_delivery(&third).await.unwrap());
    assert!(
        !tx.update_webhook_delivery(&delivery(hook.id, 3))
            .await
            .unwrap(),
        "an unknown id"
    );
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    assert_eq!(
        ops.get_webhook_delivery(hook.id, 3).await.unwrap(),
        Some(third.clone())
    );
    let seqs = |rows: Vec<WebhookDeliveryRow>| rows.iter().map(|d| d.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(ops.list_webhook_deliveries(hook.id, 10).await.unwrap()),
        [5, 4, 3, 2, 1]
    );
    assert_eq!(
        seqs(ops.list_webhook_deliveries(hook.id, 2).await.unwrap()),
        [5, 4]
    );
    drop(ops);
    let mut tx = store.write().await.unwrap();
    assert_eq!(tx.prune_webhook_deliveries(hook.id, 3).await.unwrap(), 2);
    assert_eq!(tx.prune_webhook_deliveries(hook.id, 3).await.unwrap(), 0);
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    assert_eq!(
        seqs(ops.list_webhook_deliveries(hook.id, 10).await.unwrap()),
        [5, 4, 3]
    );
    assert_eq!(
        seqs(ops.list_webhook_deliveries(other.id, 10).await.unwrap()),
        [1],
        "other webhooks untouched"
    );
    drop(ops);
    let mut tx = store.write().await.unwrap();
    assert!(tx.delete_webhook(other.id).await.unwrap());
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    assert!(
        ops.list_webhook_deliveries(other.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    drop(ops);
    let mut tx = store.write().await.unwrap();
    tx.delete_project(p).await.unwrap();
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    assert_eq!(ops.get_webhook(hook.id).await.unwrap(), None);
    assert!(ops.list_webhooks(p).await.unwrap().is_empty());
    assert!(
        ops.list_webhook_deliveries(hook.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Nodes racing for one free lease: exactly one gets it.
pub async fn concurrent_lease_takers_get_one_owner(store: Arc<dyn Store>) {
    let p = a_project(&store).await;
    let hook = webhook(p, "http://hooks.example/");
    insert(&store, &hook).await;
    let mut racers = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        racers.push(tokio::spawn(async move {
            let mut tx = store.write().await.unwrap();
            let t = now();
            let taken = tx
                .take_webhook_lease(
                    hook.id,
                    Uuid::now_v7(),
                    t,
                    t + chrono::Duration::seconds(30),
                )
                .await
                .unwrap();
            tx.commit().await.unwrap();
            taken
        }));
    }
    let mut winners = 0;
    for racer in racers {
        if racer.await.unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
}
