//! The low-level socket writes every part of `net` shares: non-blocking writes on a shared
//! `TcpStream` (tokio's readiness API), a write of a whole buffer, and a half-close. A leaf:
//! it imports nothing else of `net`, so the listener, the direct writer and the SSE front can
//! all use it without importing each other.

use socket2::SockRef;
use std::io;
use std::net::Shutdown;
use std::task::{Context, Poll, ready};
use tokio::net::TcpStream;

/// Writes what the socket takes now, or waits until it can take something.
pub(crate) fn poll_write(
    tcp: &TcpStream,
    cx: &mut Context<'_>,
    buf: &[u8],
) -> Poll<io::Result<usize>> {
    poll_write_vectored(tcp, cx, &[io::IoSlice::new(buf)])
}

/// [`poll_write`] for several buffers in one `writev`.
pub(crate) fn poll_write_vectored(
    tcp: &TcpStream,
    cx: &mut Context<'_>,
    bufs: &[io::IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    loop {
        ready!(tcp.poll_write_ready(cx))?;
        match tcp.try_write_vectored(bufs) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            done => return Poll::Ready(done),
        }
    }
}

/// Half-closes the connection: the peer reads EOF after what was written.
pub(crate) fn shutdown_write(tcp: &TcpStream) -> io::Result<()> {
    match SockRef::from(tcp).shutdown(Shutdown::Write) {
        // The peer is already gone: there is nothing left to shut down.
        Err(err) if err.kind() == io::ErrorKind::NotConnected => Ok(()),
        done => done,
    }
}

/// Writes every byte of `buf` (the front's own answers, before any stream exists).
pub(crate) async fn write_all(tcp: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let written = std::future::poll_fn(|cx| poll_write(tcp, cx, buf)).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[written..];
    }
    Ok(())
}
