//! `GET /ws/v1/whiteboards/{whiteboard_id}?ticket=T` (or the session cookie): the glue between
//! a y-websocket connection and its board's document actor (`crate::whiteboard::doc`).
//!
//! The upgrade is always accepted and refusals are close frames in y-websocket's no-retry
//! range: 4401 no usable ticket or session, 4403 no access to the board's project (also when
//! access is lost while connected), 4404 no such whiteboard; 1001 the server is going away.
//! While open: one y-protocols message per binary frame both ways (the join's sync step 1 and
//! awareness go as two frames); a text frame closes with 1003, a malformed message with 1002,
//! an unknown message type with 1003, an update that does not decode with 1007, an update over
//! 1 MiB, a full document or an awareness state over 4 KiB with 1009, too many messages with
//! 1008, a client too slow to take its frames with 1013. While open, the connection is a
//! member of the board's Pusher channel `presence-whiteboard-{id}` (`whiteboard::roster`).
//!
//! Everything the board's actor sends the client (relayed updates, awareness, the answers to
//! the client's own messages) comes through the connection's `whiteboard::outbox`, which the
//! actor writes to the socket itself while this task is idle. The task does not wait for the
//! actor's answer before it reads the next message; at most [`MESSAGES_IN_FLIGHT`] wait at the
//! actor.

use super::protocol::{self, BadInput, READ_LIMIT};
use super::session::{ACCESS_EVERY, CHECK_EVERY, KEEPALIVE, WhiteboardSession};
use crate::auth::Authed;
use crate::auth::extract::request_token;
use crate::dialects::access::role_in;
use crate::dialects::ws::{self, Flow, TicketHolder, TicketRefused};
use crate::live::ConnectionGuard;
use crate::net::direct::DirectSocket;
use crate::net::ws_upgrade::{NativeSocket, NotAnUpgrade, Upgrade};
use crate::whiteboard::doc::Command;
use crate::whiteboard::outbox::{Out, Outbox};
use crate::whiteboard::rechecks::{Holder, Watched};
use crate::whiteboard::{DocHandle, WbState};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use domain::Actor;
use futures::{SinkExt, StreamExt};
use proto::Role;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::UserRow;
use tokio::sync::{Semaphore, oneshot};
use tokio_tungstenite::tungstenite::{self, Message};
use uuid::Uuid;

const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// A client's messages queued at its board's actor at most: the socket reads no more until the
/// actor has taken one (the actor's queue is shared by every client of the board).
const MESSAGES_IN_FLIGHT: usize = 32;

struct Refusal(u16, &'static str);

const NO_TICKET: Refusal = Refusal(
    protocol::CLOSE_NO_TICKET,
    "missing, spent or expired ticket",
);
const NO_ACCESS: Refusal = Refusal(
    protocol::CLOSE_FORBIDDEN,
    "no access to this whiteboard's project",
);
const NO_BOARD: Refusal = Refusal(protocol::CLOSE_NOT_FOUND, "no such whiteboard");
const UNAVAILABLE: Refusal = Refusal(ws::CLOSE_SERVER_ERROR, "the whiteboard is unavailable");

/// The dialects' buffers, with the write-buffer bound lifted: a sync step 2 carries the whole
/// document in one frame (up to 64 MiB), and a frame larger than the bound is refused by the
/// library, which dropped every client joining a board of more than 1 MiB. Every frame is
/// flushed before the next is taken (`Connection::send`), so the buffer holds at most one.
fn config() -> tungstenite::protocol::WebSocketConfig {
    ws::config(READ_LIMIT).max_write_buffer_size(usize::MAX)
}

pub async fn upgrade(
    State(state): State<WbState>,
    Path(board): Path<String>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
    ws: Result<Upgrade, NotAnUpgrade>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(refused) => return refused.into_response(),
    };
    let params = params.map(|q| q.0).unwrap_or_default();
    let guard = state.0.app.live.connection();
    ws.binary().on_upgrade(config(), move |socket, direct| {
        let mut socket = Box::new(socket);
        async move {
            let Some(guard) = guard else {
                ws::close_handshake(
                    &mut socket,
                    ws::CLOSE_GOING_AWAY,
                    "the server is going away",
                )
                .await;
                return;
            };
            match Box::pin(admit(&state, &params, &headers, &board)).await {
                Ok(admitted) => {
                    tokio::spawn(serve(state, socket, direct, admitted, guard));
                }
                Err(Refusal(code, reason)) => {
                    ws::close_handshake(&mut socket, code, reason).await;
                }
            }
        }
    })
}

struct Admitted {
    board: Uuid,
    project: Uuid,
    user: UserRow,
    actor: Actor,
    role: Role,
    session_id: Uuid,
    expires_at: store::Timestamp,
    /// [`Rechecks::epoch`] before the access was read.
    epoch: u64,
}

/// The user of the ticket, or of the session cookie (or Bearer token) of the upgrade.
async fn authenticate(
    state: &WbState,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<TicketHolder, Refusal> {
    let app = &state.0.app;
    if let Some(ticket) = params.get("ticket") {
        return ws::redeem_ticket(&app.domain, ticket)
            .await
            .map_err(|refused| match refused {
                TicketRefused::Unusable => NO_TICKET,
                TicketRefused::Failed(_) => UNAVAILABLE,
            });
    }
    if request_token(headers).is_none() {
        return Err(NO_TICKET);
    }
    let authed = Authed::from_headers(&app.tokens, &app.domain, headers)
        .await
        .map_err(|_| NO_TICKET)?;
    Ok(TicketHolder {
        user: authed.user,
        session_id: authed.session_id,
        expires_at: authed.session_expires_at,
    })
}

/// The board's project and the caller's role in it, read now.
async fn access(state: &WbState, board: Uuid, actor: &Actor) -> Result<(Uuid, Role), Refusal> {
    let record = {
        let mut ops = state
            .0
            .app
            .domain
            .store
            .read()
            .await
            .map_err(|_| UNAVAILABLE)?;
        ops.get_record(board).await.map_err(|_| UNAVAILABLE)?
    };
    let record = record
        .filter(|r| r.collection == "whiteboards")
        .ok_or(NO_BOARD)?;
    match role_in(&state.0.app, record.project_id, actor).await {
        Ok(Some(role)) => Ok((record.project_id, role)),
        Ok(None) => Err(NO_ACCESS),
        Err(_) => Err(UNAVAILABLE),
    }
}

async fn admit(
    state: &WbState,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    board: &str,
) -> Result<Admitted, Refusal> {
    let epoch = state.0.rechecks.epoch();
    let holder = authenticate(state, params, headers).await?;
    let board = Uuid::parse_str(board).map_err(|_| NO_BOARD)?;
    let actor = Actor {
        user_id: holder.user.id,
        is_admin: holder.user.is_admin,
        tab_id: None,
    };
    let (project, role) = access(state, board, &actor).await?;
    Ok(Admitted {
        board,
        project,
        user: holder.user,
        actor,
        role,
        session_id: holder.session_id,
        expires_at: holder.expires_at,
        epoch,
    })
}

struct Connection {
    socket: Box<NativeSocket>,
    session: WhiteboardSession,
    outbox: Arc<Outbox>,
    in_flight: Arc<Semaphore>,
}

impl Connection {
    async fn send(&mut self, frame: Bytes) -> Flow {
        match tokio::time::timeout(SEND_TIMEOUT, self.socket.send(Message::Binary(frame))).await {
            Ok(Ok(())) => {
                self.session.sent();
                Flow::Continue
            }
            _ => Flow::Gone,
        }
    }

    /// Writes out what the actor's direct write left in the socket's backlog.
    async fn flush(&mut self) -> Flow {
        match tokio::time::timeout(SEND_TIMEOUT, self.socket.flush()).await {
            Ok(Ok(())) => Flow::Continue,
            _ => Flow::Gone,
        }
    }
}

async fn serve(
    state: WbState,
    socket: Box<NativeSocket>,
    direct: Option<Arc<DirectSocket>>,
    admitted: Admitted,
    _guard: ConnectionGuard,
) {
    let node = &state.0;
    let conn_id = node.new_conn_id();
    let watched = node.rechecks.watch(
        conn_id,
        Holder {
            user: admitted.actor.user_id,
            session: admitted.session_id,
            project: admitted.project,
        },
        admitted.epoch,
    );
    let outbox = Outbox::new(direct);
    let (reply, joined) = oneshot::channel();
    let doc = node.boards.submit(
        admitted.board,
        Command::Join {
            conn: conn_id,
            out: outbox.clone(),
            reply,
        },
    );
    let mut conn = Connection {
        socket,
        session: WhiteboardSession::new(admitted.role),
        outbox,
        in_flight: Arc::new(Semaphore::new(MESSAGES_IN_FLIGHT)),
    };
    let outcome = match joined.await {
        Ok(()) => {
            node.roster
                .arrived(admitted.board, conn_id, &admitted.user)
                .await;
            let flow = run(&state, &mut conn, &doc, conn_id, &admitted, &watched).await;
            node.roster.left(admitted.board, conn_id).await;
            flow
        }
        Err(_) => Flow::Close(UNAVAILABLE.0, UNAVAILABLE.1),
    };
    conn.outbox.detach();
    doc.send(Command::Leave { conn: conn_id });
    if let Flow::Close(code, reason) = outcome {
        ws::close_handshake(&mut conn.socket, code, reason).await;
    }
}

async fn run(
    state: &WbState,
    conn: &mut Connection,
    doc: &DocHandle,
    conn_id: u64,
    admitted: &Admitted,
    watched: &Watched,
) -> Flow {
    let mut checks = tokio::time::interval(CHECK_EVERY);
    checks.tick().await;
    let mut access_read = Instant::now();
    let outbox = conn.outbox.clone();
    loop {
        let flow = tokio::select! {
            out = outbox.recv() => match out {
                Out::Frame(frame) if frame.is_empty() => conn.flush().await,
                Out::Frame(frame) => conn.send(frame).await,
                Out::Close(code, reason) => Flow::Close(code, reason),
            },
            message = conn.socket.next() => match message {
                None => Flow::Gone,
                Some(Err(tungstenite::Error::Capacity(_))) => {
                    Flow::Close(ws::CLOSE_TOO_BIG, "message too big")
                }
                Some(Err(err)) => ws::close_for_read_error(&err),
                Some(Ok(message)) => on_client(conn, doc, conn_id, message).await,
            },
            () = watched.changed() => {
                access_read = Instant::now();
                check(state, conn, admitted, true).await
            }
            _ = checks.tick() => {
                // The store is read on a slow schedule only, in case a change was missed:
                // every eviction on any node wakes `watched` at once.
                let read_access = access_read.elapsed() >= ACCESS_EVERY;
                if read_access {
                    access_read = Instant::now();
                }
                check(state, conn, admitted, read_access).await
            }
        };
        if flow != Flow::Continue {
            return flow;
        }
    }
}

async fn on_client(conn: &mut Connection, doc: &DocHandle, conn_id: u64, message: Message) -> Flow {
    let frame = match message {
        Message::Binary(frame) => frame,
        Message::Text(_) => {
            return Flow::Close(
                ws::CLOSE_UNSUPPORTED,
                "y-websocket messages are binary frames",
            );
        }
        Message::Ping(_) => {
            // The pong is queued by the library; flushing sends it.
            return conn.flush().await;
        }
        Message::Close(_) => {
            let _ = tokio::time::timeout(ws::CLOSE_GRACE, conn.socket.flush()).await;
            return Flow::Gone;
        }
        Message::Pong(_) | Message::Frame(_) => return Flow::Continue,
    };
    if !conn.session.allows_message() {
        return Flow::Close(ws::CLOSE_POLICY, "too many messages");
    }
    if frame.len() > protocol::MAX_UPDATE + 64 {
        return Flow::Close(ws::CLOSE_TOO_BIG, "message too big");
    }
    let message = match protocol::decode(&frame) {
        Ok(message) => message,
        Err(bad) => {
            let (code, reason) = BadInput::close(&bad);
            return Flow::Close(code, reason);
        }
    };
    // The answer comes through the outbox; the socket reads on meanwhile, up to
    // MESSAGES_IN_FLIGHT messages ahead of the actor.
    let Ok(in_flight) = conn.in_flight.clone().acquire_owned().await else {
        return Flow::Close(UNAVAILABLE.0, UNAVAILABLE.1);
    };
    if !doc.send(Command::Message {
        conn: conn_id,
        can_edit: conn.session.can_edit,
        message,
        in_flight,
    }) {
        return Flow::Close(UNAVAILABLE.0, UNAVAILABLE.1);
    }
    Flow::Continue
}

/// The periodic look: shutdown, the session's end, a keepalive after a silence, and, when
/// `read_access`, the session and the access in the store (lost: 4403; a role change turns
/// editing on or off).
async fn check(
    state: &WbState,
    conn: &mut Connection,
    admitted: &Admitted,
    read_access: bool,
) -> Flow {
    let app = &state.0.app;
    if app.live.is_shutting_down() {
        return Flow::Close(ws::CLOSE_GOING_AWAY, "the server is going away");
    }
    if store::now() >= admitted.expires_at {
        return Flow::Close(protocol::CLOSE_FORBIDDEN, "the session expired");
    }
    if read_access && let Some(flow) = read_access_again(state, conn, admitted).await {
        return flow;
    }
    if conn.outbox.take_wrote() {
        conn.session.sent();
    }
    if conn.session.needs_keepalive() {
        return conn.send(Bytes::from_static(KEEPALIVE)).await;
    }
    Flow::Continue
}

/// The session and the role read again: `Some` closes the connection.
async fn read_access_again(
    state: &WbState,
    conn: &mut Connection,
    admitted: &Admitted,
) -> Option<Flow> {
    let app = &state.0.app;
    // A logout or a deactivation ends the session: the socket goes with it.
    if let Err(TicketRefused::Unusable) =
        ws::session_holder(&app.domain, admitted.session_id, admitted.actor.user_id).await
    {
        return Some(Flow::Close(protocol::CLOSE_FORBIDDEN, "the session ended"));
    }
    match access(state, admitted.board, &admitted.actor).await {
        Ok((project, role)) if project == admitted.project => conn.session.set_role(role),
        Ok(_) | Err(Refusal(protocol::CLOSE_FORBIDDEN | protocol::CLOSE_NOT_FOUND, _)) => {
            return Some(Flow::Close(NO_ACCESS.0, NO_ACCESS.1));
        }
        Err(_) => {}
    }
    None
}
