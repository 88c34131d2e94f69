//! The native WebSocket, `GET /ws/v1/projects/{project_id}/?ticket=T[&since=N]` (CONTRACT §6).
//!
//! The upgrade is always accepted and refusals are close frames, because a browser never shows
//! a script the status of a failed upgrade, only a close code:
//! 4001 no usable ticket, 4003 no access, 4404 unknown path, 1001 server going away.
//! While open: hub deliveries go out as text frames; the server pings every
//! `ws_ping_interval` (cued by the node's sweep through the hub, `live::sweep`) and closes
//! (1008 "pong timeout") when two pings in a row went unanswered; the session's expiry closes
//! it with 4003 like a logout; client frames are checked for size (1009), type (1003), rate (1008) and JSON (error frame).

use crate::app::AppState;
use crate::auth::tickets;
use crate::http::error;
use crate::live::ConnectionGuard;
use crate::transport::direct::DirectSocket;
use crate::transport::read_gate::ReadGate;
use crate::transport::ws_upgrade::{NativeSocket, NotAnUpgrade, Upgrade};
use crate::transport::{parse_position, role_in};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use domain::Actor;
use domain::access::LIVE_ROLE;
use futures::{SinkExt, StreamExt};
use governor::{Quota, RateLimiter};
use hub::{Delivery, SubscribeRequest};
use proto::{ErrorCode, StreamKey};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use store::UserRow;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use uuid::Uuid;

pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_UNSUPPORTED: u16 = 1003;
pub const CLOSE_POLICY: u16 = 1008;
pub const CLOSE_TOO_BIG: u16 = 1009;
pub const CLOSE_SERVER_ERROR: u16 = 1011;
pub const CLOSE_NO_TICKET: u16 = 4001;
pub const CLOSE_FORBIDDEN: u16 = 4003;
pub const CLOSE_NOT_FOUND: u16 = 4404;

/// Frames above the contract's 64 KiB are read whole up to this size so they can be refused
/// with a proper 1009; beyond it the WebSocket library drops the connection unread, which
/// bounds the memory one client can make the server hold.
const READ_LIMIT: usize = 256 * 1024;
/// How long a closing handshake may take before the TCP connection is simply dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// The longest ticket secret accepted for hashing (ours are 43 characters).
const MAX_TICKET_LEN: usize = 256;
/// Frames written per flush when the subscription has several ready.
const MAX_BATCH: usize = 64;

type Params = HashMap<String, String>;

/// Buffers sized for many idle sockets: the library's defaults (128 KiB each way) cost memory
/// per connection that small JSON frames never need; both grow on demand up to the limits.
/// The read buffer is allocated whole and zero-filled on every read attempt, so it is resident
/// on every socket although clients send little (pings, pongs, small JSON): 512 bytes hold
/// those, and a rare large frame is read in 512-byte steps into a buffer that grows to fit it.
pub(crate) const READ_BUFFER: usize = 512;
/// Frames are gathered up to this size before a write; it is a threshold, not an allocation.
pub(crate) const WRITE_BUFFER: usize = 16 * 1024;
/// Output a socket may hold unsent before the connection is dropped (backpressure normally
/// keeps it near `WRITE_BUFFER`).
const MAX_WRITE_BUFFER: usize = 1024 * 1024;

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(READ_LIMIT))
        .max_frame_size(Some(READ_LIMIT))
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
}

/// Unknown `/ws/…` paths: accepted, then closed with 4404.
pub async fn unknown(ws: Result<Upgrade, NotAnUpgrade>) -> Response {
    match ws {
        Ok(ws) => ws.on_upgrade(config(), |socket, _| async move {
            refuse(
                Box::new(socket),
                CLOSE_NOT_FOUND,
                "no such WebSocket endpoint",
            )
            .await;
        }),
        Err(_) => error(ErrorCode::NotFound, "no such endpoint").into_response(),
    }
}

pub async fn project(
    State(state): State<AppState>,
    Path(project): Path<String>,
    params: Result<Query<Params>, QueryRejection>,
    ws: Result<Upgrade, NotAnUpgrade>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(refused) => return refused.into_response(),
    };
    // Unparseable query strings are treated as empty: the client then simply has no ticket.
    let params = params.map(|q| q.0).unwrap_or_default();
    let guard = state.live.connection();
    ws.on_upgrade(config(), move |socket, direct| {
        // The task lives as long as the socket, and every future it awaits is laid out inside
        // it: a socket moved by value through those futures would take its few hundred bytes
        // in each of them, for the connection's whole life. Boxed once, each holds a pointer.
        let socket = Box::new(socket);
        async move {
            let Some(guard) = guard else {
                Box::pin(refuse(
                    socket,
                    CLOSE_GOING_AWAY,
                    "the server is shutting down",
                ))
                .await;
                return;
            };
            // Admission awaits store queries whose futures are far larger than the serving
            // loop; boxed, that state is freed when admission ends.
            let Some((socket, sub)) =
                Box::pin(admit(&state, socket, direct, project, params)).await
            else {
                return;
            };
            // Served on a task of its own. The upgrade task axum spawned keeps room for
            // everything it and this closure captured (upgrade settings, the request's query,
            // the app state) beside the state of whatever it awaits, for as long as it runs;
            // ending it here frees that, and an idle connection keeps the serving loop's
            // state alone.
            tokio::spawn(
                Connection {
                    socket,
                    gate: ReadGate::default(),
                    guard,
                }
                .serve(sub),
            );
        }
    })
}

/// Why a connection is refused before it starts.
struct Refusal(u16, &'static str);

/// The user, their session and when it expires.
async fn authenticate(
    state: &AppState,
    params: &Params,
) -> Result<(UserRow, Uuid, store::Timestamp), Refusal> {
    const NO_TICKET: Refusal =
        Refusal(CLOSE_NO_TICKET, "missing, unknown, expired or spent ticket");
    let session = if let Some(ticket) = params.get("ticket") {
        if ticket.is_empty() || ticket.len() > MAX_TICKET_LEN {
            return Err(NO_TICKET);
        }
        let row = state
            .domain
            .consume_ticket(&tickets::digest(ticket))
            .await
            .map_err(|_| Refusal(CLOSE_SERVER_ERROR, "server error"))?
            .ok_or(NO_TICKET)?;
        (row.session_id, row.user_id)
    } else if let (true, Some(token)) =
        (state.config.live.ws_legacy_token_auth, params.get("token"))
    {
        let claims = state.tokens.verify(token).ok_or(NO_TICKET)?;
        (claims.sid, claims.sub)
    } else {
        return Err(NO_TICKET);
    };
    // The ticket outlives nothing: a session logged out (or a user deactivated) after minting
    // makes it worthless.
    let (row, user) = state
        .domain
        .session_user(session.0)
        .await
        .map_err(|_| Refusal(CLOSE_SERVER_ERROR, "server error"))?
        .ok_or(NO_TICKET)?;
    if user.id != session.1 {
        return Err(NO_TICKET);
    }
    Ok((user, session.0, row.expires_at))
}

async fn may_connect(state: &AppState, project: Uuid, user: &UserRow) -> Result<(), Refusal> {
    let actor = Actor {
        user_id: user.id,
        is_admin: user.is_admin,
        tab_id: None,
    };
    match role_in(state, project, &actor).await {
        Ok(Some(role)) if role >= LIVE_ROLE => Ok(()),
        Ok(_) => Err(Refusal(
            CLOSE_FORBIDDEN,
            "not a member (role Member or higher) of this project",
        )),
        Err(_) => Err(Refusal(CLOSE_SERVER_ERROR, "server error")),
    }
}

/// Authenticates, checks access and subscribes; `None` when the socket was refused (and closed).
async fn admit(
    state: &AppState,
    socket: Box<NativeSocket>,
    direct: Option<Arc<DirectSocket>>,
    project: String,
    params: Params,
) -> Option<(Box<NativeSocket>, hub::Subscription)> {
    let (user, session_id, expires_at) = match authenticate(state, &params).await {
        Ok(found) => found,
        Err(Refusal(code, reason)) => {
            refuse(socket, code, reason).await;
            return None;
        }
    };
    let Ok(project) = Uuid::parse_str(&project) else {
        refuse(socket, CLOSE_FORBIDDEN, "no such project").await;
        return None;
    };
    if let Err(Refusal(code, reason)) = may_connect(state, project, &user).await {
        refuse(socket, code, reason).await;
        return None;
    }
    let live = &state.live;
    let mut request = SubscribeRequest::new(StreamKey::Project(project), live.ws, user.id);
    request.since = parse_position(params.get("since").map(String::as_str));
    request.session_id = Some(session_id);
    request.expires_at = Some(expires_at);
    // Pinged by the node's sweep: a timer per connection would cost every idle socket memory.
    request.heartbeat_slot = Some(live.ping_slot());
    request.presence = Some(user.display_name.clone());
    // While the connection idles, the fan-out writes its frames itself (`transport::direct`).
    request.direct = direct.map(|direct| direct as Arc<dyn hub::DirectWrite>);
    let sub = match live.hub().subscribe(request).await {
        Ok(sub) => sub,
        Err(err) => {
            tracing::warn!(error = %err, "native WS subscribe failed");
            refuse(socket, CLOSE_SERVER_ERROR, "live delivery unavailable").await;
            return None;
        }
    };
    // Access may have gone between the check and the subscription; an eviction after the
    // subscription is caught by the hub, one before it by this second look.
    if let Err(Refusal(code, reason)) = may_connect(state, project, &user).await {
        drop(sub);
        refuse(socket, code, reason).await;
        return None;
    }
    if live.is_shutting_down() {
        drop(sub);
        refuse(socket, CLOSE_GOING_AWAY, "the server is shutting down").await;
        return None;
    }
    Some((socket, sub))
}

struct Connection {
    socket: Box<NativeSocket>,
    gate: ReadGate,
    /// Counts the connection for shutdown, and reaches the live settings.
    guard: ConnectionGuard,
}

enum Flow {
    Continue,
    Close(u16, &'static str),
    Gone,
}

impl Connection {
    fn send_timeout(&self) -> Duration {
        self.guard.feed().config.send_timeout
    }

    async fn send(&mut self, message: Message) -> bool {
        matches!(
            tokio::time::timeout(self.send_timeout(), self.socket.send(message)).await,
            Ok(Ok(()))
        )
    }

    /// Writes `first` and whatever else is ready (up to [`MAX_BATCH`] frames) with one flush,
    /// so a burst costs one syscall instead of one per frame.
    async fn deliver(&mut self, sub: &mut hub::Subscription, first: Delivery) -> Flow {
        let limit = self.send_timeout();
        let write = async {
            let mut next = first;
            let mut fed = 0;
            let mut closing = None;
            loop {
                let frame = match next {
                    Delivery::Frame(frame) => frame,
                    Delivery::ResyncRequired { latest_seq } => sub.resync_frame(latest_seq),
                    Delivery::Closed(reason) => {
                        closing = Some(reason);
                        break;
                    }
                    // Never yielded by `try_recv`, and `first` comes from `serve`, which
                    // handles heartbeats itself.
                    Delivery::Heartbeat => Bytes::new(),
                };
                // Dialect frames are JSON text; a frame that is not UTF-8 would be a bug in
                // an encoder and is skipped rather than killing the socket. An empty frame
                // only asks for the flush below (the rest of a direct write).
                if !frame.is_empty()
                    && let Ok(text) = Utf8Bytes::try_from(frame)
                {
                    self.socket.feed(Message::Text(text)).await?;
                }
                fed += 1;
                if fed >= MAX_BATCH {
                    break;
                }
                match sub.try_recv() {
                    Some(delivery) => next = delivery,
                    None => break,
                }
            }
            self.socket.flush().await?;
            Ok::<_, tokio_tungstenite::tungstenite::Error>(closing)
        };
        match tokio::time::timeout(limit, write).await {
            Ok(Ok(None)) => Flow::Continue,
            Ok(Ok(Some(reason))) => Flow::Close(reason.ws_close_code(), close_text(reason)),
            Ok(Err(_)) | Err(_) => Flow::Gone,
        }
    }

    async fn serve(mut self, mut sub: hub::Subscription) {
        let config = &self.guard.feed().config;
        let mut unanswered = 0u8;
        let quota = Quota::per_second(
            NonZeroU32::new(config.ws_frames_per_second).unwrap_or(NonZeroU32::MIN),
        )
        .allow_burst(NonZeroU32::new(config.ws_frame_burst).unwrap_or(NonZeroU32::MIN));
        let limiter = RateLimiter::direct(quota);
        let max_frame = config.ws_max_client_frame;
        let outcome = loop {
            let flow = tokio::select! {
                // Boxed: the write's state (frames in flight, its timeout's timer) exists only
                // while writing; inline it would be part of every idle connection's task. One
                // allocation per wake-up is noise beside the send it makes.
                delivery = sub.recv() => match delivery {
                    // The node's sweep: once per `ws_ping_interval`.
                    Delivery::Heartbeat => {
                        if unanswered >= 2 {
                            Flow::Close(CLOSE_POLICY, "pong timeout")
                        } else {
                            unanswered += 1;
                            // Boxed like the writes below: the send's state (with its
                            // timeout's timer) would otherwise be part of every idle task.
                            let ping = Box::pin(self.send(Message::Ping(Bytes::from_static(b"liveplan"))));
                            if ping.await { Flow::Continue } else { Flow::Gone }
                        }
                    }
                    delivery => Box::pin(self.deliver(&mut sub, delivery)).await,
                },
                message = self.gate.next(&mut self.socket) => match message {
                    None | Some(Err(_)) => Flow::Gone,
                    Some(Ok(message)) => {
                        if limiter.check().is_err() {
                            Flow::Close(CLOSE_POLICY, "too many frames; at most 20 a second, bursts of 100")
                        } else {
                            // Boxed: client frames are rare, and inline their handling's state
                            // would be part of every idle connection's task.
                            Box::pin(self.on_client_message(message, max_frame, &mut unanswered)).await
                        }
                    }
                },
            };
            match flow {
                Flow::Continue => {}
                other => break other,
            }
        };
        // Leave presence before the goodbye so a reconnecting tab sees a consistent roster.
        drop(sub);
        if let Flow::Close(code, reason) = outcome {
            Box::pin(refuse(self.socket, code, reason)).await;
        }
    }

    async fn on_client_message(
        &mut self,
        message: Message,
        max_frame: usize,
        unanswered: &mut u8,
    ) -> Flow {
        match message {
            Message::Pong(_) => {
                *unanswered = 0;
                Flow::Continue
            }
            // The library queues the pong (and the answer to a close) itself; it goes out with
            // the next write, so flush now rather than whenever an event next arrives.
            Message::Ping(_) => {
                match tokio::time::timeout(self.send_timeout(), self.socket.flush()).await {
                    Ok(Ok(())) => Flow::Continue,
                    _ => Flow::Gone,
                }
            }
            Message::Close(_) => {
                let _ = tokio::time::timeout(CLOSE_GRACE, self.socket.flush()).await;
                Flow::Gone
            }
            Message::Binary(_) => Flow::Close(CLOSE_UNSUPPORTED, "binary frames are not accepted"),
            // Raw frames are what a writer may send; reading never yields one.
            Message::Frame(_) => Flow::Continue,
            Message::Text(text) if text.len() > max_frame => {
                Flow::Close(CLOSE_TOO_BIG, "client frames are at most 64 KiB")
            }
            Message::Text(text) => match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(object)) => {
                    if object.get("type").and_then(Value::as_str) == Some("ping") {
                        let pong = json!({"protocol_version": 1, "event_type": "pong", "payload": {}, "seq": null});
                        if !self.send(Message::Text(pong.to_string().into())).await {
                            return Flow::Gone;
                        }
                    }
                    // Other objects are reserved for later client messages and ignored.
                    Flow::Continue
                }
                _ => {
                    let reply = json!({
                        "protocol_version": 1,
                        "event_type": "error",
                        "payload": {"code": "invalid_frame", "message": "client frames must be JSON objects"},
                        "seq": null,
                    });
                    if self.send(Message::Text(reply.to_string().into())).await {
                        Flow::Continue
                    } else {
                        Flow::Gone
                    }
                }
            },
        }
    }
}

fn close_text(reason: hub::CloseReason) -> &'static str {
    match reason {
        hub::CloseReason::AccessRevoked => "access to this project was revoked",
        hub::CloseReason::LoggedOut => "the session ended",
        hub::CloseReason::SessionExpired => "the session expired",
        hub::CloseReason::LogUnavailable => "the event log is unavailable; reconnect with since",
        hub::CloseReason::Shutdown => "the server is going away; reconnect with since",
    }
}

/// Sends a close frame and waits (briefly) for the client's answer, so the frame is read
/// before the TCP connection goes away: closing with unread input would reset the connection
/// and the client might never see the code.
pub(crate) async fn refuse(mut socket: Box<NativeSocket>, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: Utf8Bytes::from_static(reason),
    };
    let goodbye = async {
        if socket.send(Message::Close(Some(frame))).await.is_err() {
            return;
        }
        while let Some(Ok(message)) = socket.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, goodbye).await;
}
