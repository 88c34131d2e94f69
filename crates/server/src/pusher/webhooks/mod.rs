//! Pusher's webhooks (CONTRACT §10): what the socket side records ([`ChannelActivity`]) is
//! POSTed to every `--pusher-webhook-url` in Pusher's format ([`body`]) with `X-Pusher-Key`
//! and `X-Pusher-Signature`, batched (at most [`WebhookSettings::max_batch`] events per POST),
//! leaves after their grace ([`grace`]), retried with backoff for 5 minutes ([`retry`]), in
//! order per URL ([`sender`]).
//!
//! Everything is bounded: [`ActivitySink::record`] never blocks and drops (with a warning at
//! most every 10 s) what a full queue cannot take; leaves waiting out their grace, and bodies
//! waiting for a slow URL, have limits of their own. What is lost when a node stops (queued
//! activity, deliveries in retry) is lost: webhooks are at most once per node, as Pusher's are
//! best effort.

pub mod body;
pub mod grace;
pub mod retry;
pub mod sender;

use super::activity::{ActivitySink, ChannelActivity, NoActivity};
use super::credentials::PusherCredentials;
use super::directory::ChannelDirectory;
use futures::StreamExt;
use grace::Grace;
use reqwest::Url;
use retry::RetryPolicy;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The most webhook URLs a server takes.
pub const MAX_URLS: usize = 10;

/// How webhooks are sent. [`Default`] is what the server uses; tests shorten the times.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// How long a leave waits for a rejoin (3 s).
    pub grace: Duration,
    /// Activity recorded but not yet handled (beyond it `record` drops).
    pub queue: usize,
    /// Leaves waiting out their grace (beyond it they go out at once).
    pub waiting_leaves: usize,
    /// Events per POST.
    pub max_batch: usize,
    /// POSTs waiting for one URL (beyond it that URL misses them).
    pub backlog_per_url: usize,
    pub request_timeout: Duration,
    /// How long the directory may take to say whether a leave still holds.
    pub directory_timeout: Duration,
    /// Directory checks at once.
    pub directory_checks: usize,
    pub retry: RetryPolicy,
    /// Where deliveries' outcomes are counted (`liveplan_webhook_deliveries`).
    pub outcomes: crate::metrics::WebhookCounter,
}

impl Default for WebhookSettings {
    fn default() -> WebhookSettings {
        WebhookSettings {
            grace: Duration::from_secs(3),
            queue: 10_000,
            waiting_leaves: 10_000,
            max_batch: 100,
            backlog_per_url: 1_000,
            request_timeout: Duration::from_secs(10),
            directory_timeout: Duration::from_secs(2),
            directory_checks: 16,
            retry: RetryPolicy::default(),
            outcomes: crate::metrics::WebhookCounter::detached("pusher"),
        }
    }
}

/// A webhook URL the server refuses, with why (the operator reads it at start). A URL is named
/// by its position, never quoted: it may hold a secret.
#[derive(Debug, thiserror::Error)]
pub enum WebhookUrlError {
    #[error("--pusher-webhook-url number {0} is not an http:// URL with a host")]
    NotAUrl(usize),
    #[error(
        "--pusher-webhook-url number {position}: {scheme}:// is not supported, only http:// \
         (this build has no TLS client; put a TLS-terminating proxy in front of an https receiver)"
    )]
    UnsupportedScheme { position: usize, scheme: String },
    #[error("at most {MAX_URLS} --pusher-webhook-url may be given")]
    TooMany,
    #[error("the webhooks' HTTP client could not be made")]
    Client,
}

/// Checks the configured URLs (at most [`MAX_URLS`], each an `http://` URL with a host).
pub fn parse_urls(urls: &[String]) -> Result<Vec<Url>, WebhookUrlError> {
    if urls.len() > MAX_URLS {
        return Err(WebhookUrlError::TooMany);
    }
    urls.iter()
        .enumerate()
        .map(|(index, text)| {
            let position = index + 1;
            let url = Url::parse(text).map_err(|_| WebhookUrlError::NotAUrl(position))?;
            if url.scheme() != "http" {
                return Err(WebhookUrlError::UnsupportedScheme {
                    position,
                    scheme: url.scheme().to_owned(),
                });
            }
            if url.host_str().is_none_or(str::is_empty) {
                return Err(WebhookUrlError::NotAUrl(position));
            }
            Ok(url)
        })
        .collect()
}

/// The [`ActivitySink`] that sends webhooks.
pub struct Webhooks {
    activity: mpsc::Sender<ChannelActivity>,
    dropped: DropWarning,
}

impl Webhooks {
    /// The sink for `urls` ([`NoActivity`] when there are none), its tasks started on the
    /// current Tokio runtime. Errors name a URL the server refuses ([`parse_urls`]).
    pub fn start(
        urls: &[String],
        credentials: PusherCredentials,
        directory: Arc<dyn ChannelDirectory>,
    ) -> Result<Arc<dyn ActivitySink>, WebhookUrlError> {
        Webhooks::start_with(WebhookSettings::default(), urls, credentials, directory)
    }

    /// [`Webhooks::start`] with `settings`.
    pub fn start_with(
        settings: WebhookSettings,
        urls: &[String],
        credentials: PusherCredentials,
        directory: Arc<dyn ChannelDirectory>,
    ) -> Result<Arc<dyn ActivitySink>, WebhookUrlError> {
        let urls = parse_urls(urls)?;
        if urls.is_empty() {
            return Ok(Arc::new(NoActivity));
        }
        let client =
            sender::client(settings.request_timeout).map_err(|_| WebhookUrlError::Client)?;
        let mut outboxes = Vec::new();
        for url in urls {
            let (outbox, bodies) = mpsc::channel(settings.backlog_per_url.max(1));
            let target = sender::Target {
                url,
                key: credentials.key.clone(),
                client: client.clone(),
                retry: settings.retry,
                outcomes: settings.outcomes.clone(),
            };
            tokio::spawn(sender::run(target, bodies));
            outboxes.push(outbox);
        }
        let (activity, recorded) = mpsc::channel(settings.queue.max(1));
        tokio::spawn(dispatch(
            settings,
            recorded,
            outboxes,
            credentials,
            directory,
        ));
        Ok(Arc::new(Webhooks {
            activity,
            dropped: DropWarning::default(),
        }))
    }
}

impl ActivitySink for Webhooks {
    fn record(&self, activity: ChannelActivity) {
        if self.activity.try_send(activity).is_err() {
            self.dropped
                .note("the Pusher webhooks' queue is full; activity is dropped");
        }
    }
}

/// A warning logged at most every 10 s, with how many times it happened meanwhile.
#[derive(Default)]
struct DropWarning {
    since_last: AtomicU64,
    last: Mutex<Option<Instant>>,
}

impl DropWarning {
    const EVERY: Duration = Duration::from_secs(10);

    fn note(&self, message: &'static str) {
        let count = self.since_last.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|at| at.elapsed() >= Self::EVERY) {
            *last = Some(Instant::now());
            self.since_last.store(0, Ordering::Relaxed);
            tracing::warn!(dropped = count, "{message}");
        }
    }
}

/// Takes recorded activity, holds leaves for their grace, and hands batches to every URL's
/// sender. Ends when the [`Webhooks`] is dropped.
async fn dispatch(
    settings: WebhookSettings,
    mut recorded: mpsc::Receiver<ChannelActivity>,
    outboxes: Vec<mpsc::Sender<Arc<body::SignedBody>>>,
    credentials: PusherCredentials,
    directory: Arc<dyn ChannelDirectory>,
) {
    let mut grace = Grace::new(settings.grace, settings.waiting_leaves);
    let full_outbox = DropWarning::default();
    let max_batch = settings.max_batch.max(1);
    let mut ready: Vec<ChannelActivity> = Vec::new();
    loop {
        let next_due = grace.next_due();
        tokio::select! {
            got = recorded.recv() => {
                let Some(first) = got else { break };
                let now = Instant::now();
                ready.extend(grace.on_activity(first, now));
                // Whatever else is already queued joins the same batch.
                while ready.len() < max_batch {
                    let Ok(more) = recorded.try_recv() else { break };
                    ready.extend(grace.on_activity(more, now));
                }
            }
            () = sleep_until(next_due), if next_due.is_some() => {}
        }
        let due = grace.due(Instant::now());
        if !due.is_empty() {
            let directory = &*directory;
            let timeout = settings.directory_timeout;
            let checked: Vec<(ChannelActivity, bool)> = futures::stream::iter(due)
                .map(|leave| async move {
                    let gone = grace::still_gone(&leave, directory, timeout).await;
                    (leave, gone)
                })
                .buffered(settings.directory_checks.max(1))
                .collect()
                .await;
            ready.extend(
                checked
                    .into_iter()
                    .filter_map(|(leave, gone)| gone.then_some(leave)),
            );
        }
        for batch in ready.chunks(max_batch) {
            let time_ms = chrono::Utc::now().timestamp_millis();
            let signed = Arc::new(body::signed(batch, time_ms, &credentials));
            for outbox in &outboxes {
                if outbox.try_send(signed.clone()).is_err() {
                    settings
                        .outcomes
                        .record(crate::metrics::WebhookOutcome::Dropped);
                    full_outbox
                        .note("a Pusher webhook URL is too far behind; webhooks are dropped");
                }
            }
        }
        ready.clear();
    }
}

async fn sleep_until(due: Option<Instant>) {
    if let Some(due) = due {
        tokio::time::sleep_until(due.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(parse_urls(&[]).unwrap().is_empty());
        let ok = parse_urls(&["http://127.0.0.1:9/hook".into()]).unwrap();
        assert_eq!(ok[0].as_str(), "http://127.0.0.1:9/hook");
        assert!(matches!(
            parse_urls(&["not a url".into()]),
            Err(WebhookUrlError::NotAUrl(1))
        ));
        let https = parse_urls(&[
            "http://ok/".into(),
            "https://user:secret@example.com/h?k=secret".into(),
        ]);
        match https {
            Err(error @ WebhookUrlError::UnsupportedScheme { position: 2, .. }) => {
                let message = error.to_string();
                assert!(message.contains("https://"), "{message}");
                assert!(!message.contains("secret"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_urls(&["ftp://example.com/".into()]),
            Err(WebhookUrlError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            parse_urls(&["http://user:secret@/x".into()]),
            Err(WebhookUrlError::NotAUrl(1))
        ));
        let many: Vec<String> = (0..=MAX_URLS).map(|i| format!("http://h{i}/")).collect();
        assert!(matches!(parse_urls(&many), Err(WebhookUrlError::TooMany)));
    }
}
