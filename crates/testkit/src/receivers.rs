//! Webhook receivers on 127.0.0.1, for the tests of both kinds of webhooks (a project's,
//! CONTRACT §12, and Pusher's, §10): every request is recorded by path and answered as the
//! test scripted it (200 once the script is used up).
//!
//! Paths that behave on their own: `/moved` redirects to `/redirected`; `/slow…` answers
//! after 20 ms (a receiver slower than the writes); `/hang-once` holds its first request past
//! any sender's timeout.

use crate::GUARD;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: String,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name}"))
            .to_str()
            .expect("a text header")
    }
}

#[derive(Default)]
pub struct Receivers {
    got: Mutex<HashMap<String, Vec<Received>>>,
    script: Mutex<HashMap<String, VecDeque<u16>>>,
    changed: tokio::sync::Notify,
}

impl Receivers {
    /// `path` answers its next requests with `statuses`, in turn.
    pub fn answer(&self, path: &str, statuses: &[u16]) {
        self.script
            .lock()
            .unwrap()
            .insert(path.into(), statuses.iter().copied().collect());
    }

    pub fn got(&self, path: &str) -> Vec<Received> {
        self.got
            .lock()
            .unwrap()
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits (at most [`GUARD`]) until what `path` got satisfies `done`; returns all it got.
    /// `what` names the wait in the failure.
    pub async fn wait_until(
        &self,
        path: &str,
        what: &str,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let waited = tokio::time::timeout(GUARD, async {
            loop {
                let notified = self.changed.notified();
                let got = self.got(path);
                if done(&got) {
                    return got;
                }
                notified.await;
            }
        })
        .await;
        waited.unwrap_or_else(|_| {
            let got = self.got(path);
            panic!("{path}: {what} not in time; it got {} requests", got.len())
        })
    }

    /// Waits until `path` got at least `n` requests; returns them.
    pub async fn wait_for(&self, path: &str, n: usize) -> Vec<Received> {
        self.wait_until(path, &format!("{n} requests"), |got| got.len() >= n)
            .await
    }

    /// The receivers as a router (for a listener of the test's own, e.g. behind TLS).
    pub fn router(self: &Arc<Self>) -> axum::Router {
        axum::Router::new()
            .route("/{*path}", axum::routing::post(receive))
            .with_state(self.clone())
    }
}

async fn receive(
    State(receivers): State<Arc<Receivers>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let path = format!("/{path}");
    let count = {
        let mut got = receivers.got.lock().unwrap();
        let requests = got.entry(path.clone()).or_default();
        requests.push(Received { headers, body });
        requests.len()
    };
    receivers.changed.notify_waiters();
    if path.starts_with("/slow") {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if path == "/hang-once" && count == 1 {
        tokio::time::sleep(GUARD).await;
    }
    if path == "/moved" {
        return (StatusCode::FOUND, [("Location", "/redirected")]).into_response();
    }
    let status = receivers
        .script
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(VecDeque::pop_front)
        .unwrap_or(200);
    StatusCode::from_u16(status)
        .expect("a scripted status")
        .into_response()
}

/// Receivers on `listener`.
pub fn serve(listener: tokio::net::TcpListener) -> Arc<Receivers> {
    let receivers = Arc::new(Receivers::default());
    let app = receivers.router();
    tokio::spawn(async move { axum::serve(listener, app).await });
    receivers
}

/// Receivers on 127.0.0.1:0, and their address.
pub async fn start() -> (Arc<Receivers>, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port on 127.0.0.1");
    let addr = listener.local_addr().expect("its address");
    (serve(listener), addr)
}
