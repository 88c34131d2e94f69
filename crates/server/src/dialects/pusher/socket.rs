//! One Pusher connection, `GET /app/{key}?protocol=7`: the upgrade (the native socket's,
//! `net::ws_upgrade`), then a loop over the client's frames, the socket's anchor hub
//! subscription (the node's ping sweep and shutdown reach it there, so no socket holds a
//! timer) and its [`Mailbox`] (frames of its channels, from this node's other sockets, the
//! HTTP API and the feeds of liveplan's channels).
//!
//! Refusals are close frames after a `pusher:error` naming the same code, because a browser
//! never shows a script the status of a failed upgrade: 4001 unknown app key, 4007 protocol
//! other than 7.

use super::PusherNode;
use super::node::{Mailbox, Note};
use super::protocol::{self, ClientMessage, READ_LIMIT};
use super::session::{Admission, PingStep, PusherSession, Refusal};
use crate::auth::extract::{Authed, request_token};
use crate::dialects::ws::{self, Flow, MessageLimiter, close_handshake};
use crate::live::ConnectionGuard;
use crate::net::read_gate::ReadGate;
use crate::net::ws_upgrade::{NativeSocket, NotAnUpgrade, Upgrade};
use crate::pusher::activity::ChannelActivity;
use crate::pusher::app_log::KEEP_EVENTS;
use crate::pusher::channel::OwnedChannel;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use domain::Actor;
use futures::SinkExt;
use hub::{CloseReason, Delivery, SubscribeRequest};
use proto::{ErrorCode, StreamKey};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use uuid::Uuid;

fn config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    ws::config(READ_LIMIT)
}

pub async fn upgrade(
    State(node): State<Arc<PusherNode>>,
    Path(key): Path<String>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
    ws: Result<Upgrade, NotAnUpgrade>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(refused) => return refused.into_response(),
    };
    // An unparseable query is an empty one: it then names no protocol (4007).
    let params = params.map(|q| q.0).unwrap_or_default();
    let protocol_ok = protocol::protocol_supported(params.get("protocol").map(String::as_str));
    let guard = node.live.connection_as(crate::metrics::ConnDialect::Pusher);
    ws.on_upgrade(config(), move |socket, direct| {
        let socket = Box::new(socket);
        async move {
            if key != node.credentials.key {
                Box::pin(refuse(
                    socket,
                    protocol::CLOSE_UNKNOWN_APP,
                    "unknown app key",
                ))
                .await;
                return;
            }
            if !protocol_ok {
                Box::pin(refuse(
                    socket,
                    protocol::CLOSE_UNSUPPORTED_PROTOCOL,
                    "unsupported protocol version; use 7",
                ))
                .await;
                return;
            }
            let Some(guard) = guard else {
                Box::pin(refuse(
                    socket,
                    protocol::CLOSE_RECONNECT,
                    "the server is going away",
                ))
                .await;
                return;
            };
            // A session (cookie or Bearer) on the upgrade makes the socket that user's: it
            // ends with the session (4009), and needs no sign-in for liveplan's channels.
            let session = if request_token(&headers).is_some() {
                match Box::pin(Authed::from_headers(&node.tokens, &node.domain, &headers)).await {
                    Ok(authed) => Some(authed),
                    Err(_) => {
                        Box::pin(refuse(
                            socket,
                            protocol::CLOSE_UNAUTHORIZED,
                            "the session is not valid",
                        ))
                        .await;
                        return;
                    }
                }
            } else {
                None
            };
            let Ok(anchor) = Box::pin(anchor(&node, session.as_ref())).await else {
                Box::pin(refuse(
                    socket,
                    protocol::CLOSE_RECONNECT,
                    "live delivery unavailable",
                ))
                .await;
                return;
            };
            let socket_id: Arc<str> = node.new_socket_id().into();
            let mut pusher_session = PusherSession::new(socket_id);
            pusher_session.session_user = session.map(|authed| authed.user.id);
            let connection = Connection {
                socket,
                gate: ReadGate::default(),
                session: pusher_session,
                mailbox: Arc::new(Mailbox::with_direct(
                    direct.map(|direct| direct as Arc<dyn hub::DirectWrite>),
                )),
                feeds: Vec::new(),
                anchor,
                node,
                guard,
            };
            tokio::spawn(connection.serve());
        }
    })
}

/// The subscription that carries the node's pings and its shutdown to the socket, and the end
/// of its session (logout, expiry, deactivation) when the upgrade carried one; it takes no
/// events.
async fn anchor(
    node: &PusherNode,
    session: Option<&Authed>,
) -> Result<hub::Subscription, hub::HubError> {
    let live = &node.live;
    let user_id = session.map_or(Uuid::nil(), |authed| authed.user.id);
    let mut request = SubscribeRequest::new(StreamKey::User(user_id), live.pusher, user_id);
    request.session_id = session.map(|authed| authed.session_id);
    request.expires_at = session.map(|authed| authed.session_expires_at);
    request.filter = Some(Arc::new(|_| false));
    request.heartbeat_slot = Some(live.pings.slot_for_new_socket());
    live.hub().subscribe(request).await
}

async fn refuse(mut socket: Box<NativeSocket>, code: u16, reason: &'static str) {
    let _ = tokio::time::timeout(
        ws::CLOSE_GRACE,
        socket.send(Message::Text(protocol::error(code, reason).into())),
    )
    .await;
    close_handshake(&mut socket, code, reason).await;
}

/// A liveplan channel's hub feed, and where it started: `pusher:resume` replays the log
/// from the client's serial up to `start` (the feed carries everything after).
struct Feed {
    task: JoinHandle<()>,
    stream: StreamKey,
    start: i64,
    carries: Carries,
}

/// Which of its stream's events a liveplan channel carries.
#[derive(Debug, Clone, Copy)]
enum Carries {
    /// `private-project-`, `private-user-`: every one.
    All,
    /// `presence-project-`: none (it is there for its members).
    Nothing,
    /// `presence-whiteboard-{id}`: the board's `whiteboard_updated`.
    Whiteboard(Uuid),
}

impl Carries {
    /// A frame of the hub's encoding as this channel sends it: the hub names the project's
    /// channel in it, and a board's channel renames it (one event a second at most, so the
    /// copy costs nothing that matters).
    fn named(self, frame: &Bytes, channel: &str) -> Bytes {
        if let Carries::Whiteboard(_) = self
            && let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(frame)
        {
            value["channel"] = serde_json::Value::from(channel);
            return Bytes::from(value.to_string());
        }
        frame.clone()
    }

    fn carries(self, event: &proto::Event) -> bool {
        match self {
            Carries::All => true,
            Carries::Nothing => false,
            Carries::Whiteboard(board) => {
                event.event_type == proto::EventType::WhiteboardUpdated
                    && event.payload["id"]
                        .as_str()
                        .and_then(|id| Uuid::parse_str(id).ok())
                        == Some(board)
            }
        }
    }
}

/// What woke a socket's task.
enum Woke {
    Anchor(Delivery),
    Client(Option<Result<Message, WsError>>),
    Notes,
}

struct Connection {
    socket: Box<NativeSocket>,
    gate: ReadGate,
    session: PusherSession,
    mailbox: Arc<Mailbox>,
    /// The hub feeds of the socket's liveplan channels, by channel (a socket holds at most
    /// `MAX_CHANNELS_PER_SOCKET`; a list is half a map's size while empty).
    feeds: Vec<(String, Feed)>,
    anchor: hub::Subscription,
    node: Arc<PusherNode>,
    guard: ConnectionGuard,
}

impl Connection {
    fn send_timeout(&self) -> Duration {
        self.guard.feed().config.send_timeout
    }

    async fn send_all(&mut self, frames: Vec<String>) -> Flow {
        self.send_texts(frames.into_iter().map(Utf8Bytes::from).collect())
            .await
    }

    async fn send_texts(&mut self, frames: Vec<Utf8Bytes>) -> Flow {
        let limit = self.send_timeout();
        let write = async {
            for frame in frames {
                self.socket.feed(Message::Text(frame)).await?;
            }
            self.socket.flush().await
        };
        match tokio::time::timeout(limit, write).await {
            Ok(Ok(())) => Flow::Continue,
            _ => Flow::Gone,
        }
    }

    /// An `async move` block rather than an `async fn`: an async fn keeps its arguments twice
    /// in its future (as captured and as moved into the body), and the task holds that
    /// future for the connection's whole life.
    #[allow(clippy::manual_async_fn)] // on purpose: see above
    fn serve(mut self) -> impl Future<Output = ()> + Send {
        async move {
            let frames = MessageLimiter::new(protocol::FRAMES_PER_SECOND, protocol::FRAME_BURST);
            let established = protocol::connection_established(&self.session.socket_id);
            // Every future awaited here is boxed: the task keeps room for the largest of them, for
            // the socket's whole life (a node's leave may wait on the cluster).
            let mut outcome = Box::pin(self.send_all(vec![established])).await;
            while outcome == Flow::Continue {
                // While the task waits, the mailbox may write frames to the socket itself; every
                // wake-up ends that before anything else is done.
                self.mailbox.park();
                let woke = tokio::select! {
                    delivery = self.anchor.recv() => Woke::Anchor(delivery),
                    message = self.gate.next(&mut self.socket) => Woke::Client(message),
                    () = self.mailbox.ready.notified() => Woke::Notes,
                };
                self.mailbox.unpark();
                outcome = match woke {
                    Woke::Anchor(delivery) => match delivery {
                        Delivery::Heartbeat => match self.session.on_ping_tick() {
                            PingStep::SendPing => {
                                Box::pin(self.send_all(vec![protocol::ping()])).await
                            }
                            PingStep::Close => {
                                Flow::Close(protocol::CLOSE_PONG_TIMEOUT, "pong not received")
                            }
                        },
                        Delivery::Closed(reason) => {
                            Flow::Close(close_for(reason).0, close_for(reason).1)
                        }
                        _ => Flow::Continue,
                    },
                    Woke::Client(message) => match message {
                        None => Flow::Gone,
                        Some(Err(WsError::Capacity(_))) => {
                            Flow::Close(ws::CLOSE_TOO_BIG, "frames are at most 64 KiB")
                        }
                        Some(Err(_)) => Flow::Gone,
                        Some(Ok(Message::Text(text))) => {
                            self.session.heard_from_client();
                            if frames.allows() {
                                Box::pin(self.on_text(text.as_str())).await
                            } else {
                                let error = protocol::error(
                                    protocol::ERROR_RATE_LIMIT,
                                    "too many frames; the frame was dropped",
                                );
                                Box::pin(self.send_all(vec![error])).await
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            let error = protocol::error(
                                protocol::ERROR_BAD_REQUEST,
                                "binary frames are not accepted",
                            );
                            Box::pin(self.send_all(vec![error])).await
                        }
                        Some(Ok(Message::Close(_))) => {
                            let _ =
                                tokio::time::timeout(ws::CLOSE_GRACE, self.socket.flush()).await;
                            Flow::Gone
                        }
                        Some(Ok(Message::Ping(_))) => {
                            self.session.heard_from_client();
                            Box::pin(self.send_all(Vec::new())).await
                        }
                        Some(Ok(_)) => {
                            self.session.heard_from_client();
                            Flow::Continue
                        }
                    },
                    Woke::Notes => Box::pin(self.on_notes()).await,
                };
            }
            Box::pin(self.leave_everything()).await;
            let Connection { mut socket, .. } = self;
            if let Flow::Close(code, reason) = outcome {
                if code == protocol::CLOSE_UNAUTHORIZED {
                    let _ = tokio::time::timeout(
                        ws::CLOSE_GRACE,
                        socket.send(Message::Text(protocol::error(code, reason).into())),
                    )
                    .await;
                }
                Box::pin(close_handshake(&mut socket, code, reason)).await;
            }
        }
    }

    fn stop_feed(&mut self, channel: &str) {
        if let Some(at) = self.feeds.iter().position(|(name, _)| name == channel) {
            self.feeds.swap_remove(at).1.task.abort();
        }
    }

    async fn leave_everything(&mut self) {
        for (_, feed) in self.feeds.drain(..) {
            feed.task.abort();
        }
        for channel in self.session.subscriptions.keys() {
            self.node.leave(channel, &self.session.socket_id).await;
        }
        if let Some(user) = &self.session.user {
            self.node
                .channels
                .sign_out(&user.id, &self.session.socket_id);
        }
    }

    async fn on_notes(&mut self) -> Flow {
        let mut frames = Vec::new();
        let mut closing = None;
        for note in self.mailbox.take_all() {
            match note {
                Note::Frame(frame) => {
                    // The node's frames are JSON text; anything else is dropped, not sent.
                    if let Ok(text) = Utf8Bytes::try_from(frame) {
                        frames.push(text);
                    }
                }
                Note::Flush => {}
                Note::AccessLost(channel) => {
                    if self.session.unsubscribed(&channel).is_some() {
                        self.node.leave(&channel, &self.session.socket_id).await;
                        self.stop_feed(&channel);
                        frames.push(Utf8Bytes::from(protocol::subscription_error(
                            &channel,
                            "AuthError",
                            "access to this channel was revoked",
                            403,
                        )));
                    }
                }
                Note::Close(code, reason) => {
                    closing = Some((code, reason));
                    break;
                }
            }
        }
        match (self.send_texts(frames).await, closing) {
            (Flow::Continue, Some((code, reason))) => Flow::Close(code, reason),
            (flow, _) => flow,
        }
    }

    async fn on_text(&mut self, text: &str) -> Flow {
        let message = match protocol::parse(text) {
            Ok(message) => message,
            Err(bad) => {
                let error = protocol::error(protocol::ERROR_BAD_REQUEST, &bad.to_string());
                return self.send_all(vec![error]).await;
            }
        };
        let frames = match message {
            ClientMessage::Ping => vec![protocol::pong()],
            ClientMessage::Pong => Vec::new(),
            ClientMessage::Subscribe {
                channel,
                auth,
                channel_data,
            } => {
                self.subscribe(&channel, auth.as_deref(), channel_data.as_deref())
                    .await
            }
            ClientMessage::Unsubscribe { channel } => {
                if self.session.unsubscribed(&channel).is_some() {
                    self.node.leave(&channel, &self.session.socket_id).await;
                    self.stop_feed(&channel);
                }
                Vec::new()
            }
            ClientMessage::Signin { auth, user_data } => {
                let credentials = &self.node.credentials;
                match self.session.sign_in(credentials, &auth, &user_data) {
                    Ok(user) => {
                        self.node.channels.sign_in(
                            &user.id,
                            &self.session.socket_id,
                            &self.mailbox,
                        );
                        vec![protocol::signin_success(&user.user_data)]
                    }
                    Err(reason) => {
                        return Flow::Close(protocol::CLOSE_UNAUTHORIZED, reason);
                    }
                }
            }
            ClientMessage::ClientEvent {
                event,
                channel,
                data,
            } => match self.session.client_event(&channel) {
                Ok(user_id) => {
                    let frame =
                        protocol::client_event_frame(&event, &channel, &data, user_id.as_deref());
                    self.node.broadcast(
                        &channel,
                        frame.into(),
                        Some(&self.session.socket_id),
                        false,
                    );
                    self.node.record(ChannelActivity::ClientEvent {
                        channel,
                        event,
                        data,
                        socket_id: self.session.socket_id.to_string(),
                        user_id,
                    });
                    Vec::new()
                }
                Err((code, message)) => vec![protocol::error(code, message)],
            },
            ClientMessage::Resume { positions } => self.resume(positions).await,
        };
        self.send_all(frames).await
    }

    async fn subscribe(
        &mut self,
        name: &str,
        auth: Option<&str>,
        channel_data: Option<&str>,
    ) -> Vec<String> {
        let refused = |refusal: Refusal| {
            let kind = if refusal.status == 400 {
                "InvalidChannel"
            } else {
                "AuthError"
            };
            vec![protocol::subscription_error(
                name,
                kind,
                &refusal.error,
                refusal.status,
            )]
        };
        let admission = match self
            .session
            .admit(&self.node.credentials, name, auth, channel_data)
        {
            Ok(admission) => admission,
            Err(refusal) => return refused(refusal),
        };
        if self.session.subscriptions.contains_key(name) {
            // Already subscribed: confirmed again, nothing joins twice.
            return Vec::new();
        }
        if let Some(owned) = admission.channel.owned {
            let node = self.node.clone();
            let mailbox = self.mailbox.clone();
            match Box::pin(open_feed(node, mailbox, owned, admission.clone())).await {
                Ok(Some(feed)) => {
                    self.feeds.push((name.to_owned(), feed));
                }
                Ok(None) => {}
                Err(refusal) => return refused(refusal),
            }
        }
        self.session.subscribed(&admission);
        let joined = self
            .node
            .join(
                name,
                &self.session.socket_id,
                Some(&self.mailbox),
                admission.member.as_ref(),
                admission.channel.cache,
            )
            .await;
        let mut frames = vec![protocol::subscription_succeeded(
            name,
            joined.presence.as_ref(),
        )];
        if admission.channel.cache {
            frames.push(match joined.cached {
                Some(frame) => String::from_utf8_lossy(&frame).into_owned(),
                None => protocol::cache_miss(name),
            });
        }
        frames
    }
}

/// Checks a liveplan channel against the domain's rules and, for the project and user
/// streams, opens the hub feed that carries their events (and their evictions).
async fn open_feed(
    node: Arc<PusherNode>,
    mailbox: Arc<Mailbox>,
    owned: OwnedChannel,
    admission: Admission,
) -> Result<Option<Feed>, Refusal> {
    let forbidden = || Refusal {
        status: 403,
        error: "not allowed on this channel".to_owned(),
    };
    let unavailable = || Refusal {
        status: 503,
        error: "the channel is unavailable; try again".to_owned(),
    };
    let user_id = admission.liveplan_user.ok_or_else(forbidden)?;
    let user = match node.domain.get_user(user_id).await {
        Ok(Some(user)) if user.is_active => user,
        Ok(_) => return Err(forbidden()),
        Err(_) => return Err(unavailable()),
    };
    let actor = Actor {
        user_id: user.id,
        is_admin: user.is_admin,
        tab_id: None,
    };
    let (stream, carries) = match owned {
        OwnedChannel::Project(project) => (StreamKey::Project(project), Carries::All),
        OwnedChannel::ProjectPresence(project) => (StreamKey::Project(project), Carries::Nothing),
        OwnedChannel::User(id) => (StreamKey::User(id), Carries::All),
        OwnedChannel::Whiteboard(board) => {
            let mut ops = node.domain.store.read().await.map_err(|_| unavailable())?;
            let record = ops.get_record(board).await.map_err(|_| unavailable())?;
            let project = record
                .filter(|record| record.collection == "whiteboards")
                .ok_or_else(forbidden)?
                .project_id;
            (StreamKey::Project(project), Carries::Whiteboard(board))
        }
    };
    if let StreamKey::Project(project) = stream {
        let mut ops = node.domain.store.read().await.map_err(|_| unavailable())?;
        match domain::access::project_role(&mut *ops, project, &actor).await {
            Ok(_) => {}
            Err(e) if matches!(e.code, ErrorCode::NotFound | ErrorCode::Forbidden) => {
                return Err(forbidden());
            }
            Err(_) => return Err(unavailable()),
        }
    }
    // The feed starts at the log's head as read now (the hub replays whatever is committed
    // between this read and the subscription): the exact position a resume replays up to.
    let start = {
        let mut ops = node.domain.store.read().await.map_err(|_| unavailable())?;
        ops.latest_seq(stream).await.map_err(|_| unavailable())?
    };
    let live = &node.live;
    let mut request = SubscribeRequest::new(stream, live.pusher, user.id);
    request.since = Some(start);
    // A project channel (private, presence, a board's) is a live connection to the project.
    if matches!(stream, StreamKey::Project(_)) {
        request.presence = Some(user.display_name.clone());
    }
    if !matches!(carries, Carries::All) {
        request.filter = Some(Arc::new(move |event| carries.carries(event)));
    }
    let sub = live
        .hub()
        .subscribe(request)
        .await
        .map_err(|_| unavailable())?;
    let channel = admission.channel.name.clone();
    Ok(Some(Feed {
        task: tokio::spawn(feed(sub, channel, carries, mailbox)),
        stream,
        start,
        carries,
    }))
}

/// Why a liveplan channel cannot be resumed: (code, reason) of `pusher:resume_success`'s
/// `failed`.
type ResumeFailure = (&'static str, &'static str);

/// Events of a liveplan channel one resume replays at most (past it: `position_expired`, and
/// the client reads `/log`).
const MAX_OWNED_REPLAY: i64 = KEEP_EVENTS as i64;

/// The frames a liveplan channel's socket missed after `serial`, read from the event log up to
/// where its feed started, encoded as the hub encodes them.
async fn replay_owned(
    node: &PusherNode,
    channel: &str,
    feed: (StreamKey, i64, Carries),
    serial: i64,
    stream_id: &str,
) -> Result<Vec<String>, ResumeFailure> {
    let (stream, start, carries) = feed;
    let unavailable = ("unavailable", "the channel's history is unavailable");
    if stream_id != hub::Pusher::stream_id(&stream) {
        return Err(("stream_reset", "the stream_id is not this channel's"));
    }
    if matches!(carries, Carries::Nothing) {
        return Ok(Vec::new());
    }
    let mut ops = node.domain.store.read().await.map_err(|_| unavailable)?;
    let serial = serial.max(0);
    if serial >= start {
        let latest = ops.latest_seq(stream).await.map_err(|_| unavailable)?;
        if serial > latest {
            return Err(("stream_reset", "the serial is beyond the channel's history"));
        }
        return Ok(Vec::new());
    }
    if start - serial > MAX_OWNED_REPLAY {
        return Err((
            "position_expired",
            "too many events were missed; read the log",
        ));
    }
    let mut frames = Vec::new();
    let mut after = serial;
    while after < start {
        let want = u32::try_from((start - after).min(200)).unwrap_or(200);
        let page = ops
            .read_events(stream, after, want)
            .await
            .map_err(|_| unavailable)?;
        if page.is_empty() {
            return Err(("position_expired", "events after this serial expired"));
        }
        for event in page {
            match event.seq {
                Some(seq) if seq == after + 1 => after = seq,
                _ => return Err(("position_expired", "events after this serial expired")),
            }
            if after > start {
                break;
            }
            if !carries.carries(&event) {
                continue;
            }
            if let Some(frame) = hub::Dialect::encode(&hub::Pusher, &event, true) {
                frames.push(String::from_utf8_lossy(&carries.named(&frame, channel)).into_owned());
            }
        }
    }
    Ok(frames)
}

impl Connection {
    async fn resume(&mut self, positions: Vec<(String, i64, String)>) -> Vec<String> {
        let mut frames = Vec::new();
        let mut recovered = Vec::new();
        let mut failed: Vec<(String, &str, &str)> = Vec::new();
        for (channel, serial, stream_id) in positions {
            let Some(subscribed) = self.session.subscriptions.get(&channel) else {
                failed.push((channel, "not_subscribed", "subscribe before resuming"));
                continue;
            };
            if subscribed.owned.is_some() {
                let Some((_, feed)) = self.feeds.iter().find(|(name, _)| *name == channel) else {
                    failed.push((channel, "stream_reset", "the channel has no history"));
                    continue;
                };
                let feed = (feed.stream, feed.start, feed.carries);
                match replay_owned(&self.node, &channel, feed, serial, &stream_id).await {
                    Ok(replayed) => {
                        recovered.push((channel, replayed.len()));
                        frames.extend(replayed);
                    }
                    Err((code, reason)) => failed.push((channel, code, reason)),
                }
                continue;
            }
            let position = match self.node.log.position(&channel).await {
                Ok(position) => position,
                Err(_) => {
                    failed.push((
                        channel,
                        "unavailable",
                        "the channel's history is unavailable",
                    ));
                    continue;
                }
            };
            let Some(position) = position else {
                failed.push((channel, "stream_reset", "the channel has no history"));
                continue;
            };
            if position.stream_id != stream_id {
                failed.push((channel, "stream_reset", "the channel's history was lost"));
                continue;
            }
            if serial + 1 < position.first_serial {
                failed.push((
                    channel,
                    "position_expired",
                    "events after this serial expired",
                ));
                continue;
            }
            let events = match self.node.log.after(&channel, serial, KEEP_EVENTS).await {
                Ok(events) => events,
                Err(_) => {
                    failed.push((
                        channel,
                        "unavailable",
                        "the channel's history is unavailable",
                    ));
                    continue;
                }
            };
            for event in &events {
                frames.push(protocol::event_frame(
                    &event.event,
                    &event.channel,
                    &event.data,
                    event.serial,
                    &position.stream_id,
                ));
            }
            recovered.push((channel, events.len()));
        }
        frames.push(protocol::resume_success(&recovered, &failed));
        frames
    }
}

/// What ends a socket for a hub eviction: the session's end is 4009 (unauthorized), the
/// server going away 4200 (reconnect at once).
fn close_for(reason: CloseReason) -> (u16, &'static str) {
    match reason {
        CloseReason::Shutdown => (protocol::CLOSE_RECONNECT, "the server is going away"),
        CloseReason::AccessRevoked => (protocol::CLOSE_UNAUTHORIZED, "access was revoked"),
        CloseReason::LoggedOut => (protocol::CLOSE_UNAUTHORIZED, "the session ended"),
        CloseReason::SessionExpired => (protocol::CLOSE_UNAUTHORIZED, "the session expired"),
    }
}

/// Copies a liveplan channel's hub deliveries into its socket's mailbox until the
/// subscription ends (or the socket drops the channel and aborts this task).
async fn feed(
    mut sub: hub::Subscription,
    channel: String,
    carries: Carries,
    mailbox: Arc<Mailbox>,
) {
    loop {
        match sub.recv().await {
            Delivery::Frame(frame) => {
                if !frame.is_empty() {
                    mailbox.post(Note::Frame(carries.named(&frame, &channel)));
                }
            }
            Delivery::ResyncRequired { latest_seq } => {
                mailbox.post(Note::Frame(sub.resync_frame(latest_seq)));
            }
            Delivery::Closed(CloseReason::AccessRevoked) => {
                mailbox.post(Note::AccessLost(channel));
                return;
            }
            Delivery::Closed(reason) => {
                let (code, text) = close_for(reason);
                mailbox.post(Note::Close(code, text));
                return;
            }
            Delivery::Heartbeat => {}
        }
    }
}
