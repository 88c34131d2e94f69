//! The authentication extractor every protected handler takes. It accepts a Bearer token or the
//! session cookie, checks the session is live and the user active, applies the CSRF rule to
//! cookie-authenticated writes, and reads `X-Tab-Id`.

use super::SESSION_COOKIE;
use super::tokens::TokenKeys;
use crate::http::{HttpError, error, tab_id};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use domain::{Actor, Domain};
use proto::ErrorCode;
use std::sync::Arc;
use store::UserRow;
use uuid::Uuid;

pub struct Authed {
    pub actor: Actor,
    pub session_id: Uuid,
    /// When the session expires; live connections opened with it end then.
    pub session_expires_at: store::Timestamp,
    pub user: UserRow,
}

fn unauthenticated() -> HttpError {
    error(ErrorCode::NotAuthenticated, "authentication required")
}

/// The token of a request: `Authorization: Bearer …` first, then the session cookie.
pub fn request_token(headers: &HeaderMap) -> Option<(String, bool)> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = value.split_once(' ')?;
        if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() {
            return Some((token.trim().to_owned(), false));
        }
        return None;
    }
    cookie_value(headers, SESSION_COOKIE).map(|t| (t, true))
}

pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty())
}

/// Cookie-authenticated writes must come from our own origin: the `Origin` (or, failing that,
/// `Referer`) must name the host the request was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let Some(source) = source else {
        return false;
    };
    let without_scheme = source
        .strip_prefix("https://")
        .or_else(|| source.strip_prefix("http://"))
        .unwrap_or("");
    let authority = without_scheme.split('/').next().unwrap_or("");
    authority.eq_ignore_ascii_case(host)
}

impl Authed {
    /// Authenticates from headers alone; shared with the WebSocket and SSE handshakes.
    pub async fn from_headers(
        tokens: &TokenKeys,
        domain: &Domain,
        headers: &HeaderMap,
    ) -> Result<Authed, HttpError> {
        let (token, _) = request_token(headers).ok_or_else(unauthenticated)?;
        let claims = tokens.verify(&token).ok_or_else(unauthenticated)?;
        let (session, user) = domain
            .session_user(claims.sid)
            .await?
            .ok_or_else(unauthenticated)?;
        if user.id != claims.sub {
            return Err(unauthenticated());
        }
        Ok(Authed {
            actor: Actor {
                user_id: user.id,
                is_admin: user.is_admin,
                tab_id: tab_id(headers)?,
            },
            session_id: session.id,
            session_expires_at: session.expires_at,
            user,
        })
    }
}

/// Any router state that hands over the token keys and the domain (the app's does).
impl<S> FromRequestParts<S> for Authed
where
    S: Send + Sync,
    Arc<TokenKeys>: FromRef<S>,
    Domain: FromRef<S>,
{
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let (_, via_cookie) = request_token(&parts.headers).ok_or_else(unauthenticated)?;
        let tokens = Arc::<TokenKeys>::from_ref(state);
        let domain = Domain::from_ref(state);
        let authed = Authed::from_headers(&tokens, &domain, &parts.headers).await?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if via_cookie && !safe && !same_origin(&parts.headers) {
            return Err(error(
                ErrorCode::Forbidden,
                "cross-site request refused: cookie-authenticated writes need a same-origin Origin header",
            ));
        }
        Ok(authed)
    }
}
