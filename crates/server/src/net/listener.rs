//! The listener and the connection type hyper serves on.
//!
//! An accepted TCP stream is shared (`Arc`) instead of owned by hyper, so that a native
//! WebSocket upgraded from it can also be written to directly by the hub's fan-out
//! (`net::direct`): hyper's `Upgraded` hides its IO behind a private type, so the only
//! way to the socket is a handle taken when the connection was accepted. Each request carries
//! a weak one in its [`Peer`] connect info; weak, so that nothing a handler keeps by mistake
//! holds a closed connection's descriptor open.

use crate::net::io::{poll_write, poll_write_vectored, shutdown_write};
use crate::net::peer::Peer;
use crate::net::sse_front::{self, Front};
use axum::Router;
use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

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
    to_hyper: mpsc::UnboundedSender<(Arc<TcpStream>, SocketAddr)>,
    for_hyper: mpsc::UnboundedReceiver<(Arc<TcpStream>, SocketAddr)>,
}

impl LiveListener {
    /// `router` is the application's, used for the SSE requests served by the front;
    /// `write_stall` is how long one of the front's writes may wait for a client that does not
    /// read before its connection is given up.
    pub fn new(listener: TcpListener, router: Router, write_stall: Duration) -> Self {
        let (to_hyper, for_hyper) = mpsc::unbounded_channel();
        Self {
            listener,
            front: Arc::new(Front {
                router,
                write_stall,
            }),
            to_hyper,
            for_hyper,
        }
    }

    /// Decides where a new connection goes, off the accept loop.
    fn dispatch(&self, stream: TcpStream, address: SocketAddr) {
        let tcp = Arc::new(stream);
        let front = self.front.clone();
        let to_hyper = self.to_hyper.clone();
        tokio::spawn(async move {
            if sse_front::wants_sse(&tcp).await {
                sse_front::serve(tcp, address, front).await;
            } else {
                // The listener is gone once the server stops accepting: drop the connection.
                let _ = to_hyper.send((tcp, address));
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
                Some((tcp, address)) = self.for_hyper.recv() => return (SharedTcp(tcp), address),
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

impl Connected<IncomingStream<'_, LiveListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, LiveListener>) -> Self {
        Peer {
            address: *stream.remote_addr(),
            tcp: Arc::downgrade(&stream.io().0),
        }
    }
}

/// An accepted connection, readable and writable through a shared reference (tokio's
/// readiness API), so hyper and a direct writer can both hold it.
pub struct SharedTcp(Arc<TcpStream>);

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            // `try_read_buf` reads into the unfilled part without zeroing it first.
            match self.0.try_read_buf(buf) {
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
        poll_write(&self.0, cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        poll_write_vectored(&self.0, cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(shutdown_write(&self.0))
    }
}
