//! The native WebSocket, `GET /ws/v1/projects/{project_id}/?ticket=T[&since=N]` (CONTRACT §6):
//! the glue between a connection and its [`NativeSession`].
//!
//! The upgrade is always accepted and refusals are close frames, because a browser never shows
//! a script the status of a failed upgrade, only a close code:
//! 4001 no usable ticket, 4003 no access, 4404 unknown path, 1001 server going away.
//! While open: hub deliveries go out as text frames; the server pings every
//! `ws_ping_interval` (cued by the node's sweep through the hub, [`PingSweep`]) and closes
//! (1008 "pong timeout") when two pings in a row went unanswered; the session's expiry closes
//! it with 4003 like a logout; client frames are checked for size (1009), type (1003), rate
//! (1008) and JSON (error frame) by the session.
//!
//! [`PingSweep`]: crate::live::pings::PingSweep

use super::protocol::{self, Params, READ_LIMIT};
use super::session::{ClientFrame, Limits, NativeSession, Step};
use crate::app::AppState;
use crate::dialects::access::role_in;
use crate::dialects::ws::{
    self, CLOSE_FORBIDDEN, CLOSE_GOING_AWAY, CLOSE_NO_TICKET, CLOSE_NOT_FOUND, CLOSE_SERVER_ERROR,
    Flow, TicketHolder, TicketRefused,
};
use crate::http::error;
use crate::live::ConnectionGuard;
use crate::net::direct::DirectSocket;
use crate::net::read_gate::ReadGate;
use crate::net::ws_upgrade::{NativeSocket, NotAnUpgrade, Upgrade};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use domain::Actor;
use domain::access::LIVE_ROLE;
use futures::SinkExt;
use hub::{Delivery, SubscribeRequest};
use proto::{ErrorCode, StreamKey};
use std::sync::Arc;
use std::time::Duration;
use store::UserRow;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use uuid::Uuid;

/// Frames written per flush when the subscription has several ready.
const MAX_BATCH: usize = 64;

fn config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    ws::config(READ_LIMIT)
}

/// Unknown `/ws/…` paths: accepted, then closed with 4404.
pub async fn unknown(ws: Result<Upgrade, NotAnUpgrade>) -> Response {
    match ws {
        Ok(ws) => ws.on_upgrade(config(), |socket, _| async move {
            refuse(Box::new(socket), CLOSE_NOT_FOUND, protocol::UNKNOWN_PATH).await;
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
    let guard = state
        .live
        .connection_as(crate::metrics::ConnDialect::NativeWs);
    ws.on_upgrade(config(), move |socket, direct| {
        // The task lives as long as the socket, and every future it awaits is laid out inside
        // it: a socket moved by value through those futures would take its few hundred bytes
        // in each of them, for the connection's whole life. Boxed once, each holds a pointer.
        let socket = Box::new(socket);
        async move {
            let Some(guard) = guard else {
                Box::pin(refuse(socket, CLOSE_GOING_AWAY, protocol::SHUTTING_DOWN)).await;
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

/// The user, their session and when it expires: from a single-use ticket or, when the node
/// allows it (`--ws-legacy-token-auth`), an access token.
async fn authenticate(state: &AppState, params: &Params) -> Result<TicketHolder, Refusal> {
    const NO_TICKET: Refusal = Refusal(CLOSE_NO_TICKET, protocol::NO_TICKET);
    let found = if let Some(ticket) = params.get("ticket") {
        ws::redeem_ticket(&state.domain, ticket).await
    } else if let (true, Some(token)) =
        (state.config.live.ws_legacy_token_auth, params.get("token"))
    {
        let claims = state.tokens.verify(token).ok_or(NO_TICKET)?;
        ws::session_holder(&state.domain, claims.sid, claims.sub).await
    } else {
        return Err(NO_TICKET);
    };
    found.map_err(|refused| match refused {
        TicketRefused::Unusable => NO_TICKET,
        TicketRefused::Failed(_) => Refusal(CLOSE_SERVER_ERROR, protocol::SERVER_ERROR),
    })
}

async fn may_connect(state: &AppState, project: Uuid, user: &UserRow) -> Result<(), Refusal> {
    let actor = Actor {
        user_id: user.id,
        is_admin: user.is_admin,
        tab_id: None,
    };
    match role_in(state, project, &actor).await {
        Ok(Some(role)) if role >= LIVE_ROLE => Ok(()),
        Ok(_) => Err(Refusal(CLOSE_FORBIDDEN, protocol::NOT_A_MEMBER)),
        Err(_) => Err(Refusal(CLOSE_SERVER_ERROR, protocol::SERVER_ERROR)),
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
    let TicketHolder {
        user,
        session_id,
        expires_at,
    } = match authenticate(state, &params).await {
        Ok(found) => found,
        Err(Refusal(code, reason)) => {
            refuse(socket, code, reason).await;
            return None;
        }
    };
    let Ok(project) = Uuid::parse_str(&project) else {
        refuse(socket, CLOSE_FORBIDDEN, protocol::NO_SUCH_PROJECT).await;
        return None;
    };
    if let Err(Refusal(code, reason)) = may_connect(state, project, &user).await {
        refuse(socket, code, reason).await;
        return None;
    }
    let live = &state.live;
    let mut request = SubscribeRequest::new(StreamKey::Project(project), live.ws, user.id);
    request.since = protocol::since(&params);
    request.session_id = Some(session_id);
    request.expires_at = Some(expires_at);
    // Pinged by the node's sweep: a timer per connection would cost every idle socket memory.
    request.heartbeat_slot = Some(live.pings.slot_for_new_socket());
    request.presence = Some(user.display_name.clone());
    // While the connection idles, the fan-out writes its frames itself (`net::direct`).
    request.direct = direct.map(|direct| direct as Arc<dyn hub::DirectWrite>);
    let sub = match live.hub().subscribe(request).await {
        Ok(sub) => sub,
        Err(err) => {
            tracing::warn!(error = %err, "native WS subscribe failed");
            refuse(socket, CLOSE_SERVER_ERROR, protocol::LIVE_UNAVAILABLE).await;
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
        refuse(socket, CLOSE_GOING_AWAY, protocol::SHUTTING_DOWN).await;
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

    /// Writes the frame of `first` and whatever else is ready (up to [`MAX_BATCH`] frames)
    /// with one flush, so a burst costs one syscall instead of one per frame.
    async fn deliver(
        &mut self,
        session: &mut NativeSession,
        sub: &mut hub::Subscription,
        first: Step,
    ) -> Flow {
        let limit = self.send_timeout();
        let write = async {
            let mut next = first;
            let mut fed = 0;
            let mut closing = None;
            loop {
                let frame = match next {
                    Step::Deliver(frame) => frame,
                    Step::Resync { latest_seq } => sub.resync_frame(latest_seq),
                    Step::Close(code, text) => {
                        closing = Some((code, text));
                        break;
                    }
                    // `try_recv` yields no heartbeat, and `first` comes from `serve`, which
                    // handles the others itself: nothing to write.
                    _ => Bytes::new(),
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
                    Some(delivery) => next = session.on_delivery(delivery),
                    None => break,
                }
            }
            self.socket.flush().await?;
            Ok::<_, tokio_tungstenite::tungstenite::Error>(closing)
        };
        match tokio::time::timeout(limit, write).await {
            Ok(Ok(None)) => Flow::Continue,
            Ok(Ok(Some((code, text)))) => Flow::Close(code, text),
            Ok(Err(_)) | Err(_) => Flow::Gone,
        }
    }

    /// An `async move` block rather than an `async fn`: an async fn keeps its arguments twice
    /// in its future (as captured and as moved into the body), and the task holds that
    /// future for the connection's whole life.
    #[allow(clippy::manual_async_fn)] // on purpose: see above
    fn serve(mut self, mut sub: hub::Subscription) -> impl Future<Output = ()> + Send {
        async move {
            let config = &self.guard.feed().config;
            let mut session = NativeSession::new(Limits {
                frames_per_second: config.ws_frames_per_second,
                frame_burst: config.ws_frame_burst,
                max_frame: config.ws_max_client_frame,
            });
            // Fragments count too: the library joins them before the session sees a message.
            self.socket
                .get_mut()
                .limit_fragments(config.ws_frames_per_second, config.ws_frame_burst);
            let outcome = loop {
                let flow = tokio::select! {
                    // Boxed: the write's state (frames in flight, its timeout's timer) exists only
                    // while writing; inline it would be part of every idle connection's task. One
                    // allocation per wake-up is noise beside the send it makes.
                    delivery = sub.recv() => match delivery {
                        // The node's sweep: once per `ws_ping_interval`. Boxed like the writes.
                        Delivery::Heartbeat => Box::pin(self.act(session.on_ping_tick())).await,
                        delivery => {
                            let step = session.on_delivery(delivery);
                            Box::pin(self.deliver(&mut session, &mut sub, step)).await
                        }
                    },
                    message = self.gate.next(&mut self.socket) => match message {
                        None => Flow::Gone,
                        Some(Err(err)) => ws::close_for_read_error(&err),
                        // Boxed: client frames are rare, and inline their handling's state would
                        // be part of every idle connection's task.
                        Some(Ok(message)) => {
                            let step = session.on_client(client_frame(&message));
                            Box::pin(self.act(step)).await
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
    }

    /// Carries out a step that is not a hub frame.
    async fn act(&mut self, step: Step) -> Flow {
        match step {
            Step::Continue | Step::Deliver(_) | Step::Resync { .. } => Flow::Continue,
            Step::Reply(text) => {
                if self.send(Message::Text(text.into())).await {
                    Flow::Continue
                } else {
                    Flow::Gone
                }
            }
            Step::Ping => {
                if self
                    .send(Message::Ping(Bytes::from_static(protocol::PING_PAYLOAD)))
                    .await
                {
                    Flow::Continue
                } else {
                    Flow::Gone
                }
            }
            Step::FlushPong => {
                match tokio::time::timeout(self.send_timeout(), self.socket.flush()).await {
                    Ok(Ok(())) => Flow::Continue,
                    _ => Flow::Gone,
                }
            }
            Step::AnswerClose => {
                let _ = tokio::time::timeout(ws::CLOSE_GRACE, self.socket.flush()).await;
                Flow::Gone
            }
            Step::Close(code, text) => Flow::Close(code, text),
        }
    }
}

fn client_frame(message: &Message) -> ClientFrame<'_> {
    match message {
        Message::Text(text) => ClientFrame::Text(text.as_str()),
        Message::Binary(_) => ClientFrame::Binary,
        Message::Ping(_) => ClientFrame::Ping,
        Message::Pong(_) => ClientFrame::Pong,
        Message::Close(_) => ClientFrame::Close,
        Message::Frame(_) => ClientFrame::Other,
    }
}

/// The close handshake on a socket that is done with.
async fn refuse(mut socket: Box<NativeSocket>, code: u16, reason: &'static str) {
    ws::close_handshake(&mut socket, code, reason).await;
}
