//! A Pusher HTTP API request (CONTRACT §10) through what `api::pusher_http` checks before it
//! publishes or lists: the query, the signature (`auth_key`, `auth_timestamp`, `body_md5`,
//! `auth_signature`; an `auth_signature` of `SIGN` is replaced by the right one so the checks
//! after it are reached), the body of `events` and `batch_events`, `info`, channel names and
//! socket ids; also an authorization endpoint's form body. The input is the method, the path
//! and the query, one per line, then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use server::api::pusher_http::{InfoWanted, event_request};
use server::api::pusher_input::{parse_urlencoded, valid_socket_id};
use server::pusher::channel::{Channel, reserved_prefix};
use server::pusher::credentials::PusherCredentials;
use server::pusher::signature::{api_string_to_sign, hmac_hex, verify_api_request};

const NOW: i64 = 1_780_000_000;

fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

fuzz_target!(|data: &[u8]| {
    let (method, rest) = split_line(data);
    let (path, rest) = split_line(rest);
    let (query, body) = split_line(rest);
    let (Ok(method), Ok(path), Ok(query)) = (
        std::str::from_utf8(method),
        std::str::from_utf8(path),
        std::str::from_utf8(query),
    ) else {
        return;
    };
    let credentials = PusherCredentials::demo();
    let Some(mut query) = parse_urlencoded(query) else {
        return;
    };
    for (key, value) in query.iter_mut() {
        if key == "auth_signature" && value == "SIGN" {
            *value = String::new();
        }
    }
    let signed = api_string_to_sign(method, path, &query);
    for (key, value) in query.iter_mut() {
        if key == "auth_signature" && value.is_empty() {
            *value = hmac_hex(&credentials.secret, signed.as_bytes());
        }
    }
    let _ = verify_api_request(&credentials, method, path, &query, body, NOW);
    let param = |name: &str| {
        query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let _ = InfoWanted::parse(param("info"));
    for segment in path.split('/') {
        if let Ok(channel) = Channel::parse(segment) {
            let _ = reserved_prefix(&channel.name);
        }
    }
    if let Some(socket_id) = param("socket_id") {
        let _ = valid_socket_id(socket_id);
    }
    // The authorization endpoints' form body.
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = parse_urlencoded(text);
    }
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let _ = event_request(&object, false);
    if let Some(Value::Array(batch)) = object.get("batch") {
        for item in batch.iter().take(10) {
            if let Value::Object(event) = item {
                let _ = event_request(event, true);
            }
        }
    }
});
