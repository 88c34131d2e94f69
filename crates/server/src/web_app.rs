//! The browser app at `/` (CONTRACT §13), served from the binary itself. The files are the
//! committed, minified build of `web/` (embedded by `build.rs`); CI rebuilds them and fails
//! when the committed bundle is stale (scripts/test.sh).
//!
//! `index.html` is never cached without asking (`no-cache`), so a new binary's app is picked up
//! at once; everything under `/assets/` has a content hash in its name, so it is cached for a
//! year as immutable. Every answer carries a Content-Security-Policy that allows no inline
//! script and lets the app talk only to its own origin (HTTP, and WebSocket on the same host).
//! Only `/`, `/index.html`, `/favicon.svg` and `/assets/…` are routed here: every other path, `/api/…` and `/ws/…` included,
//! still reaches the JSON 404.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use proto::ErrorCode;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));
}

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/favicon.svg", get(favicon))
        .route("/assets/{*file}", get(asset))
}

fn find(path: &str) -> Option<&'static [u8]> {
    embedded::ASSETS
        .binary_search_by(|(p, _)| (*p).cmp(path))
        .ok()
        .map(|i| embedded::ASSETS[i].1)
}

/// The MIME type of a file the Vite build writes, by its extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The policy for this request: `'self'`, and the WebSocket form of the origin the browser
/// used (older browsers do not count ws: as 'self'). A Host header that is not a plain
/// host[:port] is left out rather than echoed into a header.
pub fn content_security_policy(host: Option<&str>) -> String {
    let sockets = host
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .map(|h| format!(" ws://{h} wss://{h}"))
        .unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
         connect-src 'self'{sockets}; object-src 'none'; base-uri 'self'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

fn file(path: &str, cache: &'static str, headers: &HeaderMap) -> Response {
    let Some(bytes) = find(path) else {
        return crate::http::error(ErrorCode::NotFound, "no such endpoint").into_response();
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let csp = HeaderValue::from_str(&content_security_policy(host))
        .unwrap_or(HeaderValue::from_static("default-src 'self'"));
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(path)),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            (header::CONTENT_SECURITY_POLICY, csp),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("same-origin"),
            ),
        ],
        bytes,
    )
        .into_response()
}

async fn index(headers: HeaderMap) -> Response {
    file("/index.html", "no-cache", &headers)
}

async fn favicon(headers: HeaderMap) -> Response {
    file("/favicon.svg", "no-cache", &headers)
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    file(&format!("/assets/{name}"), IMMUTABLE, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_app_has_an_index_and_hashed_assets() {
        assert!(find("/index.html").is_some());
        let sorted = embedded::ASSETS.windows(2).all(|w| w[0].0 < w[1].0);
        assert!(sorted, "binary search needs sorted paths");
        let index = std::str::from_utf8(find("/index.html").unwrap()).unwrap();
        assert!(!index.contains("<script>"), "no inline script");
        for (path, _) in embedded::ASSETS
            .iter()
            .filter(|(p, _)| p.starts_with("/assets/"))
        {
            assert!(
                index.contains(path) || path.ends_with(".map"),
                "{path} is referenced"
            );
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("/index.html"), "text/html; charset=utf-8");
        assert_eq!(
            content_type("/assets/index-abc.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("/assets/x.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("/assets/x.bin"), "application/octet-stream");
    }

    #[test]
    fn the_policy_names_the_socket_origin_only_for_a_plain_host() {
        let csp = content_security_policy(Some("127.0.0.1:8080"));
        assert!(csp.contains("connect-src 'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080;"));
        assert!(csp.contains("script-src 'self';"));
        let bad = content_security_policy(Some("evil; script-src *"));
        assert!(bad.contains("connect-src 'self';"));
        assert!(!bad.contains("evil"));
    }
}
