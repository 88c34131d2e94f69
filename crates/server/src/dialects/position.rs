//! A client's resume position (`since` on the native WebSocket, `Last-Event-ID` and
//! `?last_event_id=` on SSE) as the hub wants it. Pure.

use percent_encoding::percent_decode_str;
use std::borrow::Cow;

/// Anything but a non-negative integer is a position the server cannot resume from, so it
/// becomes one beyond every log, which the hub answers with `resync_required` and then live
/// events (documented in TRANSPORTS.md). Absent or blank: no position (live events only).
pub fn parse(text: Option<&str>) -> Option<i64> {
    let text = text?.trim();
    if text.is_empty() {
        return None;
    }
    Some(match text.parse::<i64>() {
        Ok(n) if n >= 0 => n,
        _ => i64::MAX,
    })
}

/// A position given as a query parameter (`since=` on the native WebSocket): as [`parse`],
/// except that a parameter given blank is a position the server cannot resume from, not none.
/// Only a header may be blank for "none" (an EventSource sends `Last-Event-ID` empty before it
/// saw an id); a client that writes `since=` meant a position and must learn it has to resync.
pub fn parse_param(value: Option<&str>) -> Option<i64> {
    match value {
        Some(text) if text.trim().is_empty() => Some(i64::MAX),
        other => parse(other),
    }
}

/// The value of `name` in a raw query string (`a=1&b=2`), percent-decoded; the first one wins.
/// A value that does not decode to UTF-8 is kept as it came (and then is no position).
pub fn query_value<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| decode(key) == name)
        .map(|(_, value)| decode(value))
}

fn decode(text: &str) -> Cow<'_, str> {
    percent_decode_str(text)
        .decode_utf8()
        .unwrap_or(Cow::Borrowed(text))
}

#[cfg(test)]
mod tests {
    use super::{parse, parse_param, query_value};

    #[test]
    fn positions() {
        assert_eq!(parse(None), None);
        assert_eq!(parse(Some("")), None);
        assert_eq!(parse(Some("0")), Some(0));
        assert_eq!(parse(Some(" 42 ")), Some(42));
        assert_eq!(parse(Some("-1")), Some(i64::MAX));
        assert_eq!(parse(Some("abc")), Some(i64::MAX));
        assert_eq!(parse(Some("99999999999999999999")), Some(i64::MAX));
        assert_eq!(parse_param(None), None);
        assert_eq!(parse_param(Some("")), Some(i64::MAX));
        assert_eq!(parse_param(Some(" ")), Some(i64::MAX));
        assert_eq!(parse_param(Some("7")), Some(7));
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let found = |query, name| query_value(query, name).map(|v| v.into_owned());
        assert_eq!(
            found("last_event_id=42", "last_event_id"),
            Some("42".into())
        );
        assert_eq!(
            found("a=1&last_event_id=%34%32", "last_event_id"),
            Some("42".into())
        );
        assert_eq!(
            found("last%5Fevent%5Fid=7", "last_event_id"),
            Some("7".into())
        );
        assert_eq!(
            found("last_event_id=%2042%20", "last_event_id"),
            Some(" 42 ".into())
        );
        assert_eq!(
            found("last_event_id=1&last_event_id=2", "last_event_id"),
            Some("1".into())
        );
        assert_eq!(found("other=1", "last_event_id"), None);
        assert_eq!(found("last_event_id", "last_event_id"), None);
        // Not UTF-8 once decoded: kept as sent, which is no number.
        assert_eq!(
            found("last_event_id=%FF", "last_event_id"),
            Some("%FF".into())
        );
        assert_eq!(
            parse(query_value("last_event_id=%34%32", "last_event_id").as_deref()),
            Some(42)
        );
        assert_eq!(
            parse(query_value("last_event_id=%FF", "last_event_id").as_deref()),
            Some(i64::MAX)
        );
    }
}
