//! Pusher's HTTP API under `/apps/{app_id}` (CONTRACT §10), what the `pusher` server SDKs call:
//! publish events, batches, and ask about channels and presence users; end a user's sockets.
//!
//! Every request is signed (`signature::verify_api_request`); the answers and errors are
//! Pusher's: JSON, `{"error": "…"}` on failure. 401 for a bad key, signature, version,
//! timestamp or `body_md5`; 404 for another app id (checked after the signature, so a
//! stranger learns nothing about the id); 400 for bad input; 403 for liveplan's own channels;
//! 413 for data over 10 KB or a body over [`MAX_BODY`]; 503 with `Retry-After` when the
//! channels' shared state cannot be reached. The channels themselves are behind
//! [`ChannelDirectory`], which the socket side implements.

use crate::api::pusher_input::{parse_urlencoded, valid_socket_id};
use crate::pusher::channel::{Channel, ChannelKind, reserved_prefix};
use crate::pusher::credentials::PusherCredentials;
use crate::pusher::directory::{ChannelDirectory, ChannelInfo, DirectoryError, Publication};
use crate::pusher::signature;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// Pusher's limits.
pub const MAX_EVENT_NAME: usize = 200;
pub const MAX_DATA_BYTES: usize = 10 * 1024;
pub const MAX_CHANNELS_PER_EVENT: usize = 100;
pub const MAX_BATCH: usize = 10;
/// A full batch of 10 events of 10 KB with their JSON escaping fits.
pub const MAX_BODY: usize = 256 * 1024;

/// What the HTTP API's handlers share.
#[derive(Clone)]
pub struct PusherHttpState {
    pub credentials: Arc<PusherCredentials>,
    pub directory: Arc<dyn ChannelDirectory>,
}

pub fn router<S: Clone + Send + Sync + 'static>(state: PusherHttpState) -> Router<S> {
    Router::new()
        .route("/apps/{app_id}/events", post(events))
        .route("/apps/{app_id}/batch_events", post(batch_events))
        .route("/apps/{app_id}/channels", get(channels))
        .route("/apps/{app_id}/channels/{channel}", get(channel))
        .route("/apps/{app_id}/channels/{channel}/users", get(users))
        .route(
            "/apps/{app_id}/users/{user_id}/terminate_connections",
            post(terminate_connections),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// A refusal, as Pusher words them: a status and `{"error": message}`.
#[derive(Debug, PartialEq, Eq)]
pub struct ApiFailure {
    pub status: StatusCode,
    pub message: String,
}

fn fail(status: StatusCode, message: impl Into<String>) -> ApiFailure {
    ApiFailure {
        status,
        message: message.into(),
    }
}

fn bad_request(message: impl Into<String>) -> ApiFailure {
    fail(StatusCode::BAD_REQUEST, message)
}

impl From<DirectoryError> for ApiFailure {
    fn from(_: DirectoryError) -> Self {
        fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "channel state is unavailable, try again shortly",
        )
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

type ApiResult = Result<axum::Json<Value>, ApiFailure>;

/// The path's parameters, with a JSON 400 (not axum's plain text) when they cannot be read.
struct ApiPath<T>(T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(|_| bad_request("the path is not valid"))
    }
}

/// A request that passed the signature check: its query, and its body (empty for GET).
struct Signed {
    query: Vec<(String, String)>,
    body: Bytes,
}

impl Signed {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Checks the signature, then the app id. The path is tried as sent and, when it differs,
/// percent-decoded: SDKs sign the channel name unescaped while an HTTP client may escape it.
fn authenticate(
    state: &PusherHttpState,
    app_id: &str,
    method: &Method,
    uri: &Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Signed, ApiFailure> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            fail(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
        } else {
            bad_request("the request body could not be read")
        }
    })?;
    let query = parse_urlencoded(uri.query().unwrap_or(""))
        .ok_or_else(|| bad_request("the query string is not UTF-8"))?;
    let raw_path = uri.path();
    let verify = |path: &str| {
        signature::verify_api_request(
            &state.credentials,
            method.as_str(),
            path,
            &query,
            &body,
            now_secs(),
        )
    };
    let mut outcome = verify(raw_path);
    if matches!(outcome, Err(signature::ApiAuthError::InvalidSignature))
        && let Ok(decoded) = percent_decode_str(raw_path).decode_utf8()
        && decoded != raw_path
    {
        outcome = verify(&decoded);
    }
    outcome.map_err(|e| fail(StatusCode::UNAUTHORIZED, e.to_string()))?;
    if app_id != state.credentials.app_id {
        return Err(fail(StatusCode::NOT_FOUND, "Unknown app"));
    }
    Ok(Signed { query, body })
}

/// The body of a POST as a JSON object.
fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiFailure> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(bad_request("the body must be a JSON object")),
        Err(_) => Err(bad_request("the body is not valid JSON")),
    }
}

/// `info`: a comma-separated list of `user_count` and `subscription_count`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InfoWanted {
    pub user_count: bool,
    pub subscription_count: bool,
}

impl InfoWanted {
    pub fn parse(info: Option<&str>) -> Result<InfoWanted, ApiFailure> {
        let mut wanted = InfoWanted::default();
        for attribute in info.unwrap_or("").split(',').map(str::trim) {
            match attribute {
                "" => {}
                "user_count" => wanted.user_count = true,
                "subscription_count" => wanted.subscription_count = true,
                other => {
                    return Err(bad_request(format!(
                        "unknown info attribute {other:?}: use user_count or subscription_count"
                    )));
                }
            }
        }
        Ok(wanted)
    }

    fn any(self) -> bool {
        self.user_count || self.subscription_count
    }

    fn describe(self, info: &ChannelInfo) -> Map<String, Value> {
        let mut out = Map::new();
        if self.user_count
            && let Some(count) = info.user_count
        {
            out.insert("user_count".to_owned(), count.into());
        }
        if self.subscription_count {
            out.insert(
                "subscription_count".to_owned(),
                info.subscription_count.into(),
            );
        }
        out
    }
}

/// The longest user id accepted (the ids apps sign in with are theirs; liveplan's are UUIDs).
const MAX_USER_ID: usize = 200;

fn valid_user_id(user_id: &str) -> bool {
    !user_id.is_empty() && user_id.len() <= MAX_USER_ID && !user_id.chars().any(char::is_control)
}

/// A channel name from a request: valid, and (`publishing`) not one of liveplan's. Publishing
/// also takes `#server-to-user-{user_id}` (the SDKs' `sendToUser`): nobody subscribes to it,
/// the sockets signed in as that user receive it.
fn channel_name(name: &str, publishing: bool) -> Result<Channel, ApiFailure> {
    if publishing && let Some(user_id) = name.strip_prefix("#server-to-user-") {
        if !valid_user_id(user_id) || name.len() > crate::pusher::channel::MAX_CHANNEL_NAME {
            return Err(bad_request(format!("invalid channel {name:?}")));
        }
        return Ok(Channel {
            name: name.to_owned(),
            kind: ChannelKind::Private,
            cache: false,
            owned: None,
        });
    }
    let channel =
        Channel::parse(name).map_err(|e| bad_request(format!("invalid channel {name:?}: {e}")))?;
    if publishing && reserved_prefix(&channel.name) {
        return Err(fail(
            StatusCode::FORBIDDEN,
            format!(
                "channel {name:?} is liveplan's own: its events come from liveplan, not the HTTP API"
            ),
        ));
    }
    Ok(channel)
}

/// One event to publish, validated.
#[derive(Debug, PartialEq, Eq)]
pub struct EventRequest {
    pub name: String,
    pub data: String,
    pub channels: Vec<Channel>,
    pub socket_id: Option<String>,
    pub info: InfoWanted,
}

/// Validates one event of `events` (`batch` false) or of a batch (one `channel` only).
pub fn event_request(object: &Map<String, Value>, batch: bool) -> Result<EventRequest, ApiFailure> {
    let name = match object.get("name") {
        Some(Value::String(name)) if !name.is_empty() => name.clone(),
        _ => return Err(bad_request("name is required and must be a string")),
    };
    if name.len() > MAX_EVENT_NAME {
        return Err(bad_request("event name is longer than 200 characters"));
    }
    if name.starts_with("pusher:") || name.starts_with("pusher_internal:") {
        return Err(bad_request(
            "event names starting with pusher: or pusher_internal: are the protocol's",
        ));
    }
    let data = match object.get("data") {
        Some(Value::String(data)) => data.clone(),
        _ => return Err(bad_request("data is required and must be a string")),
    };
    if data.len() > MAX_DATA_BYTES {
        return Err(fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            "event data is larger than 10 KB",
        ));
    }
    let names: Vec<&str> = match (object.get("channels"), object.get("channel")) {
        (Some(_), _) if batch => {
            return Err(bad_request("a batch event names one channel"));
        }
        (Some(Value::Array(list)), None) => list
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| bad_request("channels must be strings"))
            })
            .collect::<Result<_, _>>()?,
        (None, Some(Value::String(one))) => vec![one.as_str()],
        (Some(_), Some(_)) => return Err(bad_request("send channels or channel, not both")),
        _ => return Err(bad_request("channels (a list) or channel is required")),
    };
    if names.is_empty() {
        return Err(bad_request("channels must not be empty"));
    }
    if names.len() > MAX_CHANNELS_PER_EVENT {
        return Err(bad_request("an event goes to at most 100 channels"));
    }
    let mut channels: Vec<Channel> = Vec::with_capacity(names.len());
    for name in names {
        let channel = channel_name(name, true)?;
        if !channels.iter().any(|c| c.name == channel.name) {
            channels.push(channel);
        }
    }
    let socket_id = match object.get("socket_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if valid_socket_id(id) => Some(id.clone()),
        Some(_) => return Err(bad_request("socket_id must look like 123.456")),
    };
    let info = InfoWanted::parse(match object.get("info") {
        None | Some(Value::Null) => None,
        Some(Value::String(info)) => Some(info.as_str()),
        Some(_) => return Err(bad_request("info must be a string")),
    })?;
    if info.user_count && channels.iter().any(|c| c.kind != ChannelKind::Presence) {
        return Err(bad_request("info=user_count is only for presence channels"));
    }
    Ok(EventRequest {
        name,
        data,
        channels,
        socket_id,
        info,
    })
}

async fn publish(
    directory: &dyn ChannelDirectory,
    event: &EventRequest,
) -> Result<Map<String, Value>, ApiFailure> {
    let names: Vec<String> = event.channels.iter().map(|c| c.name.clone()).collect();
    directory
        .publish(Publication {
            channels: &names,
            event: &event.name,
            data: &event.data,
            exclude_socket: event.socket_id.as_deref(),
        })
        .await?;
    let mut described = Map::new();
    if event.info.any() {
        for name in &names {
            let info = directory.channel(name).await?;
            described.insert(name.clone(), Value::Object(event.info.describe(&info)));
        }
    }
    Ok(described)
}

/// `POST /apps/{app_id}/events`.
async fn events(
    State(state): State<PusherHttpState>,
    ApiPath(app_id): ApiPath<String>,
    method: Method,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let signed = authenticate(&state, &app_id, &method, &uri, body)?;
    let event = event_request(&json_object(&signed.body)?, false)?;
    let described = publish(&*state.directory, &event).await?;
    if event.info.any() {
        Ok(axum::Json(json!({ "channels": described })))
    } else {
        Ok(axum::Json(json!({})))
    }
}

/// `POST /apps/{app_id}/batch_events`: every event is checked before any is published.
async fn batch_events(
    State(state): State<PusherHttpState>,
    ApiPath(app_id): ApiPath<String>,
    method: Method,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let signed = authenticate(&state, &app_id, &method, &uri, body)?;
    let object = json_object(&signed.body)?;
    let Some(Value::Array(batch)) = object.get("batch") else {
        return Err(bad_request("batch is required and must be a list"));
    };
    if batch.is_empty() {
        return Err(bad_request("batch must not be empty"));
    }
    if batch.len() > MAX_BATCH {
        return Err(bad_request("a batch holds at most 10 events"));
    }
    let events = batch
        .iter()
        .map(|item| match item {
            Value::Object(event) => event_request(event, true),
            _ => Err(bad_request("every batch item must be an object")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut answers = Vec::with_capacity(events.len());
    for event in &events {
        let described = publish(&*state.directory, event).await?;
        let one = described.into_iter().next().map(|(_, info)| info);
        answers.push(one.unwrap_or_else(|| Value::Object(Map::new())));
    }
    if events.iter().any(|e| e.info.any()) {
        Ok(axum::Json(json!({ "batch": answers })))
    } else {
        Ok(axum::Json(json!({})))
    }
}

/// `GET /apps/{app_id}/channels`.
async fn channels(
    State(state): State<PusherHttpState>,
    ApiPath(app_id): ApiPath<String>,
    method: Method,
    uri: Uri,
) -> ApiResult {
    let signed = authenticate(&state, &app_id, &method, &uri, Ok(Bytes::new()))?;
    let prefix = signed.param("filter_by_prefix").filter(|p| !p.is_empty());
    if prefix.is_some_and(|p| p.len() > crate::pusher::channel::MAX_CHANNEL_NAME) {
        return Err(bad_request(
            "filter_by_prefix is longer than 200 characters",
        ));
    }
    let info = InfoWanted::parse(signed.param("info"))?;
    if info.user_count && !prefix.is_some_and(|p| p.starts_with("presence-")) {
        return Err(bad_request(
            "info=user_count needs filter_by_prefix=presence-",
        ));
    }
    let occupied = state.directory.occupied_channels(prefix).await?;
    let listed: Map<String, Value> = occupied
        .iter()
        .filter(|c| prefix.is_none_or(|p| c.name.starts_with(p)))
        .map(|c| (c.name.clone(), Value::Object(info.describe(c))))
        .collect();
    Ok(axum::Json(json!({ "channels": listed })))
}

/// `GET /apps/{app_id}/channels/{channel}`.
async fn channel(
    State(state): State<PusherHttpState>,
    ApiPath((app_id, name)): ApiPath<(String, String)>,
    method: Method,
    uri: Uri,
) -> ApiResult {
    let signed = authenticate(&state, &app_id, &method, &uri, Ok(Bytes::new()))?;
    let channel = channel_name(&name, false)?;
    let info = InfoWanted::parse(signed.param("info"))?;
    if info.user_count && channel.kind != ChannelKind::Presence {
        return Err(bad_request("info=user_count is only for presence channels"));
    }
    let found = state.directory.channel(&channel.name).await?;
    let mut answer = Map::new();
    answer.insert(
        "occupied".to_owned(),
        Value::Bool(found.subscription_count > 0),
    );
    answer.extend(info.describe(&found));
    Ok(axum::Json(Value::Object(answer)))
}

/// `GET /apps/{app_id}/channels/{channel}/users`: presence channels only.
async fn users(
    State(state): State<PusherHttpState>,
    ApiPath((app_id, name)): ApiPath<(String, String)>,
    method: Method,
    uri: Uri,
) -> ApiResult {
    authenticate(&state, &app_id, &method, &uri, Ok(Bytes::new()))?;
    let channel = channel_name(&name, false)?;
    if channel.kind != ChannelKind::Presence {
        return Err(bad_request("users are only listed for presence channels"));
    }
    let users = state.directory.presence_users(&channel.name).await?;
    let users: Vec<Value> = users.into_iter().map(|id| json!({ "id": id })).collect();
    Ok(axum::Json(json!({ "users": users })))
}

/// `POST /apps/{app_id}/users/{user_id}/terminate_connections`.
async fn terminate_connections(
    State(state): State<PusherHttpState>,
    ApiPath((app_id, user_id)): ApiPath<(String, String)>,
    method: Method,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    authenticate(&state, &app_id, &method, &uri, body)?;
    if user_id.is_empty() || user_id.len() > MAX_USER_ID || user_id.chars().any(char::is_control) {
        return Err(bad_request("invalid user id"));
    }
    state.directory.terminate_user_connections(&user_id).await?;
    Ok(axum::Json(json!({})))
}

#[cfg(test)]
mod tests;
