//! The Bryntum Gantt WebSocket protocol at `GET /ws/v1/bryntum` (CONTRACT §8): the protocol of
//! Bryntum's gantt-websocket-server, backed by liveplan's store and log.
//!
//! - [`protocol`]: message parsing (v2, v1 flat form, camelCase aliases) and spelling.
//! - [`mapping`]: liveplan records ↔ Bryntum store records.
//! - [`phantoms`]: real ids for phantom records and rewriting every reference to them.
//! - [`room`]: a project's Bryntum sockets and their feed of committed events.
//!
//! Choices the contract leaves open (also in `crates/server/BRYNTUM.md`):
//! - Project ids are liveplan uuids. A number `n` (the demo server's `project: 1`) names the
//!   n-th project of the user's `projects` list; any other string a project key. Answers use
//!   the value the client used.
//! - `users` lists the user names of every logged-in Bryntum socket on this server, as the demo
//!   server does; `join` goes to every other logged-in socket.
//! - Each revision is one domain batch: one store transaction. The first refused revision of a
//!   message gets the error and a fresh dataset; later revisions of that message are dropped
//!   (they were made on top of it).

pub mod mapping;
pub mod phantoms;
pub mod protocol;
pub mod room;

use crate::app::AppState;
use crate::auth::tickets;
use crate::dialects::ws;
use crate::live::ConnectionGuard;
use crate::net::Peer;
use crate::net::read_gate::ReadGate;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use domain::Actor;
use domain::access::project_role;
use domain::batch::{BatchOp, BatchSetting};
use governor::{Quota, RateLimiter};
use hub::{Delivery, SubscribeRequest};
use mapping::{Object, STORES, Store, Units};
use proto::{ApiError, Role, StreamKey};
use protocol::{Command, Incoming};
use rand::RngCore;
use room::{Pending, Room, RoomMessage};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};
use store::{Page, RecordRow, UserRow};
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

/// The largest client frame; a larger one closes the socket with 1009. Bryntum sends whole
/// version contents in one message, so this is larger than the native socket's 64 KiB.
pub const MAX_FRAME: usize = 1024 * 1024;
/// Frames up to this size are read whole so they can be refused with 1009, not dropped.
const READ_LIMIT: usize = 2 * MAX_FRAME;
/// Messages a socket may send per second on average, and the burst above it.
const MESSAGES_PER_SECOND: u32 = 50;
const MESSAGE_BURST: u32 = 500;
/// How long one send may take before the client is considered gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the server pings a Bryntum socket; two intervals without a frame close it.
const PING_INTERVAL: Duration = Duration::from_secs(30);
/// One autosave permission per project per this interval.
const AUTOSAVE_INTERVAL: Duration = Duration::from_secs(60);
/// The most revisions one `project_change` message may carry.
const MAX_REVISIONS: usize = 100;

const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_UNSUPPORTED: u16 = 1003;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_FORBIDDEN: u16 = 4003;

/// Settings key of a project's Bryntum `project` object.
fn project_setting(project_id: Uuid) -> String {
    format!("bryntum.project.{project_id}")
}

/// What every Bryntum socket of the server shares.
#[derive(Default)]
pub struct Shared {
    rooms: Mutex<HashMap<Uuid, Weak<Room>>>,
    opening: tokio::sync::Mutex<()>,
    next_client: AtomicU64,
    /// Logged-in sockets: their user name and a channel for `join`/`users`.
    logged_in: Mutex<Vec<(u64, String, mpsc::Sender<String>)>>,
    autosave: Mutex<HashMap<Uuid, Instant>>,
    /// Demo mode: each project's records when its first room opened, restored by `reset`.
    snapshots: Mutex<HashMap<Uuid, Arc<Vec<RecordRow>>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    async fn room(&self, state: &AppState, project_id: Uuid) -> Result<Arc<Room>, ApiError> {
        if let Some(room) = lock(&self.rooms).get(&project_id).and_then(Weak::upgrade) {
            return Ok(room);
        }
        // Opening takes a hub subscription and a log read; one at a time so two sockets of a
        // new project share one room.
        let _opening = self.opening.lock().await;
        if let Some(room) = lock(&self.rooms).get(&project_id).and_then(Weak::upgrade) {
            return Ok(room);
        }
        let units = read_project_object(state, project_id)
            .await
            .map(|object| Units::from_project(&object))
            .unwrap_or_default();
        let room = Room::open(state, project_id, units).await.map_err(|e| {
            tracing::error!(error = %e, "cannot open a bryntum room");
            ApiError::internal()
        })?;
        {
            let mut rooms = lock(&self.rooms);
            rooms.retain(|_, weak| weak.strong_count() > 0);
            rooms.insert(project_id, Arc::downgrade(&room));
        }
        if state.config.demo && !lock(&self.snapshots).contains_key(&project_id) {
            let rows = read_records(state, project_id).await?;
            lock(&self.snapshots)
                .entry(project_id)
                .or_insert_with(|| Arc::new(rows));
            spawn_idle_reset(state.clone(), project_id);
        }
        Ok(room)
    }

    fn user_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for (_, name, _) in lock(&self.logged_in).iter() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }

    /// Sends `text` to every logged-in socket except `except`. A socket whose queue is full
    /// misses it: `users` is state, the next one repairs it.
    fn tell_logged_in(&self, except: Option<u64>, text: &str) {
        for (id, _, sender) in lock(&self.logged_in).iter() {
            if Some(*id) != except {
                let _ = sender.try_send(text.to_owned());
            }
        }
    }
}

async fn read_records(state: &AppState, project_id: Uuid) -> Result<Vec<RecordRow>, ApiError> {
    let mut ops = state
        .domain
        .store
        .read()
        .await
        .map_err(domain::store_error)?;
    let mut rows = Vec::new();
    for store in STORES {
        if *store == Store::Versions {
            continue;
        }
        rows.extend(
            ops.list_records(project_id, store.collection().name, Page::ALL)
                .await
                .map_err(domain::store_error)?,
        );
    }
    Ok(rows)
}

/// `GET /ws/v1/bryntum`.
pub async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(Peer { address, .. }): ConnectInfo<Peer>,
    ws: WebSocketUpgrade,
) -> Response {
    // The native socket's buffers: many idle Bryntum sockets must not each hold the default
    // 128 KiB; a dataset larger than the write buffer is simply written in pieces, and a large
    // revision is read in read-buffer steps into a buffer that grows to fit it.
    ws.max_message_size(READ_LIMIT)
        .max_frame_size(READ_LIMIT)
        .read_buffer_size(ws::READ_BUFFER)
        .write_buffer_size(ws::WRITE_BUFFER)
        .on_upgrade(move |socket| async move {
            let Some(guard) = state.live.connection() else {
                let mut socket = socket;
                close(&mut socket, CLOSE_GOING_AWAY, "the server is going away").await;
                return;
            };
            let client = state.bryntum.next_client.fetch_add(1, Ordering::Relaxed) + 1;
            let (personal_tx, personal_rx) = mpsc::channel(64);
            let mut conn = Conn {
                state: state.clone(),
                address,
                id: client,
                client: format!("client-{client}"),
                user: None,
                sub: None,
                personal_tx,
            };
            conn.run(socket, personal_rx, guard).await;
            conn.logout_quietly();
        })
}

struct Subscribed {
    room: Arc<Room>,
    project_id: Uuid,
    label: Value,
    role: Role,
    /// The log position the socket's last dataset reflects; older room messages are skipped.
    seen: i64,
    receiver: broadcast::Receiver<Arc<RoomMessage>>,
    /// Closes when the user loses access or logs out (the hub's eviction).
    access: hub::Subscription,
}

struct LoggedIn {
    user: UserRow,
    name: String,
    session_id: Option<Uuid>,
    /// When the ticket's session expires (a password login has no session).
    expires_at: Option<store::Timestamp>,
    /// Closes when the login session ends or the user is deactivated (the hub's eviction).
    watch: Option<hub::Subscription>,
}

impl LoggedIn {
    fn expired(&self) -> bool {
        self.expires_at.is_some_and(|at| at <= chrono::Utc::now())
    }
}

struct Conn {
    state: AppState,
    address: SocketAddr,
    id: u64,
    client: String,
    user: Option<LoggedIn>,
    sub: Option<Subscribed>,
    personal_tx: mpsc::Sender<String>,
}

enum Flow {
    Continue,
    Close(u16, &'static str),
    Gone,
}

/// The result of a command: frames for this socket.
type Replies = Vec<String>;

fn fail(command: &str, message: impl Into<String>) -> Replies {
    vec![protocol::error(command, &message.into())]
}

impl Conn {
    async fn run(
        &mut self,
        mut socket: WebSocket,
        mut personal: mpsc::Receiver<String>,
        _guard: ConnectionGuard,
    ) {
        let quota =
            Quota::per_second(NonZeroU32::new(MESSAGES_PER_SECOND).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(MESSAGE_BURST).unwrap_or(NonZeroU32::MIN));
        let limiter = RateLimiter::direct(quota);
        // A client that answers nothing (not even a pong) for two ping intervals is gone: a
        // half-open TCP connection would otherwise hold its room and roster entry forever.
        let mut pings = tokio::time::interval(PING_INTERVAL);
        pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heard = Instant::now();
        let gate = ReadGate::default();
        loop {
            let flow = tokio::select! {
                _ = pings.tick() => {
                    if heard.elapsed() > 2 * PING_INTERVAL {
                        Flow::Close(CLOSE_POLICY, "no answer to pings")
                    } else {
                        let ping = socket.send(Message::Ping(bytes::Bytes::new()));
                        match tokio::time::timeout(SEND_TIMEOUT, ping).await {
                            Ok(Ok(())) => Flow::Continue,
                            _ => Flow::Gone,
                        }
                    }
                }
                message = gate.next(&mut socket) => match message {
                    Some(Ok(Message::Text(text))) => {
                        heard = Instant::now();
                        if limiter.check().is_err() {
                            Flow::Close(CLOSE_POLICY, "too many messages")
                        } else if text.len() > MAX_FRAME {
                            Flow::Close(CLOSE_TOO_BIG, "messages are at most 1 MiB")
                        } else {
                            let replies = self.handle(text.as_str()).await;
                            send_all(&mut socket, replies).await
                        }
                    }
                    Some(Ok(Message::Binary(_))) => Flow::Close(CLOSE_UNSUPPORTED, "binary frames are not accepted"),
                    Some(Ok(Message::Close(_))) | None => Flow::Gone,
                    Some(Ok(_)) => {
                        heard = Instant::now();
                        Flow::Continue
                    }
                    Some(Err(e)) => {
                        if is_capacity(&e) {
                            Flow::Close(CLOSE_TOO_BIG, "messages are at most 1 MiB")
                        } else {
                            Flow::Gone
                        }
                    }
                },
                Some(text) = personal.recv() => send_all(&mut socket, vec![text]).await,
                delivery = recv_login(&mut self.user) => match delivery {
                    Delivery::Closed(hub::CloseReason::Shutdown) => {
                        Flow::Close(CLOSE_GOING_AWAY, "the server is going away")
                    }
                    Delivery::Closed(hub::CloseReason::LoggedOut) => {
                        Flow::Close(CLOSE_FORBIDDEN, "the session ended")
                    }
                    Delivery::Closed(hub::CloseReason::SessionExpired) => {
                        Flow::Close(CLOSE_FORBIDDEN, "the session expired")
                    }
                    Delivery::Closed(_) => Flow::Close(CLOSE_FORBIDDEN, "access was revoked"),
                    _ => Flow::Continue,
                },
                event = recv_sub(&mut self.sub) => match event {
                    // The room's feed runs apart from the hub's sweep and may bring an event
                    // committed after the session expired before the eviction arrives.
                    SubEvent::Room(_) if self.user.as_ref().is_some_and(LoggedIn::expired) => {
                        Flow::Close(CLOSE_FORBIDDEN, "the session expired")
                    }
                    SubEvent::Room(message) => match self.room_message(message).await {
                        Ok(RoomOut::Replies(replies)) => send_all(&mut socket, replies).await,
                        Ok(RoomOut::Frame(text)) => send_frame(&mut socket, text).await,
                        Err((code, reason)) => Flow::Close(code, reason),
                    },
                    SubEvent::Access(delivery) => self.access_lost(delivery, &mut socket).await,
                },
            };
            match flow {
                Flow::Continue => {}
                Flow::Gone => return,
                Flow::Close(code, reason) => {
                    close(&mut socket, code, reason).await;
                    return;
                }
            }
        }
    }

    /// Leaves the list of logged-in sockets and tells the others.
    fn logout_quietly(&mut self) {
        self.sub = None;
        if let Some(user) = self.user.take() {
            let shared = &self.state.bryntum;
            let still_there = {
                let mut logged_in = lock(&shared.logged_in);
                logged_in.retain(|(id, _, _)| *id != self.id);
                logged_in.iter().any(|(_, n, _)| *n == user.name)
            };
            if !still_there {
                let users = protocol::message("users", json!({ "users": shared.user_names() }));
                shared.tell_logged_in(None, &users);
            }
        }
    }

    async fn handle(&mut self, text: &str) -> Replies {
        let incoming = match protocol::parse(text) {
            Ok(incoming) => incoming,
            Err(bad) => {
                let command = bad.command.as_str().unwrap_or("error").to_owned();
                return fail(&command, bad.error);
            }
        };
        let Some(command) = incoming.command else {
            return fail(&incoming.name, "unknown command");
        };
        match command {
            Command::Login => self.login(&incoming).await,
            Command::Version => vec![protocol::message(
                "version",
                json!({ "version": env!("CARGO_PKG_VERSION"), "protocol": 2 }),
            )],
            _ if self.user.is_none() => fail(&incoming.name, "log in first"),
            Command::Logout => {
                self.logout_quietly();
                vec![protocol::message("logout", json!({}))]
            }
            Command::Users => vec![protocol::message(
                "users",
                json!({ "users": self.state.bryntum.user_names() }),
            )],
            Command::Projects => self.projects().await,
            Command::Dataset => self.dataset(&incoming).await,
            Command::ProjectChange => self.project_change(&incoming).await,
            Command::Reset => self.reset(&incoming).await,
            Command::RequestVersionAutosave => self.autosave(&incoming).await,
            Command::LoadVersionContent => self.load_version(&incoming).await,
        }
    }

    fn actor(&self) -> Option<Actor> {
        self.user.as_ref().map(|u| Actor {
            user_id: u.user.id,
            is_admin: u.user.is_admin,
            tab_id: None,
        })
    }

    async fn login(&mut self, incoming: &Incoming) -> Replies {
        let data = &incoming.data;
        let text = |key: &str| data.get(key).and_then(Value::as_str);
        let found = if let Some(ticket) = text("ticket") {
            self.login_ticket(ticket).await
        } else {
            let login = text("login").or(text("username")).or(text("email"));
            match (login, text("password")) {
                (Some(login), Some(password)) => self.login_password(login, password).await,
                _ => Err("login and password, or a ticket, are required".to_owned()),
            }
        };
        let (user, session) = match found {
            Ok(found) => found,
            Err(message) => return fail("login", message),
        };
        let session_id = session.map(|(id, _)| id);
        let expires_at = session.map(|(_, at)| at);
        // A second login on one socket replaces the first.
        self.logout_quietly();
        let name = user
            .username
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| user.email.clone());
        let mut request =
            SubscribeRequest::new(StreamKey::User(user.id), self.state.live.ws, user.id);
        request.session_id = session_id;
        request.expires_at = expires_at;
        request.filter = Some(Arc::new(|_| false));
        let watch = self.state.live.hub().subscribe(request).await.ok();
        let shared = &self.state.bryntum;
        // `join`/`users` go out only when the list of names changes: a user's second socket
        // changes nothing the others show, and telling every socket about every login would
        // make logins cost the square of the sockets.
        let already = {
            let mut logged_in = lock(&shared.logged_in);
            let already = logged_in.iter().any(|(_, n, _)| *n == name);
            logged_in.push((self.id, name.clone(), self.personal_tx.clone()));
            already
        };
        self.user = Some(LoggedIn {
            user,
            name: name.clone(),
            session_id,
            expires_at,
            watch,
        });
        let users = protocol::message("users", json!({ "users": shared.user_names() }));
        if !already {
            shared.tell_logged_in(
                Some(self.id),
                &protocol::message("join", json!({ "userName": name })),
            );
            shared.tell_logged_in(Some(self.id), &users);
        }
        vec![
            protocol::message("login", json!({ "client": self.client, "userName": name })),
            users,
        ]
    }

    async fn login_password(
        &self,
        login: &str,
        password: &str,
    ) -> Result<(UserRow, Option<(Uuid, store::Timestamp)>), String> {
        if login.len() > 254 || password.len() > domain::accounts::MAX_PASSWORD_BYTES {
            return Err("wrong login or password".into());
        }
        self.state
            .limiters
            .check_login(login, self.address.ip())
            .map_err(|e| e.message)?;
        crate::auth::login::authenticate(
            &self.state.domain,
            &self.state.decoy_hash,
            login,
            password.to_owned(),
        )
        .await
        .map(|user| (user, None))
        .map_err(|_| "wrong login or password".to_owned())
    }

    /// The ticket's user and their session with its expiry.
    async fn login_ticket(
        &self,
        ticket: &str,
    ) -> Result<(UserRow, Option<(Uuid, store::Timestamp)>), String> {
        let refused = || "the ticket is unknown, expired or spent".to_owned();
        if ticket.len() > 256 {
            return Err(refused());
        }
        let row = self
            .state
            .domain
            .consume_ticket(&tickets::digest(ticket))
            .await
            .map_err(|e| e.message)?
            .ok_or_else(refused)?;
        let (session, user) = self
            .state
            .domain
            .session_user(row.session_id)
            .await
            .map_err(|e| e.message)?
            .ok_or_else(refused)?;
        if user.id != row.user_id || !user.is_active {
            return Err(refused());
        }
        Ok((user, Some((row.session_id, session.expires_at))))
    }

    async fn projects(&mut self) -> Replies {
        match self.visible_projects().await {
            Ok(projects) => {
                let list: Vec<Value> = projects
                    .iter()
                    .map(|(id, name)| json!({ "id": id, "name": name }))
                    .collect();
                vec![protocol::message("projects", json!({ "projects": list }))]
            }
            Err(e) => fail("projects", e.message),
        }
    }

    /// The user's projects, oldest first (the order `projects` lists and numbers them in).
    async fn visible_projects(&self) -> Result<Vec<(Uuid, String)>, ApiError> {
        let Some(user) = &self.user else {
            return Ok(Vec::new());
        };
        let mut ops = self
            .state
            .domain
            .store
            .read()
            .await
            .map_err(domain::store_error)?;
        let mut rows = ops
            .list_projects_of_user(user.user.id)
            .await
            .map_err(domain::store_error)?;
        rows.sort_by_key(|p| (p.created_at, p.id));
        Ok(rows.into_iter().map(|p| (p.id, p.name)).collect())
    }

    /// The project a message names: a uuid, a 1-based index into `projects`, or a key.
    async fn resolve_project(&self, data: &Object) -> Result<(Uuid, Value), String> {
        let label = data.get("project").cloned().unwrap_or(Value::Null);
        let unknown = || "no such project".to_owned();
        let id = match &label {
            Value::String(text) => match Uuid::parse_str(text) {
                Ok(id) => id,
                Err(_) => match text.parse::<usize>() {
                    Ok(index) => self.project_at(index).await?,
                    Err(_) => self
                        .state
                        .domain
                        .resolve_project(text)
                        .await
                        .map_err(|e| e.message)?
                        .ok_or_else(unknown)?,
                },
            },
            Value::Number(n) => {
                let index = n
                    .as_u64()
                    .and_then(|i| usize::try_from(i).ok())
                    .ok_or_else(unknown)?;
                self.project_at(index).await?
            }
            Value::Null => return Err("project is required".into()),
            _ => return Err(unknown()),
        };
        Ok((id, label))
    }

    async fn project_at(&self, index: usize) -> Result<Uuid, String> {
        let projects = self.visible_projects().await.map_err(|e| e.message)?;
        index
            .checked_sub(1)
            .and_then(|i| projects.get(i))
            .map(|(id, _)| *id)
            .ok_or_else(|| "no such project".to_owned())
    }

    async fn role(&self, project_id: Uuid) -> Result<Role, String> {
        let actor = self.actor().ok_or("log in first")?;
        let mut ops = self
            .state
            .domain
            .store
            .read()
            .await
            .map_err(|_| "the store is unavailable".to_owned())?;
        project_role(&mut *ops, project_id, &actor)
            .await
            .map(|(_, role)| role)
            .map_err(|_| "no such project".to_owned())
    }

    async fn dataset(&mut self, incoming: &Incoming) -> Replies {
        let (project_id, label) = match self.resolve_project(&incoming.data).await {
            Ok(found) => found,
            Err(message) => return fail("dataset", message),
        };
        let role = match self.role(project_id).await {
            Ok(role) => role,
            Err(message) => return fail("dataset", message),
        };
        let room = match self.state.bryntum.room(&self.state, project_id).await {
            Ok(room) => room,
            Err(e) => return fail("dataset", e.message),
        };
        let Some(user) = &self.user else {
            return fail("dataset", "log in first");
        };
        let mut request = SubscribeRequest::new(
            StreamKey::Project(project_id),
            self.state.live.ws,
            user.user.id,
        );
        request.session_id = user.session_id;
        request.expires_at = user.expires_at;
        request.filter = Some(Arc::new(|_| false));
        let access = match self.state.live.hub().subscribe(request).await {
            Ok(access) => access,
            Err(_) => return fail("dataset", "the server is unavailable"),
        };
        // Receive before reading, so nothing committed after the read is missed; what the
        // read already holds is skipped by seq.
        let receiver = room.subscribe();
        let (dataset, seen) = match load_dataset(&self.state, project_id).await {
            Ok(loaded) => loaded,
            Err(e) => return fail("dataset", e.message),
        };
        self.sub = Some(Subscribed {
            room,
            project_id,
            label: label.clone(),
            role,
            seen,
            receiver,
            access,
        });
        vec![dataset_message(&label, dataset)]
    }

    /// A fresh dataset for the subscribed project (after a refused revision, a reset, a lag).
    async fn resync(&mut self) -> Replies {
        let Some(sub) = &mut self.sub else {
            return Vec::new();
        };
        // Drop what is queued: the dataset is newer.
        sub.receiver = sub.receiver.resubscribe();
        match load_dataset(&self.state, sub.project_id).await {
            Ok((dataset, seen)) => {
                sub.seen = seen;
                vec![dataset_message(&sub.label, dataset)]
            }
            Err(e) => fail("dataset", e.message),
        }
    }

    /// Checks that a message is about the subscribed project.
    async fn subscribed_to(&self, command: &str, data: &Object) -> Result<(), Replies> {
        let Some(sub) = &self.sub else {
            return Err(fail(command, "load the project's dataset first"));
        };
        match self.resolve_project(data).await {
            Ok((id, _)) if id == sub.project_id => Ok(()),
            Ok(_) => Err(fail(command, "load the project's dataset first")),
            Err(message) => Err(fail(command, message)),
        }
    }

    async fn project_change(&mut self, incoming: &Incoming) -> Replies {
        const CMD: &str = "project_change";
        if let Err(replies) = self.subscribed_to(CMD, &incoming.data).await {
            return replies;
        }
        let Some(revisions) = incoming.data.get("revisions").and_then(Value::as_array) else {
            return fail(CMD, "revisions must be an array");
        };
        if revisions.len() > MAX_REVISIONS {
            return fail(
                CMD,
                format!("at most {MAX_REVISIONS} revisions per message"),
            );
        }
        for revision in revisions {
            if let Err(message) = self.apply_revision(revision).await {
                let mut replies = fail(CMD, message);
                replies.extend(self.resync().await);
                return replies;
            }
        }
        Vec::new()
    }

    async fn apply_revision(&mut self, revision: &Value) -> Result<(), String> {
        let (Some(sub), Some(actor)) = (&self.sub, self.actor()) else {
            return Err("load the project's dataset first".into());
        };
        let revision = revision
            .as_object()
            .ok_or("each revision must be an object")?;
        let mut changes = match revision.get("changes") {
            Some(Value::Object(changes)) => Value::Object(changes.clone()),
            _ => return Err("a revision needs a changes object".into()),
        };
        if sub.role < Role::Member {
            return Err("viewers cannot change this project".into());
        }
        let room = sub.room.clone();
        let project_id = sub.project_id;
        let _writing = room.writing.lock().await;
        let resolution = {
            let known = lock(&room.phantoms);
            phantoms::resolve(&mut changes, &known)
        };
        let stored_project = read_project_object(&self.state, project_id).await?;
        let units = Units::from_project(&stored_project);
        let ops = self
            .batch_ops(&changes, &resolution, &units, project_id)
            .await?;
        let mut new_units = None;
        let setting = match changes.get("project") {
            Some(Value::Object(update)) => {
                let mut merged = stored_project.clone();
                for (key, value) in update {
                    merged.insert(key.clone(), value.clone());
                }
                new_units = Some(Units::from_project(&merged));
                Some(BatchSetting {
                    key: project_setting(project_id),
                    value: Value::Object(merged).to_string(),
                })
            }
            _ => None,
        };
        let mut echo = json!({
            "revision": null,
            "localRevision": revision.get("revision").cloned().unwrap_or(Value::Null),
            "client": self.client,
            "changes": changes,
        });
        if let Some(conflict) = revision.get("conflictResolutionFor")
            && let Some(object) = echo.as_object_mut()
        {
            object.insert("conflictResolutionFor".into(), conflict.clone());
        }
        let token = new_token();
        room.expect(&token, Pending::Echo(echo));
        let actor = Actor {
            tab_id: Some(token.clone()),
            ..actor
        };
        match self
            .state
            .domain
            .apply_batch(&actor, project_id, ops, setting)
            .await
        {
            Ok(events) => {
                lock(&room.phantoms).remember(&resolution.ids);
                if let Some(units) = new_units {
                    *lock(&room.units) = units;
                }
                if events.is_empty()
                    && let Some(Pending::Echo(mut echo)) = room.forget(&token)
                {
                    // Nothing liveplan keeps changed (only view state): still echo it.
                    if let Some(object) = echo.as_object_mut() {
                        object.insert("revision".into(), json!(format!("server-{token}")));
                    }
                    room.send(RoomMessage::Change {
                        seq: None,
                        frame: room::SharedFrame::new(&json!([echo])),
                    });
                }
                Ok(())
            }
            Err(failure) => {
                room.forget(&token);
                Err(describe(failure))
            }
        }
    }

    /// The domain changes of one revision: creates (references first), then updates, then
    /// removes.
    async fn batch_ops(
        &self,
        changes: &Value,
        resolution: &phantoms::Resolution,
        units: &Units,
        project_id: Uuid,
    ) -> Result<Vec<BatchOp>, String> {
        let mut creates = Vec::new();
        let mut updates = Vec::new();
        let mut removes = Vec::new();
        for store in STORES {
            let Some(section) = changes.get(store.key()) else {
                continue;
            };
            let section = section
                .as_object()
                .ok_or_else(|| format!("{} must be an object", store.key()))?;
            let collection = store.collection();
            let list = |key: &str| -> Result<Vec<&Object>, String> {
                match section.get(key) {
                    None | Some(Value::Null) => Ok(Vec::new()),
                    Some(Value::Array(items)) => items
                        .iter()
                        .map(|item| {
                            item.as_object()
                                .ok_or_else(|| format!("{}.{key} must hold objects", store.key()))
                        })
                        .collect(),
                    Some(_) => Err(format!("{}.{key} must be an array", store.key())),
                }
            };
            let mut added = list("added")?;
            if *store == Store::Tasks {
                added = parents_first(added);
            }
            for record in added {
                let id = record_id(record, store)?;
                let repeated = record
                    .get("$PhantomId")
                    .and_then(Value::as_str)
                    .is_some_and(|p| resolution.repeated.iter().any(|r| r == p));
                if record.get("$PhantomId").is_none() {
                    return Err(format!("{}: added records need a $PhantomId", store.key()));
                }
                if repeated {
                    let current = current_body(&self.state, id).await;
                    let fields = mapping::to_liveplan(*store, record, units, current.as_ref())?;
                    updates.push(BatchOp::Update {
                        collection,
                        id,
                        fields: Value::Object(fields),
                    });
                } else {
                    let fields = mapping::to_liveplan(*store, record, units, None)?;
                    creates.push(BatchOp::Create {
                        collection,
                        id,
                        fields: Value::Object(fields),
                    });
                }
            }
            for record in list("updated")? {
                let id = record_id(record, store)?;
                let needs_unit = ["duration", "lag"].iter().any(|k| record.contains_key(*k));
                let current = if needs_unit {
                    current_body(&self.state, id).await
                } else {
                    None
                };
                let fields = mapping::to_liveplan(*store, record, units, current.as_ref())?;
                updates.push(BatchOp::Update {
                    collection,
                    id,
                    fields: Value::Object(fields),
                });
            }
            for record in list("removed")? {
                let id = record_id(record, store)?;
                removes.push(BatchOp::Remove { collection, id });
            }
        }
        let _ = project_id;
        // Dependents before what they depend on, so a cascade never races an explicit remove.
        removes.reverse();
        creates.extend(updates);
        creates.extend(removes);
        Ok(creates)
    }

    async fn room_message(
        &mut self,
        message: Result<Arc<RoomMessage>, broadcast::error::RecvError>,
    ) -> Result<RoomOut, (u16, &'static str)> {
        let message = match message {
            Ok(message) => message,
            // This socket fell behind the room: it gets the whole state instead.
            Err(broadcast::error::RecvError::Lagged(_)) => {
                return Ok(RoomOut::Replies(self.resync().await));
            }
            Err(broadcast::error::RecvError::Closed) => {
                self.sub = None;
                return Ok(RoomOut::Replies(Vec::new()));
            }
        };
        let Some(sub) = &mut self.sub else {
            return Ok(RoomOut::Replies(Vec::new()));
        };
        match &*message {
            RoomMessage::Change { seq, frame } => {
                if seq.is_some_and(|seq| seq <= sub.seen) {
                    return Ok(RoomOut::Replies(Vec::new()));
                }
                if let Some(seq) = seq {
                    sub.seen = *seq;
                }
                // The shared bytes go out as they are: no copy per socket.
                match Utf8Bytes::try_from(frame.frame(&sub.label)) {
                    Ok(text) => Ok(RoomOut::Frame(text)),
                    Err(_) => Ok(RoomOut::Replies(Vec::new())),
                }
            }
            RoomMessage::Reset { seq, user_name } => {
                if *seq <= sub.seen {
                    return Ok(RoomOut::Replies(Vec::new()));
                }
                let label = sub.label.clone();
                let user_name = user_name.clone();
                let mut replies = self.resync().await;
                replies.push(protocol::message(
                    "reset",
                    json!({ "userName": user_name, "project": label }),
                ));
                Ok(RoomOut::Replies(replies))
            }
            RoomMessage::Resync => Ok(RoomOut::Replies(self.resync().await)),
            RoomMessage::Closed(hub::CloseReason::Shutdown) => {
                Err((CLOSE_GOING_AWAY, "the server is going away"))
            }
            RoomMessage::Closed(_) => {
                self.sub = None;
                Ok(RoomOut::Replies(fail(
                    "dataset",
                    "the project is no longer available",
                )))
            }
        }
    }

    async fn access_lost(&mut self, delivery: Delivery, socket: &mut WebSocket) -> Flow {
        let Delivery::Closed(reason) = delivery else {
            return Flow::Continue;
        };
        match reason {
            hub::CloseReason::Shutdown => Flow::Close(CLOSE_GOING_AWAY, "the server is going away"),
            hub::CloseReason::LoggedOut => Flow::Close(CLOSE_FORBIDDEN, "the session ended"),
            hub::CloseReason::SessionExpired => Flow::Close(CLOSE_FORBIDDEN, "the session expired"),
            _ => {
                // Removal, demotion or deactivation: keep the socket if the user may still
                // read the project (a Viewer may), else unsubscribe it.
                let project_id = self.sub.as_ref().map(|s| s.project_id);
                let still = match project_id {
                    Some(id) => self.role(id).await.ok(),
                    None => None,
                };
                let active = match &self.user {
                    Some(user) => self
                        .state
                        .domain
                        .get_user(user.user.id)
                        .await
                        .ok()
                        .flatten()
                        .is_some_and(|u| u.is_active),
                    None => false,
                };
                if !active {
                    return Flow::Close(CLOSE_FORBIDDEN, "access was revoked");
                }
                match (still, &mut self.sub) {
                    (Some(role), Some(sub)) => {
                        sub.role = role;
                        let mut request = SubscribeRequest::new(
                            StreamKey::Project(sub.project_id),
                            self.state.live.ws,
                            self.user.as_ref().map(|u| u.user.id).unwrap_or_default(),
                        );
                        request.session_id = self.user.as_ref().and_then(|u| u.session_id);
                        request.expires_at = self.user.as_ref().and_then(|u| u.expires_at);
                        request.filter = Some(Arc::new(|_| false));
                        match self.state.live.hub().subscribe(request).await {
                            Ok(access) => sub.access = access,
                            Err(_) => self.sub = None,
                        }
                        Flow::Continue
                    }
                    _ => {
                        self.sub = None;
                        send_all(
                            socket,
                            fail("dataset", "access to this project was revoked"),
                        )
                        .await
                    }
                }
            }
        }
    }

    async fn reset(&mut self, incoming: &Incoming) -> Replies {
        const CMD: &str = "reset";
        if !self.state.config.demo {
            return fail(CMD, "reset is only available in demo mode");
        }
        if let Err(replies) = self.subscribed_to(CMD, &incoming.data).await {
            return replies;
        }
        let (Some(sub), Some(actor), Some(user)) = (&self.sub, self.actor(), &self.user) else {
            return fail(CMD, "load the project's dataset first");
        };
        if sub.role < Role::Member {
            return fail(CMD, "viewers cannot reset this project");
        }
        let (room, project_id, name) = (sub.room.clone(), sub.project_id, user.name.clone());
        match reset_project(&self.state, &room, project_id, actor, &name).await {
            Ok(()) => Vec::new(),
            Err(message) => {
                let mut replies = fail(CMD, message);
                replies.extend(self.resync().await);
                replies
            }
        }
    }

    async fn autosave(&mut self, incoming: &Incoming) -> Replies {
        const CMD: &str = "request_version_autosave";
        if let Err(replies) = self.subscribed_to(CMD, &incoming.data).await {
            return replies;
        }
        let Some(sub) = &self.sub else {
            return Vec::new();
        };
        if sub.role < Role::Member {
            return Vec::new();
        }
        let now = Instant::now();
        let mut granted = lock(&self.state.bryntum.autosave);
        let allowed = granted
            .get(&sub.project_id)
            .is_none_or(|at| now.duration_since(*at) >= AUTOSAVE_INTERVAL);
        if !allowed {
            return Vec::new();
        }
        granted.insert(sub.project_id, now);
        vec![protocol::message(
            "versionAutoSaveOK",
            json!({ "project": sub.label }),
        )]
    }

    async fn load_version(&mut self, incoming: &Incoming) -> Replies {
        const CMD: &str = "loadVersionContent";
        let (project_id, label) = match self.resolve_project(&incoming.data).await {
            Ok(found) => found,
            Err(message) => return fail(CMD, message),
        };
        if let Err(message) = self.role(project_id).await {
            return fail(CMD, message);
        }
        let version_id = incoming
            .data
            .get("versionId")
            .cloned()
            .unwrap_or(Value::Null);
        let Some(id) = version_id.as_str().and_then(|t| Uuid::parse_str(t).ok()) else {
            return fail(CMD, "no such version");
        };
        let row = match self.state.domain.store.read().await {
            Ok(mut ops) => ops.get_record(id).await.ok().flatten(),
            Err(_) => None,
        };
        match row.filter(|r| r.project_id == project_id && r.collection == "versions") {
            Some(row) => vec![protocol::message(
                "loadVersionContent",
                json!({
                    "project": label,
                    "versionId": version_id,
                    "content": row.body.get("content").cloned().unwrap_or(Value::Null),
                }),
            )],
            None => fail(CMD, "no such version"),
        }
    }
}

/// The record id of an added (after phantom resolution) or updated/removed record.
fn record_id(record: &Object, store: &Store) -> Result<Uuid, String> {
    let id = record.get("id");
    match id {
        Some(Value::String(text)) => {
            Uuid::parse_str(text).map_err(|_| format!("{}: unknown id {text}", store.key()))
        }
        Some(other) => Err(format!("{}: unknown id {other}", store.key())),
        None => Err(format!("{}: a record needs an id", store.key())),
    }
}

/// Added tasks ordered so a new parent is created before its new children.
fn parents_first(tasks: Vec<&Object>) -> Vec<&Object> {
    let ids: Vec<Option<&str>> = tasks
        .iter()
        .map(|t| t.get("id").and_then(Value::as_str))
        .collect();
    let mut placed = vec![false; tasks.len()];
    let mut out = Vec::with_capacity(tasks.len());
    // Each pass places every task whose parent is not an unplaced task of this list.
    for _ in 0..=tasks.len() {
        let mut progress = false;
        for (i, task) in tasks.iter().enumerate() {
            if placed[i] {
                continue;
            }
            let parent = task.get("parentId").and_then(Value::as_str);
            let waits = parent.is_some_and(|p| {
                ids.iter()
                    .enumerate()
                    .any(|(j, id)| *id == Some(p) && !placed[j] && j != i)
            });
            if !waits {
                placed[i] = true;
                out.push(*task);
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    // A loop among new tasks: keep them; the domain refuses it.
    for (i, task) in tasks.iter().enumerate() {
        if !placed[i] {
            out.push(*task);
        }
    }
    out
}

async fn current_body(state: &AppState, id: Uuid) -> Option<Object> {
    let mut ops = state.domain.store.read().await.ok()?;
    ops.get_record(id).await.ok().flatten().map(|row| row.body)
}

async fn read_project_object(state: &AppState, project_id: Uuid) -> Result<Object, String> {
    let mut ops = state
        .domain
        .store
        .read()
        .await
        .map_err(|_| "the store is unavailable".to_owned())?;
    let text = ops
        .get_setting(&project_setting(project_id))
        .await
        .map_err(|_| "the store is unavailable".to_owned())?;
    Ok(text
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default())
}

/// A refused batch as a plain message, naming Bryntum's store when it can.
fn describe(failure: domain::batch::BatchError) -> String {
    let error = failure.error;
    match error.code {
        proto::ErrorCode::DependencyCycle => "the change would make a dependency cycle".into(),
        proto::ErrorCode::Forbidden => error.message,
        _ => error.message,
    }
}

fn new_token() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}{hex}", room::TOKEN_PREFIX)
}

fn dataset_message(label: &Value, dataset: Value) -> String {
    protocol::message("dataset", json!({ "project": label, "dataset": dataset }))
}

/// The project in Bryntum stores, and the log position it reflects. Read inside a write
/// transaction (then rolled back) so no commit can fall between the records and the seq.
async fn load_dataset(state: &AppState, project_id: Uuid) -> Result<(Value, i64), ApiError> {
    let mut tx = state
        .domain
        .store
        .write()
        .await
        .map_err(domain::store_error)?;
    let project = tx
        .get_project(project_id)
        .await
        .map_err(domain::store_error)?
        .ok_or_else(|| ApiError::not_found("project"))?;
    let stored: Object = tx
        .get_setting(&project_setting(project_id))
        .await
        .map_err(domain::store_error)?
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    let units = Units::from_project(&stored);
    let mut dataset = serde_json::Map::new();
    for store in STORES {
        let rows = tx
            .list_records(project_id, store.collection().name, Page::ALL)
            .await
            .map_err(domain::store_error)?;
        let records: Vec<Object> = rows
            .iter()
            .map(|row| mapping::to_bryntum(*store, &row.id.to_string(), &row.body, &units))
            .collect();
        let value = if *store == Store::Tasks {
            Value::Array(mapping::task_tree(records))
        } else {
            Value::Array(records.into_iter().map(Value::Object).collect())
        };
        dataset.insert(store.dataset_key().into(), value);
    }
    let seq = tx
        .latest_seq(StreamKey::Project(project_id))
        .await
        .map_err(domain::store_error)?;
    drop(tx);
    let mut project_object = units.project_fields();
    if let Some(start) = project.body.get("start_date") {
        project_object.insert("startDate".into(), start.clone());
    }
    project_object.insert("name".into(), json!(project.name));
    for (key, value) in stored {
        project_object.insert(key, value);
    }
    dataset.insert("project".into(), Value::Object(project_object));
    Ok((Value::Object(dataset), seq))
}

/// Demo mode: puts the project's records back as they were when its first room opened, in one
/// transaction, and tells every socket of the room (a fresh dataset, then `reset`).
async fn reset_project(
    state: &AppState,
    room: &Room,
    project_id: Uuid,
    actor: Actor,
    user_name: &str,
) -> Result<(), String> {
    let snapshot = lock(&state.bryntum.snapshots)
        .get(&project_id)
        .cloned()
        .ok_or("this project has no demo data to go back to")?;
    let _writing = room.writing.lock().await;
    let current = read_records(state, project_id)
        .await
        .map_err(|e| e.message)?;
    let mut ops = Vec::new();
    // Remove: tasks (their links and assignments go with them), then resources, calendars.
    for name in ["tasks", "resources", "calendars"] {
        for row in current.iter().filter(|r| r.collection == name) {
            if let Some(collection) = domain::collections::by_name(name) {
                ops.push(BatchOp::Remove {
                    collection,
                    id: row.id,
                });
            }
        }
    }
    // Recreate with the same ids, references first.
    for name in [
        "calendars",
        "resources",
        "tasks",
        "dependencies",
        "assignments",
    ] {
        let rows: Vec<&RecordRow> = snapshot.iter().filter(|r| r.collection == name).collect();
        let rows = if name == "tasks" {
            tasks_parents_first(rows)
        } else {
            rows
        };
        for row in rows {
            if let Some(collection) = domain::collections::by_name(name) {
                ops.push(BatchOp::Create {
                    collection,
                    id: row.id,
                    fields: Value::Object(row.body.clone()),
                });
            }
        }
    }
    let token = new_token();
    room.expect(&token, Pending::Reset(user_name.to_owned()));
    let actor = Actor {
        tab_id: Some(token.clone()),
        ..actor
    };
    match state
        .domain
        .apply_batch(&actor, project_id, ops, None)
        .await
    {
        Ok(_) => Ok(()),
        Err(failure) => {
            room.forget(&token);
            Err(describe(failure))
        }
    }
}

fn tasks_parents_first(rows: Vec<&RecordRow>) -> Vec<&RecordRow> {
    let ids: std::collections::HashSet<String> = rows.iter().map(|r| r.id.to_string()).collect();
    let mut placed: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(rows.len());
    let mut rest = rows;
    while !rest.is_empty() {
        let (ready, waiting): (Vec<&RecordRow>, Vec<&RecordRow>) =
            rest.into_iter().partition(|r| {
                r.body
                    .get("parent_id")
                    .and_then(Value::as_str)
                    .is_none_or(|p| !ids.contains(p) || placed.contains(p))
            });
        if ready.is_empty() {
            out.extend(waiting);
            break;
        }
        for row in ready {
            placed.insert(row.id.to_string());
            out.push(row);
        }
        rest = waiting;
    }
    out
}

/// Demo mode: after `--reset-delay` without a Bryntum socket on the project, its demo data
/// comes back, so a public demo does not drift forever.
fn spawn_idle_reset(state: AppState, project_id: Uuid) {
    let delay = state.config.bryntum_reset_delay;
    tokio::spawn(async move {
        let mut idle_since: Option<Instant> = None;
        loop {
            tokio::time::sleep(
                delay
                    .min(Duration::from_secs(5))
                    .max(Duration::from_millis(50)),
            )
            .await;
            let room = lock(&state.bryntum.rooms)
                .get(&project_id)
                .and_then(Weak::upgrade);
            if room.is_some_and(|room| room.receivers() > 0) {
                idle_since = None;
                continue;
            }
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() < delay {
                continue;
            }
            idle_since = None;
            // Only a project that drifted from its demo data is reset: a reset rewrites every
            // record, which other transports would see as a burst of events.
            let snapshot = lock(&state.bryntum.snapshots).get(&project_id).cloned();
            let current = read_records(&state, project_id).await;
            if let (Some(snapshot), Ok(current)) = (snapshot, current)
                && same_records(&snapshot, &current)
            {
                continue;
            }
            let Some(owner) = project_owner(&state, project_id).await else {
                return;
            };
            let room = match state.bryntum.room(&state, project_id).await {
                Ok(room) => room,
                Err(_) => return,
            };
            if let Err(e) = reset_project(&state, &room, project_id, owner, "server").await {
                tracing::warn!(project = %project_id, error = %e, "idle reset failed");
            }
        }
    });
}

fn same_records(a: &[RecordRow], b: &[RecordRow]) -> bool {
    let key = |rows: &[RecordRow]| {
        let mut keyed: Vec<(Uuid, String)> = rows
            .iter()
            .map(|r| (r.id, Value::Object(r.body.clone()).to_string()))
            .collect();
        keyed.sort();
        keyed
    };
    key(a) == key(b)
}

async fn project_owner(state: &AppState, project_id: Uuid) -> Option<Actor> {
    let mut ops = state.domain.store.read().await.ok()?;
    ops.get_project(project_id).await.ok().flatten()?;
    let members = ops.list_memberships(project_id).await.ok()?;
    let owner = members
        .iter()
        .filter(|m| m.role >= Role::Member.level())
        .max_by_key(|m| m.role)?;
    Some(Actor {
        user_id: owner.user_id,
        is_admin: false,
        tab_id: None,
    })
}

/// The end of the login (logout elsewhere, deactivation); never, without a watched login.
async fn recv_login(user: &mut Option<LoggedIn>) -> Delivery {
    match user.as_mut().and_then(|u| u.watch.as_mut()) {
        Some(watch) => watch.recv().await,
        None => std::future::pending().await,
    }
}

enum SubEvent {
    Room(Result<Arc<RoomMessage>, broadcast::error::RecvError>),
    Access(Delivery),
}

/// The next thing the subscription has for the socket; never, without one.
async fn recv_sub(sub: &mut Option<Subscribed>) -> SubEvent {
    let Some(sub) = sub else {
        return std::future::pending().await;
    };
    tokio::select! {
        message = sub.receiver.recv() => SubEvent::Room(message),
        delivery = sub.access.recv() => SubEvent::Access(delivery),
    }
}

/// What a room message makes a socket send.
enum RoomOut {
    Replies(Replies),
    /// A frame shared with the room's other sockets.
    Frame(Utf8Bytes),
}

async fn send_frame(socket: &mut WebSocket, text: Utf8Bytes) -> Flow {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text))).await {
        Ok(Ok(())) => Flow::Continue,
        _ => Flow::Gone,
    }
}

async fn send_all(socket: &mut WebSocket, replies: Replies) -> Flow {
    for text in replies {
        let send = socket.send(Message::Text(Utf8Bytes::from(text)));
        match tokio::time::timeout(SEND_TIMEOUT, send).await {
            Ok(Ok(())) => {}
            _ => return Flow::Gone,
        }
    }
    Flow::Continue
}

fn is_capacity(error: &axum::Error) -> bool {
    let text = error.to_string();
    text.contains("Space limit exceeded") || text.contains("too long") || text.contains("size")
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        socket.send(Message::Close(Some(frame))),
    )
    .await;
    // Read what the client already sent until its close answer: closing with unread data
    // makes the kernel reset the connection, and the client would never see the close code.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}
