//! The listener and the connection type hyper serves on.
//!
//! An accepted TCP stream is shared (`Arc`) instead of owned by hyper, so that a native
//! WebSocket upgraded from it can also be written to directly by the hub's fan-out
//! (`net::direct`): hyper's `Upgraded` hides its IO behind a private type, so the only
//! way to the socket is a handle taken when the connection was accepted. Each request carries
//! a weak one in its [`Peer`](crate::net::Peer) connect info; weak, so that nothing a handler keeps by mistake
//! holds a closed connection's descriptor open.

use crate::net::io::{poll_write, poll_write_vectored, shutdown_write};
use crate::net::limits::NetLimits;
use crate::net::sse_front::{self, FirstLine, Front};
use axum::Router;
use axum::serve::Listener;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// The server's listener: a `TcpListener` whose connections are [`SharedTcp`].
///
/// Each accepted connection is first peeked by its own task (so a slow client never holds
/// up the accept loop): one whose first request line asks for an SSE stream is served by
/// `net::sse_front` and never reaches hyper; every other one comes back through the
/// channel and is handed to hyper unchanged.
pub struct LiveListener {
    listener: TcpListener,
    front: Arc<Front>,
    /// Connections the peek gave to hyper. The listener keeps a sender, so `recv` never
    /// reports the channel closed; unbounded, because a connection is only sent once.
    to_hyper: mpsc::UnboundedSender<(SharedTcp, SocketAddr)>,
    for_hyper: mpsc::UnboundedReceiver<(SharedTcp, SocketAddr)>,
    /// One permit per open connection (`NetLimits::max_connections`), held by whatever
    /// serves it for as long as it is open: hyper's IO (which an upgraded WebSocket keeps),
    /// or the SSE front's task.
    open: Arc<Semaphore>,
    /// Refusals over the cap still draining (each holds its socket for up to a second): a
    /// flood beyond these is dropped at once, so refusing never costs more than a few
    /// hundred descriptors.
    refusing: Arc<Semaphore>,
}

impl LiveListener {
    /// `router` is the application's, used for the SSE requests served by the front;
    /// `write_stall` is how long one of the front's writes may wait for a client that does not
    /// read before its connection is given up.
    pub fn new(
        listener: TcpListener,
        router: Router,
        write_stall: Duration,
        limits: &NetLimits,
    ) -> Self {
        let (to_hyper, for_hyper) = mpsc::unbounded_channel();
        Self {
            listener,
            front: Arc::new(Front {
                router,
                write_stall,
                head_timeout: limits.head_timeout,
            }),
            to_hyper,
            for_hyper,
            open: Arc::new(Semaphore::new(limits.max_connections)),
            refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
        }
    }

    /// Decides where a new connection goes, off the accept loop.
    fn dispatch(&self, stream: TcpStream, address: SocketAddr) {
        let Ok(permit) = self.open.clone().try_acquire_owned() else {
            if let Ok(refusing) = self.refusing.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse_over_cap(stream).await;
                    drop(refusing);
                });
            }
            return;
        };
        // Every frame is meant to leave at once. With Nagle's algorithm on, a frame written while
        // the previous one is unacknowledged waits for the peer's delayed ACK (up to 40 ms on
        // Linux, loopback included): the fan-out's tail, not its cost.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "could not set TCP_NODELAY");
        }
        let tcp = Arc::new(stream);
        let front = self.front.clone();
        let to_hyper = self.to_hyper.clone();
        tokio::spawn(async move {
            match sse_front::first_line(&tcp, front.head_timeout).await {
                FirstLine::Sse => {
                    sse_front::serve(tcp, address, front).await;
                    drop(permit);
                }
                FirstLine::Other => {
                    // The listener is gone once the server stops accepting: drop the connection.
                    let _ = to_hyper.send((
                        SharedTcp {
                            tcp,
                            _permit: permit,
                        },
                        address,
                    ));
                }
                FirstLine::Silent => {}
            }
        });
    }
}

impl Listener for LiveListener {
    type Io = SharedTcp;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (SharedTcp, SocketAddr) {
        loop {
            tokio::select! {
                // Both branches are cancel-safe: nothing is lost when the other wins.
                Some((tcp, address)) = self.for_hyper.recv() => return (tcp, address),
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, address)) => self.dispatch(stream, address),
                    // The peer gave up before we accepted: nothing to do.
                    Err(err)
                        if matches!(
                            err.kind(),
                            io::ErrorKind::ConnectionAborted
                                | io::ErrorKind::ConnectionRefused
                                | io::ErrorKind::ConnectionReset
                        ) => {}
                    // Out of descriptors or memory: retrying at once would spin.
                    Err(err) => {
                        tracing::error!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// How many refused connections may drain at once (see `LiveListener::refusing`).
const MAX_REFUSING: usize = 256;

/// The answer to a connection over the cap: 503 and close. Written at once (it fits any
/// socket buffer), then what the client sent is drained for a moment so that the close does
/// not reset the connection before the answer is read.
async fn refuse_over_cap(stream: TcpStream) {
    const BODY: &str =
        r#"{"error":{"code":"unavailable","message":"too many open connections; retry later"}}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    if stream.try_write(answer.as_bytes()).is_err() {
        return;
    }
    let _ = shutdown_write(&stream);
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        for _ in 0..64 {
            if stream.readable().await.is_err() {
                return;
            }
            match stream.try_read(&mut sink) {
                Ok(0) => return,
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
}

/// An accepted connection, readable and writable through a shared reference (tokio's
/// readiness API), so hyper and a direct writer can both hold it. It carries the connection's
/// permit: an upgraded WebSocket keeps it (inside hyper's `Upgraded`) until it closes.
pub struct SharedTcp {
    tcp: Arc<TcpStream>,
    _permit: OwnedSemaphorePermit,
}

impl SharedTcp {
    pub(crate) fn tcp(&self) -> &Arc<TcpStream> {
        &self.tcp
    }
}

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.tcp.poll_read_ready(cx))?;
            // `try_read_buf` reads into the unfilled part without zeroing it first.
            match self.tcp.try_read_buf(buf) {
                Ok(_) => return Poll::Ready(Ok(())),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        poll_write(&self.tcp, cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        poll_write_vectored(&self.tcp, cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(shutdown_write(&self.tcp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connection leaves the listener with Nagle's algorithm off: checked on the socket
    /// itself, since the delay it would add is a matter of timing, which tests do not assert.
    #[tokio::test]
    async fn accepted_connections_have_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut live = LiveListener::new(
            listener,
            Router::new(),
            Duration::from_secs(5),
            &NetLimits::default(),
        );
        let mut client = TcpStream::connect(address).await.unwrap();
        // A request line that is not SSE's, so the connection comes back for hyper.
        tokio::io::AsyncWriteExt::write_all(&mut client, b"GET / HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let (accepted, _) = tokio::time::timeout(Duration::from_secs(10), live.accept())
            .await
            .expect("the connection is accepted");
        assert!(accepted.tcp().nodelay().unwrap());
    }
}
