//! The HTTP/1.1 WebSocket upgrade of the native endpoint.
//!
//! axum's `WebSocketUpgrade` hands its callback a socket over hyper's `Upgraded` and nothing
//! else, while the native socket needs its TCP connection too (`net::direct`). This is
//! the same handshake (RFC 6455 §4.2: `GET`, `Connection: upgrade`, `Upgrade: websocket`,
//! version 13, the accept key from tungstenite) with the socket built over [`LiveIo`].

use crate::http::error;
use crate::net::direct::{DirectSocket, Framing, LiveIo};
use crate::net::peer::Peer;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use proto::ErrorCode;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

pub type NativeSocket = WebSocketStream<LiveIo>;

/// A request that asks for a WebSocket.
pub struct Upgrade {
    accept: HeaderValue,
    on_upgrade: OnUpgrade,
    tcp: Option<Arc<TcpStream>>,
    /// How direct writes frame their bytes: text unless [`Upgrade::binary`].
    framing: Framing,
}

/// The request is not a WebSocket upgrade this server can accept.
#[derive(Debug)]
pub struct NotAnUpgrade;

impl IntoResponse for NotAnUpgrade {
    fn into_response(self) -> Response {
        error(
            ErrorCode::InvalidRequest,
            "this endpoint speaks WebSocket only; send an upgrade request",
        )
        .into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = NotAnUpgrade;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, NotAnUpgrade> {
        let headers = &parts.headers;
        let is_upgrade = parts.version <= Version::HTTP_11
            && parts.method == Method::GET
            && has_token(headers, header::CONNECTION, "upgrade")
            && header_is(headers, header::UPGRADE, "websocket")
            && header_is(headers, header::SEC_WEBSOCKET_VERSION, "13");
        if !is_upgrade {
            return Err(NotAnUpgrade);
        }
        let key = headers.get(header::SEC_WEBSOCKET_KEY).ok_or(NotAnUpgrade)?;
        let accept =
            HeaderValue::from_str(&derive_accept_key(key.as_bytes())).map_err(|_| NotAnUpgrade)?;
        let on_upgrade = parts.extensions.remove::<OnUpgrade>().ok_or(NotAnUpgrade)?;
        let tcp = parts
            .extensions
            .get::<ConnectInfo<Peer>>()
            .and_then(|peer| peer.0.tcp.upgrade());
        Ok(Self {
            accept,
            on_upgrade,
            tcp,
            framing: Framing::WebSocketText,
        })
    }
}

impl Upgrade {
    /// The direct writer sends binary frames (a dialect whose messages are binary).
    pub fn binary(mut self) -> Self {
        self.framing = Framing::WebSocketBinary;
        self
    }

    /// Answers 101 and runs `serve` on its own task once hyper has handed the connection over.
    /// `serve` gets the socket and, when the request's TCP connection is known, its direct
    /// writer.
    pub fn on_upgrade<F, Fut>(self, config: WebSocketConfig, serve: F) -> Response
    where
        F: FnOnce(NativeSocket, Option<Arc<DirectSocket>>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Self {
            accept,
            on_upgrade,
            tcp,
            framing,
        } = self;
        let direct = tcp.map(|tcp| DirectSocket::new(tcp, framing));
        tokio::spawn(async move {
            // The client went away before the handshake completed: nothing to serve.
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let io = LiveIo::new(upgraded, direct.clone());
            let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
            serve(socket, direct).await;
        });
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        response
    }
}

fn header_is(headers: &HeaderMap, name: HeaderName, value: &str) -> bool {
    headers
        .get(name)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(value.as_bytes()))
}

/// `Connection` is a comma-separated token list (`keep-alive, Upgrade`).
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_tokens_are_matched_whole_and_case_blind() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(has_token(&headers, header::CONNECTION, "upgrade"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrades"));
        assert!(!has_token(&headers, header::CONNECTION, "upgrade"));
        headers.remove(header::CONNECTION);
        assert!(!has_token(&headers, header::CONNECTION, "upgrade"));
    }
}
