//! Server-Sent Events (CONTRACT §7): a project's stream, the project-list stream and the user
//! stream, at `/api/v1/…` and the `/api/…` aliases.
//!
//! Each response body is the hub's SSE frames as they come (each a complete message), after a
//! first `connected` message, with a `: keepalive` comment whenever the body sent nothing for
//! `sse_keepalive` (frames the fan-out writes itself on the SSE front bypass the body, so there
//! a busy stream gets one every period too, which is the contract's "every 30 s"). The body
//! ends when the hub closes the subscription (loss of access, logout, the session's expiry,
//! shutdown), which is how a stream "ends on loss of access".

use crate::app::AppState;
use crate::auth::Authed;
use crate::http::{HttpError, HttpResult, error, path_id};
use crate::live::projects::{ProjectSet, ProjectWatch};
use crate::live::{ConnectionGuard, SseSlot};
use crate::transport::role_in;
use crate::transport::sse_front::FrontSocket;
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use domain::OrApi;
use hub::{Delivery, EventFilter, Sse, SubscribeRequest, Subscription};
use proto::{ApiError, ErrorCode, Event, EventType, StreamKey};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use uuid::Uuid;

const KEEPALIVE: &[u8] = b": keepalive\n\n";

/// `?last_event_id=` and the `Last-Event-ID` header (the header wins).
fn position(headers: &HeaderMap, query: Option<&str>) -> Option<i64> {
    let header = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty());
    let query = query.and_then(|q| {
        q.split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == "last_event_id")
            .map(|(_, v)| v)
    });
    super::parse_position(header.or(query))
}

/// Everything an SSE body owns: dropping it (client gone, stream ended) releases the hub
/// subscription, the user's slot and the connection count.
struct SseBody {
    sub: Subscription,
    keepalive: tokio::time::Interval,
    first: Option<Bytes>,
    _slot: SseSlot,
    _guard: ConnectionGuard,
    _watch: Option<ProjectWatch>,
}

/// The most bytes of ready frames joined into one body chunk.
const MAX_CHUNK: usize = 64 * 1024;

impl SseBody {
    /// The chunk for `first` and whatever else is ready: several messages joined into one
    /// write (a copy, cheaper than a write each). `None` when the stream is over.
    fn batch(&mut self, first: Delivery) -> Option<Bytes> {
        let frame = |sub: &Subscription, delivery: Delivery| match delivery {
            Delivery::Frame(frame) => Some(frame),
            Delivery::ResyncRequired { latest_seq } => Some(sub.resync_frame(latest_seq)),
            Delivery::Closed(_) => None,
            // SSE subscriptions ask for no heartbeat; were one to come, it is a keepalive.
            Delivery::Heartbeat => Some(Bytes::from_static(KEEPALIVE)),
        };
        let first = frame(&self.sub, first)?;
        if first.len() >= MAX_CHUNK {
            return Some(first);
        }
        let mut chunk: Option<bytes::BytesMut> = None;
        while chunk.as_ref().map_or(first.len(), |c| c.len()) < MAX_CHUNK {
            let Some(delivery) = self.sub.try_recv() else {
                break;
            };
            // An ending stream still sends what came before; the next poll sees Closed again.
            let Some(next) = frame(&self.sub, delivery) else {
                break;
            };
            chunk
                .get_or_insert_with(|| bytes::BytesMut::from(&first[..]))
                .extend_from_slice(&next);
        }
        Some(chunk.map_or(first, bytes::BytesMut::freeze))
    }
}

#[derive(Clone, Copy)]
enum Access {
    /// The per-project stream: any member role.
    Project(Uuid),
    ProjectList,
    User,
}

/// Where a stream is asked for: its headers and query, and, when the SSE front serves the
/// connection, the front's writer.
struct Asked<'a> {
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    front: Option<FrontSocket>,
}

impl<'a> Asked<'a> {
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
    asked: Asked<'_>,
) -> HttpResult<Response> {
    let live = &state.live;
    let user_id = auth.user.id;
    if let Access::Project(project) = access {
        role_in(state, project, &auth.actor)
            .await?
            .ok_or_else(|| ApiError::not_found("project"))?;
    }
    let Some(guard) = live.connection() else {
        return Err(error(ErrorCode::Unavailable, "the server is shutting down"));
    };
    let Some(slot) = live.sse_slot(user_id) else {
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
    request.since = position(asked.headers, asked.query);
    // On the front, the fan-out may write this stream's frames itself while the body waits
    // (`transport::direct`); through hyper, which frames the body its own way, it may not.
    request.direct = asked
        .front
        .map(|FrontSocket(writer)| writer as Arc<dyn hub::DirectWrite>);
    request.session_id = Some(auth.session_id);
    request.expires_at = Some(auth.session_expires_at);
    request.filter = filter;
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
    let period = live.config.sse_keepalive;
    let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let body = SseBody {
        sub,
        keepalive,
        first: Some(Sse::connected(user_id)),
        _slot: slot,
        _guard: guard,
        _watch: watch,
    };
    let frames = futures::stream::unfold(Some(body), |body| async move {
        let mut body = body?;
        if let Some(first) = body.first.take() {
            return Some((Ok::<_, Infallible>(first), Some(body)));
        }
        let frame = tokio::select! {
            delivery = body.sub.recv() => match body.batch(delivery) {
                Some(frame) => frame,
                None => return None,
            },
            _ = body.keepalive.tick() => Bytes::from_static(KEEPALIVE),
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

/// The project-list stream: project lifecycle events of the user's projects, and the database
/// events (which concern every project).
fn project_list_filter(set: Arc<ProjectSet>) -> EventFilter {
    Arc::new(move |event: &Event| match event.event_type {
        EventType::ProjectCreated | EventType::ProjectUpdated | EventType::ProjectDeleted => {
            event.project_id.is_some_and(|p| set.contains(p))
        }
        EventType::DatabaseWiped | EventType::DatabaseProjectsWiped => true,
        _ => false,
    })
}

/// The user stream: `user.updated` of the user themself; system administrators, who manage
/// users, get every user's.
fn user_filter(user_id: Uuid, is_admin: bool) -> EventFilter {
    Arc::new(move |event: &Event| {
        event.event_type == EventType::UserUpdated
            && (is_admin
                || event
                    .payload
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(|s| Uuid::parse_str(s).ok())
                    == Some(user_id))
    })
}

async fn authed(state: &AppState, headers: &HeaderMap) -> HttpResult<Authed> {
    Authed::from_headers(state, headers).await
}

/// `GET /api/v1/projects/{project_id}/events`
pub async fn project(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    front: Option<Extension<FrontSocket>>,
) -> HttpResult<Response> {
    let auth = authed(&state, &headers).await?;
    let project = path_id(&project_id, "project")?;
    let asked = Asked::new(&headers, &uri, front);
    open(&state, &auth, Access::Project(project), asked).await
}

/// `GET /api/projects/{project_id_or_key}/events`
pub async fn project_alias(
    State(state): State<AppState>,
    Path(id_or_key): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    front: Option<Extension<FrontSocket>>,
) -> HttpResult<Response> {
    let auth = authed(&state, &headers).await?;
    let project = state
        .domain
        .resolve_project(&id_or_key)
        .await?
        .ok_or_else(|| ApiError::not_found("project"))?;
    let asked = Asked::new(&headers, &uri, front);
    open(&state, &auth, Access::Project(project), asked).await
}

/// `GET /api/v1/projects/events`
pub async fn projects(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    front: Option<Extension<FrontSocket>>,
) -> HttpResult<Response> {
    let auth = authed(&state, &headers).await?;
    let asked = Asked::new(&headers, &uri, front);
    open(&state, &auth, Access::ProjectList, asked).await
}

/// `GET /api/v1/users/events`
pub async fn users(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    front: Option<Extension<FrontSocket>>,
) -> HttpResult<Response> {
    let auth = authed(&state, &headers).await?;
    let asked = Asked::new(&headers, &uri, front);
    open(&state, &auth, Access::User, asked).await
}
