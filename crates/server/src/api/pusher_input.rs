//! What the Pusher endpoints read: a form-or-JSON body of string fields (pusher-js posts a
//! form, laravel-echo setups often JSON), urlencoded pairs, and socket ids.

use crate::http::{HttpError, error};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use percent_encoding::percent_decode_str;
use proto::ErrorCode;
use serde_json::Value;

/// The largest authorization request body (a socket id and a 200-character channel name fit
/// many times over).
pub const MAX_AUTH_BODY: usize = 16 * 1024;

/// The longest socket id accepted (two u64s and a dot).
const MAX_SOCKET_ID: usize = 41;

/// `^\d+\.\d+$`, bounded in length.
pub fn valid_socket_id(socket_id: &str) -> bool {
    socket_id.len() <= MAX_SOCKET_ID
        && socket_id.split_once('.').is_some_and(|(left, right)| {
            !left.is_empty()
                && !right.is_empty()
                && left.bytes().all(|b| b.is_ascii_digit())
                && right.bytes().all(|b| b.is_ascii_digit())
        })
}

/// `a=1&b=2` decoded (`+` is a space), in order; `None` when a part is not UTF-8.
pub fn parse_urlencoded(text: &str) -> Option<Vec<(String, String)>> {
    let decode = |part: &str| {
        let spaced = part.replace('+', " ");
        percent_decode_str(&spaced)
            .decode_utf8()
            .ok()
            .map(|v| v.into_owned())
    };
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(key)?, decode(value)?))
        })
        .collect()
}

/// The string fields of an authorization request, from a form or a JSON object.
#[derive(Debug, Default)]
pub struct AuthInput(Vec<(String, String)>);

impl AuthInput {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

fn malformed(message: &str) -> HttpError {
    error(ErrorCode::MalformedBody, message)
}

impl<S: Send + Sync> FromRequest<S> for AuthInput {
    type Rejection = HttpError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let too_large = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|length| length > MAX_AUTH_BODY);
        if too_large {
            return Err(error(
                ErrorCode::PayloadTooLarge,
                "the request body is too large",
            ));
        }
        let body = Bytes::from_request(request, state).await.map_err(|_| {
            error(
                ErrorCode::PayloadTooLarge,
                "the request body is too large or unreadable",
            )
        })?;
        if body.len() > MAX_AUTH_BODY {
            return Err(error(
                ErrorCode::PayloadTooLarge,
                "the request body is too large",
            ));
        }
        if content_type == "application/json" || content_type.ends_with("+json") {
            let value: Value =
                serde_json::from_slice(&body).map_err(|_| malformed("the body is not JSON"))?;
            let object = value
                .as_object()
                .ok_or_else(|| malformed("the body must be a JSON object"))?;
            let mut fields = Vec::new();
            for (key, value) in object {
                match value {
                    Value::String(text) => fields.push((key.clone(), text.clone())),
                    Value::Null => {}
                    // pusher-js sends every field as a string; numbers in JSON are tolerated.
                    Value::Number(number) => fields.push((key.clone(), number.to_string())),
                    _ => return Err(malformed(&format!("{key} must be a string"))),
                }
            }
            return Ok(AuthInput(fields));
        }
        if content_type == "application/x-www-form-urlencoded" || content_type.is_empty() {
            let text =
                std::str::from_utf8(&body).map_err(|_| malformed("the form is not UTF-8"))?;
            let fields =
                parse_urlencoded(text).ok_or_else(|| malformed("the form is not UTF-8"))?;
            return Ok(AuthInput(fields));
        }
        Err(error(
            ErrorCode::UnsupportedMediaType,
            "send application/x-www-form-urlencoded or application/json",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_ids_are_two_numbers() {
        assert!(valid_socket_id("123.456"));
        assert!(valid_socket_id("1.2"));
        for bad in ["", "1", "1.", ".1", "a.1", "1.2.3", "1 .2", "-1.2", "１.2"] {
            assert!(!valid_socket_id(bad), "{bad:?}");
        }
        assert!(!valid_socket_id(&format!("{}.1", "9".repeat(50))));
    }

    #[test]
    fn forms_are_decoded() {
        assert_eq!(
            parse_urlencoded("socket_id=1.2&channel_name=private-a%40b&x=a+b&flag").unwrap(),
            vec![
                ("socket_id".to_owned(), "1.2".to_owned()),
                ("channel_name".to_owned(), "private-a@b".to_owned()),
                ("x".to_owned(), "a b".to_owned()),
                ("flag".to_owned(), String::new()),
            ]
        );
        assert!(parse_urlencoded("a=%FF").is_none());
    }
}
