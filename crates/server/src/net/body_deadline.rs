//! Request bodies: a deadline for the whole body (`NetLimits::body_timeout` plus one second per
//! `body_min_rate` bytes received), and a declared `Content-Length` over the route's limit
//! refused before a byte of the body is read.
//!
//! The route's limit is only known once the request reaches the route (a route may raise the
//! server's default, as uploads and imports do), after this middleware has wrapped the body.
//! So the body carries a shared cell that [`with_body_limit`] sets on the way in, and it checks
//! the declared length at its first poll, which the handler's extractor makes before anything
//! else is read. Either failure fails the handler's read; the middleware then answers in
//! place of the handler (408 `request_timeout` or 413 `payload_too_large`, JSON) and closes the
//! connection, since the rest of the body was never read.

use crate::http::error;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use proto::ErrorCode;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep, sleep_until};

/// What the middleware needs: the deadlines and the server's default body limit.
#[derive(Clone)]
pub struct BodyRules {
    pub timeout: Duration,
    pub min_rate: u64,
    pub default_limit: usize,
}

/// The body limit of the route the request reached (set by [`with_body_limit`]).
#[derive(Clone)]
struct RouteLimit(Arc<AtomicUsize>);

const FINE: u8 = 0;
const TIMED_OUT: u8 = 1;
const TOO_LARGE: u8 = 2;

/// `route` with a body limit of its own: axum's (for what is actually read) and the one the
/// declared length is checked against.
pub fn with_body_limit<S>(route: MethodRouter<S>, limit: usize) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    route
        .layer::<_, std::convert::Infallible>(axum::middleware::from_fn(
            move |request: Request, next: Next| async move {
                if let Some(RouteLimit(cell)) = request.extensions().get::<RouteLimit>() {
                    cell.store(limit, Ordering::Relaxed);
                }
                next.run(request).await
            },
        ))
        .layer(DefaultBodyLimit::max(limit))
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn guard(State(rules): State<Arc<BodyRules>>, request: Request, next: Next) -> Response {
    // No body (every GET, every upgrade, every SSE request): nothing to watch.
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let limit = Arc::new(AtomicUsize::new(rules.default_limit));
    let outcome = Arc::new(AtomicU8::new(FINE));
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(RouteLimit(limit.clone()));
    let body = DeadlineBody {
        inner: body,
        declared,
        limit,
        outcome: outcome.clone(),
        start: Instant::now(),
        grace: rules.timeout,
        min_rate: rules.min_rate,
        received: 0,
        timer: None,
    };
    let response = next.run(Request::from_parts(parts, Body::new(body))).await;
    let mut refusal = match outcome.load(Ordering::Acquire) {
        TIMED_OUT => error(
            ErrorCode::RequestTimeout,
            "the request body did not arrive in time",
        )
        .into_response(),
        TOO_LARGE => error(ErrorCode::PayloadTooLarge, "the body is too large").into_response(),
        _ => return response,
    };
    // The rest of the body is unread: the connection cannot carry another request.
    refusal
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    refusal
}

/// Why a body read failed here (the handler sees it as a failed read; the middleware answers).
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("the request body did not arrive in time")]
    TimedOut,
    #[error("the declared body is larger than the route's limit")]
    TooLarge,
}

struct DeadlineBody {
    inner: Body,
    declared: Option<u64>,
    limit: Arc<AtomicUsize>,
    outcome: Arc<AtomicU8>,
    start: Instant,
    grace: Duration,
    min_rate: u64,
    received: u64,
    /// Made at the first poll (the route's limit is known by then).
    timer: Option<Pin<Box<Sleep>>>,
}

impl DeadlineBody {
    fn deadline(&self) -> Instant {
        let earned = match self.min_rate {
            0 => Duration::ZERO,
            rate => Duration::from_secs_f64(self.received as f64 / rate as f64),
        };
        self.start + self.grace + earned
    }

    fn refuse(&self, why: Refused) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let code = match why {
            Refused::TimedOut => TIMED_OUT,
            Refused::TooLarge => TOO_LARGE,
        };
        self.outcome.store(code, Ordering::Release);
        Poll::Ready(Some(Err(axum::Error::new(why))))
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        match this.outcome.load(Ordering::Acquire) {
            TIMED_OUT => return this.refuse(Refused::TimedOut),
            TOO_LARGE => return this.refuse(Refused::TooLarge),
            _ => {}
        }
        if this.timer.is_none() {
            let limit = this.limit.load(Ordering::Relaxed) as u64;
            if this.declared.is_some_and(|declared| declared > limit) {
                return this.refuse(Refused::TooLarge);
            }
            this.timer = Some(Box::pin(sleep_until(this.deadline())));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    let deadline = this.deadline();
                    if let Some(timer) = this.timer.as_mut() {
                        timer.as_mut().reset(deadline);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                let expired = this
                    .timer
                    .as_mut()
                    .is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
                if expired {
                    this.refuse(Refused::TimedOut)
                } else {
                    Poll::Pending
                }
            }
            done => done,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
