//! Pusher webhooks (CONTRACT §10) for real: `Webhooks` posts to receivers on 127.0.0.1 that
//! record every request and answer as told (200, 500 then 200, 400, a redirect), and the real
//! `pusher` server SDK 5 (tests/node) verifies what they received. Driven through
//! `ActivitySink::record`, as the socket side does, with a directory the test controls.
//!
//! The Node part needs `npm` (installs tests/node/node_modules on first run); without it that
//! test is skipped with a loud message. CI has npm.

use async_trait::async_trait;
use liveplan_server::pusher::activity::ChannelActivity;
use liveplan_server::pusher::credentials::PusherCredentials;
use liveplan_server::pusher::directory::{
    ChannelDirectory, ChannelInfo, DirectoryError, Publication,
};
use liveplan_server::pusher::signature::webhook_signature;
use liveplan_server::pusher::webhooks::retry::RetryPolicy;
use liveplan_server::pusher::webhooks::{WebhookSettings, Webhooks};
use liveplan_testkit::node::node_dir;
use liveplan_testkit::receivers::{Received, Receivers};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The bound on waiting for anything in these tests.
const GUARD: Duration = Duration::from_secs(20);

fn credentials() -> PusherCredentials {
    PusherCredentials {
        app_id: "4242".into(),
        key: "webhook-key".into(),
        secret: "webhook-secret".into(),
    }
}

/// Short times, so retries and the grace pass quickly.
fn settings() -> WebhookSettings {
    WebhookSettings {
        grace: Duration::from_millis(200),
        retry: RetryPolicy {
            first: Duration::from_millis(50),
            max: Duration::from_millis(200),
            give_up_after: Duration::from_secs(10),
        },
        request_timeout: Duration::from_secs(5),
        ..WebhookSettings::default()
    }
}

/// The events a Pusher webhook request carries.
fn events(received: &Received) -> Vec<Value> {
    received.json()["events"].as_array().unwrap().clone()
}

/// Waits until some request to `path` carries an event `matches` accepts; returns every event
/// `path` got until then.
async fn wait_for_event(
    receivers: &Receivers,
    path: &str,
    matches: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let got = receivers
        .wait_until(path, "the awaited event", |got| {
            got.iter().flat_map(events).any(|e| matches(&e))
        })
        .await;
    got.iter().flat_map(events).collect()
}

/// Receivers on 127.0.0.1:0 (`/moved` redirects, `/hang-once` holds its first request): them
/// and their base URL.
async fn receivers() -> (Arc<Receivers>, String) {
    let (receivers, addr) = liveplan_testkit::receivers::start().await;
    (receivers, format!("http://{addr}"))
}

/// A directory whose answers the test sets: occupied channels, presence members, or down.
#[derive(Default)]
struct FakeDirectory {
    occupied: Mutex<HashMap<String, u64>>,
    members: Mutex<HashMap<String, Vec<String>>>,
    down: std::sync::atomic::AtomicBool,
    /// While set, `channel` tells `entered` it was called and waits for `release`.
    held: std::sync::atomic::AtomicBool,
    entered: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

impl FakeDirectory {
    fn check(&self) -> Result<(), DirectoryError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            Err(DirectoryError::Unavailable)
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl ChannelDirectory for FakeDirectory {
    async fn publish(
        &self,
        _publication: Publication<'_>,
    ) -> Result<Vec<(String, i64)>, DirectoryError> {
        Err(DirectoryError::Unavailable)
    }

    async fn occupied_channels(
        &self,
        _prefix: Option<&str>,
    ) -> Result<Vec<ChannelInfo>, DirectoryError> {
        Err(DirectoryError::Unavailable)
    }

    async fn channel(&self, name: &str) -> Result<ChannelInfo, DirectoryError> {
        if self.held.load(std::sync::atomic::Ordering::SeqCst) {
            self.entered.notify_one();
            self.release.notified().await;
        }
        self.check()?;
        Ok(ChannelInfo {
            name: name.into(),
            subscription_count: self
                .occupied
                .lock()
                .unwrap()
                .get(name)
                .copied()
                .unwrap_or(0),
            user_count: None,
        })
    }

    async fn presence_users(&self, name: &str) -> Result<Vec<String>, DirectoryError> {
        self.check()?;
        Ok(self
            .members
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .unwrap_or_default())
    }

    async fn terminate_user_connections(&self, _user_id: &str) -> Result<(), DirectoryError> {
        Ok(())
    }
}

fn occupied(channel: &str) -> ChannelActivity {
    ChannelActivity::Occupied {
        channel: channel.into(),
    }
}

fn vacated(channel: &str) -> ChannelActivity {
    ChannelActivity::Vacated {
        channel: channel.into(),
    }
}

fn is(name: &str, channel: &str) -> impl Fn(&Value) -> bool {
    let (name, channel) = (name.to_owned(), channel.to_owned());
    move |event: &Value| event["name"] == name && event["channel"] == channel
}

fn signature_holds(received: &Received) -> bool {
    received.header("X-Pusher-Signature")
        == webhook_signature(&credentials(), received.body.as_bytes())
}

#[tokio::test]
async fn deliveries_are_signed_retried_when_worth_it_and_never_redirected() {
    let (receivers, base) = receivers().await;
    receivers.answer("/flaky", &[500, 503]);
    receivers.answer("/bad", &[400]);
    let urls = ["/flaky", "/bad", "/moved", "/ok"].map(|path| format!("{base}{path}"));
    let sink = Webhooks::start_with(
        settings(),
        &urls,
        credentials(),
        Arc::new(FakeDirectory::default()),
    )
    .unwrap();
    sink.record(occupied("first"));

    // 500, 503, then 200: the same signed bytes three times.
    let flaky = receivers.wait_for("/flaky", 3).await;
    assert_eq!(flaky[0].body, flaky[1].body);
    assert_eq!(flaky[1].body, flaky[2].body);
    let ok = receivers.wait_for("/ok", 1).await;
    let first = &ok[0];
    assert_eq!(first.body, flaky[0].body, "every URL gets the same body");
    assert_eq!(first.header("Content-Type"), "application/json");
    assert_eq!(first.header("X-Pusher-Key"), "webhook-key");
    assert!(signature_holds(first));
    let json = first.json();
    assert_eq!(
        json["events"],
        json!([{"name": "channel_occupied", "channel": "first"}])
    );
    let time_ms = json["time_ms"].as_i64().unwrap();
    assert!((time_ms - chrono::Utc::now().timestamp_millis()).abs() < 60_000);

    // Deliveries to one URL go in order, so once a URL has the second body its first was
    // settled: a refused (400) or redirected (302) one was not sent again.
    sink.record(occupied("second"));
    for path in ["/bad", "/moved", "/flaky", "/ok"] {
        let got = receivers.wait_for(path, 2).await;
        let last = got.last().unwrap();
        assert_eq!(
            events(last),
            [json!({"name": "channel_occupied", "channel": "second"})],
            "{path}"
        );
        assert!(signature_holds(last), "{path}");
    }
    assert_eq!(receivers.got("/bad").len(), 2, "a 400 is final");
    assert_eq!(receivers.got("/moved").len(), 2, "a redirect is final");
    assert!(receivers.got("/redirected").is_empty(), "and not followed");
    assert_eq!(receivers.got("/flaky").len(), 4);
}

#[tokio::test]
async fn a_receiver_that_is_down_or_hangs_gets_the_webhook_again() {
    // Nothing listens on this port at first: the attempts fail to connect.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let (hanging, hanging_base) = receivers().await;
    let sink = Webhooks::start_with(
        WebhookSettings {
            request_timeout: Duration::from_millis(500),
            ..settings()
        },
        &[
            format!("http://{addr}/down"),
            format!("{hanging_base}/hang-once"),
        ],
        credentials(),
        Arc::new(FakeDirectory::default()),
    )
    .unwrap();
    sink.record(occupied("patient"));
    // The first attempt hangs past the timeout; the next one is answered.
    let got = hanging.wait_for("/hang-once", 2).await;
    assert_eq!(got[0].body, got[1].body);
    // Give the refused connections a few rounds, then start listening on the port.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("the port is still free");
    let down = liveplan_testkit::receivers::serve(listener);
    let got = down.wait_for("/down", 1).await;
    assert_eq!(
        events(&got[0]),
        [json!({"name": "channel_occupied", "channel": "patient"})]
    );
    assert!(signature_holds(&got[0]));
}

#[tokio::test]
async fn leaves_are_reported_only_when_they_still_hold_after_the_grace() {
    let (receivers, base) = receivers().await;
    let directory = Arc::new(FakeDirectory::default());
    let sink = Webhooks::start_with(
        settings(),
        &[format!("{base}/hook")],
        credentials(),
        directory.clone(),
    )
    .unwrap();
    // "back" is occupied again by the time its grace is over (a rejoin on another node);
    // "gone" is not.
    directory.occupied.lock().unwrap().insert("back".into(), 1);
    directory
        .members
        .lock()
        .unwrap()
        .insert("presence-room".into(), vec!["returning".into()]);
    sink.record(vacated("back"));
    sink.record(ChannelActivity::MemberRemoved {
        channel: "presence-room".into(),
        user_id: "returning".into(),
    });
    sink.record(ChannelActivity::MemberRemoved {
        channel: "presence-room".into(),
        user_id: "leaving".into(),
    });
    sink.record(vacated("gone"));
    let events = wait_for_event(&receivers, "/hook", is("channel_vacated", "gone")).await;
    // Leaves are due in the order they were recorded: the earlier ones were decided by now.
    assert!(
        !events.iter().any(is("channel_vacated", "back")),
        "{events:?}"
    );
    assert!(
        events.contains(
            &json!({"name": "member_removed", "channel": "presence-room", "user_id": "leaving"})
        ),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|e| e["user_id"] == "returning"),
        "{events:?}"
    );

    // A rejoin recorded on this node within the grace reports neither the leave nor the join.
    sink.record(vacated("reload"));
    sink.record(occupied("reload"));
    sink.record(ChannelActivity::MemberRemoved {
        channel: "presence-room".into(),
        user_id: "reloader".into(),
    });
    sink.record(ChannelActivity::MemberAdded {
        channel: "presence-room".into(),
        user_id: "reloader".into(),
    });
    // A directory that cannot answer: the leave is reported anyway.
    directory
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    sink.record(vacated("unknown"));
    let events = wait_for_event(&receivers, "/hook", is("channel_vacated", "unknown")).await;
    assert!(
        !events.iter().any(|e| e["channel"] == "reload"),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|e| e["user_id"] == "reloader"),
        "{events:?}"
    );
}

#[tokio::test]
async fn every_activity_arrives_in_pushers_format_in_order() {
    let (receivers, base) = receivers().await;
    let sink = Webhooks::start_with(
        settings(),
        &[format!("{base}/hook")],
        credentials(),
        Arc::new(FakeDirectory::default()),
    )
    .unwrap();
    sink.record(occupied("private-a"));
    sink.record(ChannelActivity::MemberAdded {
        channel: "presence-b".into(),
        user_id: "u1".into(),
    });
    sink.record(ChannelActivity::ClientEvent {
        channel: "presence-b".into(),
        event: "client-typing".into(),
        data: "{\"at\":3}".into(),
        socket_id: "123.456".into(),
        user_id: Some("u1".into()),
    });
    sink.record(ChannelActivity::ClientEvent {
        channel: "private-a".into(),
        event: "client-x".into(),
        data: "text".into(),
        socket_id: "1.2".into(),
        user_id: None,
    });
    sink.record(ChannelActivity::CacheMiss {
        channel: "cache-c".into(),
    });
    let events = wait_for_event(&receivers, "/hook", is("cache_miss", "cache-c")).await;
    assert_eq!(
        events,
        [
            json!({"name": "channel_occupied", "channel": "private-a"}),
            json!({"name": "member_added", "channel": "presence-b", "user_id": "u1"}),
            json!({"name": "client_event", "channel": "presence-b", "event": "client-typing",
                   "data": "{\"at\":3}", "socket_id": "123.456", "user_id": "u1"}),
            json!({"name": "client_event", "channel": "private-a", "event": "client-x",
                   "data": "text", "socket_id": "1.2"}),
            json!({"name": "cache_miss", "channel": "cache-c"}),
        ]
    );
}

#[tokio::test]
async fn record_never_blocks_and_a_full_queue_drops() {
    const QUEUE: usize = 8;
    let (receivers, base) = receivers().await;
    let directory = Arc::new(FakeDirectory::default());
    directory
        .held
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let sink = Webhooks::start_with(
        WebhookSettings {
            queue: QUEUE,
            directory_timeout: GUARD * 2,
            ..settings()
        },
        &[format!("{base}/hook")],
        credentials(),
        directory.clone(),
    )
    .unwrap();
    // The dispatcher stops in the directory, asking after the leave once its grace is over.
    sink.record(vacated("stuck"));
    tokio::time::timeout(GUARD, directory.entered.notified())
        .await
        .expect("the grace ends and the directory is asked");
    // Meanwhile recording takes what the queue holds and drops the rest, without waiting.
    for i in 0..10_000 {
        sink.record(occupied(&format!("flood-{i}")));
    }
    directory
        .held
        .store(false, std::sync::atomic::Ordering::SeqCst);
    directory.release.notify_one();
    wait_for_event(
        &receivers,
        "/hook",
        is("channel_occupied", &format!("flood-{}", QUEUE - 1)),
    )
    .await;
    // Once the queue is drained, recording takes again.
    sink.record(occupied("after"));
    let events = wait_for_event(&receivers, "/hook", is("channel_occupied", "after")).await;
    let flood: Vec<&Value> = events
        .iter()
        .filter(|e| e["channel"].as_str().unwrap().starts_with("flood-"))
        .collect();
    assert_eq!(flood.len(), QUEUE, "the queue's worth got through");
    assert_eq!(flood[0]["channel"], "flood-0", "the first ones, in order");
    assert!(events.iter().any(is("channel_vacated", "stuck")));
}

#[tokio::test]
async fn queued_activity_is_batched_up_to_the_limit_per_post() {
    let (receivers, base) = receivers().await;
    let directory = Arc::new(FakeDirectory::default());
    directory
        .held
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let sink = Webhooks::start_with(
        WebhookSettings {
            max_batch: 2,
            directory_timeout: GUARD * 2,
            ..settings()
        },
        &[format!("{base}/hook")],
        credentials(),
        directory.clone(),
    )
    .unwrap();
    // Hold the dispatcher so that what follows is queued together.
    sink.record(vacated("held"));
    tokio::time::timeout(GUARD, directory.entered.notified())
        .await
        .expect("the directory is asked");
    for i in 0..5 {
        sink.record(occupied(&format!("batched-{i}")));
    }
    directory
        .held
        .store(false, std::sync::atomic::Ordering::SeqCst);
    directory.release.notify_one();
    wait_for_event(&receivers, "/hook", is("channel_occupied", "batched-4")).await;
    let posts = receivers.got("/hook");
    assert!(
        posts.iter().all(|post| events(post).len() <= 2),
        "at most 2 events per POST"
    );
    assert!(
        posts.iter().any(|post| events(post).len() == 2),
        "queued events share a POST"
    );
    let batched: Vec<Value> = posts
        .iter()
        .flat_map(events)
        .filter(|e| e["channel"].as_str().unwrap().starts_with("batched-"))
        .map(|e| e["channel"].clone())
        .collect();
    assert_eq!(
        batched,
        (0..5)
            .map(|i| json!(format!("batched-{i}")))
            .collect::<Vec<_>>()
    );
    assert!(posts.iter().all(signature_holds));
}

#[tokio::test]
async fn no_urls_no_webhooks_and_bad_urls_are_refused() {
    let directory: Arc<dyn ChannelDirectory> = Arc::new(FakeDirectory::default());
    // Without URLs the sink takes activity and does nothing with it.
    let sink = Webhooks::start(&[], credentials(), directory.clone()).unwrap();
    sink.record(occupied("x"));
    for bad in ["https://example.com/hook", "nonsense", "ftp://example.com/"] {
        let error = Webhooks::start(&[bad.to_owned()], credentials(), directory.clone())
            .err()
            .unwrap_or_else(|| panic!("{bad} refused"));
        assert!(
            error.to_string().contains("--pusher-webhook-url"),
            "{error}"
        );
    }
}

async fn npm_ready() -> bool {
    liveplan_testkit::node::npm_ready(&["pusher"], "pusher_webhooks (SDK part)").await
}

/// What the `pusher` SDK says of each `(headers, body)`.
async fn sdk_verdicts(webhooks: &[(HashMap<&str, String>, String)]) -> Vec<Value> {
    let input: Vec<Value> = webhooks
        .iter()
        .map(|(headers, body)| json!({"headers": headers, "body": body}))
        .collect();
    let credentials = credentials();
    let mut child = Command::new("node")
        .arg("pusher-webhook-verify.cjs")
        .args([&credentials.app_id, &credentials.key, &credentials.secret])
        .current_dir(node_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let output = tokio::time::timeout(GUARD, child.wait_with_output())
        .await
        .expect("the SDK answers in time")
        .unwrap();
    assert!(output.status.success(), "the node script ran");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn the_pusher_sdk_accepts_the_webhooks_and_refuses_forgeries() {
    if !npm_ready().await {
        return;
    }
    let (receivers, base) = receivers().await;
    let sink = Webhooks::start_with(
        settings(),
        &[format!("{base}/hook")],
        credentials(),
        Arc::new(FakeDirectory::default()),
    )
    .unwrap();
    sink.record(ChannelActivity::MemberAdded {
        channel: "presence-sdk".into(),
        user_id: "42".into(),
    });
    sink.record(ChannelActivity::ClientEvent {
        channel: "private-sdk".into(),
        event: "client-ü".into(),
        data: "{\"emoji\":\"✓\"}".into(),
        socket_id: "5.6".into(),
        user_id: None,
    });
    wait_for_event(&receivers, "/hook", is("client_event", "private-sdk")).await;
    let received = receivers.got("/hook");
    let as_sent = |r: &Received| {
        let headers: HashMap<&str, String> = [
            ("x-pusher-key", r.header("X-Pusher-Key").to_owned()),
            (
                "x-pusher-signature",
                r.header("X-Pusher-Signature").to_owned(),
            ),
            ("content-type", r.header("Content-Type").to_owned()),
        ]
        .into();
        (headers, r.body.clone())
    };
    let mut cases: Vec<_> = received.iter().map(as_sent).collect();
    let genuine = cases.len();
    // Forgeries: a changed body, another key, a signature of another secret.
    let (headers, body) = cases[0].clone();
    cases.push((headers.clone(), body.replace("42", "43")));
    let mut other_key = headers.clone();
    other_key.insert("x-pusher-key", "someone-else".into());
    cases.push((other_key, body.clone()));
    let mut other_secret = headers.clone();
    other_secret.insert(
        "x-pusher-signature",
        webhook_signature(
            &PusherCredentials {
                secret: "not-the-secret".into(),
                ..credentials()
            },
            body.as_bytes(),
        ),
    );
    cases.push((other_secret, body));

    let verdicts = sdk_verdicts(&cases).await;
    assert_eq!(verdicts.len(), cases.len());
    let events: Vec<Value> = verdicts[..genuine]
        .iter()
        .map(|v| {
            assert_eq!(v["valid"], true, "{v}");
            assert!(v["time"].as_i64().unwrap() > 0);
            v["events"].clone()
        })
        .flat_map(|e| e.as_array().unwrap().clone())
        .collect();
    assert_eq!(
        events,
        [
            json!({"name": "member_added", "channel": "presence-sdk", "user_id": "42"}),
            json!({"name": "client_event", "channel": "private-sdk", "event": "client-ü",
                   "data": "{\"emoji\":\"✓\"}", "socket_id": "5.6"}),
        ]
    );
    for forged in &verdicts[genuine..] {
        assert_eq!(forged["valid"], false, "{forged}");
    }
}
