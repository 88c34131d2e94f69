//! Resume positions: the native socket's `?since=`, SSE's `Last-Event-ID` header and its
//! `?last_event_id=` query (CONTRACT §6, §7). The input is a header value, a newline, and a
//! query string. A position is never negative: anything unreadable resumes past every log.
#![no_main]

use axum::http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use server::dialects::native_ws::protocol::{Params, since};
use server::dialects::position;
use server::dialects::sse::protocol as sse;

fn valid(position: Option<i64>) {
    assert!(position.is_none_or(|n| n >= 0), "{position:?}");
}

fuzz_target!(|data: &[u8]| {
    let (header, query) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let query = String::from_utf8_lossy(query);
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(header) {
        headers.insert("last-event-id", value);
    }
    valid(sse::position(&headers, Some(&query)));
    valid(sse::position(&HeaderMap::new(), Some(&query)));
    let text = String::from_utf8_lossy(header);
    valid(position::parse(Some(&text)));
    valid(position::parse_param(Some(&text)));
    // The native socket's query as axum's `Query` reads it into its parameters.
    if let Ok(params) = serde_urlencoded_like(&query) {
        valid(since(&params));
    }
    if let Some(value) = position::query_value(&query, "since") {
        valid(position::parse_param(Some(&value)));
    }
});

/// `a=1&b=2` into the socket's parameters (last one wins, as a map does).
fn serde_urlencoded_like(query: &str) -> Result<Params, ()> {
    let mut params = Params::new();
    for pair in server::api::pusher_input::parse_urlencoded(query).ok_or(())? {
        params.insert(pair.0, pair.1);
    }
    Ok(params)
}
