//! Each command's reads and writes for one socket: what it fetches for the rules of
//! [`session`], what it commits, and which hub subscription the socket holds after it.

use super::changes::{Pending, TOKEN_PREFIX};
use super::mapping::{Object, STORES, Units};
use super::protocol::{self, Command, Incoming};
use super::session::{self, ProjectName};
use super::{BryntumNode, Mailbox, phantoms};
use crate::app::AppState;
use crate::auth::tickets;
use crate::transport::direct::DirectSocket;
use bytes::Bytes;
use domain::Actor;
use domain::access::project_role;
use domain::batch::BatchSetting;
use hub::{DirectOutcome, DirectWrite, SubscribeRequest};
use proto::{ApiError, Role, StreamKey};
use rand::RngCore;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use store::{Page, RecordRow, UserRow};
use uuid::Uuid;

/// The frames a command answers with, for this socket.
pub type Replies = Vec<String>;

fn fail(command: &str, message: impl Into<String>) -> Replies {
    vec![protocol::error(command, &message.into())]
}

pub struct Login {
    pub user_id: Uuid,
    pub is_admin: bool,
    pub name: String,
    pub session_id: Option<Uuid>,
    /// When the ticket's session expires (a password login has no session).
    pub expires_at: Option<store::Timestamp>,
}

/// The project whose dataset the socket loaded.
pub struct Loaded {
    pub project_id: Uuid,
    /// The project as the client names it, echoed in every answer.
    pub label: Value,
    /// `project_change` frames start with these bytes for this socket.
    pub head: Bytes,
}

/// A socket's state beside its WebSocket.
pub struct Client {
    pub state: AppState,
    pub address: SocketAddr,
    pub id: u64,
    pub client: String,
    pub user: Option<Login>,
    pub loaded: Option<Loaded>,
    pub mailbox: Arc<Mailbox>,
    /// The socket's one hub subscription (see the module doc of `bryntum`).
    pub sub: hub::Subscription,
    pub direct: Option<Arc<DirectSocket>>,
}

/// The fan-out's direct write of a Bryntum socket: this socket's head, then the shared body.
struct LabelledDirect {
    socket: Arc<DirectSocket>,
    head: Bytes,
}

impl DirectWrite for LabelledDirect {
    fn try_write(&self, frame: &Bytes) -> DirectOutcome {
        if super::changes::is_control(frame) {
            return DirectOutcome::Refused;
        }
        self.socket.try_write_parts(&[&self.head, frame])
    }
}

/// A subscription that only carries pings and evictions: the user's stream (or nobody's,
/// before login), whose events the Bryntum dialect never encodes.
pub async fn watch(
    state: &AppState,
    user: Option<&Login>,
) -> Result<hub::Subscription, hub::HubError> {
    let live = &state.live;
    let user_id = user.map(|u| u.user_id).unwrap_or_default();
    let mut request = SubscribeRequest::new(StreamKey::User(user_id), live.bryntum, user_id);
    request.session_id = user.and_then(|u| u.session_id);
    request.expires_at = user.and_then(|u| u.expires_at);
    request.filter = Some(Arc::new(|_| false));
    request.heartbeat_slot = Some(live.ping_slot());
    live.hub().subscribe(request).await
}

fn node(state: &AppState) -> &BryntumNode {
    &state.bryntum
}

impl Client {
    fn actor(&self) -> Option<Actor> {
        self.user.as_ref().map(|u| Actor {
            user_id: u.user_id,
            is_admin: u.is_admin,
            tab_id: None,
        })
    }

    pub async fn handle(&mut self, text: &str) -> Replies {
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
        if let Some(refused) = session::refusal(command, self.user.is_some()) {
            return fail(&incoming.name, refused);
        }
        match command {
            Command::Login => self.login(&incoming).await,
            Command::Version => vec![protocol::message(
                "version",
                json!({ "version": env!("CARGO_PKG_VERSION"), "protocol": 2 }),
            )],
            Command::Logout => {
                self.logout().await;
                vec![protocol::message("logout", json!({}))]
            }
            Command::Users => vec![protocol::message(
                "users",
                json!({ "users": node(&self.state).user_names() }),
            )],
            Command::Projects => self.projects().await,
            Command::Dataset => self.dataset(&incoming).await,
            Command::ProjectChange => self.project_change(&incoming).await,
            Command::Reset => self.reset(&incoming).await,
            Command::RequestVersionAutosave => self.autosave(&incoming).await,
            Command::LoadVersionContent => self.load_version(&incoming).await,
        }
    }

    /// Leaves the roster and tells the others if the user's name went with it.
    pub fn leave_roster(&mut self) {
        self.loaded = None;
        if let Some(user) = self.user.take() {
            let node = node(&self.state);
            if !node.leave(self.id, &user.name) {
                let users = protocol::message("users", json!({ "users": node.user_names() }));
                node.tell_logged_in(None, &users);
            }
        }
    }

    async fn logout(&mut self) {
        self.leave_roster();
        if let Ok(sub) = watch(&self.state, None).await {
            self.sub = sub;
        }
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
        // A second login on one socket replaces the first.
        self.leave_roster();
        let login = Login {
            user_id: user.id,
            is_admin: user.is_admin,
            name: session::user_name(user.username.as_deref(), &user.email),
            session_id: session.map(|(id, _)| id),
            expires_at: session.map(|(_, at)| at),
        };
        match watch(&self.state, Some(&login)).await {
            Ok(sub) => self.sub = sub,
            Err(_) => return fail("login", "the server is unavailable"),
        }
        let name = login.name.clone();
        let node = node(&self.state);
        // `join`/`users` go out only when the list of names changes: a user's second socket
        // changes nothing the others show, and telling every socket about every login would
        // make logins cost the square of the sockets.
        let already = node.join(self.id, &name, self.mailbox.clone());
        self.user = Some(login);
        let users = protocol::message("users", json!({ "users": node.user_names() }));
        if !already {
            node.tell_logged_in(
                Some(self.id),
                &protocol::message("join", json!({ "userName": name })),
            );
            node.tell_logged_in(Some(self.id), &users);
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
        crate::api::accounts::authenticate(&self.state, login, password.to_owned())
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
        let domain = &self.state.domain;
        let row = domain
            .consume_ticket(&tickets::digest(ticket))
            .await
            .map_err(|e| e.message)?
            .ok_or_else(refused)?;
        let (session, user) = domain
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
            .list_projects_of_user(user.user_id)
            .await
            .map_err(domain::store_error)?;
        rows.sort_by_key(|p| (p.created_at, p.id));
        Ok(rows.into_iter().map(|p| (p.id, p.name)).collect())
    }

    /// The project a message names, and the label to answer with.
    async fn resolve_project(&self, data: &Object) -> Result<(Uuid, Value), String> {
        let label = data.get("project").cloned().unwrap_or(Value::Null);
        let unknown = || "no such project".to_owned();
        let id = match session::project_name(&label)? {
            ProjectName::Id(id) => id,
            ProjectName::Index(index) => {
                let projects = self.visible_projects().await.map_err(|e| e.message)?;
                session::project_at(&projects, index).ok_or_else(unknown)?
            }
            ProjectName::Key(key) => self
                .state
                .domain
                .resolve_project(&key)
                .await
                .map_err(|e| e.message)?
                .ok_or_else(unknown)?,
        };
        Ok((id, label))
    }

    /// The user's role in the project now (roles change while a socket is open).
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
        if let Err(message) = self.role(project_id).await {
            return fail("dataset", message);
        }
        if self.state.config.demo && !node(&self.state).has_snapshot(project_id) {
            match read_records(&self.state, project_id).await {
                Ok(rows) => {
                    if node(&self.state).keep_snapshot(project_id, rows) {
                        super::spawn_idle_reset(self.state.clone(), project_id);
                    }
                }
                Err(e) => return fail("dataset", e.message),
            }
        }
        self.load(project_id, label).await
    }

    /// Reads the project's dataset and subscribes from the log position it reflects, so the
    /// socket gets every later event exactly once.
    async fn load(&mut self, project_id: Uuid, label: Value) -> Replies {
        let (dataset, seq, units) = match load_dataset(&self.state, project_id).await {
            Ok(loaded) => loaded,
            Err(e) => return fail("dataset", e.message),
        };
        node(&self.state).revisions().set_units(project_id, units);
        let Some(user) = &self.user else {
            return fail("dataset", "log in first");
        };
        let head = protocol::change_head(&label);
        let live = &self.state.live;
        let mut request =
            SubscribeRequest::new(StreamKey::Project(project_id), live.bryntum, user.user_id);
        request.since = Some(seq);
        request.session_id = user.session_id;
        request.expires_at = user.expires_at;
        request.heartbeat_slot = Some(live.ping_slot());
        request.direct = self.direct.clone().map(|socket| {
            Arc::new(LabelledDirect {
                socket,
                head: head.clone(),
            }) as Arc<dyn DirectWrite>
        });
        match live.hub().subscribe(request).await {
            Ok(sub) => self.sub = sub,
            Err(_) => return fail("dataset", "the server is unavailable"),
        }
        node(&self.state).set_project(self.id, Some(project_id));
        let reply = protocol::message("dataset", json!({ "project": label, "dataset": dataset }));
        self.loaded = Some(Loaded {
            project_id,
            label,
            head,
        });
        vec![reply]
    }

    /// A fresh dataset for the loaded project (after a refused revision, a reset, a gap).
    pub async fn resync(&mut self) -> Replies {
        match &self.loaded {
            Some(loaded) => {
                let (project_id, label) = (loaded.project_id, loaded.label.clone());
                self.load(project_id, label).await
            }
            None => Vec::new(),
        }
    }

    /// Whether the user may still read the loaded project.
    pub async fn still_readable(&self) -> bool {
        match &self.loaded {
            Some(loaded) => self.role(loaded.project_id).await.is_ok(),
            None => false,
        }
    }

    /// Forgets the loaded project and goes back to watching the login.
    pub async fn unload(&mut self) {
        self.loaded = None;
        node(&self.state).set_project(self.id, None);
        if let Ok(sub) = watch(&self.state, self.user.as_ref()).await {
            self.sub = sub;
        }
    }

    /// The loaded project, if the message is about it.
    async fn loaded_project(&self, command: &str, data: &Object) -> Result<Uuid, Replies> {
        let Some(loaded) = &self.loaded else {
            return Err(fail(command, "load the project's dataset first"));
        };
        match self.resolve_project(data).await {
            Ok((id, _)) if id == loaded.project_id => Ok(id),
            Ok(_) => Err(fail(command, "load the project's dataset first")),
            Err(message) => Err(fail(command, message)),
        }
    }

    async fn project_change(&mut self, incoming: &Incoming) -> Replies {
        const CMD: &str = "project_change";
        let project_id = match self.loaded_project(CMD, &incoming.data).await {
            Ok(id) => id,
            Err(replies) => return replies,
        };
        let Some(revisions) = incoming.data.get("revisions").and_then(Value::as_array) else {
            return fail(CMD, "revisions must be an array");
        };
        if revisions.len() > session::MAX_REVISIONS {
            return fail(
                CMD,
                format!("at most {} revisions per message", session::MAX_REVISIONS),
            );
        }
        let mut role = None;
        let mut outcome = Ok(());
        for revision in revisions {
            outcome = self.apply_revision(project_id, revision, &mut role).await;
            if outcome.is_err() {
                break;
            }
        }
        match outcome {
            Ok(()) => Vec::new(),
            Err(message) => {
                // The later revisions were made on top of the refused one: dropped, and the
                // client gets the state it must start again from.
                let mut replies = fail(CMD, message);
                replies.extend(self.resync().await);
                replies
            }
        }
    }

    /// Commits one revision; `role` is the user's role, read at the first revision that needs
    /// it.
    async fn apply_revision(
        &mut self,
        project_id: Uuid,
        revision: &Value,
        role: &mut Option<Role>,
    ) -> Result<(), String> {
        let actor = self.actor().ok_or("log in first")?;
        let revision = revision
            .as_object()
            .ok_or("each revision must be an object")?;
        let mut changes = match revision.get("changes") {
            Some(Value::Object(changes)) => Value::Object(changes.clone()),
            _ => return Err("a revision needs a changes object".into()),
        };
        let role = match role {
            Some(role) => *role,
            None => *role.insert(self.role(project_id).await?),
        };
        if role < Role::Member {
            return Err("viewers cannot change this project".into());
        }
        let node = node(&self.state);
        let project = node.project(project_id);
        let _writing = project.writing.lock().await;
        let resolution = {
            let known = super::lock(&project.phantoms);
            phantoms::resolve(&mut changes, &known)
        };
        let stored_project = read_project_object(&self.state, project_id).await?;
        let units = Units::from_project(&stored_project);
        let mut current = HashMap::new();
        for id in session::ids_needing_current(&changes, &resolution) {
            if let Some(body) = current_body(&self.state, id).await {
                current.insert(id, body);
            }
        }
        let ops = session::revision_ops(&changes, &resolution, &units, &current)?;
        let mut new_units = None;
        let setting = match changes.get("project") {
            Some(Value::Object(update)) => {
                let merged = session::merged_project(&stored_project, update);
                new_units = Some(Units::from_project(&merged));
                Some(BatchSetting {
                    key: session::project_setting(project_id),
                    value: Value::Object(merged).to_string(),
                })
            }
            _ => None,
        };
        let echo = session::echo(revision, &self.client, changes);
        let token = new_token();
        node.revisions().expect(&token, Pending::Echo(echo));
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
                super::lock(&project.phantoms).remember(&resolution.ids);
                if let Some(units) = new_units {
                    node.revisions().set_units(project_id, units);
                }
                if events.is_empty()
                    && let Some(Pending::Echo(mut echo)) = node.revisions().forget(&token)
                {
                    // Nothing liveplan keeps changed (only view state): no event carries it,
                    // so this node's sockets of the project get it at once.
                    if let Some(object) = echo.as_object_mut() {
                        object.insert("revision".into(), json!(format!("server-{token}")));
                    }
                    node.tell_project(project_id, protocol::change_body(&echo));
                }
                Ok(())
            }
            Err(failure) => {
                node.revisions().forget(&token);
                Err(session::describe(failure))
            }
        }
    }

    async fn reset(&mut self, incoming: &Incoming) -> Replies {
        const CMD: &str = "reset";
        if !self.state.config.demo {
            return fail(CMD, "reset is only available in demo mode");
        }
        let project_id = match self.loaded_project(CMD, &incoming.data).await {
            Ok(id) => id,
            Err(replies) => return replies,
        };
        let (Some(actor), Some(user)) = (self.actor(), &self.user) else {
            return fail(CMD, "load the project's dataset first");
        };
        let name = user.name.clone();
        match self.role(project_id).await {
            Ok(role) if role >= Role::Member => {}
            _ => return fail(CMD, "viewers cannot reset this project"),
        }
        match reset_project(&self.state, project_id, actor, &name).await {
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
        let project_id = match self.loaded_project(CMD, &incoming.data).await {
            Ok(id) => id,
            Err(replies) => return replies,
        };
        if !self.role(project_id).await.is_ok_and(|r| r >= Role::Member) {
            return Vec::new();
        }
        if !node(&self.state).grant_autosave(project_id, Instant::now()) {
            return Vec::new();
        }
        let label = self.loaded.as_ref().map(|l| l.label.clone());
        vec![protocol::message(
            "versionAutoSaveOK",
            json!({ "project": label }),
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

fn new_token() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{TOKEN_PREFIX}{hex}")
}

/// The project's records a demo reset restores.
pub async fn read_records(state: &AppState, project_id: Uuid) -> Result<Vec<RecordRow>, ApiError> {
    let mut ops = state
        .domain
        .store
        .read()
        .await
        .map_err(domain::store_error)?;
    let mut rows = Vec::new();
    for collection in session::snapshot_collections() {
        rows.extend(
            ops.list_records(project_id, collection, Page::ALL)
                .await
                .map_err(domain::store_error)?,
        );
    }
    Ok(rows)
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
        .get_setting(&session::project_setting(project_id))
        .await
        .map_err(|_| "the store is unavailable".to_owned())?;
    Ok(parse_object(text))
}

fn parse_object(text: Option<String>) -> Object {
    text.and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default()
}

/// The project in Bryntum stores, the log position it reflects and its units: one snapshot
/// read, so no commit falls between the records and the seq, and no writer waits for it.
async fn load_dataset(state: &AppState, project_id: Uuid) -> Result<(Value, i64, Units), ApiError> {
    let mut ops = state
        .domain
        .store
        .snapshot()
        .await
        .map_err(domain::store_error)?;
    let seq = ops
        .latest_seq(StreamKey::Project(project_id))
        .await
        .map_err(domain::store_error)?;
    let project = ops
        .get_project(project_id)
        .await
        .map_err(domain::store_error)?
        .ok_or_else(|| ApiError::not_found("project"))?;
    let stored = parse_object(
        ops.get_setting(&session::project_setting(project_id))
            .await
            .map_err(domain::store_error)?,
    );
    let mut rows = Vec::new();
    for store in STORES {
        let found = ops
            .list_records(project_id, store.collection().name, Page::ALL)
            .await
            .map_err(domain::store_error)?;
        rows.push((*store, found));
    }
    drop(ops);
    let units = Units::from_project(&stored);
    let dataset = session::dataset(&project.name, &project.body, stored, rows);
    Ok((dataset, seq, units))
}

/// Demo mode: puts the project's records back as they were when it was first loaded, in one
/// transaction; every socket of the project gets a fresh dataset, then `reset`.
pub async fn reset_project(
    state: &AppState,
    project_id: Uuid,
    actor: Actor,
    user_name: &str,
) -> Result<(), String> {
    let node = node(state);
    let snapshot = node
        .snapshot(project_id)
        .ok_or("this project has no demo data to go back to")?;
    let project = node.project(project_id);
    let _writing = project.writing.lock().await;
    let current = read_records(state, project_id)
        .await
        .map_err(|e| e.message)?;
    let ops = session::reset_ops(&snapshot, &current);
    let token = new_token();
    node.revisions()
        .expect(&token, Pending::Reset(user_name.to_owned()));
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
            node.revisions().forget(&token);
            Err(session::describe(failure))
        }
    }
}
