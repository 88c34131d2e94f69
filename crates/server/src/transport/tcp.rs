//! The listener and the connection type hyper serves on.
//!
//! An accepted TCP stream is shared (`Arc`) instead of owned by hyper, so that a native
//! WebSocket upgraded from it can also be written to directly by the hub's fan-out
//! (`transport::direct`): hyper's `Upgraded` hides its IO behind a private type, so the only
//! way to the socket is a handle taken when the connection was accepted. Each request carries
//! a weak one in its [`Peer`] connect info; weak, so that nothing a handler keeps by mistake
//! holds a closed connection's descriptor open.

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use socket2::SockRef;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The server's listener: a `TcpListener` whose connections are [`SharedTcp`].
pub struct LiveListener(TcpListener);

impl LiveListener {
    pub fn new(listener: TcpListener) -> Self {
        Self(listener)
    }
}

impl Listener for LiveListener {
    type Io = SharedTcp;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (SharedTcp, SocketAddr) {
        loop {
            match self.0.accept().await {
                Ok((stream, address)) => return (SharedTcp(Arc::new(stream)), address),
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
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// The client end of a request: its address, and a handle on its TCP connection.
#[derive(Clone, Debug)]
pub struct Peer {
    pub address: SocketAddr,
    pub(crate) tcp: Weak<TcpStream>,
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
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write_vectored(bufs) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                done => return Poll::Ready(done),
            }
        }
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

/// Writes what the socket takes now, or waits until it can take something.
pub(crate) fn poll_write(
    tcp: &TcpStream,
    cx: &mut Context<'_>,
    buf: &[u8],
) -> Poll<io::Result<usize>> {
    loop {
        ready!(tcp.poll_write_ready(cx))?;
        match tcp.try_write(buf) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            done => return Poll::Ready(done),
        }
    }
}

pub(crate) fn shutdown_write(tcp: &TcpStream) -> io::Result<()> {
    match SockRef::from(tcp).shutdown(Shutdown::Write) {
        // The peer is already gone: there is nothing left to shut down.
        Err(err) if err.kind() == io::ErrorKind::NotConnected => Ok(()),
        done => done,
    }
}
