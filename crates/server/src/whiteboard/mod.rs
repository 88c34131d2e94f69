//! Whiteboards as Yjs documents (CONTRACT §11): the registry of open documents ([`Boards`], one
//! actor each, [`doc`]), each connection's frames from its actor ([`outbox`]), what the server reads of a document ([`content`]), the awareness
//! table ([`awareness`]), the y-protocols messages ([`wire`]), the REST side ([`rest`]), the
//! background compaction ([`compaction`]), what open documents tell the other nodes of a
//! cluster ([`peers`]), who is on a canvas ([`roster`]), which connections re-check their
//! access when the hub evicts ([`rechecks`]), the node's writer of every board's updates
//! ([`writer`]) and the throttle of the `whiteboard_updated` event that rides with them
//! ([`throttle`]). The
//! y-websocket dialect is `dialects::whiteboard`.

pub mod awareness;
pub mod compaction;
pub mod content;
pub mod doc;
pub mod outbox;
pub mod peers;
pub mod rechecks;
pub mod rest;
pub mod roster;
pub mod throttle;
pub mod wire;
pub mod writer;

use crate::app::AppState;
use crate::live::access::AccessListener;
use doc::{Actor, Command};
use peers::{PeerNote, Peers};
use rechecks::Rechecks;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use store::Store;
use tokio::sync::mpsc;
use uuid::Uuid;

/// The node's open documents.
pub struct Boards {
    store: Arc<dyn Store>,
    /// Whether other nodes may write the same boards (then open documents poll the store).
    clustered: bool,
    open: Mutex<HashMap<Uuid, (u64, mpsc::UnboundedSender<Command>)>>,
    next_actor: AtomicU64,
    /// The other nodes of the cluster (set once at start; none on a node alone).
    peers: OnceLock<Arc<dyn Peers>>,
    /// Stores every open board's updates (and their events), many boards per transaction.
    writer: writer::Writer,
}

/// A joined client's way to its document's actor.
#[derive(Clone)]
pub struct DocHandle(mpsc::UnboundedSender<Command>);

impl DocHandle {
    /// `false` when the actor is gone.
    pub fn send(&self, command: Command) -> bool {
        self.0.send(command).is_ok()
    }
}

impl Boards {
    pub fn new(domain: domain::Domain, clustered: bool) -> Arc<Boards> {
        Arc::new(Boards {
            store: domain.store.clone(),
            clustered,
            open: Mutex::default(),
            next_actor: AtomicU64::new(0),
            peers: OnceLock::new(),
            writer: writer::Writer::start(Arc::new(writer::StoreTarget(domain))),
        })
    }

    /// Connects the open documents to the other nodes of the cluster (once, at start).
    pub fn connect_peers(&self, peers: Arc<dyn Peers>) {
        let _ = self.peers.set(peers);
    }

    fn tell_peers(&self, board: Uuid, note: PeerNote) {
        if let Some(peers) = self.peers.get() {
            peers.tell(board, note);
        }
    }

    /// A note from another node: handed to the board's actor when the board is open here
    /// (nobody here to tell otherwise, and a closed board loads everything when it opens).
    pub fn from_peer(&self, board: Uuid, note: PeerNote) {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, sender)) = open.get(&board) {
            let _ = sender.send(Command::Peer(note));
        }
    }

    /// Hands `command` to the board's actor, starting (and loading) one if none is open. Under
    /// the registry's lock, so an actor never unloads with it unseen.
    pub fn submit(self: &Arc<Self>, board: Uuid, command: Command) -> DocHandle {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let command = match open.get(&board) {
            Some((_, sender)) => match sender.send(command) {
                Ok(()) => return DocHandle(sender.clone()),
                Err(returned) => returned.0,
            },
            None => command,
        };
        let id = self.next_actor.fetch_add(1, Ordering::Relaxed);
        let (sender, commands) = mpsc::unbounded_channel();
        let _ = sender.send(command);
        open.insert(board, (id, sender.clone()));
        let actor = Actor {
            board,
            id,
            store: self.store.clone(),
            boards: self.clone(),
            poll_peers: self.clustered,
            doc: doc::empty_doc(),
            last_seq: 0,
            bytes: 0,
            conns: HashMap::new(),
            awareness: Default::default(),
        };
        tokio::spawn(actor.run(commands));
        DocHandle(sender)
    }

    /// Removes actor `id` of `board` if nothing is queued for it; `true` when it may end.
    fn unload(&self, board: Uuid, id: u64, queue: &mpsc::UnboundedReceiver<Command>) -> bool {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if !queue.is_empty() {
            return false;
        }
        if open.get(&board).is_some_and(|(open_id, _)| *open_id == id) {
            open.remove(&board);
        }
        true
    }

    /// Removes actor `id` of `board` (it failed).
    fn forget(&self, board: Uuid, id: u64) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.get(&board).is_some_and(|(open_id, _)| *open_id == id) {
            open.remove(&board);
        }
    }

    /// How many documents are open on this node.
    pub fn open_count(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// What the whiteboard routes are served with.
pub struct WhiteboardNode {
    pub app: AppState,
    pub boards: Arc<Boards>,
    /// Told who opens and leaves which canvas (the Pusher presence channel's members).
    pub roster: Arc<dyn roster::CanvasRoster>,
    /// The node's open connections, woken to re-check their access when the hub evicts.
    pub rechecks: Arc<Rechecks>,
    next_conn: AtomicU64,
}

impl WhiteboardNode {
    pub fn new(app: AppState, roster: Arc<dyn roster::CanvasRoster>) -> Arc<WhiteboardNode> {
        let boards = Boards::new(app.domain.clone(), app.config.redis_url.is_some());
        let rechecks = Arc::new(Rechecks::default());
        let listener: Arc<dyn AccessListener> = rechecks.clone();
        app.live.listen_for_access(Arc::downgrade(&listener));
        Arc::new(WhiteboardNode {
            app,
            boards,
            roster,
            rechecks,
            next_conn: AtomicU64::new(1),
        })
    }

    pub fn new_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }
}

/// The whiteboard routes' state: the node, and what the authentication extractor takes.
#[derive(Clone)]
pub struct WbState(pub Arc<WhiteboardNode>);

impl axum::extract::FromRef<WbState> for Arc<crate::auth::tokens::TokenKeys> {
    fn from_ref(state: &WbState) -> Self {
        state.0.app.tokens.clone()
    }
}

impl axum::extract::FromRef<WbState> for domain::Domain {
    fn from_ref(state: &WbState) -> Self {
        state.0.app.domain.clone()
    }
}
