//! Writing the hub's frames straight from its fan-out: native WebSockets, and SSE streams
//! served by the SSE front.
//!
//! Each delivery used to wake the connection's task, which popped the frame, framed it and
//! wrote it: a wake-up, a scheduler round trip and (for WebSocket) a copy per delivery. Now,
//! while a connection is idle (its task parked with nothing queued), the fan-out writes the
//! shared frame itself with one non-blocking `writev` of the frame's envelope and its bytes
//! ([`DirectSocket`], a [`hub::DirectWrite`]): a WebSocket header before it, or an HTTP chunk's
//! size line before it and CRLF after it ([`Framing`]). Anything else (a socket that would
//! block, a backlog, a reader that is busy) takes the queue as before.
//!
//! Two writers share one socket, so bytes must never interleave inside a frame:
//! - both write under one lock, and only whole frames;
//! - a write the kernel takes only part of leaves its rest in the backlog, which goes out
//!   before anything else;
//! - the connection's own writes go through the same lock ([`LiveIo`] for the WebSocket
//!   library, [`DirectSocket::poll_send`] for the SSE front), each buffer whole or with its
//!   rest in the same backlog.
//!
//! The hub keeps the data frames in order (it writes directly only when the task holds none).
//! What the connection writes on its own may go out between two data frames: WebSocket control
//! frames (ping, pong, close), which WebSocket allows, and SSE keepalive comments.

use crate::net::fragment_limit::FragmentLimit;
use crate::net::io::{poll_write, poll_write_vectored, shutdown_write};
use bytes::{Buf, Bytes};
use hub::{DirectOutcome, DirectWrite};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use socket2::SockRef;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// The longest envelope head: a chunk size line (16 hex digits and CRLF); a server's
/// WebSocket header is at most 10 bytes (2, then 8 of length, no mask).
const MAX_HEAD: usize = 18;

/// How a frame of the hub goes on a connection's wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A native WebSocket text frame: the header, then the frame.
    WebSocketText,
    /// A WebSocket binary frame (y-websocket's messages): the header, then the frame.
    WebSocketBinary,
    /// One chunk of an HTTP/1.1 chunked body: size line, the frame, CRLF.
    HttpChunk,
    /// The frame as it is (an HTTP/1.0 body, which the close delimits).
    Raw,
}

/// The most parts one frame may be made of (a connection's own head, then the hub's bytes).
const MAX_PARTS: usize = 2;

/// The bytes that go around one frame.
struct Envelope {
    head: [u8; MAX_HEAD],
    head_len: usize,
    tail: &'static [u8],
}

impl Envelope {
    const NONE: Envelope = Envelope {
        head: [0; MAX_HEAD],
        head_len: 0,
        tail: b"",
    };

    fn head(&self) -> &[u8] {
        &self.head[..self.head_len]
    }

    /// `frame` in this envelope, as the parts of one `writev`.
    fn around<'a>(&'a self, frame: &'a [u8]) -> [io::IoSlice<'a>; 3] {
        [
            io::IoSlice::new(self.head()),
            io::IoSlice::new(frame),
            io::IoSlice::new(self.tail),
        ]
    }

    /// The frame made of `parts` (at most [`MAX_PARTS`]) in this envelope, as the slices of
    /// one `writev` and how many of them are used.
    fn around_parts<'a>(
        &'a self,
        parts: &[&'a Bytes],
    ) -> ([io::IoSlice<'a>; MAX_PARTS + 2], usize) {
        let mut slices = [io::IoSlice::new(&[]); MAX_PARTS + 2];
        slices[0] = io::IoSlice::new(self.head());
        let parts = &parts[..parts.len().min(MAX_PARTS)];
        for (slot, part) in slices[1..].iter_mut().zip(parts) {
            *slot = io::IoSlice::new(part);
        }
        slices[parts.len() + 1] = io::IoSlice::new(self.tail);
        (slices, parts.len() + 2)
    }
}

impl Framing {
    /// The envelope of a frame of `len` bytes; `None` if it cannot be framed.
    fn envelope(self, len: usize) -> Option<Envelope> {
        let mut envelope = Envelope::NONE;
        match self {
            Framing::WebSocketText | Framing::WebSocketBinary => {
                // Text frames are the dialects' JSON (serde_json output, so UTF-8).
                let data = if self == Framing::WebSocketText {
                    Data::Text
                } else {
                    Data::Binary
                };
                let header = FrameHeader {
                    opcode: OpCode::Data(data),
                    ..FrameHeader::default()
                };
                let head_len = header.len(len as u64);
                if head_len > MAX_HEAD
                    || header
                        .format(len as u64, &mut &mut envelope.head[..])
                        .is_err()
                {
                    return None;
                }
                envelope.head_len = head_len;
            }
            Framing::HttpChunk => {
                let room = envelope.head.len();
                let mut cursor = &mut envelope.head[..];
                write!(cursor, "{len:x}\r\n").ok()?;
                envelope.head_len = room - cursor.len();
                envelope.tail = b"\r\n";
            }
            Framing::Raw => {}
        }
        Some(envelope)
    }
}

/// The write side of a connection the fan-out may write to, shared by its task and the
/// fan-out.
pub struct DirectSocket {
    tcp: Arc<TcpStream>,
    framing: Framing,
    backlog: Mutex<Backlog>,
}

#[derive(Default)]
struct Backlog {
    /// Bytes accepted but not yet written, oldest first: the rest of a partly written frame,
    /// or of a buffer of the WebSocket library's.
    chunks: VecDeque<Bytes>,
}

impl Backlog {
    /// Keeps what the kernel did not take of `envelope` around `parts`, `written` bytes of them
    /// having gone out.
    fn keep_rest(&mut self, mut written: usize, envelope: &Envelope, parts: &[&Bytes]) {
        let head = envelope.head();
        if written < head.len() {
            self.chunks
                .push_back(Bytes::copy_from_slice(&head[written..]));
            written = 0;
        } else {
            written -= head.len();
        }
        for part in parts {
            if written < part.len() {
                self.chunks.push_back(part.slice(written..));
                written = 0;
            } else {
                written -= part.len();
            }
        }
        if written < envelope.tail.len() {
            self.chunks
                .push_back(Bytes::from_static(&envelope.tail[written..]));
        }
    }
}

impl DirectSocket {
    /// `framing` is how the fan-out's frames go on this connection's wire.
    pub fn new(tcp: Arc<TcpStream>, framing: Framing) -> Arc<Self> {
        Arc::new(Self {
            tcp,
            framing,
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

    /// The connection's own write of `bytes` (in this socket's framing if `framed`, else as
    /// they are): after the backlog, whole, with what the kernel does not take now kept in the
    /// backlog. `Ready(Ok)` once the bytes are written or kept; the caller flushes at the end
    /// ([`DirectSocket::poll_flush`]).
    pub fn poll_send(
        &self,
        cx: &mut Context<'_>,
        bytes: &Bytes,
        framed: bool,
    ) -> Poll<io::Result<()>> {
        let mut backlog = self.backlog();
        ready!(self.poll_drain(&mut backlog, cx))?;
        if bytes.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let envelope = if framed {
            self.framing
                .envelope(bytes.len())
                .ok_or(io::ErrorKind::InvalidInput)?
        } else {
            Envelope::NONE
        };
        let written = ready!(poll_write_vectored(&self.tcp, cx, &envelope.around(bytes)))?;
        if written == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        backlog.keep_rest(written, &envelope, &[bytes]);
        Poll::Ready(Ok(()))
    }

    /// [`DirectSocket::poll_send`] of one frame made of `parts` (at most two: a connection's
    /// own head, then shared bytes), in this socket's framing.
    pub fn poll_send_parts(&self, cx: &mut Context<'_>, parts: &[&Bytes]) -> Poll<io::Result<()>> {
        if parts.len() > MAX_PARTS {
            return Poll::Ready(Err(io::ErrorKind::InvalidInput.into()));
        }
        let mut backlog = self.backlog();
        ready!(self.poll_drain(&mut backlog, cx))?;
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len == 0 {
            return Poll::Ready(Ok(()));
        }
        let envelope = self
            .framing
            .envelope(len)
            .ok_or(io::ErrorKind::InvalidInput)?;
        let (slices, used) = envelope.around_parts(parts);
        let written = ready!(poll_write_vectored(&self.tcp, cx, &slices[..used]))?;
        if written == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        backlog.keep_rest(written, &envelope, parts);
        Poll::Ready(Ok(()))
    }

    /// Writes out the backlog; `Ready(Ok)` once it is empty.
    pub fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_drain(&mut self.backlog(), cx)
    }
}

impl DirectSocket {
    /// The fan-out's write of one frame made of `parts` (a connection's own head, then the
    /// shared bytes of the hub, for a dialect whose frames differ per connection only in a
    /// few leading bytes): one `writev`, in this socket's framing.
    pub fn try_write_parts(&self, parts: &[&Bytes]) -> DirectOutcome {
        if parts.len() > MAX_PARTS {
            return DirectOutcome::Refused;
        }
        let mut backlog = self.backlog();
        if !backlog.chunks.is_empty() {
            return DirectOutcome::Refused;
        }
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let Some(envelope) = self.framing.envelope(len) else {
            return DirectOutcome::Refused;
        };
        let total = envelope.head_len + len + envelope.tail.len();
        let (slices, used) = envelope.around_parts(parts);
        // Straight to the kernel (`sendmsg`), not through tokio's `try_write_vectored`: that
        // first reads the socket's readiness (one more cache line per delivery, a miss when a
        // fan-out walks thousands of sockets) and clears it on `WouldBlock`. Skipping it is
        // safe: the task's own writes still go through tokio, and a stale "writable" only
        // costs them one `WouldBlock` before they wait.
        match SockRef::from(&*self.tcp).send_vectored(&slices[..used]) {
            Ok(written) if written == total => DirectOutcome::Sent,
            Ok(0) => DirectOutcome::Refused,
            Ok(written) => {
                backlog.keep_rest(written, &envelope, parts);
                DirectOutcome::Started
            }
            // Would block, or broken: the task's own write finds out which.
            Err(_) => DirectOutcome::Refused,
        }
    }
}

impl DirectWrite for DirectSocket {
    fn try_write(&self, frame: &Bytes) -> DirectOutcome {
        self.try_write_parts(&[frame])
    }
}

/// The IO of an upgraded native WebSocket: reads come through hyper's `Upgraded` (which holds
/// what hyper read past the request), writes go to the shared socket through the backlog.
/// Without a [`DirectSocket`] (no TCP handle for the request) it is `Upgraded` both ways.
pub struct LiveIo {
    upgraded: TokioIo<Upgraded>,
    direct: Option<Arc<DirectSocket>>,
    /// Set by a dialect that limits its client's continuation frames (`net::fragment_limit`).
    fragments: Option<Box<FragmentLimit>>,
}

impl LiveIo {
    pub fn new(upgraded: Upgraded, direct: Option<Arc<DirectSocket>>) -> Self {
        Self {
            upgraded: TokioIo::new(upgraded),
            direct,
            fragments: None,
        }
    }

    /// Reads and drops what the client sends (a bounded number of reads per poll), until EOF.
    fn poll_discard(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut sink = [0u8; 1024];
        for _ in 0..64 {
            let mut discard = ReadBuf::new(&mut sink);
            ready!(Pin::new(&mut self.upgraded).poll_read(cx, &mut discard))?;
            if discard.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Counts the client's continuation frames from now on: reads fail once they come faster
    /// than `per_second` (bursts of `burst`).
    pub fn limit_fragments(&mut self, per_second: u32, burst: u32) {
        self.fragments = Some(Box::new(FragmentLimit::new(per_second, burst)));
    }
}

impl AsyncRead for LiveIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.fragments.as_ref().is_some_and(|limit| limit.is_over()) {
            return self.poll_discard(cx);
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.upgraded).poll_read(cx, buf))?;
        match &mut self.fragments {
            Some(limit) => Poll::Ready(limit.feed(&buf.filled()[before..])),
            None => Poll::Ready(Ok(())),
        }
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
            Some(direct) => direct.poll_flush(cx),
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
