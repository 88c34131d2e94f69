//! Rate limits, keyed per account, per address and per user. The keyed stores are pruned
//! every minute so an attacker cycling keys cannot grow them without bound.

use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use proto::{ApiError, ErrorCode};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

pub struct Limiters {
    login_per_account: Keyed<String>,
    login_per_address: Keyed<IpAddr>,
    tickets_per_user: Keyed<Uuid>,
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
    pub fn new(config: RateConfig) -> Arc<Limiters> {
        Arc::new(Limiters {
            login_per_account: RateLimiter::keyed(per_minute(config.logins_per_account_per_minute)),
            login_per_address: RateLimiter::keyed(per_minute(config.logins_per_address_per_minute)),
            tickets_per_user: RateLimiter::keyed(per_minute(config.tickets_per_user_per_minute)),
        })
    }

    pub fn check_login(&self, login: &str, address: IpAddr) -> Result<(), ApiError> {
        if self.login_per_address.check_key(&address).is_err() {
            return Err(limited("login attempts from this address"));
        }
        if self
            .login_per_account
            .check_key(&login.to_lowercase())
            .is_err()
        {
            return Err(limited("login attempts for this account"));
        }
        Ok(())
    }

    pub fn check_ticket(&self, user_id: Uuid) -> Result<(), ApiError> {
        self.tickets_per_user
            .check_key(&user_id)
            .map_err(|_| limited("tickets"))
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
