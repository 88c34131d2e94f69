//! What the Pusher sockets of one node share: who is on which channel (with presence members
//! and the last event of cache channels), which sockets are signed in as whom, and each
//! socket's [`Mailbox`], through which the node hands it frames.
//!
//! Frames are encoded once per event and shared ([`Bytes`]) by every mailbox they go to. A
//! mailbox holds no allocation while empty, so an idle socket costs its entry in the maps.
//! While a socket's task waits with nothing queued, its mailbox writes a frame straight to the
//! socket (`net::direct`, as the native WebSocket's fan-out does): no task wake-up and no copy
//! per delivery. Anything else (a socket that would block, a task at work) queues as before.

use super::protocol;
use super::session::Member;
use crate::pusher::activity::ActivitySink;
use bytes::Bytes;
use hub::{DirectOutcome, DirectWrite};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::Notify;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Frames a socket may have waiting; past it the socket is closed (4200, reconnect at once,
/// and resume) rather than the node holding an unbounded backlog for a slow reader.
pub const MAILBOX_LIMIT: usize = 1024;

/// What the node tells one socket.
pub enum Note {
    /// A text frame (JSON).
    Frame(Bytes),
    /// A direct write left part of a frame in the socket's backlog: flush it.
    Flush,
    /// The socket lost access to this liveplan channel: drop the subscription.
    AccessLost(String),
    /// End the socket with this close code.
    Close(u16, &'static str),
}

#[derive(Default)]
pub struct Mailbox {
    inbox: Mutex<Inbox>,
    pub ready: Notify,
    /// Writes a frame straight to the socket while its task waits with nothing queued.
    direct: Option<Arc<dyn DirectWrite>>,
}

#[derive(Default)]
struct Inbox {
    notes: VecDeque<Note>,
    /// The socket's task is waiting for something to do (see [`Mailbox::park`]).
    idle: bool,
}

impl Mailbox {
    /// A mailbox that writes frames to the socket itself through `direct` while it can.
    pub fn with_direct(direct: Option<Arc<dyn DirectWrite>>) -> Mailbox {
        Mailbox {
            direct,
            ..Mailbox::default()
        }
    }

    pub fn post(&self, note: Note) {
        let mut inbox = lock(&self.inbox);
        // Only while the task waits with nothing queued: then no frame of its own (an answer,
        // a frame it took from here) can be overtaken.
        if inbox.idle
            && inbox.notes.is_empty()
            && let Note::Frame(frame) = &note
            && let Some(direct) = &self.direct
        {
            match direct.try_write(frame) {
                DirectOutcome::Sent => return,
                DirectOutcome::Started => {
                    inbox.notes.push_back(Note::Flush);
                    drop(inbox);
                    self.ready.notify_one();
                    return;
                }
                DirectOutcome::Refused => {}
            }
        }
        let notes = &mut inbox.notes;
        if notes.len() >= MAILBOX_LIMIT {
            if !matches!(notes.back(), Some(Note::Close(..))) {
                notes.push_back(Note::Close(
                    protocol::CLOSE_RECONNECT,
                    "too slow; reconnect",
                ));
            }
        } else {
            notes.push_back(note);
        }
        drop(inbox);
        self.ready.notify_one();
    }

    /// Everything waiting, oldest first.
    pub fn take_all(&self) -> VecDeque<Note> {
        std::mem::take(&mut lock(&self.inbox).notes)
    }

    /// The task is about to wait: frames may go straight to the socket until [`Self::unpark`]
    /// (unless notes wait; then the task's wake-up is already due).
    pub fn park(&self) {
        let mut inbox = lock(&self.inbox);
        inbox.idle = inbox.notes.is_empty();
    }

    /// The task woke up: from now on frames queue. A direct write under way finishes first
    /// (it holds the lock), so nothing the task writes next can be overtaken.
    pub fn unpark(&self) {
        lock(&self.inbox).idle = false;
    }
}

struct Subscriber {
    /// `None`: a member without a Pusher socket (a whiteboard's y-websocket client on its
    /// canvas channel), counted and listed but handed no frames.
    mailbox: Option<Arc<Mailbox>>,
    member: Option<String>,
}

#[derive(Default)]
struct ChannelState {
    sockets: HashMap<Arc<str>, Subscriber>,
    /// Presence members: user id → (sockets, user_info).
    members: HashMap<String, (usize, Value)>,
}

/// The channels and sign-ins of this node's sockets.
pub struct Channels {
    channels: Mutex<HashMap<String, ChannelState>>,
    /// The last event of each cache channel (kept while anything is subscribed or not: a
    /// cache channel's point is to answer the next subscriber).
    cached: Mutex<HashMap<String, Bytes>>,
    users: Mutex<HashMap<String, Vec<UserSocket>>>,
    activity: Arc<dyn ActivitySink>,
}

/// A signed-in socket: its id and mailbox.
type UserSocket = (Arc<str>, Arc<Mailbox>);

/// Caches the node keeps at most (their names are the app's, so their number is bounded).
const MAX_CACHED: usize = 10_000;

/// What a join changed on this node; the caller decides with the other nodes what it means
/// for the cluster (`PusherNode::join`).
pub struct LocalJoin {
    /// The socket was not on the channel yet.
    pub fresh: bool,
    /// The channel's first socket on this node.
    pub first_socket: bool,
    /// The member's first socket on the channel on this node.
    pub first_of_member: bool,
    /// This node's presence members (user → user_info), the joining one included.
    pub members: HashMap<String, Value>,
}

/// What a leave changed on this node.
#[derive(Default)]
pub struct LocalLeave {
    /// The socket was on the channel.
    pub left: bool,
    /// It was the channel's last socket on this node.
    pub last_socket: bool,
    /// Its presence member, and whether this was their last socket on the channel here.
    pub member: Option<(String, bool)>,
}

impl Channels {
    pub fn new(activity: Arc<dyn ActivitySink>) -> Channels {
        Channels {
            channels: Mutex::default(),
            cached: Mutex::default(),
            users: Mutex::default(),
            activity,
        }
    }

    pub fn activity(&self) -> &Arc<dyn ActivitySink> {
        &self.activity
    }

    /// Adds a socket to a channel on this node (again: nothing changes).
    pub fn join(
        &self,
        channel: &str,
        socket_id: &Arc<str>,
        mailbox: Option<&Arc<Mailbox>>,
        member: Option<&Member>,
    ) -> LocalJoin {
        let mut channels = lock(&self.channels);
        let state = channels.entry(channel.to_owned()).or_default();
        let first_socket = state.sockets.is_empty();
        let fresh = !state.sockets.contains_key(socket_id);
        let mut first_of_member = false;
        if fresh {
            state.sockets.insert(
                socket_id.clone(),
                Subscriber {
                    mailbox: mailbox.cloned(),
                    member: member.map(|m| m.user_id.clone()),
                },
            );
            if let Some(member) = member {
                let entry = state
                    .members
                    .entry(member.user_id.clone())
                    .or_insert((0, member.user_info.clone()));
                entry.0 += 1;
                first_of_member = entry.0 == 1;
            }
        }
        let members = if member.is_some() {
            state
                .members
                .iter()
                .map(|(id, (_, info))| (id.clone(), info.clone()))
                .collect()
        } else {
            HashMap::new()
        };
        LocalJoin {
            fresh,
            first_socket: first_socket && fresh,
            first_of_member,
            members,
        }
    }

    /// The cache channel's last event here.
    pub fn cached(&self, channel: &str) -> Option<Bytes> {
        lock(&self.cached).get(channel).cloned()
    }

    /// Removes a socket from a channel on this node.
    pub fn leave(&self, channel: &str, socket_id: &str) -> LocalLeave {
        let mut channels = lock(&self.channels);
        let Some(state) = channels.get_mut(channel) else {
            return LocalLeave::default();
        };
        let Some(gone) = state.sockets.remove(socket_id) else {
            return LocalLeave::default();
        };
        let mut member = None;
        if let Some(user_id) = gone.member
            && let Some(entry) = state.members.get_mut(&user_id)
        {
            entry.0 -= 1;
            let last = entry.0 == 0;
            if last {
                state.members.remove(&user_id);
            }
            member = Some((user_id, last));
        }
        let last_socket = state.sockets.is_empty();
        if last_socket {
            channels.remove(channel);
        }
        LocalLeave {
            left: true,
            last_socket,
            member,
        }
    }

    /// This node's channels: sockets and members, for the cluster's heartbeat.
    pub fn snapshot(&self) -> crate::cluster::pusher_state::NodeChannels {
        lock(&self.channels)
            .iter()
            .map(|(name, state)| {
                let members = state
                    .members
                    .iter()
                    .map(|(id, (n, info))| (id.clone(), (*n as u64, info.to_string())))
                    .collect();
                (name.clone(), (state.sockets.len() as u64, members))
            })
            .collect()
    }

    /// Hands `frame` to the channel's sockets here, except `except`.
    pub fn broadcast(&self, channel: &str, frame: Bytes, except: Option<&str>) {
        let channels = lock(&self.channels);
        if let Some(state) = channels.get(channel) {
            for (id, subscriber) in &state.sockets {
                if let Some(mailbox) = &subscriber.mailbox
                    && except != Some(&**id)
                {
                    mailbox.post(Note::Frame(frame.clone()));
                }
            }
        }
    }

    /// Remembers a cache channel's last event.
    pub fn cache(&self, channel: &str, frame: Bytes) {
        let mut cached = lock(&self.cached);
        if cached.len() >= MAX_CACHED && !cached.contains_key(channel) {
            cached.clear();
        }
        cached.insert(channel.to_owned(), frame);
    }

    /// `(sockets, presence users)` of a channel on this node.
    pub fn counts(&self, channel: &str) -> (u64, Option<Vec<String>>) {
        let channels = lock(&self.channels);
        match channels.get(channel) {
            Some(state) => {
                let users = channel
                    .starts_with("presence-")
                    .then(|| state.members.keys().cloned().collect());
                (state.sockets.len() as u64, users)
            }
            None => (0, channel.starts_with("presence-").then(Vec::new)),
        }
    }

    pub fn occupied(&self) -> Vec<String> {
        lock(&self.channels).keys().cloned().collect()
    }

    pub fn sign_in(&self, user_id: &str, socket_id: &Arc<str>, mailbox: &Arc<Mailbox>) {
        let mut users = lock(&self.users);
        let sockets = users.entry(user_id.to_owned()).or_default();
        if !sockets.iter().any(|(id, _)| id == socket_id) {
            sockets.push((socket_id.clone(), mailbox.clone()));
        }
    }

    pub fn sign_out(&self, user_id: &str, socket_id: &str) {
        let mut users = lock(&self.users);
        if let Some(sockets) = users.get_mut(user_id) {
            sockets.retain(|(id, _)| &**id != socket_id);
            if sockets.is_empty() {
                users.remove(user_id);
            }
        }
    }

    /// Closes (4009) every socket signed in as `user_id` here.
    pub fn terminate(&self, user_id: &str) {
        if let Some(sockets) = lock(&self.users).get(user_id) {
            for (_, mailbox) in sockets {
                mailbox.post(Note::Close(
                    protocol::CLOSE_UNAUTHORIZED,
                    "connections terminated",
                ));
            }
        }
    }
}

/// `{ids, hash, count}` of a presence channel's members.
pub fn presence_data(members: &HashMap<String, Value>) -> Value {
    let mut ids: Vec<&String> = members.keys().collect();
    ids.sort();
    let hash: Map<String, Value> = members
        .iter()
        .map(|(id, info)| (id.clone(), info.clone()))
        .collect();
    json!({"ids": ids, "hash": hash, "count": ids.len()})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pusher::activity::NoActivity;

    /// A socket that takes what it is told to: whole frames, part of one, or nothing.
    struct FakeSocket {
        outcome: Mutex<DirectOutcome>,
        written: Mutex<Vec<Bytes>>,
    }

    impl DirectWrite for FakeSocket {
        fn try_write(&self, frame: &Bytes) -> DirectOutcome {
            let outcome = *lock(&self.outcome);
            if outcome != DirectOutcome::Refused {
                lock(&self.written).push(frame.clone());
            }
            outcome
        }
    }

    fn queued(mailbox: &Mailbox) -> Vec<String> {
        mailbox
            .take_all()
            .into_iter()
            .map(|note| match note {
                Note::Frame(frame) => String::from_utf8(frame.to_vec()).unwrap(),
                Note::Flush => "flush".into(),
                Note::AccessLost(channel) => format!("lost {channel}"),
                Note::Close(code, _) => format!("close {code}"),
            })
            .collect()
    }

    #[test]
    fn frames_go_straight_to_the_socket_only_while_its_task_waits_with_nothing_queued() {
        let socket = Arc::new(FakeSocket {
            outcome: Mutex::new(DirectOutcome::Sent),
            written: Mutex::default(),
        });
        let mailbox = Mailbox::with_direct(Some(socket.clone() as Arc<dyn DirectWrite>));
        let frame = |text: &'static str| Note::Frame(Bytes::from_static(text.as_bytes()));

        // The task is at work: frames queue.
        mailbox.post(frame("a"));
        assert_eq!(queued(&mailbox), ["a"]);
        // It waits: straight to the socket, nothing queued, no wake-up needed.
        mailbox.park();
        mailbox.post(frame("b"));
        assert!(queued(&mailbox).is_empty());
        assert_eq!(*lock(&socket.written), [Bytes::from_static(b"b")]);
        // Part of a frame went out: the task is asked to flush the rest, and what follows
        // queues behind it.
        *lock(&socket.outcome) = DirectOutcome::Started;
        mailbox.post(frame("c"));
        mailbox.post(frame("d"));
        assert_eq!(queued(&mailbox), ["flush", "d"]);
        // A socket that would block: queued.
        *lock(&socket.outcome) = DirectOutcome::Refused;
        mailbox.park();
        mailbox.post(frame("e"));
        assert_eq!(queued(&mailbox), ["e"]);
        // Notes waiting when the task parks keep it from going idle.
        *lock(&socket.outcome) = DirectOutcome::Sent;
        mailbox.post(Note::AccessLost("x".into()));
        mailbox.park();
        mailbox.post(frame("f"));
        assert_eq!(queued(&mailbox), ["lost x", "f"]);
        // Woken: queued again.
        mailbox.park();
        mailbox.unpark();
        mailbox.post(frame("g"));
        assert_eq!(queued(&mailbox), ["g"]);
        assert_eq!(lock(&socket.written).len(), 2, "b and c only");
    }

    #[test]
    fn joins_and_leaves_report_this_node_s_firsts_and_lasts() {
        let channels = Channels::new(Arc::new(NoActivity));
        let mailbox = Arc::new(Mailbox::default());
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = ("1.1".into(), "1.2".into(), "1.3".into());
        let alice = Member {
            user_id: "alice".into(),
            user_info: json!({"name": "A"}),
        };
        let bob = Member {
            user_id: "bob".into(),
            user_info: Value::Null,
        };
        let first = channels.join("presence-x", &a, Some(&mailbox), Some(&alice));
        assert!(first.fresh && first.first_socket && first.first_of_member);
        let again = channels.join("presence-x", &a, Some(&mailbox), Some(&alice));
        assert!(!again.fresh && !again.first_socket && !again.first_of_member);
        let tab = channels.join("presence-x", &b, Some(&mailbox), Some(&alice));
        assert!(tab.fresh && !tab.first_socket && !tab.first_of_member);
        let other = channels.join("presence-x", &c, Some(&mailbox), Some(&bob));
        assert!(other.first_of_member);
        assert_eq!(
            presence_data(&other.members)["ids"],
            json!(["alice", "bob"])
        );
        let snapshot = channels.snapshot();
        assert_eq!(snapshot["presence-x"].0, 3);
        assert_eq!(snapshot["presence-x"].1["alice"].0, 2);

        let gone = channels.leave("presence-x", "1.1");
        assert!(gone.left && !gone.last_socket);
        assert_eq!(gone.member, Some(("alice".into(), false)));
        assert!(!channels.leave("presence-x", "1.1").left, "left once");
        assert_eq!(
            channels.leave("presence-x", "1.2").member,
            Some(("alice".into(), true))
        );
        let last = channels.leave("presence-x", "1.3");
        assert!(last.last_socket);
        assert_eq!(last.member, Some(("bob".into(), true)));
        assert_eq!(channels.counts("presence-x").0, 0);
        assert!(channels.snapshot().is_empty());
    }
}
