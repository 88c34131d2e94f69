//! One actor per open whiteboard document: it owns the `yrs` document and the awareness table,
//! and handles its clients' messages one at a time.
//!
//! - **Load first.** The actor reads every stored update before it takes its first command, so
//!   no client is ever answered from a half-loaded (or empty) document.
//! - **Store before relay.** An accepted update is applied, appended in the store, and only
//!   then sent to the other clients. Updates queued behind one another (several editors at
//!   once) are stored in one transaction, so they share one sync instead of each waiting for
//!   the one before it; that transaction is the node's writer's ([`super::writer`]), shared
//!   with every other board that has updates waiting. If the store fails, the actor closes
//!   every client (1011) and ends without relaying it: the document in memory is dropped, the
//!   next join loads the stored one, and the clients' own copies bring the unstored edit back
//!   when they resync.
//! - **No transaction across an await.** Each `yrs` transaction begins and ends inside one
//!   synchronous call (`content`); no observers are registered.
//! - **Unload.** After its last client leaves, the actor removes itself from the registry and
//!   ends, under the registry's lock and only when no command is queued (a join always
//!   enqueues under that lock, so none can slip in between).
//! - **Other nodes.** Updates appended by another node are read from the store in seq order
//!   whenever this actor's own append finds a gap, at every sync step 1, when another node
//!   says it stored some ([`PeerNote::Changed`]), and on a short poll while the node is part of
//!   a cluster. Awareness travels between nodes as notes ([`super::peers`]): this node's
//!   accepted states and removals go out, other nodes' states are kept under [`PEERS`] and
//!   relayed to this node's clients, and a newly opened document asks the others for theirs.
//!   Their states expire when not renewed for [`PEER_STATE_TIMEOUT`], so a node that dies
//!   leaves no cursors behind for the clients that join later.

use super::Boards;
use super::awareness::{AwarenessTable, Refused};
use super::content;
use super::outbox::Outbox;
use super::peers::{MAX_PEER_CLIENTS, PEER_STATE_SWEEP, PEER_STATE_TIMEOUT, PEERS, PeerNote};
use super::wire::{self as protocol, ClientMessage};
use super::writer::{Failed, Stored};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use store::Store;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use uuid::Uuid;
use yrs::sync::awareness::AwarenessUpdate;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, ReadTxn, Transact};

/// Updates read per store query while loading or catching up.
const PAGE: u32 = 500;
/// How often an open document looks for other nodes' updates when the node is in a cluster.
const PEER_POLL: Duration = Duration::from_millis(250);
/// Client updates stored in one transaction at most.
const MAX_BATCH: usize = 64;

fn is_update(command: &Command) -> bool {
    matches!(
        command,
        Command::Message {
            message: ClientMessage::Update(_),
            ..
        }
    )
}

/// The actor's answer to one client message, which goes to the client's outbox.
#[derive(Debug)]
enum Answer {
    Frames(Vec<Vec<u8>>),
    Close(u16, &'static str),
}

pub enum Command {
    /// A client joins: its first frames (sync step 1, the awareness) go to `out`, then `reply`
    /// is answered.
    Join {
        conn: u64,
        out: Arc<Outbox>,
        reply: oneshot::Sender<()>,
    },
    /// A client's message; its answer goes to the client's outbox, after every frame the actor
    /// sent it before. `in_flight` bounds the messages a client has queued here: the socket
    /// reads no more while it holds none.
    Message {
        conn: u64,
        can_edit: bool,
        message: ClientMessage,
        in_flight: OwnedSemaphorePermit,
    },
    Leave {
        conn: u64,
    },
    /// What another node of the cluster says about this board.
    Peer(PeerNote),
    /// Brings the document to a snapshot's state as a new change (sent to every client).
    Restore {
        state: Vec<u8>,
        reply: oneshot::Sender<Result<(), RestoreFailed>>,
    },
}

#[derive(Debug)]
pub enum RestoreFailed {
    BadSnapshot,
    Store,
}

pub(super) struct Actor {
    pub board: Uuid,
    pub id: u64,
    pub store: Arc<dyn Store>,
    pub boards: Arc<Boards>,
    pub poll_peers: bool,
    pub doc: Doc,
    pub last_seq: i64,
    /// Stored bytes behind the document (an upper bound of its encoded size).
    pub bytes: usize,
    pub conns: HashMap<u64, Arc<Outbox>>,
    pub awareness: AwarenessTable,
}

/// Why the actor must end now.
struct Broken(&'static str);

impl Actor {
    pub(super) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        if let Err(Broken(why)) = self.catch_up(false).await {
            tracing::warn!(board = %self.board, why, "whiteboard failed to load");
            self.boards.forget(self.board, self.id);
            return;
        }
        if self.poll_peers {
            self.boards.tell_peers(self.board, PeerNote::Query);
        }
        let mut poll = tokio::time::interval(PEER_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sweep = tokio::time::interval(PEER_STATE_SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let step = tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.handle_with_followers(command, &mut commands).await,
                    None => break,
                },
                _ = poll.tick(), if self.poll_peers => self.catch_up(true).await,
                _ = sweep.tick(), if self.poll_peers => {
                    self.expire_peer_states();
                    Ok(())
                }
            };
            if let Err(Broken(why)) = step {
                tracing::warn!(board = %self.board, why, "whiteboard closed");
                for out in self.conns.values() {
                    out.close(1011, "the whiteboard is unavailable");
                }
                self.boards.forget(self.board, self.id);
                return;
            }
            if self.conns.is_empty() && self.boards.unload(self.board, self.id, &commands) {
                return;
            }
        }
    }

    /// Handles `first`; when it is an update, the updates already queued behind it are taken
    /// too and stored in the same transaction: a board's updates would otherwise each wait for
    /// the one before it to be durable (one sync each, one at a time). Whatever else comes
    /// next is handled after them, in order.
    async fn handle_with_followers(
        &mut self,
        first: Command,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Result<(), Broken> {
        if !is_update(&first) {
            return self.handle(first).await;
        }
        let mut batch = vec![first];
        let mut after = None;
        while batch.len() < MAX_BATCH {
            match commands.try_recv() {
                Ok(command) if is_update(&command) => batch.push(command),
                Ok(command) => {
                    after = Some(command);
                    break;
                }
                Err(_) => break,
            }
        }
        self.on_updates(batch).await?;
        match after {
            Some(command) => self.handle(command).await,
            None => Ok(()),
        }
    }

    /// Updates from clients: each checked and applied, the accepted ones stored together and
    /// relayed, then every refused one answered.
    async fn on_updates(&mut self, batch: Vec<Command>) -> Result<(), Broken> {
        let mut accepted = Vec::with_capacity(batch.len());
        let mut refused = Vec::new();
        let mut pending_bytes = 0;
        for command in batch {
            let Command::Message {
                conn,
                can_edit,
                message: ClientMessage::Update(bytes),
                ..
            } = command
            else {
                continue;
            };
            match self.accept_update(can_edit, bytes, pending_bytes)? {
                Ok(bytes) => {
                    pending_bytes += bytes.len();
                    accepted.push((Some(conn), bytes));
                }
                Err(answer) => refused.push((conn, answer)),
            }
        }
        self.store_and_relay(accepted).await?;
        for (conn, answer) in refused {
            self.answer(conn, answer);
        }
        Ok(())
    }

    async fn handle(&mut self, command: Command) -> Result<(), Broken> {
        match command {
            Command::Join { conn, out, reply } => {
                self.catch_up(true).await?;
                out.push(&protocol::sync_step1(self.doc.transact().state_vector()).into());
                if !self.awareness.is_empty() {
                    out.push(&protocol::awareness(self.awareness.all()).into());
                }
                self.conns.insert(conn, out);
                let _ = reply.send(());
            }
            Command::Message {
                conn,
                can_edit,
                message,
                ..
            } => {
                let answer = self.on_message(conn, can_edit, message).await?;
                self.answer(conn, answer);
            }
            Command::Leave { conn } => self.leave(conn),
            Command::Peer(note) => self.on_peer(note).await?,
            Command::Restore { state, reply } => {
                // yrs may panic on a state it decoded (as its encoder does on some hostile
                // updates); the live document is then half-changed, so it is dropped and the
                // next join loads the stored one, as after an update that failed to apply.
                let restored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    content::restore(&self.doc, &state)
                }));
                let change = match restored {
                    Ok(Ok(change)) => change,
                    Ok(Err(content::BadSnapshot)) => {
                        let _ = reply.send(Err(RestoreFailed::BadSnapshot));
                        return Ok(());
                    }
                    Err(_) => {
                        let _ = reply.send(Err(RestoreFailed::Store));
                        return Err(Broken("a restore failed midway"));
                    }
                };
                if let Some(change) = change
                    && let Err(broken) = self.store_and_relay(vec![(None, change)]).await
                {
                    let _ = reply.send(Err(RestoreFailed::Store));
                    return Err(broken);
                }
                let _ = reply.send(Ok(()));
            }
        }
        Ok(())
    }

    async fn on_message(
        &mut self,
        conn: u64,
        can_edit: bool,
        message: ClientMessage,
    ) -> Result<Answer, Broken> {
        Ok(match message {
            ClientMessage::SyncStep1(sv) => {
                self.catch_up(true).await?;
                let update = self.doc.transact().encode_state_as_update_v1(&sv);
                Answer::Frames(vec![protocol::sync_step2(update)])
            }
            ClientMessage::Update(bytes) => return self.on_update(conn, can_edit, bytes).await,
            ClientMessage::Awareness(update) => match self.awareness.apply(
                conn,
                update,
                protocol::MAX_AWARENESS_STATE,
                protocol::MAX_AWARENESS_CLIENTS,
            ) {
                Err(Refused::TooBig) => Answer::Close(1009, "awareness state too big"),
                Err(Refused::TooManyClients) => Answer::Close(1008, "too many awareness clients"),
                Ok(None) => Answer::Frames(Vec::new()),
                Ok(Some(accepted)) => {
                    self.tell_peers_awareness(&accepted);
                    // To the sender too: a lone client hears something every time it renews
                    // its state (every 15 s), which keeps y-websocket's 30 s timeout away.
                    self.broadcast(None, protocol::awareness(accepted));
                    Answer::Frames(Vec::new())
                }
            },
            ClientMessage::QueryAwareness => {
                Answer::Frames(vec![protocol::awareness(self.awareness.all())])
            }
            ClientMessage::Auth => Answer::Frames(Vec::new()),
        })
    }

    async fn on_update(
        &mut self,
        conn: u64,
        can_edit: bool,
        bytes: Vec<u8>,
    ) -> Result<Answer, Broken> {
        match self.accept_update(can_edit, bytes, 0)? {
            Ok(bytes) => {
                self.store_and_relay(vec![(Some(conn), bytes)]).await?;
                Ok(Answer::Frames(Vec::new()))
            }
            Err(answer) => Ok(answer),
        }
    }

    /// Checks an update and applies it to the document: `Ok(bytes)` to store and relay, or
    /// the answer that refuses it (nothing applied). `pending` bytes are applied but not
    /// stored yet.
    fn accept_update(
        &mut self,
        can_edit: bool,
        bytes: Vec<u8>,
        pending: usize,
    ) -> Result<Result<Vec<u8>, Answer>, Broken> {
        if bytes.len() > protocol::MAX_UPDATE {
            return Ok(Err(Answer::Close(1009, "update too big")));
        }
        let Some(update) = protocol::decode_update(&bytes) else {
            return Ok(Err(Answer::Close(1007, "the update does not decode")));
        };
        if update.is_empty() {
            return Ok(Err(Answer::Frames(Vec::new())));
        }
        if !can_edit {
            return Ok(Err(Answer::Frames(vec![protocol::permission_denied()])));
        }
        if self.bytes + pending + bytes.len() > protocol::MAX_DOCUMENT {
            return Ok(Err(Answer::Close(1009, "the whiteboard is full")));
        }
        if !content::apply_decoded(&self.doc, update) {
            // yrs refused it midway (or panicked): what the document holds is unknown, so it
            // is dropped and reloaded from the store.
            return Err(Broken("an update failed to apply"));
        }
        Ok(Ok(bytes))
    }

    /// Appends updates already applied to the document, in one transaction (the node's
    /// writer's, shared with other boards), then sends each to every client but its sender.
    async fn store_and_relay(
        &mut self,
        updates: Vec<(Option<u64>, Vec<u8>)>,
    ) -> Result<(), Broken> {
        let (senders, updates): (Vec<_>, Vec<_>) = updates.into_iter().unzip();
        let (Some((first, last)), updates) = self.append(updates).await? else {
            return Ok(());
        };
        if first > self.last_seq + 1 {
            // Another node stored updates in between: they go out first, in order.
            self.catch_up_to(first - 1).await?;
        }
        self.last_seq = last;
        for (from, update) in senders.into_iter().zip(updates) {
            self.bytes += update.len();
            self.broadcast(from, protocol::update(update));
        }
        self.boards.tell_peers(self.board, PeerNote::Changed);
        Ok(())
    }

    async fn on_peer(&mut self, note: PeerNote) -> Result<(), Broken> {
        match note {
            PeerNote::Changed => self.catch_up(true).await?,
            PeerNote::Query => {
                let mine = self.awareness.all_but(PEERS);
                if !mine.clients.is_empty() {
                    self.tell_peers_awareness(&mine);
                }
            }
            PeerNote::Awareness(bytes) => {
                // From a node of this cluster, but still bounded as a client's would be.
                let Ok(update) = AwarenessUpdate::decode_v1(&bytes) else {
                    return Ok(());
                };
                if let Ok(Some(accepted)) = self.awareness.apply(
                    PEERS,
                    update,
                    protocol::MAX_AWARENESS_STATE,
                    MAX_PEER_CLIENTS,
                ) {
                    self.broadcast(None, protocol::awareness(accepted));
                }
            }
        }
        Ok(())
    }

    /// Other nodes' states that stopped being renewed (their node died, or cannot reach this
    /// one) are removed for this node's clients; the other nodes decide for themselves.
    fn expire_peer_states(&mut self) {
        let Some(cutoff) = std::time::Instant::now().checked_sub(PEER_STATE_TIMEOUT) else {
            return;
        };
        if let Some(removed) = self.awareness.expire(PEERS, cutoff) {
            self.broadcast(None, protocol::awareness(removed));
        }
    }

    fn tell_peers_awareness(&self, update: &AwarenessUpdate) {
        if self.poll_peers {
            self.boards
                .tell_peers(self.board, PeerNote::Awareness(update.encode_v1()));
        }
    }

    /// Stores `updates` through the node's writer (with the board's `whiteboard_updated` when
    /// its throttle lets one go); the first and last seq they got (`None`: none), and the updates back. Only
    /// once they are durable: the caller relays after this.
    async fn append(&self, updates: Vec<Vec<u8>>) -> Result<Stored, Broken> {
        if updates.is_empty() {
            return Ok((None, updates));
        }
        self.boards
            .writer
            .append(self.board, updates)
            .await
            .map_err(|Failed| Broken("the store refused an update"))
    }

    /// Applies (and, when `relay`, sends out) what the store holds beyond `last_seq`.
    async fn catch_up(&mut self, relay: bool) -> Result<(), Broken> {
        self.read_updates(i64::MAX, relay).await
    }

    async fn catch_up_to(&mut self, through: i64) -> Result<(), Broken> {
        self.read_updates(through, true).await
    }

    async fn read_updates(&mut self, through: i64, relay: bool) -> Result<(), Broken> {
        loop {
            let rows = {
                let mut ops = self
                    .store
                    .read()
                    .await
                    .map_err(|_| Broken("the store is unavailable"))?;
                ops.read_whiteboard_updates(self.board, self.last_seq, PAGE)
                    .await
                    .map_err(|_| Broken("the store is unavailable"))?
            };
            let full_page = rows.len() == PAGE as usize;
            for row in rows {
                if row.seq > through {
                    return Ok(());
                }
                if !content::apply(&self.doc, &row.update) {
                    return Err(Broken("a stored update does not apply"));
                }
                self.last_seq = row.seq;
                self.bytes += row.update.len();
                if relay {
                    self.broadcast(None, protocol::update(row.update));
                }
            }
            if !full_page {
                return Ok(());
            }
        }
    }

    /// Sends `frame` to every client but `except`; a client whose queue is full is dropped
    /// (its socket closes and y-websocket reconnects and resyncs).
    fn broadcast(&mut self, except: Option<u64>, frame: Vec<u8>) {
        let frame = Bytes::from(frame);
        let mut dropped = Vec::new();
        for (conn, out) in &self.conns {
            if Some(*conn) != except && !out.push(&frame) {
                dropped.push(*conn);
            }
        }
        for conn in dropped {
            self.drop_slow(conn);
        }
    }

    /// Sends the answer to a client's message (nothing when the client has left).
    fn answer(&mut self, conn: u64, answer: Answer) {
        let Some(out) = self.conns.get(&conn) else {
            return;
        };
        match answer {
            Answer::Frames(frames) => {
                for frame in frames {
                    if !out.push(&Bytes::from(frame)) {
                        self.drop_slow(conn);
                        return;
                    }
                }
            }
            Answer::Close(code, reason) => out.close(code, reason),
        }
    }

    /// A client whose queue is full: closed (1013), and gone from the board.
    fn drop_slow(&mut self, conn: u64) {
        if let Some(out) = self.conns.get(&conn) {
            out.close(1013, "too slow to take the whiteboard's updates; reconnect");
        }
        self.leave(conn);
    }

    fn leave(&mut self, conn: u64) {
        if self.conns.remove(&conn).is_none() {
            return;
        }
        if let Some(removed) = self.awareness.leave(conn) {
            self.tell_peers_awareness(&removed);
            self.broadcast(None, protocol::awareness(removed));
        }
    }
}

/// A new actor's document, before loading.
pub(super) fn empty_doc() -> Doc {
    content::new_doc()
}
