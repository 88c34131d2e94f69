//! `GET /readyz` (CONTRACT §12): 200 once the node takes traffic, 503 with the JSON error body
//! naming what is missing otherwise. `/healthz` says the process and its store are up;
//! readiness also asks the bus (Redis, when the node is in a cluster) and whether the node is
//! shutting down, so a load balancer stops sending it clients before they would be refused.

use crate::app::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use proto::{ApiError, ErrorCode};
use std::time::Duration;

/// The longest one dependency may take to answer before it counts as unreachable.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.live.is_shutting_down() {
        return not_ready(
            ErrorCode::Unavailable,
            "shutting_down",
            "the node is shutting down",
        );
    }
    let store = tokio::time::timeout(CHECK_TIMEOUT, state.domain.store.ping()).await;
    if !matches!(store, Ok(Ok(()))) {
        return not_ready(
            ErrorCode::StoreUnavailable,
            "store",
            "the store is unreachable",
        );
    }
    if let Some(cluster) = state.live.cluster() {
        // A cheap read that goes to Redis: the roster of a project no one is in.
        let asked = cluster.state().roster_elsewhere(uuid::Uuid::nil());
        let reached = tokio::time::timeout(CHECK_TIMEOUT, cluster.probe("readiness", asked)).await;
        if !matches!(reached, Ok(Some(_))) {
            return not_ready(
                ErrorCode::Unavailable,
                "bus",
                "the cluster's Redis is unreachable",
            );
        }
    }
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({ "status": "ready" })),
    )
        .into_response()
}

/// 503 with `details.unready` naming what is missing (`store`, `bus`, `shutting_down`).
fn not_ready(code: ErrorCode, what: &str, message: &str) -> Response {
    let mut api = ApiError::new(code, message);
    api.details = Some(serde_json::json!({ "unready": what }));
    crate::http::HttpError(api).into_response()
}
