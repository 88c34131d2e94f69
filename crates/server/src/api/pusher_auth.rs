//! Pusher channel authorization and user sign-in (CONTRACT §10): `POST /api/v1/pusher/auth`,
//! `POST /api/v1/pusher/user-auth`, and the credentials for system administrators at
//! `GET /api/v1/admin/pusher`.
//!
//! Choices where the contract is silent:
//! - A public channel needs no authorization: asking for one is a 400 (`invalid_request`), as
//!   is an invalid `socket_id` (`^\d+\.\d+$`) or channel name.
//! - A name under liveplan's prefixes that is not one of its channels (`private-project-nope`)
//!   is refused with 403: the app may not use those names either.
//! - Presence `user_info` is `{name, email}` on liveplan's own presence channels (their members
//!   see each other in the project anyway) and `{name}` on the app's own, which any signed-in
//!   user may join, so e-mail addresses do not leak to strangers.
//! - `private-encrypted-` channels are signed but get no `shared_secret`: the server holds no
//!   encryption master key. Apps that use them authorize those channels themselves.
//!
//! Why signing for someone else's `socket_id` gives the requester nothing: the signature binds
//! the socket id, so it is only good on that socket, and a socket's id is known to its own
//! client (and the server) alone. A requester who learns another socket's id and gets a
//! signature for it can only hand it to that socket's owner; the channel it opens is one the
//! requester may read anyway. Presence and sign-in signatures also bind the requester's user
//! id, and the socket side checks that a signed-in user matches the socket's own sign-in.

use crate::api::pusher_input::{AuthInput, valid_socket_id};
use crate::app::AppState;
use crate::auth::extract::Authed;
use crate::http::{HttpResult, error};
use crate::pusher::channel::{Channel, ChannelKind, OwnedChannel, reserved_prefix};
use crate::pusher::member::UserInfo;
use crate::pusher::signature;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use domain::OrApi;
use proto::ErrorCode;
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

/// `POST /api/v1/pusher/auth`: `{auth}`, or `{auth, channel_data}` for presence channels.
pub async fn authorize_channel(
    State(state): State<AppState>,
    authed: Authed,
    input: AuthInput,
) -> HttpResult<Json<Value>> {
    let socket_id = required(&input, "socket_id")?;
    if !valid_socket_id(socket_id) {
        return Err(error(
            ErrorCode::InvalidRequest,
            "socket_id must look like 123.456",
        ));
    }
    let channel_name = required(&input, "channel_name")?;
    let channel = Channel::parse(channel_name)
        .map_err(|e| error(ErrorCode::InvalidRequest, format!("channel_name: {e}")))?;
    if !channel.kind.needs_auth() {
        return Err(error(
            ErrorCode::InvalidRequest,
            "public channels need no authorization: subscribe without one",
        ));
    }
    let owned = match channel.owned {
        Some(owned) => {
            allowed_on(&state, &authed, owned).await?;
            true
        }
        None if reserved_prefix(&channel.name) => {
            return Err(error(
                ErrorCode::Forbidden,
                "this channel name is reserved for liveplan's own channels",
            ));
        }
        None => false,
    };
    let credentials = &state.pusher;
    if channel.kind == ChannelKind::Presence {
        let channel_data = serde_json::to_string(&PresenceData {
            user_id: authed.user.id.to_string(),
            user_info: UserInfo::of(&authed.user, owned),
        })
        .map_err(|_| error(ErrorCode::Internal, "internal error"))?;
        let auth =
            signature::channel_auth(credentials, socket_id, &channel.name, Some(&channel_data));
        return Ok(Json(json!({ "auth": auth, "channel_data": channel_data })));
    }
    let auth = signature::channel_auth(credentials, socket_id, &channel.name, None);
    Ok(Json(json!({ "auth": auth })))
}

/// `POST /api/v1/pusher/user-auth`: `{auth, user_data}` for `pusher:signin`.
pub async fn authenticate_user(
    State(state): State<AppState>,
    authed: Authed,
    input: AuthInput,
) -> HttpResult<Json<Value>> {
    let socket_id = required(&input, "socket_id")?;
    if !valid_socket_id(socket_id) {
        return Err(error(
            ErrorCode::InvalidRequest,
            "socket_id must look like 123.456",
        ));
    }
    let user_data = serde_json::to_string(&UserData {
        id: authed.user.id.to_string(),
        user_info: UserInfo::of(&authed.user, true),
    })
    .map_err(|_| error(ErrorCode::Internal, "internal error"))?;
    let auth = signature::user_auth(&state.pusher, socket_id, &user_data);
    Ok(Json(json!({ "auth": auth, "user_data": user_data })))
}

/// `GET /api/v1/admin/pusher`: the app's credentials, for system administrators only.
pub async fn credentials(State(state): State<AppState>, authed: Authed) -> HttpResult<Response> {
    domain::access::require_system_admin(&authed.actor)?;
    let credentials = &state.pusher;
    let body = json!({
        "app_id": credentials.app_id,
        "key": credentials.key,
        "secret": credentials.secret,
    });
    // The secret must not linger in caches.
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

fn required<'a>(input: &'a AuthInput, name: &'static str) -> HttpResult<&'a str> {
    input
        .get(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| error(ErrorCode::InvalidRequest, format!("{name} is required")))
}

/// The domain's rules for liveplan's channels: any member role on a project's channels and on
/// a whiteboard's; only the user on their own channel. Refusals are 403, also for projects
/// the caller cannot see (the channel name came from the caller, nothing leaks).
async fn allowed_on(state: &AppState, authed: &Authed, channel: OwnedChannel) -> HttpResult<()> {
    let forbidden = || {
        error(
            ErrorCode::Forbidden,
            "you may not subscribe to this channel",
        )
    };
    let project_id: Uuid = match channel {
        OwnedChannel::User(user_id) => {
            return if user_id == authed.user.id {
                Ok(())
            } else {
                Err(forbidden())
            };
        }
        OwnedChannel::Project(id) | OwnedChannel::ProjectPresence(id) => id,
        OwnedChannel::Whiteboard(whiteboard_id) => {
            let mut ops = state.domain.store.read().await.or_api()?;
            let record = ops.get_record(whiteboard_id).await.or_api()?;
            match record {
                Some(record) if record.collection == "whiteboards" => record.project_id,
                _ => return Err(forbidden()),
            }
        }
    };
    let mut ops = state.domain.store.read().await.or_api()?;
    match domain::access::project_role(&mut *ops, project_id, &authed.actor).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == ErrorCode::NotFound => Err(forbidden()),
        Err(e) => Err(e.into()),
    }
}

#[derive(Serialize)]
struct PresenceData {
    user_id: String,
    user_info: UserInfo,
}

#[derive(Serialize)]
struct UserData {
    id: String,
    user_info: UserInfo,
}
