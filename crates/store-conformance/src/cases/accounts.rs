//! Settings, users, sessions, tickets, and the uniqueness rules.

use super::*;

/// A setting reads back as written; writing it again replaces it.
pub async fn settings_are_kept_and_replaced(store: Arc<dyn Store>) {
    let mut tx = store.write().await.unwrap();
    assert_eq!(tx.get_setting("k").await.unwrap(), None);
    tx.put_setting("k", "v").await.unwrap();
    tx.put_setting("other", "o").await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.write().await.unwrap();
    assert_eq!(tx.get_setting("k").await.unwrap().as_deref(), Some("v"));
    tx.put_setting("k", "w ✓").await.unwrap();
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    assert_eq!(ops.get_setting("k").await.unwrap().as_deref(), Some("w ✓"));
    assert_eq!(
        ops.get_setting("other").await.unwrap().as_deref(),
        Some("o")
    );
}

/// Users read back field for field, are listed by id, change in place, and are found by email
/// or username whatever the case of the login (the email first when both match).
pub async fn users_are_kept_and_found_by_login(store: Arc<dyn Store>) {
    let alice = UserRow {
        username: Some("Alice".into()),
        is_admin: true,
        ..user("Alice@Example.test")
    };
    let bob = user("bob@example.test");
    // A username that is another user's email: the email wins.
    let tricky = UserRow {
        username: Some("bob@example.test".into()),
        ..user("tricky@example.test")
    };
    let mut tx = store.write().await.unwrap();
    assert_eq!(tx.count_users().await.unwrap(), 0);
    for u in [&alice, &bob, &tricky] {
        tx.insert_user(u).await.unwrap();
    }
    tx.commit().await.unwrap();

    let mut ops = store.read().await.unwrap();
    assert_eq!(ops.count_users().await.unwrap(), 3);
    assert_eq!(ops.get_user(alice.id).await.unwrap(), Some(alice.clone()));
    assert_eq!(ops.get_user(Uuid::now_v7()).await.unwrap(), None);
    let mut by_id = vec![alice.clone(), bob.clone(), tricky.clone()];
    by_id.sort_by_key(|u| u.id);
    assert_eq!(ops.list_users().await.unwrap(), by_id);
    for login in ["alice@example.test", "ALICE@EXAMPLE.TEST", "alice", "aLiCe"] {
        let found = ops.find_user_by_login(login).await.unwrap();
        assert_eq!(found.map(|u| u.id), Some(alice.id), "login {login}");
    }
    let found = ops.find_user_by_login("BOB@example.test").await.unwrap();
    assert_eq!(
        found.map(|u| u.id),
        Some(bob.id),
        "the email before a username"
    );
    assert_eq!(ops.find_user_by_login("nobody").await.unwrap(), None);
    assert_eq!(ops.find_user_by_login("").await.unwrap(), None);
    drop(ops);

    let changed = UserRow {
        email: "alice2@example.test".into(),
        username: None,
        display_name: "Alice Two".into(),
        password_hash: "y".into(),
        is_admin: false,
        is_active: false,
        version: 2,
        updated_at: now() + chrono::Duration::seconds(1),
        ..alice.clone()
    };
    let mut tx = store.write().await.unwrap();
    tx.update_user(&changed).await.unwrap();
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    assert_eq!(ops.get_user(alice.id).await.unwrap(), Some(changed));
    assert_eq!(ops.find_user_by_login("alice").await.unwrap(), None);
    assert_eq!(
        ops.get_user(bob.id).await.unwrap(),
        Some(bob),
        "others untouched"
    );
}

/// A session reads back as written; revoking it works once, and revoking a user's sessions
/// revokes only that user's live ones.
pub async fn sessions_are_revoked_once(store: Arc<dyn Store>) {
    let (ann, ben) = (user("ann@example.test"), user("ben@example.test"));
    let (first, second, bens) = (session(ann.id), session(ann.id), session(ben.id));
    let mut tx = store.write().await.unwrap();
    tx.insert_user(&ann).await.unwrap();
    tx.insert_user(&ben).await.unwrap();
    for s in [&first, &second, &bens] {
        tx.insert_session(s).await.unwrap();
    }
    tx.commit().await.unwrap();
    let at = now();
    let mut tx = store.write().await.unwrap();
    assert_eq!(tx.get_session(first.id).await.unwrap(), Some(first.clone()));
    assert!(tx.revoke_session(first.id, at).await.unwrap());
    assert!(!tx.revoke_session(first.id, at).await.unwrap(), "only once");
    assert!(!tx.revoke_session(Uuid::now_v7(), at).await.unwrap());
    assert_eq!(tx.revoke_user_sessions(ann.id, at).await.unwrap(), 1);
    assert_eq!(tx.revoke_user_sessions(ann.id, at).await.unwrap(), 0);
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    for s in [&first, &second] {
        let read = ops.get_session(s.id).await.unwrap().unwrap();
        assert_eq!(read.revoked_at, Some(at));
    }
    assert_eq!(ops.get_session(bens.id).await.unwrap(), Some(bens));
    assert_eq!(ops.get_session(Uuid::now_v7()).await.unwrap(), None);
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

/// Purging removes exactly the tickets expired by then, used or not.
pub async fn tickets_expire_and_are_purged(store: Arc<dyn Store>) {
    let owner = user("purge@example.test");
    let ticket = |hash: &str, seconds: i64| TicketRow {
        hash: hash.into(),
        user_id: owner.id,
        session_id: Uuid::now_v7(),
        expires_at: now() + chrono::Duration::seconds(seconds),
        used_at: None,
    };
    let mut tx = store.write().await.unwrap();
    tx.insert_user(&owner).await.unwrap();
    for t in [
        ticket("old", -60),
        ticket("older", -120),
        ticket("live", 60),
    ] {
        tx.insert_ticket(&t).await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut tx = store.write().await.unwrap();
    assert_eq!(tx.purge_expired_tickets(now()).await.unwrap(), 2);
    assert_eq!(tx.purge_expired_tickets(now()).await.unwrap(), 0);
    let used = tx.consume_ticket("live", now()).await.unwrap().unwrap();
    assert!(used.used_at.is_some());
    assert_eq!(used.hash, "live");
    assert_eq!(
        tx.purge_expired_tickets(now() + chrono::Duration::seconds(120))
            .await
            .unwrap(),
        1
    );
    tx.commit().await.unwrap();
}

/// Uniqueness rules surface as conflicts in words, not database text, and the loser's row is
/// never written: ids, emails and usernames (case-insensitively), project keys, one membership
/// per user and project, session ids, ticket hashes, record ids.
pub async fn unique_rules_are_conflicts(store: Arc<dyn Store>) {
    let first = UserRow {
        username: Some("Same".into()),
        ..user("same@example.test")
    };
    let keyed = ProjectRow {
        key: Some("KEY".into()),
        ..project(Uuid::now_v7())
    };
    let task = record(keyed.id, "tasks", json!({ "name": "t" }));
    let member = membership(keyed.id, first.id, 100);
    let first_session = session(first.id);
    let ticket = TicketRow {
        hash: "h".into(),
        user_id: first.id,
        session_id: first_session.id,
        expires_at: now() + chrono::Duration::seconds(30),
        used_at: None,
    };
    let mut tx = store.write().await.unwrap();
    tx.insert_user(&first).await.unwrap();
    tx.insert_project(&keyed).await.unwrap();
    tx.insert_record(&task, &[]).await.unwrap();
    tx.insert_membership(&member).await.unwrap();
    tx.insert_session(&first_session).await.unwrap();
    tx.insert_ticket(&ticket).await.unwrap();
    tx.commit().await.unwrap();

    // Each attempt in a transaction of its own: after a failed statement a backend may refuse
    // the rest of the transaction.
    let cases: Vec<(&str, &str)> = vec![
        ("email", "a user with this email already exists"),
        ("username", "a user with this username already exists"),
        (
            "user id",
            "a record with the same unique value already exists",
        ),
        ("key", "a project with this key already exists"),
        (
            "project id",
            "a record with the same unique value already exists",
        ),
        ("membership", "the user is already a member of this project"),
        (
            "record id",
            "a record with the same unique value already exists",
        ),
        (
            "session id",
            "a record with the same unique value already exists",
        ),
        (
            "ticket hash",
            "a record with the same unique value already exists",
        ),
    ];
    for (rule, words) in cases {
        let mut tx = store.write().await.unwrap();
        let result = match rule {
            "email" => tx.insert_user(&user("SAME@Example.test")).await,
            "username" => {
                let other = UserRow {
                    username: Some("sAME".into()),
                    ..user("other@example.test")
                };
                tx.insert_user(&other).await
            }
            "user id" => {
                let twin = UserRow {
                    id: first.id,
                    ..user("twin@example.test")
                };
                tx.insert_user(&twin).await
            }
            "key" => {
                let other = ProjectRow {
                    key: Some("key".into()),
                    ..project(Uuid::now_v7())
                };
                tx.insert_project(&other).await
            }
            "project id" => tx.insert_project(&project(keyed.id)).await,
            "membership" => {
                tx.insert_membership(&membership(keyed.id, first.id, 1))
                    .await
            }
            "record id" => tx.insert_record(&task, &[]).await,
            "session id" => tx.insert_session(&first_session).await,
            _ => tx.insert_ticket(&ticket).await,
        };
        assert_eq!(conflict_words(result), words, "the {rule} rule");
    }
    let mut ops = store.read().await.unwrap();
    assert_eq!(ops.count_users().await.unwrap(), 1, "no loser was written");
    assert_eq!(ops.list_projects().await.unwrap().len(), 1);
    assert_eq!(ops.list_memberships(keyed.id).await.unwrap().len(), 1);
    assert_eq!(ops.count_records(keyed.id).await.unwrap(), 1);
}

/// Deleting a user takes their sessions, tickets and memberships and nothing of anyone else's;
/// the email is free again, and deleting a user that is not there is no error.
pub async fn deleting_a_user_takes_their_sessions_and_memberships(store: Arc<dyn Store>) {
    let (gone, kept) = (user("gone@example.test"), user("kept@example.test"));
    let project_id = Uuid::now_v7();
    let (gone_session, kept_session) = (session(gone.id), session(kept.id));
    let ticket = |hash: &str, owner: &UserRow, session: &SessionRow| TicketRow {
        hash: hash.into(),
        user_id: owner.id,
        session_id: session.id,
        expires_at: now() + chrono::Duration::seconds(30),
        used_at: None,
    };
    let (gone_member, kept_member) = (
        membership(project_id, gone.id, 400),
        membership(project_id, kept.id, 100),
    );
    let mut tx = store.write().await.unwrap();
    tx.insert_user(&gone).await.unwrap();
    tx.insert_user(&kept).await.unwrap();
    tx.insert_session(&gone_session).await.unwrap();
    tx.insert_session(&kept_session).await.unwrap();
    tx.insert_ticket(&ticket("gone-ticket", &gone, &gone_session))
        .await
        .unwrap();
    tx.insert_ticket(&ticket("kept-ticket", &kept, &kept_session))
        .await
        .unwrap();
    tx.insert_project(&project(project_id)).await.unwrap();
    tx.insert_membership(&gone_member).await.unwrap();
    tx.insert_membership(&kept_member).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.write().await.unwrap();
    tx.delete_user(gone.id).await.unwrap();
    tx.delete_user(Uuid::now_v7()).await.unwrap();
    tx.commit().await.unwrap();

    let mut ops = store.read().await.unwrap();
    assert_eq!(ops.get_user(gone.id).await.unwrap(), None);
    assert_eq!(ops.get_session(gone_session.id).await.unwrap(), None);
    assert_eq!(ops.get_membership(gone_member.id).await.unwrap(), None);
    assert_eq!(ops.get_user(kept.id).await.unwrap(), Some(kept.clone()));
    assert_eq!(
        ops.get_session(kept_session.id).await.unwrap(),
        Some(kept_session)
    );
    assert_eq!(
        ops.list_memberships(project_id).await.unwrap(),
        vec![kept_member]
    );
    drop(ops);
    let mut tx = store.write().await.unwrap();
    assert_eq!(tx.consume_ticket("gone-ticket", now()).await.unwrap(), None);
    assert!(
        tx.consume_ticket("kept-ticket", now())
            .await
            .unwrap()
            .is_some()
    );
    // The email is free again: an import puts the same account back.
    tx.insert_user(&gone).await.unwrap();
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    assert_eq!(ops.get_user(gone.id).await.unwrap(), Some(gone));
}
