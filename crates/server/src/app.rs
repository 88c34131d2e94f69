//! The application: its configuration, its shared state, and the startup that wires the store,
//! the domain and the router together.

use crate::auth::limits::{Limiters, RateConfig};
use crate::auth::tokens::TokenKeys;
use crate::clock::Clock;
use crate::cluster::redis_state::RedisCluster;
use crate::cluster::{Cluster, ClusterTiming};
use crate::live::{LiveConfig, LiveFeed};
use crate::pusher::credentials::PusherCredentials;
use base64::Engine;
use domain::{Domain, OrApi};
use rand::RngCore;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use store::Store;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct Config {
    /// Attachments, and the SQLite store when no `database_url` is given.
    pub data_dir: PathBuf,
    /// The store to open (see [`crate::backends::open_store`]); `None` for the embedded one.
    pub database_url: Option<String>,
    pub demo: bool,
    pub session_ttl: Duration,
    /// Adds `Secure` to the session cookie (set when served over HTTPS).
    pub secure_cookies: bool,
    pub max_body_bytes: usize,
    pub max_upload_bytes: usize,
    pub max_import_bytes: usize,
    pub rates: RateConfig,
    pub users_create_projects: bool,
    /// Recompute a project's schedule after every commit that changes its inputs. Off only
    /// for tests about other things, whose event sequences the scheduler's own events would
    /// interleave with.
    pub scheduler: bool,
    pub admin_email: Option<String>,
    pub admin_password: Option<String>,
    /// The native WebSocket and SSE transports (see `live::LiveConfig`).
    pub live: LiveConfig,
    /// Demo mode: a project without Bryntum sockets for this long gets its demo data back
    /// (`--reset-delay`, default 1800 s).
    pub bryntum_reset_delay: Duration,
    /// `--durability` (CONTRACT §12): full (the default) or fast.
    pub durability: store::Durability,
    /// Where the SQLite store reads the boot id (`None`: the kernel's). For tests only, which
    /// simulate a restart of the operating system with it.
    pub boot_id_file: Option<PathBuf>,
    /// What the live side reads the time from ([`crate::clock`]); tests may move a manual one.
    pub clock: Clock,
    /// `--redis-url` (CONTRACT §9): joins the node to the cluster of every node on the same
    /// database and Redis/Valkey server. `None`: the node is alone (in-process bus).
    pub redis_url: Option<String>,
    /// The node registry ([`crate::cluster::registry`]): how often a node says it is alive,
    /// and how long after its last word another node counts it gone.
    pub node_heartbeat: Duration,
    pub node_expiry: Duration,
    /// `--pusher-app-id`, `--pusher-key`, `--pusher-secret` (CONTRACT §10). `None`: generated
    /// once and kept in the store (`--demo`: `PusherCredentials::demo()`).
    pub pusher_credentials: Option<PusherCredentials>,
    /// `--pusher-webhook-url` (repeatable): where Pusher-format webhooks go.
    pub pusher_webhook_urls: Vec<String>,
    /// Head and body deadlines, the connection cap (`net::limits`; defects-net).
    pub net: crate::net::limits::NetLimits,
    /// `--metrics-token`: when set, `GET /metrics` wants `Authorization: Bearer <token>`.
    pub metrics_token: Option<String>,
    /// `--log-retention-days` and `--log-max-events-per-stream` ([`crate::retention`]).
    pub retention: crate::retention::RetentionConfig,
    /// `--webhook-retry-base-ms` and `--webhooks-allow-private` ([`crate::webhooks`]).
    pub webhooks: crate::webhooks::WebhookConfig,
}

impl Config {
    pub fn new(data_dir: PathBuf) -> Config {
        Config {
            data_dir,
            database_url: None,
            demo: false,
            session_ttl: Duration::from_secs(12 * 3600),
            secure_cookies: false,
            max_body_bytes: 1024 * 1024,
            max_upload_bytes: 25 * 1024 * 1024,
            max_import_bytes: 256 * 1024 * 1024,
            rates: RateConfig::default(),
            users_create_projects: false,
            scheduler: true,
            admin_email: None,
            admin_password: None,
            live: LiveConfig::default(),
            bryntum_reset_delay: Duration::from_secs(1800),
            durability: store::Durability::Full,
            boot_id_file: None,
            clock: Clock::system(),
            redis_url: None,
            node_heartbeat: Duration::from_secs(5),
            node_expiry: Duration::from_secs(15),
            pusher_credentials: None,
            pusher_webhook_urls: Vec::new(),
            net: crate::net::limits::NetLimits::default(),
            metrics_token: None,
            retention: crate::retention::RetentionConfig::default(),
            webhooks: crate::webhooks::WebhookConfig::default(),
        }
    }

    pub fn attachments_dir(&self) -> PathBuf {
        self.data_dir.join("attachments")
    }
}

/// Everything a handler needs, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub domain: Domain,
    pub config: Arc<Config>,
    pub tokens: Arc<TokenKeys>,
    pub limiters: Arc<Limiters>,
    pub live: Arc<LiveFeed>,
    /// This node's id in the cluster (the node registry, the bus); new at every start.
    pub node_id: Uuid,
    /// The node's cluster: its id, and the names the nodes share in Redis.
    pub cluster: Arc<crate::cluster::ClusterInfo>,
    /// An argon2id hash of a random password, verified against when a login names no
    /// account, so unknown and known accounts take the same time to refuse.
    pub decoy_hash: Arc<String>,
    /// The one Pusher app this server is (CONTRACT §10), the same on every node.
    pub pusher: Arc<PusherCredentials>,
    /// This app's own registry (`GET /metrics`), never shared with another app in the process.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Rung by every commit of this node, so its webhook worker looks at once.
    pub webhook_wake: Arc<crate::webhooks::Wake>,
}

/// What the authentication extractor (`auth::extract`) takes from the state, so `auth` knows
/// no app.
impl axum::extract::FromRef<AppState> for Arc<TokenKeys> {
    fn from_ref(state: &AppState) -> Self {
        state.tokens.clone()
    }
}

impl axum::extract::FromRef<AppState> for Domain {
    fn from_ref(state: &AppState) -> Self {
        state.domain.clone()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the store: {0}")]
    Store(#[from] store::StoreError),
    #[error("cannot prepare the server: {0}")]
    Setup(String),
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    /// Another node on the database makes this one's start wrong (the node registry).
    #[error("refusing to start: {0}")]
    Refused(String),
}

impl From<proto::ApiError> for StartError {
    fn from(error: proto::ApiError) -> Self {
        StartError::Setup(error.message)
    }
}

/// The token signing secret lives in the database, made on first start, so it is never in
/// the repository or the environment and survives restarts.
async fn token_secret(store: &dyn Store) -> Result<Vec<u8>, StartError> {
    let mut tx = store.write().await?;
    let engine = base64::engine::general_purpose::STANDARD;
    if let Some(existing) = tx.get_setting("token_secret").await?
        && let Ok(bytes) = engine.decode(existing)
    {
        return Ok(bytes);
    }
    let mut secret = vec![0u8; 64];
    rand::rng().fill_bytes(&mut secret);
    tx.put_setting("token_secret", &engine.encode(&secret))
        .await?;
    tx.commit().await?;
    Ok(secret)
}

/// The setting holding the generated Pusher credentials (JSON `{app_id, key, secret}`).
pub const PUSHER_CREDENTIALS_SETTING: &str = "pusher_credentials";

/// The app's Pusher credentials: the flags' when given, `--demo`'s fixed ones, else those
/// generated by the first node that started on this database and kept in its settings.
async fn pusher_credentials(
    config: &Config,
    store: &dyn Store,
) -> Result<PusherCredentials, StartError> {
    if let Some(credentials) = &config.pusher_credentials {
        return Ok(credentials.clone());
    }
    if config.demo {
        return Ok(PusherCredentials::demo());
    }
    let mut tx = store.write().await?;
    // Nodes starting at once on a new database must agree: the first to hold the system
    // stream makes the credentials, the others read them (as `cluster::cluster_id` does).
    tx.lock_stream(proto::StreamKey::System).await?;
    if let Some(existing) = tx.get_setting(PUSHER_CREDENTIALS_SETTING).await? {
        return parse_stored_credentials(&existing).ok_or_else(|| {
            StartError::Setup("the stored Pusher credentials are unreadable".to_owned())
        });
    }
    let credentials = generate_pusher_credentials();
    let stored = serde_json::json!({
        "app_id": credentials.app_id,
        "key": credentials.key,
        "secret": credentials.secret,
    });
    tx.put_setting(PUSHER_CREDENTIALS_SETTING, &stored.to_string())
        .await?;
    tx.commit().await?;
    tracing::info!(app_id = %credentials.app_id, "generated the Pusher app credentials");
    Ok(credentials)
}

fn parse_stored_credentials(text: &str) -> Option<PusherCredentials> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let field = |name: &str| {
        value
            .get(name)
            .and_then(serde_json::Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    Some(PusherCredentials {
        app_id: field("app_id")?,
        key: field("key")?,
        secret: field("secret")?,
    })
}

/// A numeric app id as Pusher's (not secret), a 128-bit key (public: it is in every page) and
/// a 256-bit secret.
fn generate_pusher_credentials() -> PusherCredentials {
    let mut rng = rand::rng();
    let app_id = format!("{}", 1_000_000_000u64 + rng.next_u64() % 9_000_000_000);
    let mut key = [0u8; 16];
    rng.fill_bytes(&mut key);
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    PusherCredentials {
        app_id,
        key: hex::encode(key),
        secret: hex::encode(secret),
    }
}

impl AppState {
    /// The state of the node `cluster` describes: its bus (Redis when `config.redis_url` names
    /// one), hub, domain and the rest. `bryntum` is the Bryntum dialect's hub encoder: the
    /// server makes it (`server::start`), so the app knows no dialect.
    pub async fn new(
        config: Config,
        store: Arc<dyn Store>,
        cluster: crate::cluster::ClusterInfo,
        bryntum: impl hub::Dialect,
    ) -> Result<AppState, StartError> {
        let node_id = cluster.node_id;
        let bus = crate::cluster::bus(&config, &cluster).await?;
        // What the nodes share besides the bus (presence, limits, control messages).
        let shared = match &cluster.redis_url {
            Some(url) => {
                let timing = ClusterTiming::within(config.live.ws_ping_interval);
                let state = RedisCluster::new(url, node_id, &cluster.redis_prefix, timing)
                    .map_err(|e| StartError::Setup(format!("--redis-url: {e}")))?;
                Some(Cluster::new(Arc::new(state), timing))
            }
            None => None,
        };
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let live = LiveFeed::start(
            store.clone(),
            bus,
            node_id,
            config.live.clone(),
            config.clock.clone(),
            bryntum,
            shared.clone(),
        )
        .await
        .map_err(|e| StartError::Setup(format!("cannot start live delivery: {e}")))?;
        live.attach_metrics(&metrics);
        let (scheduler, scheduler_worker) = crate::scheduler::channel();
        let webhook_wake = crate::webhooks::Wake::new();
        let mut listeners: Vec<Arc<dyn domain::CommitListener>> =
            vec![live.clone(), metrics.clone(), webhook_wake.clone()];
        if config.scheduler {
            listeners.push(scheduler);
        }
        let mut domain = Domain::new(store.clone(), Arc::new(domain::Listeners(listeners)));
        domain.users_create_projects = config.users_create_projects;
        domain.webhooks_allow_private = config.webhooks.allow_private;
        if config.scheduler {
            // Nodes that share the database (a cluster) compute a project under its lease.
            scheduler_worker.spawn(domain.clone(), config.redis_url.is_some(), metrics.clone());
        }
        let secret = token_secret(&*store).await?;
        let pusher = Arc::new(pusher_credentials(&config, &*store).await?);
        let mut random = [0u8; 32];
        rand::rng().fill_bytes(&mut random);
        let decoy = crate::auth::password::hash(hex::encode(random)).await?;
        let limiters = Limiters::new(config.rates, shared);
        limiters.spawn_pruner();
        let state = AppState {
            domain,
            config: Arc::new(config),
            tokens: Arc::new(TokenKeys::new(&secret)),
            limiters,
            live,
            node_id,
            cluster: Arc::new(cluster),
            decoy_hash: Arc::new(decoy),
            pusher,
            metrics,
            webhook_wake,
        };
        state.bootstrap_admin().await?;
        if state.config.demo {
            crate::demo::seed(&state.domain).await?;
        }
        Ok(state)
    }

    /// Creates the system administrator named by `LIVEPLAN_ADMIN_EMAIL`/`_PASSWORD` when the
    /// database has no user yet.
    async fn bootstrap_admin(&self) -> Result<(), StartError> {
        let (Some(email), Some(password)) = (&self.config.admin_email, &self.config.admin_password)
        else {
            return Ok(());
        };
        let count = self
            .domain
            .store
            .read()
            .await
            .or_api()?
            .count_users()
            .await?;
        if count > 0 {
            return Ok(());
        }
        let password_hash = crate::auth::password::hash(password.clone()).await?;
        let created = self
            .domain
            .create_user(
                None,
                domain::accounts::NewUser {
                    email: email.clone(),
                    username: None,
                    display_name: None,
                    password_hash,
                    is_admin: true,
                },
            )
            .await;
        match created {
            Ok(_) => {
                tracing::info!(%email, "created the bootstrap system administrator");
                Ok(())
            }
            // Nodes starting together on a new database all saw no user; the first one's
            // administrator is the one, and the others go on with it.
            Err(error) if error.code == proto::ErrorCode::Conflict => {
                tracing::info!(%email, "another node created the bootstrap system administrator");
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }
}
