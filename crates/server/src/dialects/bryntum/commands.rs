//! Each command of one socket: what it asks the domain (`domain::bryntum`, never the store),
//! what it hands the rules of [`session`], what it commits, and which hub subscription the
//! socket holds after it.

use super::changes::{TOKEN_PREFIX, reset_echo};
use super::mapping::{BryntumStore, Object, Units};
use super::phantoms::{self, PhantomMap};
use super::protocol::{self, Command, Incoming};
use super::session::{self, ProjectName};
use super::{BryntumNode, Label, Mailbox};
use crate::dialects::ws::{self, TicketRefused};
use crate::net::direct::DirectSocket;
use bytes::Bytes;
use domain::Actor;
use domain::batch::{BatchRequest, BatchSetting};
use domain::bryntum::access::ProjectAccess;
use domain::bryntum::dataset::Dataset;
use hub::{DirectOutcome, DirectWrite, SubscribeRequest};
use proto::{ApiError, Role, StreamKey};
use rand::RngCore;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;
use store::UserRow;
use uuid::Uuid;

/// One text frame for this socket: its own head (often empty), then bytes it may share with
/// other sockets (a `project_change` body, a dataset encoded once for many loads).
pub type Frame = [Bytes; 2];

/// The frames a command answers with, for this socket.
pub type Replies = Vec<Frame>;

/// A frame of this socket's alone.
pub fn reply(text: String) -> Frame {
    [Bytes::new(), Bytes::from(text)]
}

fn fail(command: &str, message: impl Into<String>) -> Replies {
    vec![reply(protocol::error(command, &message.into()))]
}

pub struct Login {
    pub user_id: Uuid,
    pub is_admin: bool,
    /// Shared with the socket's mailbox while it is on the roster.
    pub name: Arc<str>,
    /// The name presence shows for the user (CONTRACT §6), as for every dialect.
    pub display_name: String,
    pub session_id: Option<Uuid>,
    /// When the ticket's session expires (a password login has no session).
    pub expires_at: Option<store::Timestamp>,
}

/// The project whose dataset the socket loaded.
pub struct Loaded {
    pub project_id: Uuid,
    /// The project as the client names it, and the head of its `project_change` frames.
    pub label: Arc<Label>,
}

/// A socket's state beside its WebSocket.
pub struct Client {
    pub state: Arc<BryntumNode>,
    /// The peer's address, for the password login's limits (the port is never needed).
    pub address: IpAddr,
    /// The socket's number on the node: it is `client-<id>` to Bryntum.
    pub id: u64,
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
    label: Arc<Label>,
}

impl DirectWrite for LabelledDirect {
    fn try_write(&self, frame: &Bytes) -> DirectOutcome {
        if super::changes::is_control(frame) {
            return DirectOutcome::Refused;
        }
        self.socket
            .try_write_parts(&[&self.label.change_head, frame])
    }
}

/// A subscription that only carries pings and evictions: the user's stream (or nobody's,
/// before login), whose events the Bryntum dialect never encodes.
pub async fn watch(
    state: &BryntumNode,
    user: Option<&Login>,
) -> Result<hub::Subscription, hub::HubError> {
    let live = &state.live;
    let user_id = user.map(|u| u.user_id).unwrap_or_default();
    let mut request = SubscribeRequest::new(StreamKey::User(user_id), live.bryntum, user_id);
    request.session_id = user.and_then(|u| u.session_id);
    request.expires_at = user.and_then(|u| u.expires_at);
    request.filter = Some(Arc::new(|_| false));
    request.heartbeat_slot = Some(live.pings.slot_for_new_socket());
    live.hub().subscribe(request).await
}

impl Client {
    fn client_name(&self) -> String {
        format!("client-{}", self.id)
    }

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
            Command::Version => vec![reply(protocol::message(
                "version",
                json!({ "version": env!("CARGO_PKG_VERSION"), "protocol": 2 }),
            ))],
            Command::Logout => {
                self.logout().await;
                vec![reply(protocol::message("logout", json!({})))]
            }
            Command::Users => vec![reply(protocol::message(
                "users",
                json!({ "users": self.state.user_names() }),
            ))],
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
            let node = &self.state;
            if !node.leave(&self.mailbox, &user.name) {
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
            name: session::user_name(user.username.as_deref(), &user.email).into(),
            display_name: user.display_name.clone(),
            session_id: session.map(|(id, _)| id),
            expires_at: session.map(|(_, at)| at),
        };
        match watch(&self.state, Some(&login)).await {
            Ok(sub) => self.sub = sub,
            Err(_) => return fail("login", "the server is unavailable"),
        }
        let name = login.name.clone();
        let node = &self.state;
        // `join`/`users` go out only when the list of names changes: a user's second socket
        // changes nothing the others show, and telling every socket about every login would
        // make logins cost the square of the sockets.
        let already = node.join(name.clone(), &self.mailbox);
        self.user = Some(login);
        let users = protocol::message("users", json!({ "users": node.user_names() }));
        if !already {
            node.tell_logged_in(
                Some(&self.mailbox),
                &protocol::message("join", json!({ "userName": &*name })),
            );
            node.tell_logged_in(Some(&self.mailbox), &users);
        }
        vec![
            reply(protocol::message(
                "login",
                json!({ "client": self.client_name(), "userName": &*name }),
            )),
            reply(users),
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
            .check_login(login, self.address)
            .await
            .map_err(|e| e.message)?;
        let state = &self.state;
        crate::auth::login::authenticate(
            &state.domain,
            &state.decoy_hash,
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
        let holder = match ws::redeem_ticket(&self.state.domain, ticket).await {
            Ok(holder) => holder,
            Err(TicketRefused::Unusable) => return Err(refused()),
            Err(TicketRefused::Failed(e)) => return Err(e.message),
        };
        if !holder.user.is_active {
            return Err(refused());
        }
        Ok((holder.user, Some((holder.session_id, holder.expires_at))))
    }

    async fn projects(&mut self) -> Replies {
        match self.visible_projects().await {
            Ok(projects) => {
                let list: Vec<Value> = projects
                    .iter()
                    .map(|(id, name)| json!({ "id": id, "name": name }))
                    .collect();
                vec![reply(protocol::message(
                    "projects",
                    json!({ "projects": list }),
                ))]
            }
            Err(e) => fail("projects", e.message),
        }
    }

    /// The user's projects, oldest first (the order `projects` lists and numbers them in).
    async fn visible_projects(&self) -> Result<Vec<(Uuid, String)>, ApiError> {
        let Some(actor) = self.actor() else {
            return Ok(Vec::new());
        };
        let projects = self.state.domain.visible_projects(&actor).await?;
        Ok(projects.into_iter().map(|p| (p.id, p.name)).collect())
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

    /// The user's access to the project now (roles change while a socket is open).
    async fn access(&self, project_id: Uuid) -> Option<ProjectAccess> {
        let actor = self.actor()?;
        self.state
            .domain
            .project_access(&actor, project_id)
            .await
            .ok()
    }

    /// The user's role in the project now.
    async fn role(&self, project_id: Uuid) -> Result<Role, String> {
        self.access(project_id)
            .await
            .and_then(ProjectAccess::role)
            .ok_or_else(|| "no such project".to_owned())
    }

    async fn dataset(&mut self, incoming: &Incoming) -> Replies {
        let (project_id, label) = match self.resolve_project(&incoming.data).await {
            Ok(found) => found,
            Err(message) => return fail("dataset", message),
        };
        if let Err(message) = self.role(project_id).await {
            return fail("dataset", message);
        }
        if self.state.settings.demo {
            if let Err(e) = self.state.domain.remember_demo_snapshot(project_id).await {
                return fail("dataset", e.message);
            }
            if self.state.watch_idle(project_id) {
                super::spawn_idle_reset(self.state.clone(), project_id);
            }
        }
        self.load(project_id, label, false).await
    }

    /// Reads the project's dataset and subscribes from the log position it reflects, so the
    /// socket gets every later event exactly once. With `fresh` the records are read again;
    /// without, the node's encoding of the same read is sent when it has one
    /// ([`Datasets`](super::datasets::Datasets)).
    async fn load(&mut self, project_id: Uuid, label: Value, fresh: bool) -> Replies {
        let (Some(actor), Some(user)) = (self.actor(), &self.user) else {
            return fail("dataset", "log in first");
        };
        let node = &self.state;
        let kept = if fresh {
            None
        } else {
            match node.domain.bryntum_dataset_head(&actor, project_id).await {
                Ok(head) => node
                    .datasets
                    .get(
                        head.seq,
                        &head.project,
                        &head.project_object,
                        Instant::now(),
                    )
                    .map(|body| (head.seq, head.project_object, body)),
                Err(e) => return fail("dataset", e.message),
            }
        };
        let (seq, project_object, body) = match kept {
            Some(kept) => kept,
            None => match node.domain.bryntum_dataset(&actor, project_id).await {
                Ok(read) => {
                    let body = encode_dataset(&read);
                    node.datasets.put(
                        read.seq,
                        read.project,
                        read.project_object.clone(),
                        body.clone(),
                        Instant::now(),
                    );
                    (read.seq, read.project_object, body)
                }
                Err(e) => return fail("dataset", e.message),
            },
        };
        node.units()
            .set(project_id, Units::from_project(&project_object));
        let label = node.shared_label(label);
        let live = &node.live;
        let mut request =
            SubscribeRequest::new(StreamKey::Project(project_id), live.bryntum, user.user_id);
        request.since = Some(seq);
        request.session_id = user.session_id;
        request.expires_at = user.expires_at;
        request.heartbeat_slot = Some(live.pings.slot_for_new_socket());
        // A signed-in user with the project open is present on it (the demo's anonymous
        // sockets are nobody).
        request.presence = self.user.as_ref().map(|login| login.display_name.clone());
        request.direct = self.direct.clone().map(|socket| {
            Arc::new(LabelledDirect {
                socket,
                label: label.clone(),
            }) as Arc<dyn DirectWrite>
        });
        match live.hub().subscribe(request).await {
            Ok(sub) => self.sub = sub,
            Err(_) => return fail("dataset", "the server is unavailable"),
        }
        node.set_project(&self.mailbox, Some(project_id));
        let reply = [label.dataset_head.clone(), body];
        self.loaded = Some(Loaded { project_id, label });
        vec![reply]
    }

    /// A fresh dataset for the loaded project (after a refused revision, a reset, a gap).
    pub async fn resync(&mut self) -> Replies {
        match &self.loaded {
            Some(loaded) => {
                let (project_id, label) = (loaded.project_id, loaded.label.value.clone());
                self.load(project_id, label, true).await
            }
            None => Vec::new(),
        }
    }

    /// Whether the user may still read the loaded project.
    pub async fn still_readable(&self) -> bool {
        match &self.loaded {
            Some(loaded) => self
                .access(loaded.project_id)
                .await
                .is_some_and(ProjectAccess::may_read),
            None => false,
        }
    }

    /// Forgets the loaded project and goes back to watching the login.
    pub async fn unload(&mut self) {
        self.loaded = None;
        self.state.set_project(&self.mailbox, None);
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
        let mut outcome = Ok(());
        for revision in revisions {
            outcome = self.apply_revision(project_id, revision).await;
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

    /// Commits one revision.
    async fn apply_revision(&mut self, project_id: Uuid, revision: &Value) -> Result<(), String> {
        let actor = self.actor().ok_or("log in first")?;
        let revision = revision
            .as_object()
            .ok_or("each revision must be an object")?;
        let mut changes = match revision.get("changes") {
            Some(Value::Object(changes)) => Value::Object(changes.clone()),
            _ => return Err("a revision needs a changes object".into()),
        };
        let domain = &self.state.domain;
        let node = &self.state;
        let writing = node.writing(project_id);
        let _writing = writing.lock().await;
        let known = domain
            .known_phantoms(project_id, &phantoms::candidates(&changes))
            .await
            .map_err(|e| e.message)?;
        let resolution = phantoms::resolve(&mut changes, &PhantomMap::from(known));
        let stored_project = domain
            .bryntum_project_object(project_id)
            .await
            .map_err(|e| e.message)?;
        let units = Units::from_project(&stored_project);
        let mut current = HashMap::new();
        for (store, id) in session::ids_needing_current(&changes, &resolution) {
            if let Ok(row) = domain
                .get_record(&actor, project_id, store.collection(), id)
                .await
            {
                current.insert(id, row.body);
            }
        }
        let ops = session::revision_ops(&changes, &resolution, &units, &current)?;
        let mut new_units = None;
        let setting = match changes.get("project") {
            Some(Value::Object(update)) => {
                let merged = session::merged_project(&stored_project, update);
                new_units = Some(Units::from_project(&merged));
                Some(BatchSetting {
                    key: domain::bryntum::project_object_key(project_id),
                    value: Value::Object(merged).to_string(),
                })
            }
            _ => None,
        };
        let echo = session::echo(revision, &self.client_name(), changes);
        let token = new_token();
        let actor = Actor {
            tab_id: Some(token.clone()),
            ..actor
        };
        let request = BatchRequest {
            ops,
            setting,
            echo: Some(echo.clone()),
            phantoms: resolution.ids.into_iter().collect(),
        };
        let events = domain
            .apply_batch_request(&actor, project_id, request)
            .await
            .map_err(session::describe)?;
        if let Some(units) = new_units {
            node.units().set(project_id, units);
        }
        if events.is_empty() {
            // Nothing liveplan keeps changed (only view state): no event carries the echo, so
            // the project's sockets get it straight away, on this node and the others.
            let mut echo = echo;
            if let Some(object) = echo.as_object_mut() {
                object.insert("revision".into(), json!(format!("server-{token}")));
            }
            self.state.live.bryntum_echo(project_id, echo);
        }
        Ok(())
    }

    async fn reset(&mut self, incoming: &Incoming) -> Replies {
        const CMD: &str = "reset";
        if !self.state.settings.demo {
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
        let Some(actor) = self.actor() else {
            return Vec::new();
        };
        let granted = self
            .state
            .domain
            .grant_autosave(&actor, project_id, chrono::Utc::now())
            .await;
        // Viewers, and everyone within the interval after a grant, get no answer.
        if !granted.unwrap_or(false) {
            return Vec::new();
        }
        let label = self.loaded.as_ref().map(|l| l.label.value.clone());
        vec![reply(protocol::message(
            "versionAutoSaveOK",
            json!({ "project": label }),
        ))]
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
        let Some(actor) = self.actor() else {
            return fail(CMD, "log in first");
        };
        let versions = BryntumStore::Versions.collection();
        match self
            .state
            .domain
            .get_record(&actor, project_id, versions, id)
            .await
        {
            Ok(row) => vec![reply(protocol::message(
                "loadVersionContent",
                json!({
                    "project": label,
                    "versionId": version_id,
                    "content": row.body.get("content").cloned().unwrap_or(Value::Null),
                }),
            ))],
            Err(_) => fail(CMD, "no such version"),
        }
    }
}

/// The shared part of a `dataset` answer for a read ([`protocol::dataset_body`]).
fn encode_dataset(read: &Dataset) -> Bytes {
    let rows = read
        .records
        .iter()
        .filter_map(|(collection, rows)| {
            BryntumStore::from_collection(collection.name).map(|store| (store, rows.as_slice()))
        })
        .collect();
    let dataset = session::dataset(
        &read.project.name,
        &read.project.body,
        read.project_object.clone(),
        rows,
    );
    protocol::dataset_body(&dataset)
}

fn new_token() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// Demo mode: puts the project's demo data back (`Domain::reset_demo`, one transaction);
/// its first event carries who reset it, so every socket of the project gets a fresh dataset,
/// then `reset`.
pub async fn reset_project(
    state: &BryntumNode,
    project_id: Uuid,
    actor: Actor,
    user_name: &str,
) -> Result<(), String> {
    let writing = state.writing(project_id);
    let _writing = writing.lock().await;
    let actor = Actor {
        tab_id: Some(new_token()),
        ..actor
    };
    state
        .domain
        .reset_demo(&actor, project_id, Some(reset_echo(user_name)))
        .await
        .map(drop)
        .map_err(session::describe)
}
