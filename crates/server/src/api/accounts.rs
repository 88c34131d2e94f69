//! Login, logout, the current user, user administration and WebSocket tickets.

use crate::app::AppState;
use crate::auth::{Authed, SESSION_COOKIE, login, password, tickets, tokens::Claims};
use crate::http::{HttpResult, IfMatch, JsonBody, error, path_id};
use crate::net::Peer;
use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::accounts::{NewUser, parse_user_input, user_json};
use proto::{ApiError, ErrorCode};
use serde_json::{Value, json};

fn session_cookie(state: &AppState, token: &str, max_age: i64) -> HeaderValue {
    let secure = if state.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age}{secure}"
    );
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `POST /api/v1/auth/login` with `{email | username | login, password}`.
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(Peer { address, .. }): ConnectInfo<Peer>,
    JsonBody(body): JsonBody,
) -> HttpResult<Response> {
    let object = domain::validate::as_object(&body)?;
    let login = ["email", "username", "login"]
        .iter()
        .find_map(|k| object.get(*k).and_then(Value::as_str))
        .ok_or_else(|| error(ErrorCode::ValidationFailed, "email or username is required"))?
        .to_owned();
    let secret = object
        .get("password")
        .and_then(Value::as_str)
        .ok_or_else(|| error(ErrorCode::ValidationFailed, "password is required"))?
        .to_owned();
    if login.len() > 254 || secret.len() > domain::accounts::MAX_PASSWORD_BYTES {
        return Err(login::bad_credentials());
    }
    state.limiters.check_login(&login, address.ip()).await?;
    let user = login::authenticate(&state.domain, &state.decoy_hash, &login, secret).await?;
    let session = state
        .domain
        .create_session(
            user.id,
            chrono::Duration::from_std(state.config.session_ttl).unwrap_or_default(),
        )
        .await?;
    let claims = Claims {
        sub: user.id,
        sid: session.id,
        iat: session.created_at.timestamp(),
        exp: session.expires_at.timestamp(),
    };
    let token = state.tokens.issue(&claims).ok_or_else(ApiError::internal)?;
    let expires_in = state.config.session_ttl.as_secs() as i64;
    let body = json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "user": user_json(&user),
    });
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&state, &token, expires_in),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `POST /api/v1/auth/logout`: ends the session; its tokens die and its live connections close.
pub async fn logout(State(state): State<AppState>, auth: Authed) -> HttpResult<Response> {
    state.domain.end_session(auth.session_id).await?;
    state.live.session_ended(auth.session_id);
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&state, "", 0));
    Ok(response)
}

pub async fn me(auth: Authed) -> Json<Value> {
    Json(user_json(&auth.user))
}

/// `PATCH /api/v1/users/me`: profile fields; a new password needs `current_password`.
pub async fn update_me(
    State(state): State<AppState>,
    auth: Authed,
    if_match: IfMatch,
    JsonBody(body): JsonBody,
) -> HttpResult<Json<Value>> {
    let input = parse_user_input(&body, false)?;
    let new_hash = match &input.password {
        Some(new_password) => {
            let current = input.current_password.clone().ok_or_else(|| {
                error(
                    ErrorCode::ValidationFailed,
                    "current_password is required to change the password",
                )
            })?;
            if !password::verify(current, auth.user.password_hash.clone()).await? {
                return Err(login::bad_credentials());
            }
            Some(password::hash(new_password.clone()).await?)
        }
        None => None,
    };
    let (user, sessions_ended) = state
        .domain
        .update_user(
            &auth.actor,
            auth.user.id,
            input.hashed(new_hash),
            if_match.0,
        )
        .await?;
    if sessions_ended {
        state.live.user_sessions_ended(auth.user.id);
    }
    Ok(Json(user))
}

/// `GET /api/v1/users` (system administrators).
pub async fn list_users(State(state): State<AppState>, auth: Authed) -> HttpResult<Json<Value>> {
    Ok(Json(Value::Array(
        state.domain.list_users(&auth.actor).await?,
    )))
}

/// `POST /api/v1/users` (system administrators).
pub async fn create_user(
    State(state): State<AppState>,
    auth: Authed,
    JsonBody(body): JsonBody,
) -> HttpResult<(StatusCode, Json<Value>)> {
    domain::access::require_system_admin(&auth.actor)?;
    let input = parse_user_input(&body, true)?;
    let email = input
        .email
        .clone()
        .ok_or_else(|| error(ErrorCode::ValidationFailed, "email is required"))?;
    let secret = input
        .password
        .clone()
        .ok_or_else(|| error(ErrorCode::ValidationFailed, "password is required"))?;
    let password_hash = password::hash(secret).await?;
    let user = state
        .domain
        .create_user(
            Some(&auth.actor),
            NewUser {
                email,
                username: input.username.flatten(),
                display_name: input.display_name,
                password_hash,
                is_admin: input.is_admin.unwrap_or(false),
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// `GET /api/v1/users/{id}` (system administrators, or yourself).
pub async fn get_user(
    State(state): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
) -> HttpResult<Json<Value>> {
    let id = path_id(&id, "user")?;
    if id != auth.user.id {
        domain::access::require_system_admin(&auth.actor)?;
    }
    let user = state
        .domain
        .get_user(id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(Json(user_json(&user)))
}

/// `PATCH /api/v1/users/{id}` (system administrators): deactivation ends every session and
/// live connection of the user.
pub async fn update_user(
    State(state): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
    if_match: IfMatch,
    JsonBody(body): JsonBody,
) -> HttpResult<Json<Value>> {
    let id = path_id(&id, "user")?;
    domain::access::require_system_admin(&auth.actor)?;
    let input = parse_user_input(&body, true)?;
    let new_hash = match &input.password {
        Some(p) => Some(password::hash(p.clone()).await?),
        None => None,
    };
    let (user, sessions_ended) = state
        .domain
        .update_user(&auth.actor, id, input.hashed(new_hash), if_match.0)
        .await?;
    if sessions_ended {
        state.live.user_sessions_ended(id);
    }
    Ok(Json(user))
}

/// `POST /api/v1/ws/ticket/`: a single-use, 30-second ticket for opening a WebSocket.
pub async fn mint_ticket(State(state): State<AppState>, auth: Authed) -> HttpResult<Response> {
    state.limiters.check_ticket(auth.user.id).await?;
    let (secret, hash) = tickets::mint();
    state
        .domain
        .store_ticket(
            auth.user.id,
            auth.session_id,
            hash,
            chrono::Duration::seconds(tickets::TICKET_TTL_SECS),
        )
        .await?;
    let mut response =
        Json(json!({ "ticket": secret, "expires_in": tickets::TICKET_TTL_SECS })).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
