//! The HTTP face of errors and inputs: the JSON error body for every failure, the JSON body
//! extractor with precise rejections, `If-Match`, `X-Tab-Id`, and paging.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use proto::{ApiError, ErrorCode};
use serde::Deserialize;
use serde_json::Value;

/// An [`ApiError`] on its way to the client.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(error: ApiError) -> Self {
        HttpError(error)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(self.0.body())).into_response();
        if let Some(default_retry) = match self.0.code {
            ErrorCode::RateLimited => Some(60),
            // Busy, not broken: the body says when (password hashing's queue, `auth::password`).
            ErrorCode::Unavailable => self.0.details.as_ref().map(|_| 5),
            _ => None,
        } {
            let retry = self
                .0
                .details
                .as_ref()
                .and_then(|d| d.get("retry_after_secs"))
                .and_then(Value::as_u64)
                .unwrap_or(default_retry);
            if let Ok(value) = retry.to_string().parse() {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        if self.0.code == ErrorCode::StoreUnavailable {
            // About the pool's wait for a connection: sooner is unlikely to find it back.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        }
        response
    }
}

pub type HttpResult<T> = Result<T, HttpError>;

pub fn error(code: ErrorCode, message: impl Into<String>) -> HttpError {
    HttpError(ApiError::new(code, message))
}

/// A JSON body, read whole within the route's body limit, with JSON error answers:
/// 415 when it is not `application/json`, 413 when too large, 400 when malformed, 422 when it
/// holds an integer beyond 64 bits (`domain::validate::oversized_integer`).
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = HttpError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                let v = v.trim();
                v.eq_ignore_ascii_case("application/json") || v.ends_with("+json")
            });
        if !is_json {
            return Err(error(
                ErrorCode::UnsupportedMediaType,
                "the body must be JSON (Content-Type: application/json)",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    error(ErrorCode::PayloadTooLarge, "the body is too large")
                } else {
                    error(ErrorCode::MalformedBody, "the body could not be read")
                }
            })?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            error(
                ErrorCode::MalformedBody,
                format!("the body is not valid JSON: {e}"),
            )
        })?;
        if let Some(number) = domain::validate::oversized_integer(&bytes) {
            return Err(HttpError(
                ApiError::new(
                    ErrorCode::ValidationFailed,
                    format!(
                        "the integer {number} does not fit in 64 bits and would come back \
                         as a float: send it as a string"
                    ),
                )
                .with_details(serde_json::json!({ "value": number })),
            ));
        }
        Ok(JsonBody(value))
    }
}

/// `If-Match: "3"` (also `W/"3"` and bare `3`); `*` or no header means no condition.
pub struct IfMatch(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::IF_MATCH) else {
            return Ok(IfMatch(None));
        };
        let text = value.to_str().unwrap_or_default().trim();
        if text == "*" {
            return Ok(IfMatch(None));
        }
        let bare = text.trim_start_matches("W/").trim_matches('"');
        bare.parse::<i64>().map(|v| IfMatch(Some(v))).map_err(|_| {
            error(
                ErrorCode::InvalidRequest,
                "If-Match must be a quoted record version, e.g. \"3\"",
            )
        })
    }
}

/// The most characters of an `X-Tab-Id`.
const MAX_TAB_ID: usize = 128;

/// Reads `X-Tab-Id`, refusing anything but short printable text.
pub fn tab_id(headers: &HeaderMap) -> Result<Option<String>, HttpError> {
    let Some(value) = headers.get("x-tab-id") else {
        return Ok(None);
    };
    let text = value.to_str().ok().map(str::trim).unwrap_or_default();
    let printable = text.chars().all(|c| c.is_ascii_graphic());
    if text.is_empty() || text.len() > MAX_TAB_ID || !printable {
        return Err(error(
            ErrorCode::InvalidRequest,
            "X-Tab-Id must be 1 to 128 printable ASCII characters",
        ));
    }
    Ok(Some(text.to_owned()))
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

impl PageQuery {
    pub fn page(&self) -> store::Page {
        store::Page {
            limit: self.limit.unwrap_or(u32::MAX),
            offset: self.offset.unwrap_or(0),
        }
    }
}

/// Parses query parameters with a JSON 400 on failure.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| {
                error(
                    ErrorCode::InvalidRequest,
                    format!("bad query: {}", e.body_text()),
                )
            })
    }
}

/// Parses an id path segment with a JSON 404: an id that cannot exist names nothing.
pub fn path_id(text: &str, what: &str) -> Result<uuid::Uuid, HttpError> {
    uuid::Uuid::parse_str(text).map_err(|_| HttpError(ApiError::not_found(what)))
}
