//! Rate limits, keyed per account, per address and per user. The keyed stores are pruned
//! every minute so an attacker cycling keys cannot grow them without bound.
//!
//! In a cluster each limit is also counted across nodes ([`crate::cluster::ClusterState::hit`],
//! a window of one minute per key), so spreading attempts over nodes gains nothing. The node's
//! own limiter always applies as well: while the cluster state is unreachable the limits are
//! per node, as without a cluster, never off and never an error.

use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use proto::{ApiError, ErrorCode};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

use crate::cluster::Cluster;

/// The window every cluster-wide limit counts in.
const WINDOW: Duration = Duration::from_secs(60);

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

pub struct Limiters {
    login_per_account: Keyed<String>,
    login_per_address: Keyed<IpAddr>,
    tickets_per_user: Keyed<Uuid>,
    config: RateConfig,
    cluster: Option<Arc<Cluster>>,
}

#[derive(Debug, Clone, Copy)]
pub struct RateConfig {
    pub logins_per_account_per_minute: u32,
    pub logins_per_address_per_minute: u32,
    pub tickets_per_user_per_minute: u32,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            logins_per_account_per_minute: 10,
            logins_per_address_per_minute: 60,
            tickets_per_user_per_minute: 120,
        }
    }
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN))
}

fn limited(what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::RateLimited,
        format!("too many {what}; try again later"),
    )
    .with_details(serde_json::json!({ "retry_after_secs": 60 }))
}

impl Limiters {
    /// The node's limiters, counted across `cluster` too when given.
    pub fn new(config: RateConfig, cluster: Option<Arc<Cluster>>) -> Arc<Limiters> {
        Arc::new(Limiters {
            login_per_account: RateLimiter::keyed(per_minute(config.logins_per_account_per_minute)),
            login_per_address: RateLimiter::keyed(per_minute(config.logins_per_address_per_minute)),
            tickets_per_user: RateLimiter::keyed(per_minute(config.tickets_per_user_per_minute)),
            config,
            cluster,
        })
    }

    pub async fn check_login(&self, login: &str, address: IpAddr) -> Result<(), ApiError> {
        let login = login.to_lowercase();
        if self.login_per_address.check_key(&address).is_err() {
            return Err(limited("login attempts from this address"));
        }
        if self.login_per_account.check_key(&login).is_err() {
            return Err(limited("login attempts for this account"));
        }
        let by_address = format!("login-address:{address}");
        if !self
            .cluster_hit(&by_address, self.config.logins_per_address_per_minute)
            .await
        {
            return Err(limited("login attempts from this address"));
        }
        // Hashed: a login is what a client sends, and keys must stay small.
        let by_account = format!("login-account:{}", hex::encode(Sha256::digest(&login)));
        if !self
            .cluster_hit(&by_account, self.config.logins_per_account_per_minute)
            .await
        {
            return Err(limited("login attempts for this account"));
        }
        Ok(())
    }

    pub async fn check_ticket(&self, user_id: Uuid) -> Result<(), ApiError> {
        self.tickets_per_user
            .check_key(&user_id)
            .map_err(|_| limited("tickets"))?;
        let key = format!("tickets:{user_id}");
        if !self
            .cluster_hit(&key, self.config.tickets_per_user_per_minute)
            .await
        {
            return Err(limited("tickets"));
        }
        Ok(())
    }

    /// Whether one more hit on `key` is within `limit` across the cluster; true without a
    /// cluster or while its state is unreachable (the node's own limiter still applies).
    async fn cluster_hit(&self, key: &str, limit: u32) -> bool {
        let Some(cluster) = &self.cluster else {
            return true;
        };
        cluster
            .ask("rate limit", cluster.state().hit(key, limit.max(1), WINDOW))
            .await
            .unwrap_or(true)
    }

    /// Forgets keys whose quota has fully recovered.
    pub fn prune(&self) {
        self.login_per_account.retain_recent();
        self.login_per_address.retain_recent();
        self.tickets_per_user.retain_recent();
    }

    pub fn spawn_pruner(self: &Arc<Self>) {
        let limiters = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                match limiters.upgrade() {
                    Some(limiters) => limiters.prune(),
                    None => return,
                }
            }
        });
    }
}
