//! One Bryntum connection: the upgrade (the native socket's, `net::ws_upgrade`), then a
//! loop over the client's frames, the socket's hub subscription and its mailbox.
//!
//! Like the native socket, an idle Bryntum socket is a parked task holding its WebSocket, its
//! subscription and its mailbox: no timer (the node's sweep cues pings through the
//! subscription) and no per-socket copy of what the project's other sockets receive (the hub's
//! shared frames are written behind the socket's own head, by the fan-out itself while the
//! task is parked).

use super::changes::{Control, is_control};
use super::commands::{Client, Frame, Replies, reply, watch};
use super::protocol;
use super::{BryntumNode, Mailbox, Note};
use crate::dialects::ws::{
    self, CLOSE_FORBIDDEN, CLOSE_GOING_AWAY, CLOSE_POLICY, CLOSE_SERVER_ERROR, CLOSE_TOO_BIG,
    CLOSE_UNSUPPORTED, Flow, MessageLimiter, close_handshake,
};
use crate::live::ConnectionGuard;
use crate::net::Peer;
use crate::net::read_gate::ReadGate;
use crate::net::ws_upgrade::{NativeSocket, NotAnUpgrade, Upgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::SinkExt;
use hub::{CloseReason, Delivery};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

/// The largest client frame; a larger one closes the socket with 1009. Bryntum sends whole
/// version contents in one message, so this is larger than the native socket's 64 KiB.
pub const MAX_FRAME: usize = 1024 * 1024;
/// Frames up to this size are read whole so they can be refused with 1009, not dropped.
const READ_LIMIT: usize = 2 * MAX_FRAME;
/// Messages a socket may send per second on average, and the burst above it.
const MESSAGES_PER_SECOND: u32 = 50;
const MESSAGE_BURST: u32 = 500;
/// Frames written per flush when the subscription has several ready.
const MAX_BATCH: usize = 64;

/// The WebSocket dialects' buffers (many idle sockets must not each hold the library's default
/// 128 KiB). A dataset may be larger than their write-buffer bound: text frames go through the
/// direct writer, and through the library only without one, so the bound is lifted for them.
fn config() -> WebSocketConfig {
    ws::config(READ_LIMIT).max_write_buffer_size(usize::MAX)
}

/// `GET /ws/v1/bryntum`.
pub async fn upgrade(
    State(state): State<Arc<BryntumNode>>,
    ConnectInfo(Peer { address, .. }): ConnectInfo<Peer>,
    ws: Result<Upgrade, NotAnUpgrade>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(refused) => return refused.into_response(),
    };
    let guard = state
        .live
        .connection_as(crate::metrics::ConnDialect::Bryntum);
    ws.on_upgrade(config(), move |socket, direct| {
        // Boxed once so the futures below each hold a pointer, not the socket (see the native
        // socket's `project`).
        let socket = Box::new(socket);
        async move {
            let Some(guard) = guard else {
                let mut socket = socket;
                Box::pin(close_handshake(
                    &mut socket,
                    CLOSE_GOING_AWAY,
                    "the server is going away",
                ))
                .await;
                return;
            };
            let Ok(sub) = Box::pin(watch(&state, None)).await else {
                let mut socket = socket;
                Box::pin(close_handshake(
                    &mut socket,
                    CLOSE_SERVER_ERROR,
                    "live delivery unavailable",
                ))
                .await;
                return;
            };
            let id = state.next_client.fetch_add(1, Ordering::Relaxed) + 1;
            let client = Client {
                state,
                address: address.ip(),
                id,
                user: None,
                loaded: None,
                mailbox: Arc::new(Mailbox::default()),
                sub,
                direct,
            };
            // Served on a task of its own, so the upgrade task's captures are freed (see the
            // native socket's `project`).
            tokio::spawn(
                Connection {
                    socket,
                    gate: ReadGate::default(),
                    client: Box::new(client),
                    guard,
                }
                .serve(),
            );
        }
    })
}

struct Connection {
    socket: Box<NativeSocket>,
    gate: ReadGate,
    client: Box<Client>,
    /// Counts the connection for shutdown, and reaches the live settings.
    guard: ConnectionGuard,
}

impl Connection {
    fn send_timeout(&self) -> Duration {
        self.guard.feed().config.send_timeout
    }

    async fn serve(mut self) {
        let limiter = MessageLimiter::new(MESSAGES_PER_SECOND, MESSAGE_BURST);
        // Fragments count too: the library joins them before a message is seen here.
        self.socket
            .get_mut()
            .limit_fragments(MESSAGES_PER_SECOND, MESSAGE_BURST);
        // Pings the client left unanswered (with no frame at all since): two close it, so a
        // half-open TCP connection does not hold its roster entry forever.
        let mut unanswered = 0u8;
        let outcome = loop {
            let flow = tokio::select! {
                delivery = self.client.sub.recv() => match delivery {
                    Delivery::Heartbeat if unanswered >= 2 => {
                        Flow::Close(CLOSE_POLICY, "no answer to pings")
                    }
                    Delivery::Heartbeat => {
                        unanswered += 1;
                        Box::pin(self.send_all(vec![Message::Ping(Bytes::new())])).await
                    }
                    // Boxed: a write's state exists only while writing; inline it would be
                    // part of every idle connection's task.
                    delivery => Box::pin(self.deliver(delivery)).await,
                },
                message = self.gate.next(&mut self.socket) => {
                    unanswered = 0;
                    match message {
                        None => Flow::Gone,
                        Some(Err(WsError::Capacity(_))) => {
                            Flow::Close(CLOSE_TOO_BIG, "messages are at most 1 MiB")
                        }
                        Some(Err(err)) => ws::close_for_read_error(&err),
                        Some(Ok(Message::Text(_))) if !limiter.allows() => {
                            Flow::Close(CLOSE_POLICY, "too many messages")
                        }
                        Some(Ok(message)) => Box::pin(self.on_client_message(message)).await,
                    }
                },
                () = self.client.mailbox.ready.notified() => Box::pin(self.on_notes()).await,
            };
            match flow {
                Flow::Continue => {}
                other => break other,
            }
        };
        self.client.leave_roster();
        let Connection {
            mut socket, client, ..
        } = self;
        // Unsubscribed before the goodbye, like the native socket.
        drop(client);
        if let Flow::Close(code, reason) = outcome {
            Box::pin(close_handshake(&mut socket, code, reason)).await;
        }
    }

    async fn on_client_message(&mut self, message: Message) -> Flow {
        match message {
            Message::Text(text) if text.len() > MAX_FRAME => {
                Flow::Close(CLOSE_TOO_BIG, "messages are at most 1 MiB")
            }
            Message::Text(text) => {
                let replies = self.client.handle(text.as_str()).await;
                self.send_replies(replies).await
            }
            Message::Binary(_) => Flow::Close(CLOSE_UNSUPPORTED, "binary frames are not accepted"),
            Message::Close(_) => {
                let _ = tokio::time::timeout(ws::CLOSE_GRACE, self.socket.flush()).await;
                Flow::Gone
            }
            // The library queues the pong itself; flush it now rather than with the next write.
            Message::Ping(_) => self.send_all(Vec::new()).await,
            Message::Pong(_) | Message::Frame(_) => Flow::Continue,
        }
    }

    /// Writes `messages` with one flush.
    async fn send_all(&mut self, messages: Vec<Message>) -> Flow {
        let limit = self.send_timeout();
        let socket = &mut self.socket;
        let write = async {
            for message in messages {
                socket.feed(message).await?;
            }
            socket.flush().await
        };
        match tokio::time::timeout(limit, write).await {
            Ok(Ok(())) => Flow::Continue,
            _ => Flow::Gone,
        }
    }

    /// Writes text frames with one flush. With the connection's direct writer they go
    /// straight to the socket (after what the WebSocket library holds, a pong), head and body
    /// in one `writev`, and what the kernel does not take waits as slices of the same bytes: the
    /// library's write buffer would otherwise grow to the largest frame ever sent (a dataset)
    /// and keep that size for the connection's life.
    async fn send_texts(&mut self, texts: Vec<Frame>) -> Flow {
        let limit = self.send_timeout();
        let socket = &mut self.socket;
        let direct = self.client.direct.clone();
        let write = async {
            match direct {
                Some(direct) => {
                    socket.flush().await.map_err(drop)?;
                    for [head, body] in &texts {
                        std::future::poll_fn(|cx| direct.poll_send_parts(cx, &[head, body]))
                            .await
                            .map_err(drop)?;
                    }
                    std::future::poll_fn(|cx| direct.poll_flush(cx))
                        .await
                        .map_err(drop)
                }
                None => {
                    for [head, body] in texts {
                        let text = if head.is_empty() {
                            body
                        } else {
                            let mut joined = Vec::with_capacity(head.len() + body.len());
                            joined.extend_from_slice(&head);
                            joined.extend_from_slice(&body);
                            Bytes::from(joined)
                        };
                        // Our frames are JSON; one that is not UTF-8 would be an encoder bug.
                        if let Ok(text) = Utf8Bytes::try_from(text) {
                            socket.feed(Message::Text(text)).await.map_err(drop)?;
                        }
                    }
                    socket.flush().await.map_err(drop)
                }
            }
        };
        match tokio::time::timeout(limit, write).await {
            Ok(Ok(())) => Flow::Continue,
            _ => Flow::Gone,
        }
    }

    async fn send_replies(&mut self, replies: Replies) -> Flow {
        self.send_texts(replies).await
    }

    /// A `project_change` of the loaded project: this socket's head, then the shared body.
    fn change_frame(&self, body: Bytes) -> Option<Frame> {
        let loaded = self.client.loaded.as_ref()?;
        Some([loaded.label.change_head.clone(), body])
    }

    /// Writes `first` and the shared frames ready behind it (up to [`MAX_BATCH`]) with one
    /// flush; anything else the subscription brings is handled on its own.
    async fn deliver(&mut self, first: Delivery) -> Flow {
        let mut batch = Vec::new();
        let mut next = Some(first);
        let mut special = None;
        while let Some(delivery) = next.take() {
            match delivery {
                // The rest of a direct write: only a flush.
                Delivery::Frame(frame) if frame.is_empty() => {}
                Delivery::Frame(frame) if !is_control(&frame) => {
                    batch.extend(self.change_frame(frame));
                }
                other => {
                    special = Some(other);
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = self.client.sub.try_recv();
            }
        }
        if let Flow::Gone = self.send_texts(batch).await {
            return Flow::Gone;
        }
        match special {
            Some(delivery) => self.on_feed_event(delivery).await,
            None => Flow::Continue,
        }
    }

    /// What the subscription asks of the socket beside frames for the client.
    async fn on_feed_event(&mut self, delivery: Delivery) -> Flow {
        match delivery {
            Delivery::Frame(frame) => match Control::parse(&frame) {
                Some(Control::Reset { user_name }) => {
                    let label = self.client.loaded.as_ref().map(|l| l.label.value.clone());
                    let mut replies = self.client.resync().await;
                    replies.push(reply(protocol::message(
                        "reset",
                        json!({ "userName": user_name, "project": label }),
                    )));
                    self.send_replies(replies).await
                }
                Some(Control::Gone) => {
                    self.client.unload().await;
                    let replies = vec![reply(protocol::error(
                        "dataset",
                        "the project is no longer available",
                    ))];
                    self.send_replies(replies).await
                }
                Some(Control::Resync) => {
                    let replies = self.client.resync().await;
                    self.send_replies(replies).await
                }
                None => Flow::Continue,
            },
            Delivery::ResyncRequired { .. } => {
                let replies = self.client.resync().await;
                self.send_replies(replies).await
            }
            Delivery::Closed(reason) => self.closed(reason).await,
            Delivery::Heartbeat => Flow::Continue,
        }
    }

    /// The hub ended the socket's subscription.
    async fn closed(&mut self, reason: CloseReason) -> Flow {
        match reason {
            CloseReason::Shutdown => Flow::Close(CLOSE_GOING_AWAY, "the server is going away"),
            CloseReason::LoggedOut => Flow::Close(CLOSE_FORBIDDEN, "the session ended"),
            CloseReason::SessionExpired => Flow::Close(CLOSE_FORBIDDEN, "the session expired"),
            CloseReason::AccessRevoked => {
                // Removal, deactivation, deletion or a wipe: the socket stays while the user
                // is active; the project stays while the user may still read it.
                let Some(user_id) = self.client.user.as_ref().map(|u| u.user_id) else {
                    return Flow::Close(CLOSE_FORBIDDEN, "access was revoked");
                };
                let active = self
                    .client
                    .state
                    .domain
                    .get_user(user_id)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|u| u.is_active);
                if !active {
                    return Flow::Close(CLOSE_FORBIDDEN, "access was revoked");
                }
                if self.client.loaded.is_none() {
                    return match watch(&self.client.state, self.client.user.as_ref()).await {
                        Ok(sub) => {
                            self.client.sub = sub;
                            Flow::Continue
                        }
                        Err(_) => Flow::Close(CLOSE_SERVER_ERROR, "live delivery unavailable"),
                    };
                }
                if self.client.still_readable().await {
                    let replies = self.client.resync().await;
                    return self.send_replies(replies).await;
                }
                self.client.unload().await;
                let replies = vec![reply(protocol::error(
                    "dataset",
                    "access to this project was revoked",
                ))];
                self.send_replies(replies).await
            }
        }
    }

    async fn on_notes(&mut self) -> Flow {
        let mut batch = Vec::new();
        while let Some(note) = self.client.mailbox.take() {
            match note {
                Note::Text(text) => batch.push([Bytes::new(), text]),
                Note::Change { project, body } => {
                    if self
                        .client
                        .loaded
                        .as_ref()
                        .is_some_and(|l| l.project_id == project)
                    {
                        batch.extend(self.change_frame(body));
                    }
                }
            }
        }
        self.send_texts(batch).await
    }
}
