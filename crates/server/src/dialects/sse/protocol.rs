//! The SSE wire (CONTRACT §7), pure: where a client resumes, and the keepalive comment.
//!
//! The event messages (and the first `connected` one) are encoded by [`Sse`], which stays in
//! the hub crate: the hub encodes each event once per dialect and shares those bytes with
//! every subscriber (and its direct writes), so the encoder must be a `hub::Dialect` the hub
//! can call. It is re-exported here so that everything this dialect puts on the wire is found
//! from one place.

use crate::dialects::position;
use axum::http::HeaderMap;

pub use hub::Sse;

/// Sent whenever a stream was silent for `sse_keepalive`.
pub const KEEPALIVE: &[u8] = b": keepalive\n\n";

/// `?last_event_id=` and the `Last-Event-ID` header (the header wins). The query's value is
/// percent-decoded; the header's is taken as sent (it is the id the server wrote).
pub fn position(headers: &HeaderMap, query: Option<&str>) -> Option<i64> {
    let header = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty());
    if header.is_some() {
        return position::parse(header);
    }
    let query = query.and_then(|q| position::query_value(q, "last_event_id"));
    position::parse(query.as_deref())
}

#[cfg(test)]
mod tests {
    use super::position;
    use axum::http::{HeaderMap, HeaderValue};

    #[test]
    fn the_header_wins_over_the_query() {
        let mut headers = HeaderMap::new();
        assert_eq!(position(&headers, None), None);
        assert_eq!(position(&headers, Some("last_event_id=5")), Some(5));
        assert_eq!(position(&headers, Some("last_event_id=%35")), Some(5));
        headers.insert("last-event-id", HeaderValue::from_static("7"));
        assert_eq!(position(&headers, Some("last_event_id=5")), Some(7));
        headers.insert("last-event-id", HeaderValue::from_static("  "));
        assert_eq!(position(&headers, Some("last_event_id=5")), Some(5));
        headers.insert("last-event-id", HeaderValue::from_static("x"));
        assert_eq!(position(&headers, None), Some(i64::MAX));
    }
}
