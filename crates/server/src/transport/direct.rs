//! Writing native WebSocket frames straight from the hub's fan-out.
//!
//! Each delivery used to wake the connection's task, which popped the frame, framed it through
//! the WebSocket library and wrote it: a wake-up, a scheduler round trip and a copy per
//! delivery. Now, while a connection is idle (its task parked with nothing queued), the fan-out
//! writes the shared frame itself with one non-blocking `writev` of a WebSocket header and the
//! frame's bytes ([`DirectSocket`], a [`hub::DirectWrite`]). Anything else (a socket that would
//! block, a backlog, a reader that is busy) takes the queue as before.
//!
//! Two writers share one socket, so bytes must never interleave inside a frame:
//! - both write under one lock, and only whole frames;
//! - a write the kernel takes only part of leaves its rest in the backlog, which goes out
//!   before anything else;
//! - the WebSocket library writes through [`LiveIo`], which accepts each of its buffers whole
//!   (those hold whole frames) or not at all, keeping any rest in the same backlog.
//!
//! The hub keeps the data frames in order (it writes directly only when the task holds none);
//! control frames (ping, pong, close) may go out between two data frames, which WebSocket
//! allows.

use crate::transport::tcp::{poll_write, shutdown_write};
use bytes::{Buf, Bytes};
use hub::{DirectOutcome, DirectWrite};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// The longest server frame header: 2 bytes, 8 of length, no mask.
const MAX_HEADER: usize = 10;

/// The write side of an upgraded native WebSocket, shared by its task and the fan-out.
pub struct DirectSocket {
    tcp: Arc<TcpStream>,
    backlog: Mutex<Backlog>,
}

#[derive(Default)]
struct Backlog {
    /// Bytes accepted but not yet written, oldest first: the rest of a partly written frame,
    /// or of a buffer of the WebSocket library's.
    chunks: VecDeque<Bytes>,
}

impl DirectSocket {
    pub fn new(tcp: Arc<TcpStream>) -> Arc<Self> {
        Arc::new(Self {
            tcp,
            backlog: Mutex::default(),
        })
    }

    fn backlog(&self) -> MutexGuard<'_, Backlog> {
        // Every step leaves the backlog whole, so a panic elsewhere cannot leave it torn.
        self.backlog.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the backlog out; `Ready(Ok)` once it is empty.
    fn poll_drain(&self, backlog: &mut Backlog, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(chunk) = backlog.chunks.front_mut() {
            let written = ready!(poll_write(&self.tcp, cx, chunk))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if written == chunk.len() {
                backlog.chunks.pop_front();
            } else {
                chunk.advance(written);
            }
        }
        // An idle socket should not keep the capacity of its largest backlog.
        backlog.chunks = VecDeque::new();
        Poll::Ready(Ok(()))
    }
}

impl DirectWrite for DirectSocket {
    fn try_write(&self, frame: &Bytes) -> DirectOutcome {
        let mut backlog = self.backlog();
        if !backlog.chunks.is_empty() {
            return DirectOutcome::Refused;
        }
        // Dialect frames are JSON text (serde_json output, so UTF-8).
        let header = FrameHeader {
            opcode: OpCode::Data(Data::Text),
            ..FrameHeader::default()
        };
        let mut head = [0u8; MAX_HEADER];
        let head_len = header.len(frame.len() as u64);
        if head_len > MAX_HEADER
            || header
                .format(frame.len() as u64, &mut &mut head[..])
                .is_err()
        {
            return DirectOutcome::Refused;
        }
        let total = head_len + frame.len();
        let parts = [io::IoSlice::new(&head[..head_len]), io::IoSlice::new(frame)];
        match self.tcp.try_write_vectored(&parts) {
            Ok(written) if written == total => DirectOutcome::Sent,
            Ok(0) => DirectOutcome::Refused,
            Ok(written) => {
                if written < head_len {
                    backlog
                        .chunks
                        .push_back(Bytes::copy_from_slice(&head[written..head_len]));
                    backlog.chunks.push_back(frame.clone());
                } else {
                    backlog.chunks.push_back(frame.slice(written - head_len..));
                }
                DirectOutcome::Started
            }
            // Would block, or broken: the task's own write finds out which.
            Err(_) => DirectOutcome::Refused,
        }
    }
}

/// The IO of an upgraded native WebSocket: reads come through hyper's `Upgraded` (which holds
/// what hyper read past the request), writes go to the shared socket through the backlog.
/// Without a [`DirectSocket`] (no TCP handle for the request) it is `Upgraded` both ways.
pub struct LiveIo {
    upgraded: TokioIo<Upgraded>,
    direct: Option<Arc<DirectSocket>>,
}

impl LiveIo {
    pub fn new(upgraded: Upgraded, direct: Option<Arc<DirectSocket>>) -> Self {
        Self {
            upgraded: TokioIo::new(upgraded),
            direct,
        }
    }
}

impl AsyncRead for LiveIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.upgraded).poll_read(cx, buf)
    }
}

impl AsyncWrite for LiveIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let Some(direct) = &self.direct else {
            return Pin::new(&mut self.upgraded).poll_write(cx, buf);
        };
        let mut backlog = direct.backlog();
        ready!(direct.poll_drain(&mut backlog, cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // All or nothing: what the kernel does not take now waits in the backlog, so no direct
        // write can land inside this buffer's frames.
        let written = ready!(poll_write(&direct.tcp, cx, buf))?;
        if written < buf.len() {
            backlog
                .chunks
                .push_back(Bytes::copy_from_slice(&buf[written..]));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &self.direct {
            Some(direct) => direct.poll_drain(&mut direct.backlog(), cx),
            None => Pin::new(&mut self.upgraded).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &self.direct {
            Some(direct) => {
                ready!(direct.poll_drain(&mut direct.backlog(), cx))?;
                Poll::Ready(shutdown_write(&direct.tcp))
            }
            None => Pin::new(&mut self.upgraded).poll_shutdown(cx),
        }
    }
}
