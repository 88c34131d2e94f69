//! Binding, serving and graceful shutdown.

use crate::app::{AppState, Config, StartError};
use crate::dialects::bryntum::{self, BryntumNode, BryntumSettings};
use crate::dialects::pusher::{self as pusher_ws, PusherNode};
use crate::http::error;
use crate::net::body_deadline;
use crate::net::listener::LiveListener;
use crate::pusher::app_log_store::StoreAppChannelLog;
use crate::pusher::directory::{ChannelDirectory, LateDirectory};
use crate::pusher::webhooks::Webhooks;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use proto::ErrorCode;
use std::net::SocketAddr;
use std::sync::Arc;
use store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use uuid::Uuid;

async fn healthz(State(state): State<AppState>) -> Response {
    match state.domain.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "status": "ok" })),
        )
            .into_response(),
        Err(_) => error(ErrorCode::StoreUnavailable, "the store is unreachable").into_response(),
    }
}

/// A panic anywhere in a handler becomes a plain JSON 500, never a stack trace.
fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    error(ErrorCode::Internal, "internal error").into_response()
}

pub fn router(
    state: AppState,
    bryntum_node: Arc<BryntumNode>,
    pusher_node: Arc<PusherNode>,
    whiteboards: Arc<crate::whiteboard::WhiteboardNode>,
) -> Router {
    let metrics = state.metrics.clone();
    let scrape = Router::new()
        .route("/metrics", get(crate::metrics::http::scrape))
        .with_state(crate::metrics::http::MetricsState {
            metrics: metrics.clone(),
            token: state.config.metrics_token.as_deref().map(Arc::from),
        });
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(crate::readiness::readyz))
        .merge(scrape)
        .nest("/api/v1", crate::api::router(&state))
        .merge(crate::dialects::whiteboard::router(whiteboards))
        .merge(bryntum::router(bryntum_node))
        .merge(pusher_ws::router(pusher_node.clone()))
        .merge(crate::dialects::router())
        .merge(crate::web_app::router())
        .merge(crate::api::pusher_http::router(
            crate::api::pusher_http::PusherHttpState {
                credentials: state.pusher.clone(),
                directory: pusher_node.clone(),
            },
        ))
        .fallback(|| async { error(ErrorCode::NotFound, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            error(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this path",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.max_body_bytes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(body_deadline::BodyRules {
                timeout: state.config.net.body_timeout,
                min_rate: state.config.net.body_min_rate,
                default_limit: state.config.max_body_bytes,
            }),
            body_deadline::guard,
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::metrics::http::count_requests,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state);
    // Axum writes a 405's `Allow` inside each route, beneath every layer a router is given; the
    // correction for records that never change needs the whole router wrapped as one service.
    Router::new().fallback_service(tower::Layer::layer(
        &axum::middleware::from_fn(crate::api::records::refuse_change_of_immutable),
        app,
    ))
}

/// The longest shutdown waits for live connections to send their close frames.
const LIVE_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// A server accepting connections.
pub struct RunningServer {
    pub address: SocketAddr,
    pub state: AppState,
    /// The node's Pusher sockets, also the HTTP API's channel directory (CONTRACT §10).
    pub pusher: Arc<PusherNode>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    store: Arc<dyn Store>,
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish, and closes the store.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        let result = self.task.await.unwrap_or(Ok(()));
        self.store.close().await;
        result
    }

    /// Resolves when the server has stopped on its own.
    pub async fn wait(self) -> std::io::Result<()> {
        let result = self.task.await.unwrap_or(Ok(()));
        self.store.close().await;
        result
    }

    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }
}

/// Opens the store, prepares the state, binds `listen` and serves in the background.
pub async fn start(config: Config, listen: SocketAddr) -> Result<RunningServer, StartError> {
    let options = crate::backends::OpenOptions {
        durability: config.durability,
        boot_id_file: config.boot_id_file.clone(),
    };
    let store = crate::backends::open_store_with(
        config.database_url.as_deref(),
        &config.data_dir,
        &options,
    )
    .await?;
    // Before anything is served or written: a lost tail must be skipped first (CONTRACT §12).
    let run = store.begin_run().await?;
    if run.skipped {
        tracing::warn!(
            epoch = run.epoch,
            "the last run in --durability fast may have lost commits in a crash of the operating system: every stream's seqs skipped ahead, clients resync"
        );
    }
    let listener = TcpListener::bind(listen).await?;
    let address = listener.local_addr()?;
    let node_id = Uuid::now_v7();
    let cluster = crate::cluster::info(&config, &*store, node_id).await?;
    let registration =
        crate::cluster::registry::join(store.clone(), &config, node_id, address.to_string())
            .await?;
    let (bryntum_dialect, units) = bryntum::hub_dialect();
    let state = match AppState::new(config, store.clone(), cluster, bryntum_dialect).await {
        Ok(state) => state,
        Err(err) => {
            registration.leave().await;
            return Err(err);
        }
    };
    let bryntum_node = Arc::new(BryntumNode::new(
        state.domain.clone(),
        state.live.clone(),
        state.limiters.clone(),
        state.decoy_hash.clone(),
        BryntumSettings {
            demo: state.config.demo,
            reset_delay: state.config.bryntum_reset_delay,
            clock: state.config.clock.clone(),
        },
        units,
    ));
    // Echoes of revisions no event carries, from this node or another, reach its sockets.
    let echoes = Arc::downgrade(&bryntum_node);
    state.live.on_bryntum_echo(move |project, revision| {
        if let Some(node) = echoes.upgrade() {
            node.echo(project, revision);
        }
    });
    let (stop, mut stopped) = watch::channel(false);
    crate::pusher::app_log_store::spawn_idle_cleanup(store.clone(), stop.subscribe()); // pusher-store
    crate::retention::spawn(
        store.clone(),
        state.config.retention,
        state.config.clock.clone(),
        stop.subscribe(),
    );
    // The Pusher sockets are the HTTP API's and the webhooks' channel directory, and the
    // webhooks are where the sockets report activity: the sender gets the directory late.
    let webhook_directory = Arc::new(LateDirectory::default());
    let webhook_settings = crate::pusher::webhooks::WebhookSettings {
        outcomes: state.metrics.webhook_counter("pusher"),
        ..Default::default()
    };
    let activity = match Webhooks::start_with(
        webhook_settings,
        &state.config.pusher_webhook_urls,
        (*state.pusher).clone(),
        webhook_directory.clone(),
    ) {
        Ok(activity) => activity,
        Err(err) => {
            registration.leave().await;
            return Err(StartError::Setup(err.to_string()));
        }
    };
    let pusher_node = Arc::new(PusherNode::new(
        (*state.pusher).clone(),
        state.domain.clone(),
        state.live.clone(),
        state.tokens.clone(),
        Arc::new(StoreAppChannelLog::new(store.clone())),
        activity,
        crate::cluster::pusher_state::PusherShared::for_cluster(
            &state.cluster,
            state.config.live.ws_ping_interval,
        ),
    ));
    pusher_node.start_cluster();
    let directory: Arc<dyn ChannelDirectory> = pusher_node.clone();
    webhook_directory.set(Arc::downgrade(&directory));
    crate::webhooks::spawn(
        store.clone(),
        state.config.webhooks.clone(),
        state.node_id,
        state.webhook_wake.clone(),
        state.metrics.webhook_counter("project"),
        stop.subscribe(),
    );
    let whiteboards = crate::whiteboard::WhiteboardNode::new(state.clone(), pusher_node.clone());
    match crate::cluster::whiteboard_relay::connect(&state.cluster, &whiteboards.boards) {
        Ok(Some(peers)) => whiteboards.boards.connect_peers(peers),
        Ok(None) => {}
        Err(err) => {
            tracing::error!(error = %err, "open whiteboards cannot reach the other nodes: cursors stay on this node");
        }
    }
    crate::whiteboard::compaction::spawn(store.clone(), stop.subscribe());
    let routes = router(
        state.clone(),
        bryntum_node,
        pusher_node.clone(),
        whiteboards,
    );
    let front = routes.clone();
    let live = state.live.clone();
    let live_limits = state.config.net.clone();
    let task = tokio::spawn(async move {
        let closing = live.clone();
        // A front SSE client that leaves a write waiting two keepalive periods is given up,
        // as a native socket is after two unanswered pings.
        let write_stall = live.config.sse_keepalive * 2;
        let limits = live_limits;
        let listener = LiveListener::new(listener, front, write_stall, &limits);
        let result = crate::net::serve::serve(listener, routes, limits.head_timeout, async move {
            let _ = stopped.wait_for(|stop| *stop).await;
            // Upgraded WebSockets and SSE bodies never finish on their own: close them (1001).
            closing.shutdown();
        })
        .await;
        // Upgraded sockets are outside axum's graceful shutdown; give their close frames time.
        live.drained(LIVE_DRAIN).await;
        registration.leave().await;
        result
    });
    Ok(RunningServer {
        address,
        state,
        pusher: pusher_node,
        stop,
        task,
        store,
    })
}
