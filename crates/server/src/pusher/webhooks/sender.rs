//! Deliveries to one webhook URL: one at a time, in order, each retried by its
//! [`RetryPolicy`]. Redirects are not followed (a 3xx is final) and every request has a
//! timeout. URLs are logged without their user info, query or fragment, which may hold secrets.

use super::body::SignedBody;
use super::retry::{RetryPolicy, Verdict, verdict};
use reqwest::Url;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What one URL's deliveries need.
pub struct Target {
    pub url: Url,
    /// `X-Pusher-Key`.
    pub key: String,
    pub client: reqwest::Client,
    pub retry: RetryPolicy,
    pub outcomes: crate::metrics::WebhookCounter,
}

/// The client every target shares: no redirects, a timeout per request.
pub fn client(request_timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(request_timeout)
        .connect_timeout(request_timeout)
        .user_agent(concat!(
            "liveplan/",
            env!("CARGO_PKG_VERSION"),
            " (Pusher webhooks)"
        ))
        .build()
}

/// `url` as logs may show it: scheme, host, port and path.
pub fn shown(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// Delivers what arrives on `bodies` until every sender is gone.
pub async fn run(target: Target, mut bodies: mpsc::Receiver<Arc<SignedBody>>) {
    while let Some(body) = bodies.recv().await {
        deliver(&target, &body).await;
    }
}

/// One body, attempted until delivered, refused, or given up; every attempt's outcome is
/// counted. Returns the last verdict.
pub async fn deliver(target: &Target, body: &SignedBody) -> Verdict {
    use crate::metrics::WebhookOutcome;
    let verdict = attempts(target, body).await;
    target.outcomes.record(match verdict {
        Verdict::Delivered => WebhookOutcome::Delivered,
        Verdict::Refused => WebhookOutcome::Refused,
        Verdict::Retry => WebhookOutcome::GaveUp,
    });
    verdict
}

async fn attempts(target: &Target, body: &SignedBody) -> Verdict {
    let started = Instant::now();
    let mut failures = 0;
    loop {
        let sent = target
            .client
            .post(target.url.clone())
            .header("Content-Type", "application/json")
            .header("X-Pusher-Key", &target.key)
            .header("X-Pusher-Signature", &body.signature)
            .body(body.json.clone())
            .send()
            .await;
        let status = sent
            .as_ref()
            .ok()
            .map(|response| response.status().as_u16());
        match verdict(status) {
            Verdict::Delivered => return Verdict::Delivered,
            Verdict::Refused => {
                tracing::warn!(
                    url = %shown(&target.url),
                    status,
                    "a Pusher webhook was refused; it is not sent again"
                );
                return Verdict::Refused;
            }
            Verdict::Retry => {
                failures += 1;
                target
                    .outcomes
                    .record(crate::metrics::WebhookOutcome::Retried);
                match target
                    .retry
                    .next(failures, started.elapsed(), rand::random::<f64>())
                {
                    Some(pause) => {
                        tracing::debug!(url = %shown(&target.url), status, ?pause, "retrying a Pusher webhook");
                        tokio::time::sleep(pause).await;
                    }
                    None => {
                        tracing::warn!(
                            url = %shown(&target.url),
                            status,
                            attempts = failures,
                            "a Pusher webhook failed for too long; it is dropped"
                        );
                        return Verdict::Retry;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_urls_leave_out_what_may_be_secret() {
        let url = Url::parse("http://user:pw@hooks.example:8080/in/pusher?token=s3cret#x").unwrap();
        assert_eq!(shown(&url), "http://hooks.example:8080/in/pusher");
    }
}
