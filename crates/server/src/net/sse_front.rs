//! A small HTTP/1 front for the SSE paths.
//!
//! An idle SSE stream served by hyper costs ~20 KB, nearly all of it hyper's per-connection
//! read and write buffers, which cannot be configured lower (BENCHMARKS.md, "SSE memory").
//! A connection whose *first* request line is a `GET` of an SSE path is therefore served
//! here instead: the head is parsed with `httparse`, the request goes through the same axum
//! `Router`, and the response is written by hand (`connection: close`, the body as chunked
//! frames). Nothing is buffered while the stream is idle but a 256-byte probe that notices
//! the client closing. Everything else (and a keep-alive connection that asks for SSE after
//! a REST call) stays with hyper.
//!
//! Because the front owns the socket and its framing, the hub's fan-out may write an idle
//! stream's frames itself, as it does for native WebSockets (`net::direct`): the
//! request carries a [`FrontSocket`] that the SSE handler gives to its subscription, and the
//! front's own writes go through the same [`DirectSocket`].

use crate::net::direct::{DirectSocket, Framing};
use crate::net::io::{shutdown_write, write_all};
use crate::net::peer::Peer;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode, Version, header};
use bytes::Bytes;
use http_body_util::BodyExt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep, sleep, timeout, timeout_at};
use tower::ServiceExt;

/// How much of a connection is peeked to find its request line; a longer one goes to hyper.
const PEEK_LIMIT: usize = 2048;
/// The largest request head the front reads; larger gets 431, like hyper's limit.
const HEAD_LIMIT: usize = 16 * 1024;
/// The most headers parsed; more is answered 431.
const MAX_HEADERS: usize = 64;
/// The probe read while streaming: only there to see EOF or a reset.
const PROBE: usize = 256;
/// How long an error answer waits for the client's leftovers before closing, so that the
/// close does not turn into a reset that destroys the answer in flight.
const LINGER: Duration = Duration::from_secs(1);

/// Where a new connection goes, by its first request line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FirstLine {
    /// An SSE stream: the front serves it.
    Sse,
    /// Anything else (or a line too long to judge): hyper decides.
    Other,
    /// No request line within the head deadline, EOF or an error: close without a word.
    Silent,
}

/// What the connection's first request line asks for. Consumes nothing. `head_timeout`
/// bounds the wait from accept (a silent connection or a slow request line is closed).
pub(crate) async fn first_line(tcp: &TcpStream, head_timeout: Duration) -> FirstLine {
    // On the heap and dropped on return: it must not live in a long-lived future. Small at
    // first (request lines are short) and grown only for a long one, since every accepted
    // connection pays for it.
    let mut buf = vec![0u8; 256];
    let deadline = Instant::now() + head_timeout;
    let mut delay = Duration::from_millis(1);
    loop {
        let n = match timeout_at(deadline, tcp.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => return FirstLine::Silent,
        };
        if n == 0 {
            return FirstLine::Silent;
        }
        if let Some(end) = buf[..n].iter().position(|&b| b == b'\n') {
            return if is_sse_request_line(&buf[..end]) {
                FirstLine::Sse
            } else {
                FirstLine::Other
            };
        }
        if n == buf.len() {
            if buf.len() >= PEEK_LIMIT {
                return FirstLine::Other;
            }
            buf.resize((buf.len() * 2).min(PEEK_LIMIT), 0);
            continue;
        }
        // A partial line: `peek` consumes nothing, so the socket stays readable and peeking
        // again at once would spin. Back off instead (a request line split across segments
        // is rare; this costs a few ms when it happens).
        if timeout_at(deadline, sleep(delay)).await.is_err() {
            return FirstLine::Silent;
        }
        delay = (delay * 2).min(Duration::from_millis(100));
    }
}

/// `GET <sse path>[?query] HTTP/1.x`, the paths being exactly the SSE routes of
/// `dialects::router`.
fn is_sse_request_line(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Ok(line) = std::str::from_utf8(line) else {
        return false;
    };
    let mut parts = line.split(' ');
    let (Some("GET"), Some(target), Some("HTTP/1.1" | "HTTP/1.0"), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let path = target.split('?').next().unwrap_or_default();
    let Some(path) = path.strip_prefix('/') else {
        return false;
    };
    let segments: Vec<&str> = path.split('/').collect();
    match segments.as_slice() {
        ["api", "v1", "projects", id, "events"] | ["api", "projects", id, "events"] => {
            !id.is_empty()
        }
        ["api", "v1", "projects" | "users", "events"] | ["api", "projects" | "users", "events"] => {
            true
        }
        _ => false,
    }
}

/// On a request the front serves (and on no other): the connection's writer, through which the
/// hub's fan-out may write the stream's frames (framed to match the response the front writes:
/// chunked for HTTP/1.1, raw for HTTP/1.0).
#[derive(Clone)]
pub struct FrontSocket(pub Arc<DirectSocket>);

/// What the front serves with: the application's router, and how long one of a connection's
/// own writes may wait for a client that does not read before the connection is given up (two
/// keepalive periods, as a native socket is closed after two unanswered pings). Shared
/// (`Arc`): every connection's task holds it for the stream's whole life, and a pointer keeps
/// each of those futures as small as the router alone did.
pub struct Front {
    pub router: Router,
    pub write_stall: Duration,
    /// How long the whole head may take (`NetLimits::head_timeout`); none once streaming.
    pub head_timeout: Duration,
}

/// What reading the head came to.
enum Head {
    /// Boxed: the variants differ by ~240 bytes, and this one is moved out at once.
    Request(Box<Request<Body>>),
    /// The head cannot be served: answer this and close.
    Refuse(StatusCode),
    /// The client went away or stalled: close without a word.
    Gone,
}

/// Serves one connection whose request line [`first_line`] found to be SSE, then closes it.
pub(crate) async fn serve(tcp: Arc<TcpStream>, address: SocketAddr, front: Arc<Front>) {
    // Boxed for the same reason as the routing future below.
    let request = match Box::pin(timeout(front.head_timeout, read_head(&tcp))).await {
        Ok(Head::Request(request)) => *request,
        Ok(Head::Refuse(status)) => return refuse(&tcp, status).await,
        // A stalled head: hyper would answer 408 only if configured to; it closes.
        Ok(Head::Gone) | Err(_) => return,
    };
    let http10 = request.version() == Version::HTTP_10;
    let framing = if http10 {
        Framing::Raw
    } else {
        Framing::HttpChunk
    };
    let writer = DirectSocket::new(tcp.clone(), framing);
    let mut request = request;
    request.extensions_mut().insert(ConnectInfo(Peer {
        address,
        tcp: Arc::downgrade(&tcp),
    }));
    request.extensions_mut().insert(FrontSocket(writer.clone()));
    // Boxed: the routing future (router, request, handler state) is large and short-lived;
    // inline, it would size the task for the stream's whole life.
    let response = match Box::pin(front.router.clone().oneshot(request)).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let _ = respond(&tcp, &writer, response, http10, &front).await;
    // Whatever happened, the connection ends here: `connection: close` was sent.
    let _ = shutdown_write(&tcp);
}

/// Reads up to [`HEAD_LIMIT`] bytes until `httparse` finds a complete head.
async fn read_head(tcp: &TcpStream) -> Head {
    let mut buf = Vec::with_capacity(512);
    loop {
        if buf.len() >= HEAD_LIMIT {
            return Head::Refuse(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        // In steps of 1 KiB: a typical SSE head is a few hundred bytes.
        buf.reserve((HEAD_LIMIT - buf.len()).min(1024));
        if tcp.readable().await.is_err() {
            return Head::Gone;
        }
        // Read no further than the limit, so the buffer never outgrows it.
        let room = (HEAD_LIMIT - buf.len()).min(buf.capacity() - buf.len());
        let start = buf.len();
        buf.resize(start + room, 0);
        match tcp.try_read(&mut buf[start..]) {
            Ok(0) => return Head::Gone,
            Ok(n) => buf.truncate(start + n),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                buf.truncate(start);
                continue;
            }
            Err(_) => return Head::Gone,
        }
        if let Some(head) = parse_head(&buf) {
            return head;
        }
    }
}

/// Parses a head; `None` while it is incomplete. Synchronous, so the header array never
/// lives in the connection's future.
fn parse_head(buf: &[u8]) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(buf) {
        Ok(httparse::Status::Partial) => None,
        Ok(httparse::Status::Complete(_)) => Some(build(&parsed)),
        Err(httparse::Error::TooManyHeaders) => {
            Some(Head::Refuse(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE))
        }
        Err(_) => Some(Head::Refuse(StatusCode::BAD_REQUEST)),
    }
}

fn build(parsed: &httparse::Request<'_, '_>) -> Head {
    let bad = Head::Refuse(StatusCode::BAD_REQUEST);
    // The request line was peeked, but the bytes read now are what counts.
    let (Some("GET"), Some(path), Some(minor)) = (parsed.method, parsed.path, parsed.version)
    else {
        return bad;
    };
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let mut builder = Request::builder()
        .method(Method::GET)
        .uri(path)
        .version(version);
    for h in parsed.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return bad;
        };
        // A GET with a body is not something the SSE routes accept; refuse rather than
        // leave unread bytes to be mistaken for a next request (hyper would read them).
        if (name == header::CONTENT_LENGTH && value.as_bytes() != b"0")
            || name == header::TRANSFER_ENCODING
        {
            return bad;
        }
        builder = builder.header(name, value);
    }
    match builder.body(Body::empty()) {
        Ok(request) => Head::Request(Box::new(request)),
        Err(_) => bad,
    }
}

/// Answers a head the front cannot serve the way hyper does (status, empty body), closes.
async fn refuse(tcp: &TcpStream, status: StatusCode) {
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-length: 0\r\nconnection: close\r\ndate: {}\r\n\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        httpdate::fmt_http_date(std::time::SystemTime::now()),
    );
    if write_all(tcp, head.as_bytes()).await.is_err() {
        return;
    }
    let _ = shutdown_write(tcp);
    // Drain (bounded) what the client still sends, so closing with unread data does not
    // reset the connection before the answer is read.
    let mut sink = [0u8; PROBE];
    let _ = timeout(LINGER, async {
        let mut left = 64 * 1024usize;
        while left > 0 {
            if tcp.readable().await.is_err() {
                return;
            }
            match tcp.try_read(&mut sink) {
                Ok(0) => return,
                Ok(n) => left = left.saturating_sub(n),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
}

/// Writes the response: head, then the body (chunked for HTTP/1.1 unless its size is known;
/// raw and delimited by the close for HTTP/1.0). Returns early if the client goes away.
/// Every write goes through `writer`, which the hub's fan-out may also be writing to.
async fn respond(
    tcp: &TcpStream,
    writer: &DirectSocket,
    response: axum::response::Response,
    http10: bool,
    front: &Front,
) -> io::Result<()> {
    let (parts, mut body) = response.into_parts();
    let exact = http_body::Body::size_hint(&body).exact();
    let chunked = exact.is_none() && !http10;
    // A body of unknown size is a stream, framed as the writer frames the fan-out's frames
    // (`serve` chose the framing from the version); one of known size goes as it is.
    let framed = exact.is_none();
    // The handler's headers are done with once written: built in a sync fn that consumes
    // them, so they are freed now rather than kept in the future for the stream's life.
    let head = response_head(parts, exact, chunked, http10);
    send(writer, &Bytes::from(head), false, front.write_stall).await?;

    let mut probe = [0u8; PROBE];
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            () = client_gone(tcp, &mut probe) => return Ok(()),
        };
        match frame {
            None => break,
            Some(Ok(frame)) => {
                // Trailers are not sent: nothing here produces them.
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                // An empty frame is the hub asking for the rest of a direct write.
                send(writer, &data, framed, front.write_stall).await?;
            }
            // A failed body: end without the terminator, so the client sees a truncation.
            Some(Err(_)) => return Ok(()),
        }
    }
    if chunked {
        send(
            writer,
            &Bytes::from_static(b"0\r\n\r\n"),
            false,
            front.write_stall,
        )
        .await?;
    }
    within(front.write_stall, |cx| writer.poll_flush(cx)).await
}

/// One write of the connection's own through `writer` (see [`DirectSocket::poll_send`]),
/// given up if it has not gone out within `stall` (a client that stopped reading, or one too
/// slow to take a chunk in that time, which could not keep up with the stream anyway).
fn send<'a>(
    writer: &'a DirectSocket,
    bytes: &'a Bytes,
    framed: bool,
    stall: Duration,
) -> impl Future<Output = io::Result<()>> + 'a {
    within(stall, move |cx| writer.poll_send(cx, bytes, framed))
}

/// `write` until it is done, or a `TimedOut` error once it has waited `limit`. A write waits
/// only while the socket is full (everything else is non-blocking), so this is how long a
/// client that stopped reading may keep its stream, its per-user slot and its queue.
///
/// Nearly every write goes out at its first try, so the timer is made (on the heap) only for
/// one that has to wait, and everything lives in one small closure: this future is part of
/// every idle stream's for the stream's whole life (a `tokio::time::timeout` inline cost each
/// idle stream ~100 bytes more: 3,847–3,872 against 3,734–3,754 B at 19,000).
fn within<'a>(
    limit: Duration,
    mut write: impl FnMut(&mut Context<'_>) -> Poll<io::Result<()>> + 'a,
) -> impl Future<Output = io::Result<()>> + 'a {
    let mut timer: Option<Pin<Box<Sleep>>> = None;
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(done) = write(cx) {
            return Poll::Ready(done);
        }
        let timer = timer.get_or_insert_with(|| Box::pin(sleep(limit)));
        timer
            .as_mut()
            .poll(cx)
            .map(|()| Err(io::ErrorKind::TimedOut.into()))
    })
}

/// The response's head: status line, the handler's headers, the front's framing headers.
fn response_head(
    parts: axum::http::response::Parts,
    exact: Option<u64>,
    chunked: bool,
    http10: bool,
) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.{} {} {}\r\n",
        if http10 { 0 } else { 1 },
        parts.status.as_str(),
        parts.status.canonical_reason().unwrap_or(""),
    )
    .into_bytes();
    for (name, value) in parts.headers.iter() {
        // Framing and connection management are the front's, not the handler's.
        if name == header::CONNECTION
            || name == header::TRANSFER_ENCODING
            || name == header::CONTENT_LENGTH
            || name.as_str() == "keep-alive"
        {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if let Some(length) = exact {
        head.extend_from_slice(format!("content-length: {length}\r\n").as_bytes());
    } else if chunked {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if !parts.headers.contains_key(header::DATE) {
        head.extend_from_slice(b"date: ");
        head.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"connection: close\r\n\r\n");
    head
}

/// Resolves when the client closes or resets; what it sends meanwhile is discarded.
async fn client_gone(tcp: &TcpStream, probe: &mut [u8]) {
    loop {
        if tcp.readable().await.is_err() {
            return;
        }
        match tcp.try_read(probe) {
            Ok(0) => return,
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_sse_request_line;

    #[test]
    fn request_lines() {
        for ok in [
            "GET /api/v1/projects/abc/events HTTP/1.1\r",
            "GET /api/v1/projects/events?x=1 HTTP/1.1",
            "GET /api/v1/users/events HTTP/1.0\r",
            "GET /api/projects/KEY/events HTTP/1.1\r",
            "GET /api/projects/events HTTP/1.1\r",
            "GET /api/users/events?token=x HTTP/1.1\r",
        ] {
            assert!(is_sse_request_line(ok.as_bytes()), "{ok}");
        }
        for no in [
            "POST /api/users/events HTTP/1.1\r",
            "GET /api/users/events HTTP/2.0\r",
            "GET /api/v1/projects//events HTTP/1.1\r",
            "GET /api/v1/projects HTTP/1.1\r",
            "GET http://x/api/users/events HTTP/1.1\r",
            "GET /api/users/events/ HTTP/1.1\r",
            "GET  /api/users/events HTTP/1.1\r",
            "\r",
        ] {
            assert!(!is_sse_request_line(no.as_bytes()), "{no}");
        }
    }
}
