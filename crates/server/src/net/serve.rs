//! The accept-and-serve loop (in place of `axum::serve`, which gives hyper no timer and so
//! no head deadline): each connection is served by hyper's HTTP/1 with a `header_read_timeout`
//! (`NetLimits::head_timeout`) and upgrades, and is told to finish when the server stops.

use crate::net::listener::LiveListener;
use crate::net::peer::Peer;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tower::ServiceExt;

/// Serves until `stop` resolves, then waits for the connections being served to finish
/// (upgraded ones are outside: they are closed by the live side).
pub async fn serve(
    mut listener: LiveListener,
    router: Router,
    head_timeout: Duration,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stopping, stop_seen) = watch::channel(false);
    tokio::spawn(async move {
        stop.await;
        let _ = stopping.send(true);
    });
    // Each connection's task holds a receiver; `closed()` below waits for all of them.
    let (all_done, done_seen) = watch::channel(());
    let mut stop_wait = stop_seen.clone();
    loop {
        let (tcp, address) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop_wait.wait_for(|stop| *stop) => break,
        };
        let peer = Peer {
            address,
            tcp: Arc::downgrade(tcp.tcp()),
        };
        let service = router
            .clone()
            .map_request(move |request: hyper::Request<Incoming>| {
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(ConnectInfo(peer.clone()));
                request
            });
        let mut stop_seen = stop_seen.clone();
        let done_seen = done_seen.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(head_timeout);
            let mut connection = pin!(
                builder
                    .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service))
                    .with_upgrades()
            );
            let mut asked = false;
            loop {
                tokio::select! {
                    _ = connection.as_mut() => break,
                    _ = stop_seen.wait_for(|stop| *stop), if !asked => {
                        asked = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(done_seen);
        });
    }
    drop(done_seen);
    drop(listener);
    all_done.closed().await;
    Ok(())
}
