//! Projects, memberships and records, with their references.

use super::*;

/// Projects and memberships read back, are found by key (any case), listed per user, changed
/// and removed.
pub async fn projects_and_memberships_are_kept(store: Arc<dyn Store>) {
    let (ann, ben) = (user("pm-ann@example.test"), user("pm-ben@example.test"));
    let mut body = serde_json::Map::new();
    body.insert("description".into(), json!({ "x": [1, 2] }));
    let alpha = ProjectRow {
        key: Some("ALPHA".into()),
        body,
        ..project(Uuid::now_v7())
    };
    let beta = project(Uuid::now_v7());
    let ann_alpha = membership(alpha.id, ann.id, 400);
    let ann_beta = membership(beta.id, ann.id, 1);
    let ben_alpha = membership(alpha.id, ben.id, 200);
    let mut tx = store.write().await.unwrap();
    tx.insert_user(&ann).await.unwrap();
    tx.insert_user(&ben).await.unwrap();
    tx.insert_project(&alpha).await.unwrap();
    tx.insert_project(&beta).await.unwrap();
    for m in [&ann_alpha, &ann_beta, &ben_alpha] {
        tx.insert_membership(m).await.unwrap();
    }
    tx.commit().await.unwrap();

    let mut ops = store.read().await.unwrap();
    assert_eq!(
        ops.get_project(alpha.id).await.unwrap(),
        Some(alpha.clone())
    );
    assert_eq!(ops.get_project(Uuid::now_v7()).await.unwrap(), None);
    for key in ["ALPHA", "alpha"] {
        let found = ops.find_project_by_key(key).await.unwrap();
        assert_eq!(found.map(|p| p.id), Some(alpha.id), "key {key}");
    }
    assert_eq!(ops.find_project_by_key("beta").await.unwrap(), None);
    let mut both = vec![alpha.clone(), beta.clone()];
    both.sort_by_key(|p| p.id);
    assert_eq!(ops.list_projects().await.unwrap(), both);
    assert_eq!(ops.list_projects_of_user(ann.id).await.unwrap(), both);
    assert_eq!(
        ops.list_projects_of_user(ben.id).await.unwrap(),
        vec![alpha.clone()]
    );
    assert_eq!(
        ops.get_membership(ben_alpha.id).await.unwrap(),
        Some(ben_alpha.clone())
    );
    assert_eq!(ops.get_membership(Uuid::now_v7()).await.unwrap(), None);
    let mut of_alpha = vec![ann_alpha.clone(), ben_alpha.clone()];
    of_alpha.sort_by_key(|m| m.id);
    assert_eq!(ops.list_memberships(alpha.id).await.unwrap(), of_alpha);
    let mut of_ann = vec![ann_alpha.clone(), ann_beta.clone()];
    of_ann.sort_by_key(|m| m.id);
    assert_eq!(ops.list_memberships_of_user(ann.id).await.unwrap(), of_ann);
    drop(ops);

    let renamed = ProjectRow {
        key: Some("GAMMA".into()),
        name: "renamed".into(),
        body: Default::default(),
        version: 2,
        updated_at: now() + chrono::Duration::seconds(1),
        ..alpha.clone()
    };
    let promoted = MembershipRow {
        role: 300,
        version: 2,
        updated_at: now() + chrono::Duration::seconds(1),
        ..ben_alpha.clone()
    };
    let mut tx = store.write().await.unwrap();
    tx.update_project(&renamed).await.unwrap();
    tx.update_membership(&promoted).await.unwrap();
    tx.delete_membership(ann_beta.id).await.unwrap();
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    assert_eq!(ops.get_project(alpha.id).await.unwrap(), Some(renamed));
    assert_eq!(ops.find_project_by_key("alpha").await.unwrap(), None);
    assert_eq!(
        ops.find_project_by_key("gamma")
            .await
            .unwrap()
            .map(|p| p.id),
        Some(alpha.id)
    );
    assert_eq!(
        ops.find_membership(alpha.id, ben.id).await.unwrap(),
        Some(promoted)
    );
    assert_eq!(ops.find_membership(beta.id, ann.id).await.unwrap(), None);
    assert!(ops.list_memberships(beta.id).await.unwrap().is_empty());
    assert_eq!(
        ops.list_projects_of_user(ann.id).await.unwrap(),
        vec![ops.get_project(alpha.id).await.unwrap().unwrap()]
    );
}

/// Deleting a project takes its memberships, records and references with it, and nothing of
/// another project.
pub async fn deleting_a_project_takes_its_rows(store: Arc<dyn Store>) {
    let owner = user("del@example.test");
    let (doomed, kept) = (project(Uuid::now_v7()), project(Uuid::now_v7()));
    let task = record(doomed.id, "tasks", json!({ "name": "t" }));
    let link = record(doomed.id, "dependencies", json!({ "from": task.id }));
    let kept_task = record(kept.id, "tasks", json!({ "name": "k" }));
    let kept_link = record(kept.id, "dependencies", json!({ "from": kept_task.id }));
    let refs = |target: Uuid| {
        [RecordRef {
            field: "from".into(),
            target_id: target,
        }]
    };
    let mut tx = store.write().await.unwrap();
    tx.insert_user(&owner).await.unwrap();
    for p in [&doomed, &kept] {
        tx.insert_project(p).await.unwrap();
        tx.insert_membership(&membership(p.id, owner.id, 400))
            .await
            .unwrap();
    }
    tx.insert_record(&task, &[]).await.unwrap();
    tx.insert_record(&link, &refs(task.id)).await.unwrap();
    tx.insert_record(&kept_task, &[]).await.unwrap();
    tx.insert_record(&kept_link, &refs(kept_task.id))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.write().await.unwrap();
    tx.delete_project(doomed.id).await.unwrap();
    tx.delete_project(Uuid::now_v7()).await.unwrap();
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    assert_eq!(ops.get_project(doomed.id).await.unwrap(), None);
    assert_eq!(ops.get_record(task.id).await.unwrap(), None);
    assert!(ops.list_referrers(task.id).await.unwrap().is_empty());
    assert!(ops.list_memberships(doomed.id).await.unwrap().is_empty());
    assert_eq!(ops.count_records(doomed.id).await.unwrap(), 0);
    assert_eq!(
        ops.list_memberships_of_user(owner.id).await.unwrap().len(),
        1
    );
    assert_eq!(ops.count_records(kept.id).await.unwrap(), 2);
    assert_eq!(ops.list_referrers(kept_task.id).await.unwrap().len(), 1);
}

/// Records keep their JSON bodies, their references index who points at whom, and deleting a
/// record drops its references.
pub async fn records_keep_bodies_and_references(store: Arc<dyn Store>) {
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

/// Records are listed per project and collection, in id order, a page at a time; a full update
/// replaces the references, a body update keeps them.
pub async fn records_are_listed_by_collection_in_pages(store: Arc<dyn Store>) {
    let (here, there) = (project(Uuid::now_v7()), project(Uuid::now_v7()));
    let tasks: Vec<_> = (0..5)
        .map(|n| record(here.id, "tasks", json!({ "n": n })))
        .collect();
    let link = record(here.id, "dependencies", json!({ "from": tasks[0].id }));
    let mut tx = store.write().await.unwrap();
    tx.insert_project(&here).await.unwrap();
    tx.insert_project(&there).await.unwrap();
    for t in &tasks {
        tx.insert_record(t, &[]).await.unwrap();
    }
    let first_ref = [RecordRef {
        field: "from".into(),
        target_id: tasks[0].id,
    }];
    tx.insert_record(&link, &first_ref).await.unwrap();
    tx.insert_record(&record(there.id, "tasks", json!({})), &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut ops = store.read().await.unwrap();
    assert_eq!(
        ops.list_records(here.id, "tasks", Page::ALL).await.unwrap(),
        tasks
    );
    let page = Page {
        limit: 2,
        offset: 1,
    };
    assert_eq!(
        ops.list_records(here.id, "tasks", page).await.unwrap(),
        tasks[1..3]
    );
    let past_the_end = Page {
        limit: 10,
        offset: 5,
    };
    assert!(
        ops.list_records(here.id, "tasks", past_the_end)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        ops.list_records(here.id, "resources", Page::ALL)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(ops.count_records(here.id).await.unwrap(), 6);
    assert_eq!(ops.count_records(there.id).await.unwrap(), 1);
    assert_eq!(ops.get_record(Uuid::now_v7()).await.unwrap(), None);
    drop(ops);

    let moved = RecordRow {
        body: json!({ "from": tasks[1].id, "to": tasks[2].id })
            .as_object()
            .unwrap()
            .clone(),
        version: 2,
        updated_at: now() + chrono::Duration::seconds(1),
        ..link.clone()
    };
    let moved_refs = [
        RecordRef {
            field: "from".into(),
            target_id: tasks[1].id,
        },
        RecordRef {
            field: "to".into(),
            target_id: tasks[2].id,
        },
    ];
    let mut tx = store.write().await.unwrap();
    tx.update_record(&moved, &moved_refs).await.unwrap();
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    assert_eq!(ops.get_record(link.id).await.unwrap(), Some(moved.clone()));
    assert!(
        ops.list_referrers(tasks[0].id).await.unwrap().is_empty(),
        "old ref gone"
    );
    let to = ops.list_referrers(tasks[2].id).await.unwrap();
    assert_eq!(
        to.iter()
            .map(|r| (r.record_id, r.collection.as_str(), r.field.as_str()))
            .collect::<Vec<_>>(),
        [(link.id, "dependencies", "to")]
    );
    drop(ops);

    let outputs = RecordRow {
        body: json!({ "note": "body only" }).as_object().unwrap().clone(),
        version: 3,
        updated_at: now() + chrono::Duration::seconds(2),
        ..moved.clone()
    };
    let mut tx = store.write().await.unwrap();
    tx.update_record_body(&outputs).await.unwrap();
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    assert_eq!(ops.get_record(link.id).await.unwrap(), Some(outputs));
    assert_eq!(
        ops.list_referrers(tasks[1].id).await.unwrap().len(),
        1,
        "a body update keeps the references"
    );
    assert_eq!(ops.count_records(here.id).await.unwrap(), 6);
}

/// The joined reads of authentication and of the role check give exactly what the separate
/// reads give: the session with its user, the project with this user's membership (and not
/// another user's, nor another project's), and nothing for what does not exist.
pub async fn joined_reads_match_separate_reads(store: Arc<dyn Store>) {
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
    drop(ops);

    // With a record too: the same project and membership, and the record whatever its
    // project (the caller checks), or none.
    let record = |project_id: Uuid| RecordRow {
        id: Uuid::now_v7(),
        project_id,
        collection: "tasks".into(),
        body: json!({ "name": "joined" }).as_object().unwrap().clone(),
        version: 1,
        created_at: at,
        updated_at: at,
    };
    let (task_here, task_elsewhere) = (record(here.id), record(elsewhere.id));
    let mut tx = store.write().await.unwrap();
    for r in [&task_here, &task_elsewhere] {
        tx.insert_record(r, &[]).await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut ops = store.read().await.unwrap();
    for (project_id, user_id, _) in cases {
        for record_id in [task_here.id, task_elsewhere.id, Uuid::now_v7()] {
            let (read_project, read_membership, read_record) = ops
                .get_project_with_membership_and_record(project_id, user_id, record_id)
                .await
                .unwrap()
                .expect("the project");
            assert_eq!(
                Some((read_project, read_membership)),
                ops.get_project_with_membership(project_id, user_id)
                    .await
                    .unwrap()
            );
            assert_eq!(read_record, ops.get_record(record_id).await.unwrap());
        }
    }
    let found = ops
        .get_project_with_membership_and_record(here.id, member.id, task_here.id)
        .await
        .unwrap();
    assert_eq!(found.and_then(|(_, _, r)| r), Some(task_here.clone()));
    assert!(
        ops.get_project_with_membership_and_record(Uuid::now_v7(), member.id, task_here.id)
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
