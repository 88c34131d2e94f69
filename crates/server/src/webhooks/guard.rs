//! The SSRF guard: where a webhook may be sent. The host is resolved at every delivery (a name
//! may move), each address checked by `domain::webhooks::forbidden_ip` unless private targets
//! are allowed, and the request then connects to the very address checked (reqwest's
//! `resolve`), so a DNS answer that changes between the check and the connect (rebinding)
//! cannot send it elsewhere.

use domain::webhooks::forbidden_ip;
use reqwest::Url;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Why a URL cannot be sent to now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It names or resolves only to internal addresses: final.
    #[error("the host is an internal address")]
    Internal,
    /// The name does not resolve now: worth another attempt.
    #[error("the host name did not resolve")]
    Unresolved,
    /// Not a URL a webhook can have (stored before a rule changed): final.
    #[error("the URL cannot be used")]
    Unusable,
}

/// Where to connect: the URL's host, and the address checked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: Url,
    /// The checked address when the host is a name (`None` for a literal address).
    pub pinned: Option<(String, SocketAddr)>,
}

/// Checks `url` for a delivery now.
pub async fn check(url: &str, allow_private: bool, timeout: Duration) -> Result<Target, Refusal> {
    let url = Url::parse(url).map_err(|_| Refusal::Unusable)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Refusal::Unusable);
    }
    let port = url.port_or_known_default().ok_or(Refusal::Unusable)?;
    let allowed = |ip: IpAddr| allow_private || !forbidden_ip(ip);
    match url.host() {
        None => Err(Refusal::Unusable),
        Some(url::Host::Ipv4(ip)) => literal(url.clone(), IpAddr::V4(ip), allowed),
        Some(url::Host::Ipv6(ip)) => literal(url.clone(), IpAddr::V6(ip), allowed),
        Some(url::Host::Domain(name)) => {
            let name = name.to_owned();
            let found =
                tokio::time::timeout(timeout, tokio::net::lookup_host((name.as_str(), port)))
                    .await
                    .map_err(|_| Refusal::Unresolved)?
                    .map_err(|_| Refusal::Unresolved)?
                    .collect::<Vec<SocketAddr>>();
            if found.is_empty() {
                return Err(Refusal::Unresolved);
            }
            let address = found
                .into_iter()
                .find(|a| allowed(a.ip()))
                .ok_or(Refusal::Internal)?;
            Ok(Target {
                url,
                pinned: Some((name, address)),
            })
        }
    }
}

fn literal(url: Url, ip: IpAddr, allowed: impl Fn(IpAddr) -> bool) -> Result<Target, Refusal> {
    if allowed(ip) {
        Ok(Target { url, pinned: None })
    } else {
        Err(Refusal::Internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn internal_targets_are_refused_unless_allowed() {
        assert_eq!(
            check("http://127.0.0.1:9/", false, T).await,
            Err(Refusal::Internal)
        );
        assert_eq!(
            check("http://[::ffff:10.0.0.1]/", false, T).await,
            Err(Refusal::Internal)
        );
        assert_eq!(
            check("http://localhost:9/", false, T).await,
            Err(Refusal::Internal),
            "a name is resolved and its addresses checked"
        );
        let allowed = check("http://localhost:9/x", true, T).await.unwrap();
        let (name, address) = allowed.pinned.unwrap();
        assert_eq!(name, "localhost");
        assert!(address.ip().is_loopback());
        assert_eq!(address.port(), 9);
        assert!(
            check("http://127.0.0.1:9/", true, T)
                .await
                .unwrap()
                .pinned
                .is_none()
        );
        assert_eq!(
            check("ftp://x.example/", true, T).await,
            Err(Refusal::Unusable)
        );
        assert_eq!(check("not a url", true, T).await, Err(Refusal::Unusable));
        assert_eq!(
            check("http://no-such-host.invalid/", true, T).await,
            Err(Refusal::Unresolved)
        );
    }
}
