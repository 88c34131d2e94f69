//! One Pusher socket's rules, without I/O: which subscriptions it may make (signatures,
//! presence channel data, the socket's channel limit), which client events it may send
//! (subscribed, private or presence, at most 10 a second), its sign-in, and its pings.

use super::protocol::{CLIENT_EVENTS_PER_SECOND, MAX_CHANNELS_PER_SOCKET};
use crate::dialects::ws::MessageLimiter;
use crate::pusher::channel::{Channel, ChannelKind, OwnedChannel};
use crate::pusher::credentials::PusherCredentials;
use crate::pusher::signature::{verify_channel_auth, verify_user_auth};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// A presence member as its signed channel data names it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub user_id: String,
    pub user_info: Value,
}

/// What a subscription the session allowed is.
#[derive(Debug, Clone, PartialEq)]
pub struct Admission {
    pub channel: Channel,
    pub member: Option<Member>,
    /// The liveplan user the domain must authorize, for liveplan's own channels.
    pub liveplan_user: Option<Uuid>,
}

/// Why a subscription is refused: `pusher:subscription_error` with this status and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub error: String,
}

impl Refusal {
    fn new(status: u16, error: impl Into<String>) -> Refusal {
        Refusal {
            status,
            error: error.into(),
        }
    }
}

/// A subscription the socket holds. Small (the member is boxed): an idle socket's one
/// subscription is most of what it holds beside its task.
#[derive(Debug, Clone)]
pub struct Subscribed {
    pub kind: ChannelKind,
    pub member: Option<Box<Member>>,
    pub owned: Option<OwnedChannel>,
}

/// The user a socket signed in as (`pusher:signin`).
#[derive(Debug, Clone, PartialEq)]
pub struct SignedIn {
    pub id: String,
    pub user_data: String,
}

/// Kept for the socket's whole life inside its task, so what most sockets never use (a
/// sign-in, client events) is boxed and made on first use.
pub struct PusherSession {
    pub socket_id: Arc<str>,
    pub subscriptions: HashMap<String, Subscribed>,
    pub user: Option<Box<SignedIn>>,
    /// The liveplan user of the session the upgrade carried (cookie or Bearer), if any.
    pub session_user: Option<Uuid>,
    client_events: Option<Box<MessageLimiter>>,
    /// Pings sent with no frame from the client since.
    unanswered: u8,
}

/// What the node's ping sweep asks of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingStep {
    SendPing,
    /// Two pings went unanswered: close with 4201.
    Close,
}

impl PusherSession {
    pub fn new(socket_id: Arc<str>) -> PusherSession {
        PusherSession {
            socket_id,
            subscriptions: HashMap::new(),
            user: None,
            session_user: None,
            client_events: None,
            unanswered: 0,
        }
    }

    /// Any frame from the client shows it is alive.
    pub fn heard_from_client(&mut self) {
        self.unanswered = 0;
    }

    pub fn on_ping_tick(&mut self) -> PingStep {
        if self.unanswered >= 2 {
            return PingStep::Close;
        }
        self.unanswered += 1;
        PingStep::SendPing
    }

    /// The liveplan user this socket is: its session's, else the one it signed in as (when
    /// that id is a liveplan user's).
    pub fn liveplan_user(&self) -> Option<Uuid> {
        self.session_user.or_else(|| {
            self.user
                .as_ref()
                .and_then(|user| Uuid::parse_str(&user.id).ok())
        })
    }

    /// Checks a subscription's name, signature and channel data.
    pub fn admit(
        &self,
        credentials: &PusherCredentials,
        name: &str,
        auth: Option<&str>,
        channel_data: Option<&str>,
    ) -> Result<Admission, Refusal> {
        let channel = Channel::parse(name).map_err(|e| Refusal::new(400, e.to_string()))?;
        if !self.subscriptions.contains_key(name)
            && self.subscriptions.len() >= MAX_CHANNELS_PER_SOCKET
        {
            return Err(Refusal::new(
                400,
                format!("a socket holds at most {MAX_CHANNELS_PER_SOCKET} channels"),
            ));
        }
        let presence = channel.kind == ChannelKind::Presence;
        if channel.kind.needs_auth() {
            let auth =
                auth.ok_or_else(|| Refusal::new(401, "the channel needs an auth signature"))?;
            let signed_data = if presence { channel_data } else { None };
            if !verify_channel_auth(credentials, &self.socket_id, name, signed_data, auth) {
                return Err(Refusal::new(
                    401,
                    "invalid signature for this socket and channel",
                ));
            }
        }
        let member = if presence {
            let data = channel_data
                .ok_or_else(|| Refusal::new(400, "presence channels need channel_data"))?;
            Some(parse_member(data)?)
        } else {
            None
        };
        let liveplan_user = match channel.owned {
            None => None,
            Some(OwnedChannel::Project(_)) | Some(OwnedChannel::User(_)) => {
                Some(self.liveplan_user().ok_or_else(|| {
                    Refusal::new(
                        403,
                        "sign in (pusher:signin) before subscribing to this channel",
                    )
                })?)
            }
            Some(OwnedChannel::ProjectPresence(_)) | Some(OwnedChannel::Whiteboard(_)) => {
                let member = member.as_ref().map(|m| m.user_id.as_str()).unwrap_or("");
                Some(
                    Uuid::parse_str(member)
                        .map_err(|_| Refusal::new(403, "the member must be a liveplan user"))?,
                )
            }
        };
        let presence_of_another = matches!(
            channel.owned,
            Some(OwnedChannel::ProjectPresence(_)) | Some(OwnedChannel::Whiteboard(_))
        ) && self.session_user.is_some()
            && self.session_user != liveplan_user;
        if presence_of_another {
            return Err(Refusal::new(403, "the member must be the session's user"));
        }
        if let (Some(OwnedChannel::User(owner)), Some(user)) = (channel.owned, liveplan_user)
            && owner != user
        {
            return Err(Refusal::new(403, "a user channel is its user's only"));
        }
        Ok(Admission {
            channel,
            member,
            liveplan_user,
        })
    }

    pub fn subscribed(&mut self, admission: &Admission) {
        self.subscriptions.insert(
            admission.channel.name.clone(),
            Subscribed {
                kind: admission.channel.kind,
                member: admission.member.clone().map(Box::new),
                owned: admission.channel.owned,
            },
        );
    }

    pub fn unsubscribed(&mut self, channel: &str) -> Option<Subscribed> {
        self.subscriptions.remove(channel)
    }

    /// Checks a client event; `Ok` with the sender's presence user id (for `user_id`).
    pub fn client_event(&mut self, channel: &str) -> Result<Option<String>, (u16, &'static str)> {
        let subscribed = self
            .subscriptions
            .get(channel)
            .ok_or((4300, "client events need a subscription to the channel"))?;
        if !subscribed.kind.allows_client_events() {
            return Err((
                4300,
                "client events go to private and presence channels only",
            ));
        }
        let limiter = self.client_events.get_or_insert_with(|| {
            Box::new(MessageLimiter::new(
                CLIENT_EVENTS_PER_SECOND,
                CLIENT_EVENTS_PER_SECOND,
            ))
        });
        if !limiter.allows() {
            return Err((4301, "client events are limited to 10 a second"));
        }
        Ok(subscribed.member.as_ref().map(|m| m.user_id.clone()))
    }

    /// Checks a `pusher:signin`; the user's id on success.
    pub fn sign_in(
        &mut self,
        credentials: &PusherCredentials,
        auth: &str,
        user_data: &str,
    ) -> Result<SignedIn, &'static str> {
        if !verify_user_auth(credentials, &self.socket_id, user_data, auth) {
            return Err("invalid sign-in signature for this socket");
        }
        let Ok(Value::Object(data)) = serde_json::from_str::<Value>(user_data) else {
            return Err("user_data must be a JSON object");
        };
        let id = match data.get("id") {
            Some(Value::String(id)) if !id.is_empty() && id.len() <= 200 => id.clone(),
            _ => return Err("user_data needs a string id"),
        };
        if self.user.as_ref().is_some_and(|user| user.id != id) {
            return Err("the socket is signed in as another user");
        }
        if self.session_user.is_some_and(|user| user.to_string() != id) {
            return Err("the sign-in names another user than the session");
        }
        let signed = SignedIn {
            id,
            user_data: user_data.to_owned(),
        };
        self.user = Some(Box::new(signed.clone()));
        Ok(signed)
    }
}

fn parse_member(channel_data: &str) -> Result<Member, Refusal> {
    let Ok(Value::Object(data)) = serde_json::from_str::<Value>(channel_data) else {
        return Err(Refusal::new(400, "channel_data must be a JSON object"));
    };
    let user_id = match data.get("user_id") {
        Some(Value::String(id)) if !id.is_empty() && id.len() <= 200 => id.clone(),
        Some(Value::Number(id)) => id.to_string(),
        _ => return Err(Refusal::new(400, "channel_data needs a user_id")),
    };
    Ok(Member {
        user_id,
        user_info: data.get("user_info").cloned().unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pusher::signature::{channel_auth, user_auth};

    fn creds() -> PusherCredentials {
        PusherCredentials::demo()
    }

    #[test]
    fn public_channels_need_no_signature_private_ones_a_valid_one() {
        let session = PusherSession::new("1.1".into());
        assert!(session.admit(&creds(), "news", None, None).is_ok());
        assert_eq!(
            session
                .admit(&creds(), "private-a", None, None)
                .unwrap_err()
                .status,
            401
        );
        let good = channel_auth(&creds(), "1.1", "private-a", None);
        assert!(
            session
                .admit(&creds(), "private-a", Some(&good), None)
                .is_ok()
        );
        let other_socket = channel_auth(&creds(), "1.2", "private-a", None);
        assert_eq!(
            session
                .admit(&creds(), "private-a", Some(&other_socket), None)
                .unwrap_err()
                .status,
            401
        );
        assert_eq!(
            session
                .admit(&creds(), "bad name!", None, None)
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn presence_needs_signed_channel_data() {
        let session = PusherSession::new("1.1".into());
        let data = r#"{"user_id":"u1","user_info":{"name":"A"}}"#;
        let auth = channel_auth(&creds(), "1.1", "presence-a", Some(data));
        let admitted = session
            .admit(&creds(), "presence-a", Some(&auth), Some(data))
            .unwrap();
        assert_eq!(admitted.member.unwrap().user_id, "u1");
        let forged = r#"{"user_id":"u2"}"#;
        assert_eq!(
            session
                .admit(&creds(), "presence-a", Some(&auth), Some(forged))
                .unwrap_err()
                .status,
            401
        );
    }

    #[test]
    fn liveplan_private_channels_need_a_signed_in_user() {
        let mut session = PusherSession::new("1.1".into());
        let project = Uuid::now_v7();
        let name = format!("private-project-{project}");
        let auth = channel_auth(&creds(), "1.1", &name, None);
        assert_eq!(
            session
                .admit(&creds(), &name, Some(&auth), None)
                .unwrap_err()
                .status,
            403
        );
        let user = Uuid::now_v7();
        let user_data = format!(r#"{{"id":"{user}"}}"#);
        let signin = user_auth(&creds(), "1.1", &user_data);
        session.sign_in(&creds(), &signin, &user_data).unwrap();
        let admitted = session.admit(&creds(), &name, Some(&auth), None).unwrap();
        assert_eq!(admitted.liveplan_user, Some(user));
        let someone_else = format!("private-user-{}", Uuid::now_v7());
        let auth = channel_auth(&creds(), "1.1", &someone_else, None);
        assert_eq!(
            session
                .admit(&creds(), &someone_else, Some(&auth), None)
                .unwrap_err()
                .status,
            403
        );
    }

    #[test]
    fn client_events_need_a_private_subscription_and_are_rate_limited() {
        let mut session = PusherSession::new("1.1".into());
        assert!(session.client_event("private-a").is_err());
        let public = session.admit(&creds(), "news", None, None).unwrap();
        session.subscribed(&public);
        assert_eq!(session.client_event("news").unwrap_err().0, 4300);
        let auth = channel_auth(&creds(), "1.1", "private-a", None);
        let private = session
            .admit(&creds(), "private-a", Some(&auth), None)
            .unwrap();
        session.subscribed(&private);
        for _ in 0..10 {
            assert_eq!(session.client_event("private-a"), Ok(None));
        }
        assert_eq!(session.client_event("private-a").unwrap_err().0, 4301);
    }

    #[test]
    fn two_unanswered_pings_close() {
        let mut session = PusherSession::new("1.1".into());
        assert_eq!(session.on_ping_tick(), PingStep::SendPing);
        session.heard_from_client();
        assert_eq!(session.on_ping_tick(), PingStep::SendPing);
        assert_eq!(session.on_ping_tick(), PingStep::SendPing);
        assert_eq!(session.on_ping_tick(), PingStep::Close);
    }

    #[test]
    fn sign_in_checks_the_signature_and_the_id() {
        let mut session = PusherSession::new("1.1".into());
        let data = r#"{"id":"u1"}"#;
        assert!(session.sign_in(&creds(), "app-key:00", data).is_err());
        let auth = user_auth(&creds(), "1.1", data);
        assert_eq!(session.sign_in(&creds(), &auth, data).unwrap().id, "u1");
        let other = r#"{"id":"u2"}"#;
        let auth = user_auth(&creds(), "1.1", other);
        assert!(session.sign_in(&creds(), &auth, other).is_err());
    }
}
