//! Server-Sent Events (CONTRACT §7): a project's stream, the project-list stream and the user
//! stream, at `/api/v1/…` and the `/api/…` aliases; the glue between a response body and its
//! [`SseSession`].
//!
//! Each response body is the hub's SSE frames as they come (each a complete message), after a
//! first `connected` message, with a `: keepalive` comment whenever the body sent nothing for
//! `sse_keepalive` (frames the fan-out writes itself on the SSE front bypass the body, so there
//! a busy stream gets one every period too, which is the contract's "every 30 s"). The body
//! ends when the hub closes the subscription (loss of access, logout, the session's expiry,
//! shutdown), which is how a stream "ends on loss of access".

use super::protocol;
use super::session::{SseSession, project_list_filter, user_filter};
use crate::app::AppState;
use crate::auth::Authed;
use crate::clock::Ticker;
use crate::dialects::access::role_in;
use crate::http::{HttpError, HttpResult, error, path_id};
use crate::live::projects::ProjectWatch;
use crate::live::{ConnectionGuard, SseSlot};
use crate::net::sse_front::FrontSocket;
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use domain::OrApi;
use hub::{SubscribeRequest, Subscription};
use proto::{ApiError, ErrorCode, StreamKey};
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use uuid::Uuid;

/// Everything an SSE body owns: dropping it (client gone, stream ended) releases the hub
/// subscription, the user's slot and the connection count.
struct SseBody {
    sub: Subscription,
    session: SseSession,
    keepalive: Ticker,
    _slot: SseSlot,
    _guard: ConnectionGuard,
    _watch: Option<ProjectWatch>,
}

#[derive(Clone, Copy)]
enum Access {
    /// The per-project stream: any member role.
    Project(Uuid),
    ProjectList,
    User,
}

/// The parts of an HTTP request that open a stream: its headers and query (where the client
/// resumes), and, when the SSE front serves the connection, the front's writer.
struct StreamRequest<'a> {
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    front: Option<FrontSocket>,
}

impl<'a> StreamRequest<'a> {
    fn new(
        headers: &'a HeaderMap,
        uri: &'a axum::http::Uri,
        front: Option<Extension<FrontSocket>>,
    ) -> Self {
        Self {
            headers,
            query: uri.query(),
            front: front.map(|Extension(front)| front),
        }
    }
}

async fn open(
    state: &AppState,
    auth: &Authed,
    access: Access,
    asked: StreamRequest<'_>,
) -> HttpResult<Response> {
    let live = &state.live;
    let user_id = auth.user.id;
    if let Access::Project(project) = access {
        role_in(state, project, &auth.actor)
            .await?
            .ok_or_else(|| ApiError::not_found("project"))?;
    }
    let Some(guard) = live.connection_as(crate::metrics::ConnDialect::Sse) else {
        return Err(error(ErrorCode::Unavailable, "the server is shutting down"));
    };
    let Some(slot) = live.sse_slot(user_id).await else {
        return Err(HttpError(
            ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "at most {} event streams may be open per user",
                    live.config.sse_max_per_user
                ),
            )
            .with_details(json!({"retry_after_secs": 5, "limit": live.config.sse_max_per_user})),
        ));
    };
    let (stream, filter, watch) = match access {
        Access::Project(project) => (StreamKey::Project(project), None, None),
        Access::ProjectList => {
            // Registered before the memberships are read so no change between the two is lost.
            let watch = live.project_sets.register(user_id);
            let mut ops = state.domain.store.read().await.or_api()?;
            let memberships = ops.list_memberships_of_user(user_id).await.or_api()?;
            drop(ops);
            watch.set().load(memberships.iter().map(|m| m.project_id));
            let filter = project_list_filter(watch.set());
            (StreamKey::System, Some(filter), Some(watch))
        }
        Access::User => (
            StreamKey::System,
            Some(user_filter(user_id, auth.user.is_admin)),
            None,
        ),
    };
    let mut request = SubscribeRequest::new(stream, live.sse, user_id);
    request.since = protocol::position(asked.headers, asked.query);
    // On the front, the fan-out may write this stream's frames itself while the body waits
    // (`net::direct`); through hyper, which frames the body its own way, it may not.
    request.direct = asked
        .front
        .map(|FrontSocket(writer)| writer as Arc<dyn hub::DirectWrite>);
    request.session_id = Some(auth.session_id);
    request.expires_at = Some(auth.session_expires_at);
    request.filter = filter;
    // The project's stream is a live connection to it like a socket: its user is present (a
    // Viewer, whom the native socket refuses, too).
    if matches!(access, Access::Project(_)) {
        request.presence = Some(auth.user.display_name.clone());
    }
    let sub = live.hub().subscribe(request).await.map_err(|err| {
        tracing::warn!(error = %err, "SSE subscribe failed");
        ApiError::new(ErrorCode::Unavailable, "live delivery is unavailable")
    })?;
    // A removal that committed between the check above and the subscription was not seen by
    // the eviction; look again now that the hub would see any later one.
    if let Access::Project(project) = access
        && role_in(state, project, &auth.actor).await?.is_none()
    {
        return Err(HttpError(ApiError::not_found("project")));
    }
    if live.is_shutting_down() {
        return Err(error(ErrorCode::Unavailable, "the server is shutting down"));
    }
    let keepalive = live.clock.ticker(live.config.sse_keepalive);
    let body = SseBody {
        sub,
        session: SseSession::new(user_id),
        keepalive,
        _slot: slot,
        _guard: guard,
        _watch: watch,
    };
    let frames = futures::stream::unfold(Some(body), |body| async move {
        let mut body = body?;
        if let Some(first) = body.session.greeting() {
            return Some((Ok::<_, Infallible>(first), Some(body)));
        }
        let frame: Bytes = tokio::select! {
            delivery = body.sub.recv() => {
                let SseBody { sub, session, .. } = &mut body;
                session.on_deliveries(delivery, || sub.try_recv())?
            }
            _ = body.keepalive.tick() => body.session.on_keepalive_tick(),
        };
        // Anything the body sends counts as keepalive (direct writes do not pass through it).
        body.keepalive.reset();
        Some((Ok(frame), Some(body)))
    });
    let mut response = Response::new(Body::from_stream(frames));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// Every stream's handler: authenticates first (so a request without credentials gets 401
/// before anything about the project is said), finds what to stream, and opens it.
async fn stream(
    state: &AppState,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    front: Option<Extension<FrontSocket>>,
    access: impl AsyncFnOnce() -> HttpResult<Access>,
) -> HttpResult<Response> {
    let auth = Authed::from_headers(&state.tokens, &state.domain, headers).await?;
    let access = access().await?;
    open(
        state,
        &auth,
        access,
        StreamRequest::new(headers, uri, front),
    )
    .await
}

/// `GET /api/v1/projects/{project_id}/events`
pub async fn project(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    front: Option<Extension<FrontSocket>>,
) -> HttpResult<Response> {
    stream(&state, &uri, &headers, front, async || {
        Ok(Access::Project(path_id(&project_id, "project")?))
    })
    .await
}

/// `GET /api/projects/{project_id_or_key}/events`
pub async fn project_alias(
    State(state): State<AppState>,
    Path(id_or_key): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    front: Option<Extension<FrontSocket>>,
) -> HttpResult<Response> {
    stream(&state, &uri, &headers, front, async || {
        let project = state
            .domain
            .resolve_project(&id_or_key)
            .await?
            .ok_or_else(|| ApiError::not_found("project"))?;
        Ok(Access::Project(project))
    })
    .await
}

/// `GET /api/v1/projects/events`
pub async fn projects(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    front: Option<Extension<FrontSocket>>,
) -> HttpResult<Response> {
    stream(&state, &uri, &headers, front, async || {
        Ok(Access::ProjectList)
    })
    .await
}

/// `GET /api/v1/users/events`
pub async fn users(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    front: Option<Extension<FrontSocket>>,
) -> HttpResult<Response> {
    stream(&state, &uri, &headers, front, async || Ok(Access::User)).await
}
