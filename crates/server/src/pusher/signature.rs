//! Every signature Pusher defines, as Pusher computes them: HMAC-SHA256 in lower-case hex.
//!
//! - a private or presence subscription: `socket_id:channel[:channel_data]`, sent as
//!   `key:signature` ([`channel_auth`]);
//! - a user sign-in: `socket_id::user::user_data` ([`user_auth`]);
//! - an HTTP API request: `METHOD\nPATH\nQUERY` with the query's keys lower-cased, sorted, and
//!   `auth_signature` left out ([`verify_api_request`]);
//! - a webhook: the body ([`webhook_signature`]).

use hmac::{Hmac, Mac};
use md5::Digest;
use sha2::Sha256;

use super::credentials::PusherCredentials;

/// Pusher refuses an HTTP API request whose `auth_timestamp` is further than this from now.
pub const API_TIMESTAMP_WINDOW_SECS: i64 = 600;

/// HMAC-SHA256 of `message` under `secret`, lower-case hex.
pub fn hmac_hex(secret: &str, message: &[u8]) -> String {
    hex::encode(mac(secret, message).finalize().into_bytes())
}

/// True when `signature_hex` is the HMAC of `message`; compared in constant time.
pub fn verify_hmac(secret: &str, message: &[u8], signature_hex: &str) -> bool {
    match hex::decode(signature_hex) {
        Ok(signature) => mac(secret, message).verify_slice(&signature).is_ok(),
        Err(_) => false,
    }
}

fn mac(secret: &str, message: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(message);
    mac
}

/// What a private or presence channel's subscription carries as `auth`: `key:signature`.
pub fn channel_auth(
    credentials: &PusherCredentials,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    let signature = hmac_hex(
        &credentials.secret,
        channel_auth_message(socket_id, channel, channel_data).as_bytes(),
    );
    format!("{}:{signature}", credentials.key)
}

/// True when `auth` (`key:signature`) authorizes this subscription.
pub fn verify_channel_auth(
    credentials: &PusherCredentials,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
    auth: &str,
) -> bool {
    verify_key_and_signature(
        credentials,
        channel_auth_message(socket_id, channel, channel_data).as_bytes(),
        auth,
    )
}

/// True when `auth` is `key:signature` with this app's key and the HMAC of `message`.
fn verify_key_and_signature(credentials: &PusherCredentials, message: &[u8], auth: &str) -> bool {
    match auth.split_once(':') {
        Some((key, signature)) => {
            key == credentials.key && verify_hmac(&credentials.secret, message, signature)
        }
        None => false,
    }
}

fn channel_auth_message(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// What `pusher:signin` carries as `auth`: `key:signature` of `socket_id::user::user_data`.
pub fn user_auth(credentials: &PusherCredentials, socket_id: &str, user_data: &str) -> String {
    let signature = hmac_hex(
        &credentials.secret,
        format!("{socket_id}::user::{user_data}").as_bytes(),
    );
    format!("{}:{signature}", credentials.key)
}

/// True when `auth` (`key:signature`) signs this user's sign-in on this socket.
pub fn verify_user_auth(
    credentials: &PusherCredentials,
    socket_id: &str,
    user_data: &str,
    auth: &str,
) -> bool {
    verify_key_and_signature(
        credentials,
        format!("{socket_id}::user::{user_data}").as_bytes(),
        auth,
    )
}

/// `X-Pusher-Signature` of a webhook: the HMAC of its body.
pub fn webhook_signature(credentials: &PusherCredentials, body: &[u8]) -> String {
    hmac_hex(&credentials.secret, body)
}

/// Why an HTTP API request's signature was refused (Pusher answers 401 for each).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiAuthError {
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("unknown auth_key")]
    UnknownKey,
    #[error("auth_version must be 1.0")]
    UnsupportedVersion,
    #[error("auth_timestamp is not a number")]
    BadTimestamp,
    #[error("auth_timestamp expired: it must be within 600 seconds of the server's time")]
    Expired,
    #[error("body_md5 does not match the body")]
    BodyMismatch,
    #[error("invalid signature")]
    InvalidSignature,
}

/// Checks a Pusher HTTP API request: key, version, timestamp within
/// [`API_TIMESTAMP_WINDOW_SECS`] of `now_secs`, `body_md5` when there is a body, and the
/// signature. `query` is the decoded query string in any order; `path` is the request's path
/// as sent (`/apps/{app_id}/events`).
pub fn verify_api_request(
    credentials: &PusherCredentials,
    method: &str,
    path: &str,
    query: &[(String, String)],
    body: &[u8],
    now_secs: i64,
) -> Result<(), ApiAuthError> {
    let param = |name: &str| {
        query
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    };
    let key = param("auth_key").ok_or(ApiAuthError::Missing("auth_key"))?;
    let signature = param("auth_signature").ok_or(ApiAuthError::Missing("auth_signature"))?;
    let timestamp = param("auth_timestamp").ok_or(ApiAuthError::Missing("auth_timestamp"))?;
    let version = param("auth_version").ok_or(ApiAuthError::Missing("auth_version"))?;
    if key != credentials.key {
        return Err(ApiAuthError::UnknownKey);
    }
    if version != "1.0" {
        return Err(ApiAuthError::UnsupportedVersion);
    }
    let timestamp: i64 = timestamp.parse().map_err(|_| ApiAuthError::BadTimestamp)?;
    // `abs_diff`: a timestamp near i64::MIN must not overflow the subtraction.
    if now_secs.abs_diff(timestamp) > API_TIMESTAMP_WINDOW_SECS.unsigned_abs() {
        return Err(ApiAuthError::Expired);
    }
    if !body.is_empty() {
        let body_md5 = param("body_md5").ok_or(ApiAuthError::Missing("body_md5"))?;
        if !body_md5.eq_ignore_ascii_case(&hex::encode(md5::Md5::digest(body))) {
            return Err(ApiAuthError::BodyMismatch);
        }
    }
    let message = api_string_to_sign(method, path, query);
    if verify_hmac(&credentials.secret, message.as_bytes(), signature) {
        Ok(())
    } else {
        Err(ApiAuthError::InvalidSignature)
    }
}

/// `METHOD\nPATH\nk1=v1&k2=v2…`: keys lower-cased and sorted, `auth_signature` left out, values
/// as decoded (Pusher's libraries sign the unescaped values).
pub fn api_string_to_sign(method: &str, path: &str, query: &[(String, String)]) -> String {
    let mut params: Vec<(String, &str)> = query
        .iter()
        .map(|(key, value)| (key.to_ascii_lowercase(), value.as_str()))
        .filter(|(key, _)| key != "auth_signature")
        .collect();
    params.sort();
    let query = params
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join("&");
    format!("{}\n{path}\n{query}", method.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The credentials of Pusher's documented test vectors (issue 17).
    fn vectors() -> PusherCredentials {
        PusherCredentials {
            app_id: "1".to_owned(),
            key: "278d425bdf160c739803".to_owned(),
            secret: "7ad3773142a6692b25b8".to_owned(),
        }
    }

    #[test]
    fn a_private_channel_is_signed_as_pusher_signs_it() {
        let auth = channel_auth(&vectors(), "1234.1234", "private-foobar", None);
        assert_eq!(
            auth,
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
        assert!(verify_channel_auth(
            &vectors(),
            "1234.1234",
            "private-foobar",
            None,
            &auth
        ));
        assert!(!verify_channel_auth(
            &vectors(),
            "1234.1235",
            "private-foobar",
            None,
            &auth
        ));
    }

    #[test]
    fn a_presence_channel_signs_its_channel_data() {
        let data = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
        let auth = channel_auth(&vectors(), "1234.1234", "presence-foobar", Some(data));
        assert_eq!(
            auth,
            "278d425bdf160c739803:31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80"
        );
        // The same signature does not cover other channel data.
        assert!(!verify_channel_auth(
            &vectors(),
            "1234.1234",
            "presence-foobar",
            Some(r#"{"user_id":11}"#),
            &auth
        ));
    }

    #[test]
    fn a_user_sign_in_is_signed_as_pusher_signs_it() {
        let auth = user_auth(&vectors(), "1234.1234", r#"{"id":"12345"}"#);
        assert_eq!(
            auth,
            "278d425bdf160c739803:4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"
        );
        assert!(verify_user_auth(
            &vectors(),
            "1234.1234",
            r#"{"id":"12345"}"#,
            &auth
        ));
    }

    #[test]
    fn a_signature_of_another_key_or_not_hex_is_refused() {
        let auth = channel_auth(&vectors(), "1.1", "private-a", None);
        let (_, signature) = auth.split_once(':').unwrap();
        assert!(!verify_channel_auth(
            &vectors(),
            "1.1",
            "private-a",
            None,
            &format!("other:{signature}")
        ));
        assert!(!verify_channel_auth(
            &vectors(),
            "1.1",
            "private-a",
            None,
            "278d425bdf160c739803:zz"
        ));
        assert!(!verify_channel_auth(
            &vectors(),
            "1.1",
            "private-a",
            None,
            "no-colon"
        ));
    }

    fn signed_query(body: &[u8], timestamp: i64) -> Vec<(String, String)> {
        let mut query = vec![
            ("auth_key".to_owned(), vectors().key),
            ("auth_timestamp".to_owned(), timestamp.to_string()),
            ("auth_version".to_owned(), "1.0".to_owned()),
        ];
        if !body.is_empty() {
            query.push(("body_md5".to_owned(), hex::encode(md5::Md5::digest(body))));
        }
        let message = api_string_to_sign("POST", "/apps/1/events", &query);
        query.push((
            "auth_signature".to_owned(),
            hmac_hex(&vectors().secret, message.as_bytes()),
        ));
        query
    }

    #[test]
    fn an_api_request_is_checked_for_signature_body_and_time() {
        let body = br#"{"name":"e","channels":["c"],"data":"{}"}"#;
        let query = signed_query(body, 1_000_000);
        let check = |body: &[u8], now: i64| {
            verify_api_request(&vectors(), "POST", "/apps/1/events", &query, body, now)
        };
        assert_eq!(check(body, 1_000_000), Ok(()));
        assert_eq!(check(body, 1_000_600), Ok(()));
        assert_eq!(check(body, 1_000_601), Err(ApiAuthError::Expired));
        assert_eq!(check(body, 999_399), Err(ApiAuthError::Expired));
        assert_eq!(check(b"{}", 1_000_000), Err(ApiAuthError::BodyMismatch));
        let other_path = verify_api_request(
            &vectors(),
            "POST",
            "/apps/2/events",
            &query,
            body,
            1_000_000,
        );
        assert_eq!(other_path, Err(ApiAuthError::InvalidSignature));
    }

    /// A timestamp at the end of i64 overflowed `now - timestamp` (a panic with overflow
    /// checks, a wrap to "not expired" without); it is expired, whatever `now` is.
    #[test]
    fn a_timestamp_at_the_ends_of_i64_is_expired_not_an_overflow() {
        let body = br#"{"name":"e","channels":["c"],"data":"{}"}"#;
        for (timestamp, now) in [
            (i64::MIN, 0),
            (i64::MIN, 1_780_000_000),
            (i64::MIN + 1_780_000_000, 1_780_000_000),
            (i64::MAX, -1),
            (i64::MAX, i64::MIN),
        ] {
            let query = signed_query(body, timestamp);
            let outcome =
                verify_api_request(&vectors(), "POST", "/apps/1/events", &query, body, now);
            assert_eq!(outcome, Err(ApiAuthError::Expired), "{timestamp} at {now}");
        }
    }

    #[test]
    fn the_string_to_sign_sorts_lower_cased_keys_and_leaves_out_the_signature() {
        let query = vec![
            ("b".to_owned(), "2".to_owned()),
            ("auth_signature".to_owned(), "x".to_owned()),
            ("A".to_owned(), "1".to_owned()),
        ];
        assert_eq!(
            api_string_to_sign("get", "/apps/1/channels", &query),
            "GET\n/apps/1/channels\na=1&b=2"
        );
    }
}
