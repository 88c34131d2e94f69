//! The node registry (`store::nodes`).

use super::*;
use store::NodeRow;

fn node(has_redis: bool) -> NodeRow {
    NodeRow {
        id: Uuid::now_v7(),
        has_redis,
        address: "127.0.0.1:8080".into(),
        started_at: now(),
        heartbeat_at: now(),
    }
}

fn ids(nodes: &[NodeRow]) -> Vec<Uuid> {
    nodes.iter().map(|n| n.id).collect()
}

const LONG: Duration = Duration::from_secs(3600);

pub async fn nodes_join_beat_expire_and_leave(store: Arc<dyn Store>) {
    let a = node(true);
    let joined = store.join_nodes(&a, LONG, &|_| true).await.unwrap();
    assert!(joined.admitted);
    assert!(joined.others.is_empty());
    let live = store.live_nodes(LONG).await.unwrap();
    assert_eq!(ids(&live), vec![a.id]);
    assert_eq!(live[0].address, a.address);
    assert!(live[0].has_redis);
    assert_eq!(live[0].started_at, a.started_at);

    // A refused node is not registered, and sees who is there.
    let refused = node(false);
    let joined = store
        .join_nodes(&refused, LONG, &|others| others.is_empty())
        .await
        .unwrap();
    assert!(!joined.admitted);
    assert_eq!(ids(&joined.others), vec![a.id]);
    assert_eq!(ids(&store.live_nodes(LONG).await.unwrap()), vec![a.id]);
    assert!(!store.heartbeat_node(refused.id).await.unwrap());

    let b = node(true);
    let joined = store.join_nodes(&b, LONG, &|_| true).await.unwrap();
    assert!(joined.admitted);
    assert_eq!(ids(&joined.others), vec![a.id]);
    assert_eq!(
        ids(&store.live_nodes(LONG).await.unwrap()),
        vec![a.id, b.id]
    );
    // Joining again (same id) replaces the row and does not count the node as another.
    let joined = store.join_nodes(&b, LONG, &|_| true).await.unwrap();
    assert_eq!(ids(&joined.others), vec![a.id]);

    // Only A keeps beating: B goes out of the live set, and the next join forgets it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(store.heartbeat_node(a.id).await.unwrap());
    let recent = Duration::from_millis(250);
    assert_eq!(ids(&store.live_nodes(recent).await.unwrap()), vec![a.id]);
    assert_eq!(
        ids(&store.live_nodes(LONG).await.unwrap()),
        vec![a.id, b.id]
    );
    let c = node(true);
    let joined = store.join_nodes(&c, recent, &|_| true).await.unwrap();
    assert_eq!(ids(&joined.others), vec![a.id]);
    assert!(
        !store.heartbeat_node(b.id).await.unwrap(),
        "a forgotten node's heartbeat says so"
    );
    assert_eq!(
        ids(&store.live_nodes(LONG).await.unwrap()),
        vec![a.id, c.id]
    );

    store.leave_nodes(a.id).await.unwrap();
    store.leave_nodes(a.id).await.unwrap();
    assert_eq!(ids(&store.live_nodes(LONG).await.unwrap()), vec![c.id]);
    assert!(!store.heartbeat_node(a.id).await.unwrap());
}

/// Two nodes joining at once under "only when alone": exactly one is admitted, every round.
pub async fn concurrent_joins_exclude_each_other(store: Arc<dyn Store>) {
    for round in 0..10 {
        let (a, b) = (node(false), node(false));
        let alone = |others: &[NodeRow]| others.is_empty();
        let (ja, jb) = tokio::join!(
            store.join_nodes(&a, LONG, &alone),
            store.join_nodes(&b, LONG, &alone)
        );
        let (ja, jb) = (ja.unwrap(), jb.unwrap());
        assert!(
            ja.admitted != jb.admitted,
            "round {round}: both or neither admitted ({}, {})",
            ja.admitted,
            jb.admitted
        );
        let winner = if ja.admitted { a.id } else { b.id };
        assert_eq!(ids(&store.live_nodes(LONG).await.unwrap()), vec![winner]);
        store.leave_nodes(winner).await.unwrap();
    }
}
