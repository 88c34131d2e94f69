//! Who gets what: presence, eviction, per-user filters.

mod common;

use common::*;
use liveplan_hub::*;
use proto::{Event, EventType, StreamKey};
use std::collections::HashSet;
use std::sync::Arc;
use uuid::Uuid;

fn presence_req(s: &Setup, project: Uuid, user: Uuid, name: &str) -> SubscribeRequest {
    let mut req = SubscribeRequest::new(StreamKey::Project(project), s.ws, user);
    req.presence = Some(name.to_owned());
    req
}

/// Presence frames seen by `sub` until (and including) the first one that satisfies `stop`.
async fn presence_until(
    sub: &mut Subscription,
    stop: impl Fn(&serde_json::Value) -> bool,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    loop {
        let v = json(&next(sub).await);
        let kind = v["event_type"].as_str().unwrap().to_owned();
        if kind.starts_with("presence_") {
            assert!(v["seq"].is_null());
            let who = v["payload"]["display_name"].as_str().unwrap().to_owned();
            let done = stop(&v);
            out.push((kind, who));
            if done {
                return out;
            }
        }
    }
}

#[tokio::test]
async fn two_tabs_of_one_user_join_once_and_leave_once() {
    let s = setup().await;
    let project = Uuid::now_v7();
    let ada = Uuid::now_v7();
    let bob = Uuid::now_v7();
    let mut observer = s
        .hub
        .subscribe(SubscribeRequest::new(
            StreamKey::Project(project),
            s.ws,
            Uuid::now_v7(),
        ))
        .await
        .unwrap();

    let tab1 = s
        .hub
        .subscribe(presence_req(&s, project, ada, "Ada"))
        .await
        .unwrap();
    let tab2 = s
        .hub
        .subscribe(presence_req(&s, project, ada, "Ada"))
        .await
        .unwrap();
    assert_eq!(
        s.hub.presence(project),
        vec![PresenceEntry {
            user_id: ada,
            display_name: "Ada".into(),
            connections: 2
        }]
    );
    drop(tab1);
    assert_eq!(s.hub.presence(project)[0].connections, 1);
    // Bob's join is a marker: presence events are published in the order counts changed, so
    // anything Ada's tabs caused (a flap) would arrive before it.
    let bob_tab = s
        .hub
        .subscribe(presence_req(&s, project, bob, "Bob"))
        .await
        .unwrap();
    let seen = presence_until(&mut observer, |v| v["payload"]["display_name"] == "Bob").await;
    assert_eq!(
        seen,
        vec![
            ("presence_join".into(), "Ada".into()),
            ("presence_join".into(), "Bob".into())
        ]
    );
    drop(tab2);
    let seen = presence_until(&mut observer, |_| true).await;
    assert_eq!(seen, vec![("presence_leave".into(), "Ada".into())]);
    assert_eq!(
        s.hub
            .presence(project)
            .iter()
            .map(|e| e.user_id)
            .collect::<Vec<_>>(),
        vec![bob]
    );
    drop(bob_tab);
    assert!(s.hub.presence(project).is_empty());
    // Presence belongs to its project only.
    assert!(s.hub.presence(Uuid::now_v7()).is_empty());
}

#[tokio::test]
async fn an_aborted_connection_task_releases_its_presence() {
    let s = setup().await;
    let project = Uuid::now_v7();
    let ada = Uuid::now_v7();
    let mut observer = s
        .hub
        .subscribe(SubscribeRequest::new(
            StreamKey::Project(project),
            s.ws,
            Uuid::now_v7(),
        ))
        .await
        .unwrap();
    let mut tab = s
        .hub
        .subscribe(presence_req(&s, project, ada, "Ada"))
        .await
        .unwrap();
    // A transport task that dies mid-await (TCP reset, panic, abort) without any goodbye.
    let task = tokio::spawn(async move {
        loop {
            let _ = tab.recv().await;
        }
    });
    task.abort();
    let _ = task.await;
    let seen = presence_until(&mut observer, |v| v["event_type"] == "presence_leave").await;
    assert_eq!(
        seen,
        vec![
            ("presence_join".into(), "Ada".into()),
            ("presence_leave".into(), "Ada".into())
        ]
    );
    assert!(s.hub.presence(project).is_empty());
    assert_eq!(s.hub.subscriber_count(Some(StreamKey::Project(project))), 1);
}

#[tokio::test]
async fn eviction_closes_exactly_the_targeted_subscriptions() {
    let s = setup().await;
    let (p1, p2) = (Uuid::now_v7(), Uuid::now_v7());
    let (ada, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let (session1, session2) = (Uuid::now_v7(), Uuid::now_v7());
    let open = |stream, user, session| {
        let mut req = SubscribeRequest::new(stream, s.ws, user);
        req.session_id = Some(session);
        s.hub.subscribe(req)
    };
    let mut ada_p1 = open(StreamKey::Project(p1), ada, session1).await.unwrap();
    let mut ada_p2 = open(StreamKey::Project(p2), ada, session2).await.unwrap();
    let mut ada_sys = open(StreamKey::System, ada, session1).await.unwrap();
    let mut bob_p1 = open(StreamKey::Project(p1), bob, Uuid::now_v7())
        .await
        .unwrap();

    // Ada has an unread frame queued when she is removed from p1: she must not get it.
    s.commit(StreamKey::Project(p1), EventType::TaskCreated)
        .await;
    assert_eq!(decode(&next(&mut bob_p1).await).seq, Some(1));
    let removed = s.hub.evict(
        EvictScope::UserInProject {
            user_id: ada,
            project_id: p1,
        },
        CloseReason::AccessRevoked,
    );
    assert_eq!(removed, 1);
    assert_eq!(
        next(&mut ada_p1).await,
        Delivery::Closed(CloseReason::AccessRevoked)
    );
    assert_eq!(
        ada_p1.try_recv(),
        Some(Delivery::Closed(CloseReason::AccessRevoked))
    );
    assert_eq!(CloseReason::AccessRevoked.ws_close_code(), 4003);

    // Everyone else is untouched.
    s.commit(StreamKey::Project(p1), EventType::TaskUpdated)
        .await;
    s.commit(StreamKey::Project(p2), EventType::TaskUpdated)
        .await;
    s.commit(StreamKey::System, EventType::ProjectCreated).await;
    assert_eq!(decode(&next(&mut bob_p1).await).seq, Some(2));
    assert_eq!(decode(&next(&mut ada_p2).await).seq, Some(1));
    assert_eq!(decode(&next(&mut ada_sys).await).seq, Some(1));

    assert_eq!(
        s.hub
            .evict(EvictScope::Session(session2), CloseReason::LoggedOut),
        1
    );
    assert_eq!(
        next(&mut ada_p2).await,
        Delivery::Closed(CloseReason::LoggedOut)
    );
    assert_eq!(CloseReason::LoggedOut.ws_close_code(), 4003);
    // Already-closed subscriptions are not counted again.
    assert_eq!(
        s.hub
            .evict(EvictScope::User(ada), CloseReason::AccessRevoked),
        1
    );
    assert_eq!(
        next(&mut ada_sys).await,
        Delivery::Closed(CloseReason::AccessRevoked)
    );
    s.commit(StreamKey::Project(p1), EventType::TaskUpdated)
        .await;
    assert_eq!(decode(&next(&mut bob_p1).await).seq, Some(3));

    // Bob demoted to Viewer: his native socket closes, his SSE stream stays.
    let mut bob_sse = s
        .hub
        .subscribe(SubscribeRequest::new(StreamKey::Project(p1), s.sse, bob))
        .await
        .unwrap();
    let demoted = EvictScope::UserInProject {
        user_id: bob,
        project_id: p1,
    };
    assert_eq!(
        s.hub
            .evict_dialect(demoted, s.ws, CloseReason::AccessRevoked),
        1
    );
    assert_eq!(
        next(&mut bob_p1).await,
        Delivery::Closed(CloseReason::AccessRevoked)
    );
    s.commit(StreamKey::Project(p1), EventType::TaskUpdated)
        .await;
    let Delivery::Frame(frame) = next(&mut bob_sse).await else {
        panic!("frame expected")
    };
    assert!(frame.starts_with(b"id: 4\n"));
}

/// The `system` stream as the project-list SSE stream would use it: a user sees only events of
/// projects they belong to, on every path an event can take to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_hides_other_projects_live_in_replay_and_in_catch_up() {
    let s = setup().await;
    let mine: HashSet<Uuid> = [Uuid::now_v7(), Uuid::now_v7()].into();
    let theirs = Uuid::now_v7();
    let projects: Vec<Uuid> = mine.iter().copied().chain([theirs]).collect();
    let allowed = Arc::new(mine.clone());
    let filter: EventFilter = {
        let allowed = allowed.clone();
        Arc::new(move |e: &Event| e.project_id.is_some_and(|p| allowed.contains(&p)))
    };
    let open = |since: Option<i64>, limits: Option<QueueLimits>, dialect: DialectId| {
        let mut req = SubscribeRequest::new(StreamKey::System, dialect, Uuid::now_v7());
        req.since = since;
        req.filter = Some(filter.clone());
        req.limits = limits;
        s.hub.subscribe(req)
    };
    for i in 0..300 {
        s.commit_for_project(StreamKey::System, projects[i % 3])
            .await;
    }
    let mut replay = open(Some(0), None, s.ws).await.unwrap();
    let mut live = open(None, None, s.ws).await.unwrap();
    let tiny = QueueLimits {
        max_events: 4,
        max_bytes: 1 << 20,
    };
    let mut lagging = open(None, Some(tiny), s.ws).await.unwrap();
    let mut sse = open(Some(0), None, s.sse).await.unwrap();
    let mut committed = Vec::new();
    for i in 0..300 {
        committed.push(
            s.commit_for_project(StreamKey::System, projects[i % 3])
                .await,
        );
    }
    // A final event of an allowed project marks the end for everyone.
    let end = s
        .commit_for_project(StreamKey::System, *mine.iter().next().unwrap())
        .await
        .seq
        .unwrap();
    let project_of = |seq: i64| {
        if seq == end {
            return *mine.iter().next().unwrap();
        }
        let i = (seq - 1) as usize;
        projects[i % 3]
    };
    for (name, sub, from) in [
        ("replay", &mut replay, 0),
        ("live", &mut live, 300),
        ("lagging", &mut lagging, 300),
    ] {
        let got = just_seqs(&seqs_until(sub, end).await);
        let expected: Vec<i64> = (from + 1..=end)
            .filter(|&n| mine.contains(&project_of(n)))
            .collect();
        assert_eq!(got, expected, "{name}");
    }
    assert!(lagging.stats().overflows >= 1);
    let mut sse_ids = Vec::new();
    while sse_ids.last() != Some(&end) {
        let Delivery::Frame(frame) = next(&mut sse).await else {
            panic!("frame expected")
        };
        let text = std::str::from_utf8(&frame).unwrap();
        let id: i64 = text[4..text.find('\n').unwrap()].parse().unwrap();
        assert!(mine.contains(&project_of(id)), "leaked seq {id}");
        sse_ids.push(id);
    }
    assert_eq!(sse_ids.len(), 2 * 200 + 1);
    drop(committed);
}

/// The node's sweep: a subscription in the swept heartbeat slot gets one heartbeat however
/// many sweeps came before it read (and never from `try_recv`, so never inside a batch); one
/// in another slot or without a slot gets none.
#[tokio::test]
async fn a_sweep_sends_heartbeats_to_its_slot_only() {
    let s = setup().await;
    let stream = StreamKey::Project(Uuid::now_v7());
    let slotted = |slot: Option<u32>| {
        let mut req = SubscribeRequest::new(stream, s.ws, Uuid::now_v7());
        req.heartbeat_slot = slot;
        req
    };
    let mut one = s.hub.subscribe(slotted(Some(1))).await.unwrap();
    let mut two = s.hub.subscribe(slotted(Some(2))).await.unwrap();
    let mut none = s.hub.subscribe(slotted(None)).await.unwrap();
    s.hub.sweep(Some(1), chrono::Utc::now());
    s.hub.sweep(Some(1), chrono::Utc::now());
    assert_eq!(one.try_recv(), None);
    assert_eq!(next(&mut one).await, Delivery::Heartbeat);
    let committed = s.commit(stream, EventType::TaskCreated).await;
    // Exactly one heartbeat: the event comes next.
    assert_eq!(json(&next(&mut one).await)["seq"], committed.seq.unwrap());
    for sub in [&mut two, &mut none] {
        assert_eq!(json(&next(sub).await)["seq"], committed.seq.unwrap());
    }
}

/// A subscription whose session expired is closed: by the sweep when it is idle, and before
/// any event the hub handles after the expiry when it is not; one without expiry stays.
#[tokio::test]
async fn an_expired_session_closes_its_subscriptions() {
    let s = setup().await;
    let stream = StreamKey::Project(Uuid::now_v7());
    let expiring = |at: chrono::DateTime<chrono::Utc>| {
        let mut req = SubscribeRequest::new(stream, s.ws, Uuid::now_v7());
        req.expires_at = Some(at);
        req
    };
    let past = chrono::Utc::now() - chrono::Duration::seconds(1);
    let future = chrono::Utc::now() + chrono::Duration::hours(1);
    let mut idle = s.hub.subscribe(expiring(past)).await.unwrap();
    let mut busy = s.hub.subscribe(expiring(past)).await.unwrap();
    let mut later = s.hub.subscribe(expiring(future)).await.unwrap();
    let mut forever = s.sub(stream, None).await;

    // The event reaches neither expired subscription: the hub closes them first.
    let committed = s.commit(stream, EventType::TaskCreated).await;
    for sub in [&mut later, &mut forever] {
        assert_eq!(json(&next(sub).await)["seq"], committed.seq.unwrap());
    }
    assert_eq!(
        next(&mut busy).await,
        Delivery::Closed(CloseReason::SessionExpired)
    );
    assert_eq!(CloseReason::SessionExpired.ws_close_code(), 4003);
    // Already closed by that delivery, so the sweep finds nothing more to close.
    assert_eq!(s.hub.sweep(None, chrono::Utc::now()), 0);
    assert_eq!(
        next(&mut idle).await,
        Delivery::Closed(CloseReason::SessionExpired)
    );

    // An idle one is closed by the sweep alone.
    let stream = StreamKey::Project(Uuid::now_v7());
    let mut req = SubscribeRequest::new(stream, s.ws, Uuid::now_v7());
    req.expires_at = Some(future);
    let mut quiet = s.hub.subscribe(req).await.unwrap();
    assert_eq!(s.hub.sweep(None, chrono::Utc::now()), 0);
    assert_eq!(quiet.try_recv(), None);
    // At `future`, `later` expires too; `forever` has no expiry.
    assert_eq!(s.hub.sweep(None, future), 2);
    for sub in [&mut quiet, &mut later] {
        assert_eq!(
            next(sub).await,
            Delivery::Closed(CloseReason::SessionExpired)
        );
    }
    assert_eq!(forever.try_recv(), None);
}
