//! What the Bryntum dialect keeps in the store: the echo an event carries, the phantom-id map.

use super::*;

/// An event's echo is stored with it and read back exactly; events without one read back
/// without one.
pub async fn events_carry_their_echo(store: Arc<dyn Store>) {
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
pub async fn phantom_ids_are_kept_bounded(store: Arc<dyn Store>) {
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
