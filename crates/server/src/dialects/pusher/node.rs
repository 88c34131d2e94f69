//! What the Pusher sockets of one node share: who is on which channel (with presence members
//! and the last event of cache channels), which sockets are signed in as whom, and each
//! socket's [`Mailbox`], through which the node hands it frames.
//!
//! Frames are encoded once per event and shared (`Arc<str>`) by every mailbox they go to. A
//! mailbox holds no allocation while empty, so an idle socket costs its entry in the maps.

use super::protocol;
use super::session::Member;
use crate::pusher::activity::{ActivitySink, ChannelActivity};
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
    Frame(Arc<str>),
    /// The socket lost access to this liveplan channel: drop the subscription.
    AccessLost(String),
    /// End the socket with this close code.
    Close(u16, &'static str),
}

#[derive(Default)]
pub struct Mailbox {
    notes: Mutex<VecDeque<Note>>,
    pub ready: Notify,
}

impl Mailbox {
    pub fn post(&self, note: Note) {
        let mut notes = lock(&self.notes);
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
        drop(notes);
        self.ready.notify_one();
    }

    /// Everything waiting, oldest first.
    pub fn take_all(&self) -> VecDeque<Note> {
        std::mem::take(&mut *lock(&self.notes))
    }
}

struct Subscriber {
    mailbox: Arc<Mailbox>,
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
    cached: Mutex<HashMap<String, Arc<str>>>,
    users: Mutex<HashMap<String, Vec<UserSocket>>>,
    activity: Arc<dyn ActivitySink>,
}

/// A signed-in socket: its id and mailbox.
type UserSocket = (Arc<str>, Arc<Mailbox>);

/// Caches the node keeps at most (their names are the app's, so their number is bounded).
const MAX_CACHED: usize = 10_000;

/// What a socket that joined a channel is told.
pub struct Joined {
    /// `{ids, hash, count}` of a presence channel.
    pub presence: Option<Value>,
    /// The cache channel's last event (`None`: a cache miss).
    pub cached: Option<Arc<str>>,
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

    /// Adds a socket to a channel (again: nothing changes) and tells the others of a new
    /// presence member.
    pub fn join(
        &self,
        channel: &str,
        socket_id: &Arc<str>,
        mailbox: &Arc<Mailbox>,
        member: Option<&Member>,
        cache: bool,
    ) -> Joined {
        let mut channels = lock(&self.channels);
        let state = channels.entry(channel.to_owned()).or_default();
        if state.sockets.is_empty() {
            self.activity.record(ChannelActivity::Occupied {
                channel: channel.to_owned(),
            });
        }
        let fresh = !state.sockets.contains_key(socket_id);
        if fresh {
            state.sockets.insert(
                socket_id.clone(),
                Subscriber {
                    mailbox: mailbox.clone(),
                    member: member.map(|m| m.user_id.clone()),
                },
            );
            if let Some(member) = member {
                let entry = state
                    .members
                    .entry(member.user_id.clone())
                    .or_insert((0, member.user_info.clone()));
                entry.0 += 1;
                if entry.0 == 1 {
                    self.activity.record(ChannelActivity::MemberAdded {
                        channel: channel.to_owned(),
                        user_id: member.user_id.clone(),
                    });
                    let frame: Arc<str> =
                        protocol::member_added(channel, &member.user_id, &member.user_info).into();
                    for (id, other) in &state.sockets {
                        if id != socket_id {
                            other.mailbox.post(Note::Frame(frame.clone()));
                        }
                    }
                }
            }
        }
        let presence = member.map(|_| presence_data(&state.members));
        drop(channels);
        let cached = if cache {
            let cached = lock(&self.cached).get(channel).cloned();
            if cached.is_none() {
                self.activity.record(ChannelActivity::CacheMiss {
                    channel: channel.to_owned(),
                });
            }
            cached
        } else {
            None
        };
        Joined { presence, cached }
    }

    /// Removes a socket from a channel; tells the others when its user's last socket left.
    pub fn leave(&self, channel: &str, socket_id: &str) {
        let mut channels = lock(&self.channels);
        let Some(state) = channels.get_mut(channel) else {
            return;
        };
        let Some(gone) = state.sockets.remove(socket_id) else {
            return;
        };
        if let Some(user_id) = gone.member
            && let Some(entry) = state.members.get_mut(&user_id)
        {
            entry.0 -= 1;
            if entry.0 == 0 {
                state.members.remove(&user_id);
                self.activity.record(ChannelActivity::MemberRemoved {
                    channel: channel.to_owned(),
                    user_id: user_id.clone(),
                });
                let frame: Arc<str> = protocol::member_removed(channel, &user_id).into();
                for other in state.sockets.values() {
                    other.mailbox.post(Note::Frame(frame.clone()));
                }
            }
        }
        if state.sockets.is_empty() {
            channels.remove(channel);
            self.activity.record(ChannelActivity::Vacated {
                channel: channel.to_owned(),
            });
        }
    }

    /// Hands `frame` to the channel's sockets here, except `except`.
    pub fn broadcast(&self, channel: &str, frame: Arc<str>, except: Option<&str>) {
        let channels = lock(&self.channels);
        if let Some(state) = channels.get(channel) {
            for (id, subscriber) in &state.sockets {
                if except != Some(&**id) {
                    subscriber.mailbox.post(Note::Frame(frame.clone()));
                }
            }
        }
    }

    /// Remembers a cache channel's last event.
    pub fn cache(&self, channel: &str, frame: Arc<str>) {
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

fn presence_data(members: &HashMap<String, (usize, Value)>) -> Value {
    let mut ids: Vec<&String> = members.keys().collect();
    ids.sort();
    let hash: Map<String, Value> = members
        .iter()
        .map(|(id, (_, info))| (id.clone(), info.clone()))
        .collect();
    json!({"ids": ids, "hash": hash, "count": ids.len()})
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    #[derive(Default)]
    struct Recorded(StdMutex<Vec<ChannelActivity>>);
    impl ActivitySink for Recorded {
        fn record(&self, activity: ChannelActivity) {
            self.0.lock().unwrap().push(activity);
        }
    }

    fn frames(mailbox: &Mailbox) -> Vec<String> {
        mailbox
            .take_all()
            .into_iter()
            .filter_map(|n| match n {
                Note::Frame(f) => Some(f.to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_users_first_socket_joins_and_its_last_leaves() {
        let recorded = Arc::new(Recorded::default());
        let channels = Channels::new(recorded.clone());
        let (a, b, c) = (
            Arc::new(Mailbox::default()),
            Arc::new(Mailbox::default()),
            Arc::new(Mailbox::default()),
        );
        let (ia, ib, ic): (Arc<str>, Arc<str>, Arc<str>) =
            ("1.1".into(), "1.2".into(), "1.3".into());
        let alice = Member {
            user_id: "alice".into(),
            user_info: json!({"name": "A"}),
        };
        let bob = Member {
            user_id: "bob".into(),
            user_info: Value::Null,
        };
        channels.join("presence-x", &ia, &a, Some(&alice), false);
        let joined = channels.join("presence-x", &ib, &b, Some(&alice), false);
        assert_eq!(joined.presence.unwrap()["count"], 1);
        assert!(frames(&a).is_empty(), "a second tab is not a new member");
        channels.join("presence-x", &ic, &c, Some(&bob), false);
        assert_eq!(frames(&a).len(), 1);
        channels.leave("presence-x", "1.1");
        assert!(frames(&c).is_empty(), "alice still has a tab");
        channels.leave("presence-x", "1.2");
        assert!(frames(&c)[0].contains("member_removed"));
        channels.leave("presence-x", "1.3");
        let kinds: Vec<_> = recorded.0.lock().unwrap().clone();
        assert_eq!(
            kinds.first(),
            Some(&ChannelActivity::Occupied {
                channel: "presence-x".into()
            })
        );
        assert_eq!(
            kinds.last(),
            Some(&ChannelActivity::Vacated {
                channel: "presence-x".into()
            })
        );
        assert_eq!(channels.counts("presence-x").0, 0);
    }
}
