//! The behaviour every backend must show. Each function takes a fresh, empty store and panics
//! with a plain message when the backend misbehaves; a backend's test file calls them all
//! (see `tests/sqlite.rs`), so a new backend gets the whole suite by writing one such file.

use crate::{
    MembershipRow, NewEvent, Page, ProjectRow, RecordRef, RecordRow, SessionRow, Store, StoreError,
    TicketRow, UserRow, now,
};
use proto::{EventType, StreamKey};
use serde_json::json;
use std::sync::Arc;
use uuid::Uuid;

fn user(email: &str) -> UserRow {
    let at = now();
    UserRow {
        id: Uuid::now_v7(),
        email: email.into(),
        username: None,
        display_name: email.into(),
        password_hash: "x".into(),
        is_admin: false,
        is_active: true,
        version: 1,
        created_at: at,
        updated_at: at,
    }
}

fn project(id: Uuid) -> ProjectRow {
    let at = now();
    ProjectRow {
        id,
        key: None,
        name: "p".into(),
        body: Default::default(),
        version: 1,
        created_at: at,
        updated_at: at,
    }
}

fn event(stream: StreamKey) -> NewEvent {
    NewEvent {
        stream,
        event_type: EventType::TaskCreated,
        payload: json!({ "n": 1 }),
        data: json!({ "name": "ü ✓" }),
        actor_id: Some(Uuid::now_v7()),
        tab_id: Some("tab-1".into()),
        ts: now(),
        project_id: None,
        echo: None,
    }
}

/// Seqs start at 1 and grow by one per stream, independently per stream, and events read back
/// exactly as written.
pub async fn seqs_are_gap_free_per_stream(store: &dyn Store) {
    let a = StreamKey::Project(Uuid::now_v7());
    let b = StreamKey::System;
    let mut tx = store.write().await.unwrap();
    let mut written = Vec::new();
    for i in 0..5 {
        written.push(tx.append_event(event(a)).await.unwrap());
        if i % 2 == 0 {
            tx.append_event(event(b)).await.unwrap();
        }
    }
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    let read = ops.read_events(a, 0, 100).await.unwrap();
    assert_eq!(read, written, "events read back as written");
    assert_eq!(
        read.iter().map(|e| e.seq.unwrap()).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(ops.latest_seq(b).await.unwrap(), 3);
    assert_eq!(ops.read_events(a, 3, 1).await.unwrap()[0].seq, Some(4));
    assert_eq!(ops.oldest_seq(a).await.unwrap(), Some(1));
    assert_eq!(
        ops.latest_seq(StreamKey::User(Uuid::now_v7()))
            .await
            .unwrap(),
        0
    );
}

/// A transaction that is dropped, or fails midway, leaves neither rows nor events nor a used
/// seq behind.
pub async fn rollback_leaves_nothing(store: &dyn Store) {
    let stream = StreamKey::Project(Uuid::now_v7());
    let first = Uuid::now_v7();
    {
        let mut tx = store.write().await.unwrap();
        tx.insert_project(&project(first)).await.unwrap();
        tx.append_event(event(stream)).await.unwrap();
        // Dropped without commit.
    }
    {
        let mut tx = store.write().await.unwrap();
        tx.insert_project(&project(first)).await.unwrap();
        tx.append_event(event(stream)).await.unwrap();
        let again = tx.insert_project(&project(first)).await;
        assert!(
            matches!(again, Err(StoreError::Conflict { .. })),
            "duplicate id is a conflict"
        );
    }
    let mut ops = store.read().await.unwrap();
    assert!(ops.get_project(first).await.unwrap().is_none());
    assert_eq!(ops.latest_seq(stream).await.unwrap(), 0);
    assert!(ops.read_events(stream, 0, 10).await.unwrap().is_empty());
    drop(ops);
    let mut tx = store.write().await.unwrap();
    assert_eq!(
        tx.append_event(event(stream)).await.unwrap().seq,
        Some(1),
        "no seq was burnt"
    );
    tx.commit().await.unwrap();
}

/// A snapshot sees the database as of its first read: records and seqs committed after it
/// stay invisible to it, while a plain read sees them; and it does not hold up the writer.
pub async fn snapshots_are_consistent(store: &dyn Store) {
    let id = Uuid::now_v7();
    let stream = StreamKey::Project(id);
    let mut tx = store.write().await.unwrap();
    tx.insert_project(&project(id)).await.unwrap();
    tx.append_event(event(stream)).await.unwrap();
    tx.commit().await.unwrap();

    let mut snapshot = store.snapshot().await.unwrap();
    assert_eq!(snapshot.latest_seq(stream).await.unwrap(), 1);
    let other = Uuid::now_v7();
    let mut tx = store.write().await.unwrap();
    tx.insert_project(&project(other)).await.unwrap();
    tx.append_event(event(stream)).await.unwrap();
    tx.commit().await.unwrap();

    assert_eq!(
        snapshot.latest_seq(stream).await.unwrap(),
        1,
        "seq as of the snapshot"
    );
    assert!(
        snapshot.get_project(other).await.unwrap().is_none(),
        "a later commit is invisible to the snapshot"
    );
    assert!(snapshot.get_project(id).await.unwrap().is_some());
    let mut fresh = store.read().await.unwrap();
    assert_eq!(fresh.latest_seq(stream).await.unwrap(), 2);
    assert!(fresh.get_project(other).await.unwrap().is_some());
}

/// Writers from many tasks are serialized: one stream's seqs stay consecutive.
pub async fn concurrent_writers_serialize(store: Arc<dyn Store>) {
    let stream = StreamKey::Project(Uuid::now_v7());
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                let mut tx = store.write().await.unwrap();
                tx.append_event(event(stream)).await.unwrap();
                tx.append_event(event(stream)).await.unwrap();
                tx.commit().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut ops = store.read().await.unwrap();
    let seqs: Vec<i64> = ops
        .read_events(stream, 0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq.unwrap())
        .collect();
    assert_eq!(seqs, (1..=160).collect::<Vec<_>>());
}

/// Of two consumers of one ticket exactly one wins; expired tickets never win.
pub async fn tickets_are_consumed_once(store: Arc<dyn Store>) {
    let owner = user("ticket@example.test");
    let mut tx = store.write().await.unwrap();
    tx.insert_user(&owner).await.unwrap();
    let live = TicketRow {
        hash: "live".into(),
        user_id: owner.id,
        session_id: Uuid::now_v7(),
        expires_at: now() + chrono::Duration::seconds(30),
        used_at: None,
    };
    let stale = TicketRow {
        hash: "stale".into(),
        expires_at: now() - chrono::Duration::seconds(1),
        ..live.clone()
    };
    tx.insert_ticket(&live).await.unwrap();
    tx.insert_ticket(&stale).await.unwrap();
    tx.commit().await.unwrap();
    let race = |hash: &'static str| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tx = store.write().await.unwrap();
            let won = tx.consume_ticket(hash, now()).await.unwrap();
            tx.commit().await.unwrap();
            won
        })
    };
    let (a, b) = (race("live"), race("live"));
    let winners = [a.await.unwrap(), b.await.unwrap()]
        .into_iter()
        .flatten()
        .count();
    assert_eq!(winners, 1);
    assert!(race("stale").await.unwrap().is_none());
    assert!(race("unknown").await.unwrap().is_none());
}

/// Uniqueness rules surface as conflicts in words, not database text.
pub async fn unique_rules_are_conflicts(store: &dyn Store) {
    let mut tx = store.write().await.unwrap();
    tx.insert_user(&user("same@example.test")).await.unwrap();
    let error = tx
        .insert_user(&user("SAME@example.test"))
        .await
        .unwrap_err();
    match error {
        StoreError::Conflict { what } => assert_eq!(what, "a user with this email already exists"),
        other => panic!("expected a conflict, got {other}"),
    }
}

/// Records keep their JSON bodies, their references index who points at whom, and deleting a
/// record drops its references.
pub async fn records_keep_bodies_and_references(store: &dyn Store) {
    let project_id = Uuid::now_v7();
    let at = now();
    let record = |collection: &str, body: serde_json::Value| RecordRow {
        id: Uuid::now_v7(),
        project_id,
        collection: collection.into(),
        body: body.as_object().unwrap().clone(),
        version: 1,
        created_at: at,
        updated_at: at,
    };
    let task = record(
        "tasks",
        json!({ "name": "t", "nested": { "list": [1, "two", null] } }),
    );
    let link = record("dependencies", json!({ "predecessor_id": task.id }));
    let mut tx = store.write().await.unwrap();
    tx.insert_project(&project(project_id)).await.unwrap();
    tx.insert_record(&task, &[]).await.unwrap();
    tx.insert_record(
        &link,
        &[RecordRef {
            field: "predecessor_id".into(),
            target_id: task.id,
        }],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    assert_eq!(ops.get_record(task.id).await.unwrap(), Some(task.clone()));
    assert_eq!(ops.count_records(project_id).await.unwrap(), 2);
    let referrers = ops.list_referrers(task.id).await.unwrap();
    assert_eq!(referrers.len(), 1);
    assert_eq!(
        (referrers[0].record_id, referrers[0].field.as_str()),
        (link.id, "predecessor_id")
    );
    drop(ops);
    let mut tx = store.write().await.unwrap();
    tx.delete_record(link.id).await.unwrap();
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    assert!(ops.list_referrers(task.id).await.unwrap().is_empty());
    assert_eq!(ops.count_records(project_id).await.unwrap(), 1);
}

/// The joined reads of authentication and of the role check give exactly what the separate
/// reads give: the session with its user, the project with this user's membership (and not
/// another user's, nor another project's), and nothing for what does not exist.
pub async fn joined_reads_match_separate_reads(store: &dyn Store) {
    let member = user("joined-member@example.test");
    let outsider = user("joined-outsider@example.test");
    let (here, elsewhere) = (project(Uuid::now_v7()), project(Uuid::now_v7()));
    let at = now();
    let session = SessionRow {
        id: Uuid::now_v7(),
        user_id: member.id,
        created_at: at,
        expires_at: at + chrono::Duration::hours(1),
        revoked_at: None,
    };
    let membership = |project_id: Uuid, user_id: Uuid, role: i64| MembershipRow {
        id: Uuid::now_v7(),
        project_id,
        user_id,
        role,
        version: 1,
        created_at: at,
        updated_at: at,
    };
    let member_here = membership(here.id, member.id, 1);
    let outsider_elsewhere = membership(elsewhere.id, outsider.id, 100);
    let mut tx = store.write().await.unwrap();
    for u in [&member, &outsider] {
        tx.insert_user(u).await.unwrap();
    }
    for p in [&here, &elsewhere] {
        tx.insert_project(p).await.unwrap();
    }
    tx.insert_session(&session).await.unwrap();
    for m in [&member_here, &outsider_elsewhere] {
        tx.insert_membership(m).await.unwrap();
    }
    tx.commit().await.unwrap();

    let mut ops = store.read().await.unwrap();
    let (read_session, read_user) = ops
        .get_session_with_user(session.id)
        .await
        .unwrap()
        .expect("the session");
    assert_eq!(
        Some(read_session),
        ops.get_session(session.id).await.unwrap()
    );
    assert_eq!(read_user, ops.get_user(member.id).await.unwrap());
    assert!(read_user.is_some(), "the session's user");
    assert!(
        ops.get_session_with_user(Uuid::now_v7())
            .await
            .unwrap()
            .is_none()
    );

    let cases = [
        (here.id, member.id, Some(&member_here)),
        (here.id, outsider.id, None),
        (elsewhere.id, member.id, None),
        (elsewhere.id, outsider.id, Some(&outsider_elsewhere)),
    ];
    for (project_id, user_id, expected) in cases {
        let (read_project, read_membership) = ops
            .get_project_with_membership(project_id, user_id)
            .await
            .unwrap()
            .expect("the project");
        assert_eq!(
            Some(read_project),
            ops.get_project(project_id).await.unwrap()
        );
        assert_eq!(
            read_membership,
            ops.find_membership(project_id, user_id).await.unwrap()
        );
        assert_eq!(
            read_membership.as_ref().map(|m| m.id),
            expected.map(|m| m.id)
        );
    }
    assert!(
        ops.get_project_with_membership(Uuid::now_v7(), member.id)
            .await
            .unwrap()
            .is_none()
    );
}

/// Four readers at once each get a whole collection of 300 records, in order.
pub async fn whole_collections_read_concurrently(store: Arc<dyn Store>) {
    let project_id = Uuid::now_v7();
    let at = now();
    let mut tx = store.write().await.unwrap();
    tx.insert_project(&project(project_id)).await.unwrap();
    for n in 0..300 {
        let body = json!({ "name": format!("task {n}") });
        let task = RecordRow {
            id: Uuid::now_v7(),
            project_id,
            collection: "tasks".into(),
            body: body.as_object().unwrap().clone(),
            version: 1,
            created_at: at,
            updated_at: at,
        };
        tx.insert_record(&task, &[]).await.unwrap();
    }
    tx.commit().await.unwrap();
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut ops = store.read().await.unwrap();
                ops.list_records(project_id, "tasks", Page::ALL)
                    .await
                    .unwrap()
            })
        })
        .collect();
    for reader in readers {
        let records = reader.await.unwrap();
        assert_eq!(records.len(), 300);
        assert_eq!(records[299].body["name"], "task 299");
    }
}

/// An event's echo is stored with it and read back exactly; events without one read back
/// without one.
pub async fn events_carry_their_echo(store: &dyn Store) {
    let stream = StreamKey::Project(Uuid::now_v7());
    let echo = json!({
        "localRevision": "local-1",
        "client": "client-7",
        "changes": {"tasks": {"added": [{"$PhantomId": "_p", "id": "x", "name": "ü ✓ \"q\""}]}},
    });
    let mut tx = store.write().await.unwrap();
    let first = tx
        .append_event(NewEvent {
            echo: Some(echo.clone()),
            ..event(stream)
        })
        .await
        .unwrap();
    let second = tx.append_event(event(stream)).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(first.echo.as_ref(), Some(&echo), "append returns the echo");
    assert_eq!(second.echo, None);
    let read = store
        .read()
        .await
        .unwrap()
        .read_events(stream, 0, 10)
        .await
        .unwrap();
    assert_eq!(read, vec![first, second], "events read back as written");
    assert_eq!(read[0].echo.as_ref(), Some(&echo));
    assert_eq!(read[1].echo, None);
}

/// Phantom ids map to the real id they got first, per project, only the newest `keep` are
/// kept, and they go with their project.
pub async fn phantom_ids_are_kept_bounded(store: &dyn Store) {
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
    let names = |range: std::ops::Range<usize>| -> Vec<String> {
        range.map(|n| format!("_phantom_{n}")).collect()
    };
    let sorted = |mut found: Vec<(String, Uuid)>| {
        found.sort();
        found
    };
    let mut tx = store.write().await.unwrap();
    tx.insert_project(&project(a)).await.unwrap();
    tx.insert_project(&project(b)).await.unwrap();
    let first: Vec<(String, Uuid)> = names(0..3).into_iter().zip(ids.clone()).collect();
    tx.put_phantom_ids(a, &first, 3).await.unwrap();
    tx.put_phantom_ids(b, &[("_phantom_0".into(), ids[4])], 3)
        .await
        .unwrap();
    // A phantom mapped again keeps its first id and does not count as new.
    tx.put_phantom_ids(a, &[("_phantom_0".into(), ids[3])], 3)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    assert_eq!(
        sorted(ops.get_phantom_ids(a, &names(0..5)).await.unwrap()),
        first
    );
    assert_eq!(
        ops.get_phantom_ids(b, &names(0..5)).await.unwrap(),
        vec![("_phantom_0".to_owned(), ids[4])],
        "each project has its own map"
    );
    drop(ops);
    let mut tx = store.write().await.unwrap();
    let later: Vec<(String, Uuid)> = names(3..5).into_iter().zip(ids[3..].to_vec()).collect();
    tx.put_phantom_ids(a, &later, 3).await.unwrap();
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    let kept = sorted(ops.get_phantom_ids(a, &names(0..5)).await.unwrap());
    assert_eq!(
        kept.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        ["_phantom_2", "_phantom_3", "_phantom_4"],
        "the oldest beyond the newest three are gone"
    );
    drop(ops);
    let mut tx = store.write().await.unwrap();
    tx.delete_project(a).await.unwrap();
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    assert!(
        ops.get_phantom_ids(a, &names(0..5))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(ops.get_phantom_ids(b, &names(0..1)).await.unwrap().len(), 1);
}
