//! The HTTP side of metrics: the request counter (a middleware on the router) and the
//! `/metrics` endpoint with its optional bearer token (`--metrics-token`).

use super::Metrics;
use crate::http::error;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use proto::ErrorCode;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// What the endpoint and the middleware need.
#[derive(Clone)]
pub struct MetricsState {
    pub metrics: Arc<Metrics>,
    /// `--metrics-token`: when set, scrapes must send `Authorization: Bearer <token>`.
    pub token: Option<Arc<str>>,
}

/// Counts every request the router answers, by the route template it matched (never the raw
/// path, so ids do not multiply the series), its method and its status.
pub async fn count_requests(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = method_label(request.method());
    let response = next.run(request).await;
    metrics.http_request(route, method, response.status().as_u16());
    response
}

/// A bounded set of method labels: anything unusual is `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// `GET /metrics`.
pub async fn scrape(State(state): State<MetricsState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(token) = &state.token
        && !bearer_matches(&headers, token)
    {
        let mut response =
            error(ErrorCode::NotAuthenticated, "a metrics token is required").into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"metrics\""),
        );
        return response;
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Compares digests, so the time taken says nothing about how much of the token matched.
fn bearer_matches(headers: &axum::http::HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let a = Sha256::digest(given.trim().as_bytes());
    let b = Sha256::digest(token.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}
