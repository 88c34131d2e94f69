//! One attempt at one delivery: a POST with no redirects followed (a 3xx is a failed attempt)
//! and a deadline, to the address the guard checked, through no proxy (a proxy would connect
//! where the guard did not look).

use super::WebhookConfig;
use super::guard::{self, Refusal};

/// The headers and body of one attempt.
pub struct Request<'a> {
    pub url: &'a str,
    pub event: &'a str,
    pub delivery_id: String,
    pub signature: String,
    pub body: Vec<u8>,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The receiver's status, when it answered.
    pub status: Option<u16>,
    /// A short reason when the attempt failed (no internals: the webhook's owner reads it).
    pub error: Option<String>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx.
    Delivered,
    /// Final: a 4xx other than 408, 425 and 429, or a target the guard refuses for good.
    Refused,
    /// Worth another attempt: 5xx, 408, 425, 429, 3xx, any other status, no answer.
    Failed,
}

/// The verdict on a receiver's status.
pub fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        408 | 425 | 429 => Verdict::Failed,
        400..=499 => Verdict::Refused,
        _ => Verdict::Failed,
    }
}

fn failed(verdict: Verdict, error: &str) -> Outcome {
    Outcome {
        status: None,
        error: Some(error.to_owned()),
        verdict,
    }
}

/// Sends `request` once. `https` targets are verified against the system's roots and
/// `config.extra_roots` (rustls, TLS 1.2 and 1.3).
pub async fn send(request: Request<'_>, config: &WebhookConfig) -> Outcome {
    let timeout = config.timeout;
    let target = match guard::check(request.url, config.allow_private, timeout).await {
        Ok(target) => target,
        Err(refusal @ (Refusal::Internal | Refusal::Unusable)) => {
            return failed(Verdict::Refused, &refusal.to_string());
        }
        Err(refusal @ Refusal::Unresolved) => {
            return failed(Verdict::Failed, &refusal.to_string());
        }
    };
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .tls_certs_merge(config.extra_roots.iter().cloned())
        .user_agent(concat!(
            "liveplan/",
            env!("CARGO_PKG_VERSION"),
            " (webhooks)"
        ));
    if let Some((name, address)) = &target.pinned {
        builder = builder.resolve(name, *address);
    }
    let client = match builder.build() {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(error = %err, "cannot build the webhook client");
            return failed(Verdict::Failed, "internal error");
        }
    };
    let sent = client
        .post(target.url)
        .header("Content-Type", "application/json")
        .header("X-Liveplan-Event", request.event)
        .header("X-Liveplan-Delivery", request.delivery_id)
        .header("X-Liveplan-Signature", request.signature)
        .body(request.body)
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            let verdict = verdict(status);
            Outcome {
                status: Some(status),
                error: (verdict != Verdict::Delivered).then(|| format!("HTTP {status}")),
                verdict,
            }
        }
        Err(err) if err.is_timeout() => failed(Verdict::Failed, "timed out"),
        Err(err) if err.is_connect() => failed(Verdict::Failed, "could not connect"),
        Err(_) => failed(Verdict::Failed, "the request failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_decide_the_verdict() {
        for status in [200, 201, 204, 299] {
            assert_eq!(verdict(status), Verdict::Delivered, "{status}");
        }
        for status in [400, 401, 403, 404, 410, 422, 499] {
            assert_eq!(verdict(status), Verdict::Refused, "{status}");
        }
        for status in [408, 425, 429, 500, 502, 503, 301, 302, 307, 100, 600] {
            assert_eq!(verdict(status), Verdict::Failed, "{status}");
        }
    }
}
