//! The `liveplan` binary: `serve`, `user create`, `export`, `import` and `backup`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use liveplan_server::{Config, start};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

/// jemalloc instead of the system's allocator: thousands of idle sockets each keep a few small
/// allocations between the short-lived large ones of their login and dataset, and glibc's
/// allocator keeps the pages those leave behind (BENCHMARKS.md, "Idle memory"). jemalloc hands
/// them back. Its background thread (the crate's `background_threads` feature) purges unused
/// pages over the next seconds with no allocation needed to trigger it, which an idle server
/// does not make.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "liveplan",
    version,
    about = "Project plans, every committed change pushed live"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start and then taken apart: the size of the `serve` variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Write all data (users, projects, records, attachments) to one file; safe while a
    /// server runs (one consistent snapshot).
    Export {
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Load a file `export` wrote into an empty database (migrations applied); stop every
    /// server on that database first.
    Import {
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        /// Replace whatever the database holds instead of refusing a non-empty one.
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Copy the SQLite database to a new file, consistently, while servers run (PostgreSQL:
    /// use pg_dump). Attachments are files in `<data-dir>/attachments`: copy them too.
    Backup {
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(clap::Args)]
struct StoreArgs {
    /// Where attachments live, and the SQLite database when no database URL is given.
    #[arg(long, env = "LIVEPLAN_DATA_DIR", default_value = "./liveplan-data")]
    data_dir: PathBuf,
    /// The database to use instead of `<data-dir>/liveplan.db`: `postgres://…` or `sqlite:PATH`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

#[derive(clap::Args)]
struct ServeArgs {
    #[arg(long, env = "LIVEPLAN_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    store: StoreArgs,
    /// Seed demo users and projects once.
    #[arg(long, env = "LIVEPLAN_DEMO")]
    demo: bool,
    /// Demo mode: seconds without a Bryntum socket on a project before its demo data is restored.
    #[arg(long, env = "LIVEPLAN_RESET_DELAY", default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    reset_delay: u64,
    /// Mark the session cookie Secure (when served over HTTPS).
    #[arg(long, env = "LIVEPLAN_SECURE_COOKIES")]
    secure_cookies: bool,
    /// Let users without the system administrator flag create projects.
    #[arg(long, env = "LIVEPLAN_USERS_CREATE_PROJECTS")]
    users_create_projects: bool,
    /// Largest attachment upload, in bytes.
    #[arg(long, env = "LIVEPLAN_MAX_UPLOAD_BYTES", default_value_t = 25 * 1024 * 1024)]
    max_upload_bytes: usize,
    #[arg(long, env = "LIVEPLAN_ADMIN_EMAIL", hide_env_values = true)]
    admin_email: Option<String>,
    #[arg(long, env = "LIVEPLAN_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// Accept `?token=<access token>` on the native WebSocket besides tickets (legacy clients).
    #[arg(long, env = "LIVEPLAN_WS_LEGACY_TOKEN_AUTH")]
    ws_legacy_token_auth: bool,
    /// Seconds between `: keepalive` comments on SSE streams.
    #[arg(long, env = "LIVEPLAN_SSE_KEEPALIVE_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    sse_keepalive_secs: u64,
    /// Open SSE streams allowed per user; one more is answered 429.
    #[arg(long, env = "LIVEPLAN_SSE_MAX_PER_USER", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    sse_max_per_user: u64,
    /// `full`: a commit is acknowledged once it is on disk. `fast`: a crash of the operating
    /// system (SQLite) or of PostgreSQL may lose the last commits; clients then resync.
    #[arg(long, env = "LIVEPLAN_DURABILITY", default_value = "full", value_parser = parse_durability)]
    durability: store::Durability,
    /// Joins this node to a cluster: every node on the same database and this Redis/Valkey
    /// server is one liveplan (`redis://host:port`). Without it the node runs alone, and
    /// refuses to start beside another node on the same database.
    #[arg(long, env = "LIVEPLAN_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// For tests only: the node registry's heartbeat interval, in milliseconds.
    #[arg(long, env = "LIVEPLAN_NODE_HEARTBEAT_MS", hide = true, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    node_heartbeat_ms: u64,
    /// For tests only: how long a silent node counts as live, in milliseconds.
    #[arg(long, env = "LIVEPLAN_NODE_EXPIRY_MS", hide = true, default_value_t = 15000, value_parser = clap::value_parser!(u64).range(30..=3_600_000))]
    node_expiry_ms: u64,
    /// For tests only: the file to read the boot id from instead of the kernel's, to simulate a
    /// restart of the operating system.
    #[arg(long, env = "LIVEPLAN_BOOT_ID_FILE", hide = true)]
    boot_id_file: Option<PathBuf>,
    /// The Pusher app's id (CONTRACT §10); give the id, key and secret together, or none of
    /// them to use credentials generated once and kept in the store.
    #[arg(long, env = "LIVEPLAN_PUSHER_APP_ID")]
    pusher_app_id: Option<String>,
    #[arg(long, env = "LIVEPLAN_PUSHER_KEY")]
    pusher_key: Option<String>,
    #[arg(long, env = "LIVEPLAN_PUSHER_SECRET", hide_env_values = true)]
    pusher_secret: Option<String>,
    /// Where Pusher-format webhooks go (repeatable; the variable takes a comma-separated list).
    #[arg(
        long = "pusher-webhook-url",
        env = "LIVEPLAN_PUSHER_WEBHOOK_URLS",
        value_delimiter = ','
    )]
    pusher_webhook_urls: Vec<String>,
    /// Seconds a client may take to send a request head, counted from accept or from the end
    /// of the previous response (so also how long an idle keep-alive connection stays open).
    #[arg(long, env = "LIVEPLAN_HEAD_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    head_timeout_secs: u64,
    /// Seconds of grace for a request body, after which it must average at least
    /// --body-min-rate bytes a second; a slower body is answered 408.
    #[arg(long, env = "LIVEPLAN_BODY_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    body_timeout_secs: u64,
    #[arg(long, env = "LIVEPLAN_BODY_MIN_RATE", default_value_t = 65536, value_parser = clap::value_parser!(u64).range(1..))]
    body_min_rate: u64,
    /// When set, `GET /metrics` answers only requests with `Authorization: Bearer <token>`
    /// (without it, /metrics is open like /healthz: keep it off the public network).
    #[arg(long, env = "LIVEPLAN_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// Days the event log keeps an event (0: no age limit); older ones are pruned, and a
    /// client resuming from before what is kept is told to resync.
    #[arg(long, env = "LIVEPLAN_LOG_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=36_500))]
    log_retention_days: u64,
    /// The most events each stream's log keeps (0: no limit); the oldest go first.
    #[arg(long, env = "LIVEPLAN_LOG_MAX_EVENTS_PER_STREAM", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(0..=100_000_000))]
    log_max_events_per_stream: u64,
    /// Project webhooks: the pause before the second attempt of a delivery, in milliseconds;
    /// each later one doubles it (5 attempts in all).
    #[arg(long, env = "LIVEPLAN_WEBHOOK_RETRY_BASE_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    webhook_retry_base_ms: u64,
    /// Project webhooks may be sent to loopback, private and link-local addresses (refused
    /// otherwise, at creation for literal addresses and at every delivery after resolving).
    #[arg(long, env = "LIVEPLAN_WEBHOOKS_ALLOW_PRIVATE")]
    webhooks_allow_private: bool,
    /// Project webhooks to `https` URLs trust the certificates in this PEM file beside the
    /// system's roots (an internal CA, a receiver's self-signed certificate).
    #[arg(long, env = "LIVEPLAN_WEBHOOK_CA_FILE")]
    webhook_ca_file: Option<std::path::PathBuf>,
    /// Open connections (HTTP, WebSocket, SSE) at most; one more is answered 503 and closed.
    #[arg(long, env = "LIVEPLAN_MAX_CONNECTIONS", default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    max_connections: u64,
}

/// All three Pusher flags or none: a partial set is a mistake that must not start a server
/// with credentials nobody chose.
fn pusher_credentials(
    app_id: Option<String>,
    key: Option<String>,
    secret: Option<String>,
) -> anyhow::Result<Option<liveplan_server::pusher::credentials::PusherCredentials>> {
    let given = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
    match (given(app_id), given(key), given(secret)) {
        (None, None, None) => Ok(None),
        (Some(app_id), Some(key), Some(secret)) => Ok(Some(
            liveplan_server::pusher::credentials::PusherCredentials {
                app_id,
                key,
                secret,
            },
        )),
        _ => anyhow::bail!(
            "give --pusher-app-id, --pusher-key and --pusher-secret together (or LIVEPLAN_PUSHER_APP_ID, LIVEPLAN_PUSHER_KEY, LIVEPLAN_PUSHER_SECRET), or none of them"
        ),
    }
}

fn parse_durability(text: &str) -> Result<store::Durability, String> {
    store::Durability::parse(text).ok_or_else(|| format!("{text:?} is not full or fast"))
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user (works while a server runs on the same data).
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        username: Option<String>,
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Where attachments go: the data dir, or beside the file a `sqlite:` URL names.
fn data_dir_of(args: &StoreArgs) -> PathBuf {
    match args
        .database_url
        .as_deref()
        .and_then(store_sqlite::path_of_url)
    {
        Some(path) => path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| args.data_dir.clone()),
        None => args.data_dir.clone(),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::new(data_dir_of(&args.store));
    config.database_url = args.store.database_url.clone();
    config.demo = args.demo;
    config.bryntum_reset_delay = std::time::Duration::from_secs(args.reset_delay);
    config.secure_cookies = args.secure_cookies;
    config.users_create_projects = args.users_create_projects;
    config.max_upload_bytes = args.max_upload_bytes;
    config.admin_email = args.admin_email;
    config.admin_password = args.admin_password;
    config.live.ws_legacy_token_auth = args.ws_legacy_token_auth;
    config.live.sse_keepalive = std::time::Duration::from_secs(args.sse_keepalive_secs);
    config.live.sse_max_per_user = usize::try_from(args.sse_max_per_user).unwrap_or(16);
    config.durability = args.durability;
    config.boot_id_file = args.boot_id_file;
    config.net.head_timeout = std::time::Duration::from_secs(args.head_timeout_secs);
    config.net.body_timeout = std::time::Duration::from_secs(args.body_timeout_secs);
    config.net.body_min_rate = args.body_min_rate;
    config.net.max_connections = usize::try_from(args.max_connections).unwrap_or(50_000);
    config.redis_url = args.redis_url.filter(|url| !url.trim().is_empty());
    config.node_heartbeat = std::time::Duration::from_millis(args.node_heartbeat_ms);
    config.node_expiry = std::time::Duration::from_millis(args.node_expiry_ms);
    config.pusher_credentials =
        pusher_credentials(args.pusher_app_id, args.pusher_key, args.pusher_secret)?;
    config.pusher_webhook_urls = args
        .pusher_webhook_urls
        .into_iter()
        .map(|url| url.trim().to_owned())
        .filter(|url| !url.is_empty())
        .collect();
    config.metrics_token = args.metrics_token.filter(|token| !token.trim().is_empty());
    config.webhooks.retry_base = std::time::Duration::from_millis(args.webhook_retry_base_ms);
    config.webhooks.allow_private = args.webhooks_allow_private;
    if let Some(path) = &args.webhook_ca_file {
        let pem =
            std::fs::read(path).with_context(|| format!("--webhook-ca-file {}", path.display()))?;
        config.webhooks.extra_roots =
            reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
                format!("--webhook-ca-file {}: not PEM certificates", path.display())
            })?;
        anyhow::ensure!(
            !config.webhooks.extra_roots.is_empty(),
            "--webhook-ca-file {}: no certificate in it",
            path.display()
        );
    }
    config.retention = liveplan_server::retention::RetentionConfig {
        max_age: (args.log_retention_days > 0)
            .then(|| std::time::Duration::from_secs(args.log_retention_days * 24 * 3600)),
        max_events_per_stream: (args.log_max_events_per_stream > 0)
            .then_some(args.log_max_events_per_stream),
    };
    if config.node_expiry <= config.node_heartbeat {
        anyhow::bail!("the node expiry must be longer than the node heartbeat");
    }
    let signalled = shutdown_signal();
    let server = start(config, args.listen)
        .await
        .context("starting the server")?;
    println!("liveplan listening on http://{}", server.address);
    std::io::stdout().flush().ok();
    let stopper = server.stopper();
    tokio::spawn(async move {
        signalled.await;
        tracing::info!("shutting down");
        let _ = stopper.send(true);
    });
    server.wait().await.context("serving")?;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C. The SIGTERM handler is installed when this is called, not
/// when the future is first polled: a SIGTERM right after the listening line is printed must
/// stop the server cleanly, not kill it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let terminate = async move {
            match terminate {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            _ = terminate => {},
        }
    }
}

async fn create_user(
    email: String,
    password: String,
    name: Option<String>,
    username: Option<String>,
    admin: bool,
    store_args: StoreArgs,
) -> anyhow::Result<()> {
    domain::accounts::check_password(&password, 1).map_err(|e| anyhow::anyhow!(e.message))?;
    let store = liveplan_server::backends::open_store(
        store_args.database_url.as_deref(),
        &data_dir_of(&store_args),
    )
    .await
    .context("opening the store")?;
    let domain = domain::Domain::new(store.clone(), std::sync::Arc::new(domain::NoListener));
    let password_hash = liveplan_server::auth::password::hash(password)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let user = domain
        .create_user(
            None,
            domain::accounts::NewUser {
                email,
                username,
                display_name: name,
                password_hash,
                is_admin: admin,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    println!("{}", serde_json::to_string_pretty(&user)?);
    store.close().await;
    Ok(())
}

/// `liveplan export` and `liveplan import`: the store and attachments `store_args` name.
async fn transfer(store_args: StoreArgs, run: Transfer) -> anyhow::Result<()> {
    let data_dir = data_dir_of(&store_args);
    let store =
        liveplan_server::backends::open_store(store_args.database_url.as_deref(), &data_dir)
            .await
            .context("opening the store")?;
    let domain = domain::Domain::new(store.clone(), std::sync::Arc::new(domain::NoListener));
    let attachments = data_dir.join("attachments");
    use liveplan_server::transfer::{export_file, import_file};
    let result = match run {
        Transfer::Export { out } => export_file(&domain, &attachments, &out).await,
        Transfer::Import { input, existing } => {
            import_file(&domain, &attachments, &input, existing).await
        }
    };
    store.close().await;
    println!("{}", serde_json::to_string(&result?)?);
    Ok(())
}

/// `liveplan backup`: SQLite's `VACUUM INTO` (`store_sqlite::backup`), refused on PostgreSQL.
fn backup(store_args: StoreArgs, out: PathBuf) -> anyhow::Result<()> {
    let source = match store_args.database_url.as_deref() {
        None => store_args
            .data_dir
            .join(liveplan_server::backends::SQLITE_FILE),
        Some(url) => match store_sqlite::path_of_url(url) {
            Some(path) => path,
            None if url.starts_with("postgres:") || url.starts_with("postgresql:") => {
                anyhow::bail!(
                    "liveplan backup copies the embedded SQLite database; for PostgreSQL use its own tools, e.g. pg_dump --format=custom --file=liveplan.dump \"$DATABASE_URL\" (restore with pg_restore)"
                )
            }
            None => anyhow::bail!("the database URL names no SQLite file"),
        },
    };
    let summary = store_sqlite::backup::backup_to(&source, &out)
        .map_err(|e| anyhow::anyhow!("backup failed: {e}"))?;
    println!(
        "{}",
        serde_json::json!({ "out": out.display().to_string(), "bytes": summary.bytes })
    );
    Ok(())
}

enum Transfer {
    Export {
        out: PathBuf,
    },
    Import {
        input: PathBuf,
        existing: domain::transfer::Existing,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(args).await,
        Command::User {
            command:
                UserCommand::Create {
                    email,
                    password,
                    name,
                    username,
                    admin,
                    store,
                },
        } => create_user(email, password, name, username, admin, store).await,
        Command::Export { out, store } => transfer(store, Transfer::Export { out }).await,
        Command::Backup { out, store } => backup(store, out),
        Command::Import {
            input,
            replace,
            store,
        } => {
            let existing = if replace {
                domain::transfer::Existing::Replace
            } else {
                domain::transfer::Existing::MustBeEmpty
            };
            transfer(store, Transfer::Import { input, existing }).await
        }
    }
}
