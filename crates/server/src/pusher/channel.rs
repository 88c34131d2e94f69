//! Pusher channel names (CONTRACT §10): which are valid, what kind each is, and which belong
//! to liveplan (fed by the hub, authorized by the domain) rather than to the app.

use uuid::Uuid;

/// Pusher's limit on a channel name's length, in characters (all are ASCII).
pub const MAX_CHANNEL_NAME: usize = 200;

/// How a channel is joined and what its frames carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// Anyone may subscribe, without a signature.
    Public,
    /// `private-…`: a signed subscription.
    Private,
    /// `private-encrypted-…`: signed, and the data is opaque to the server.
    PrivateEncrypted,
    /// `presence-…`: signed with channel data naming the member.
    Presence,
}

impl ChannelKind {
    /// Subscribing needs an `auth` signature.
    pub fn needs_auth(self) -> bool {
        !matches!(self, ChannelKind::Public)
    }

    /// Client events (`client-*`) are allowed on private and presence channels only (not on
    /// encrypted ones either: Pusher refuses them there, the server cannot read them).
    pub fn allows_client_events(self) -> bool {
        matches!(self, ChannelKind::Private | ChannelKind::Presence)
    }
}

/// A channel liveplan owns: its events come from the log, nobody may publish to it through
/// the HTTP API, and the domain's rules say who may subscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnedChannel {
    /// `private-project-{id}`: every canonical event of the project.
    Project(Uuid),
    /// `presence-project-{id}`: who has the project open.
    ProjectPresence(Uuid),
    /// `private-user-{id}`: the events about that user.
    User(Uuid),
    /// `presence-whiteboard-{id}`: who is on the canvas, their client events, and
    /// `whiteboard_updated`.
    Whiteboard(Uuid),
}

/// A parsed, valid channel name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
    /// `cache-`, `private-cache-`, `presence-cache-`: a subscriber gets the last event, or
    /// `pusher:cache_miss`.
    pub cache: bool,
    pub owned: Option<OwnedChannel>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("channel name is empty")]
    Empty,
    #[error("channel name is longer than 200 characters")]
    TooLong,
    #[error("channel name may hold only A-Z, a-z, 0-9 and _ - = @ , . ;")]
    InvalidCharacter,
    /// `#server-to-user-{id}` and other `#` names are the server's: nobody subscribes to them.
    #[error("channel name is reserved")]
    Reserved,
}

impl Channel {
    pub fn parse(name: &str) -> Result<Channel, ChannelError> {
        if name.is_empty() {
            return Err(ChannelError::Empty);
        }
        if name.starts_with('#') {
            return Err(ChannelError::Reserved);
        }
        if name.len() > MAX_CHANNEL_NAME {
            return Err(ChannelError::TooLong);
        }
        if !name.bytes().all(valid_byte) {
            return Err(ChannelError::InvalidCharacter);
        }
        let (kind, cache) = if name.starts_with("private-encrypted-") {
            (ChannelKind::PrivateEncrypted, false)
        } else if name.starts_with("private-cache-") {
            (ChannelKind::Private, true)
        } else if name.starts_with("private-") {
            (ChannelKind::Private, false)
        } else if name.starts_with("presence-cache-") {
            (ChannelKind::Presence, true)
        } else if name.starts_with("presence-") {
            (ChannelKind::Presence, false)
        } else if name.starts_with("cache-") {
            (ChannelKind::Public, true)
        } else {
            (ChannelKind::Public, false)
        };
        Ok(Channel {
            name: name.to_owned(),
            kind,
            cache,
            owned: owned(name),
        })
    }
}

fn valid_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'=' | b'@' | b',' | b'.' | b';')
}

/// liveplan's own channels. A name with one of their prefixes but no valid id after it is
/// not the app's either: [`reserved_prefix`] keeps the app off all of them.
fn owned(name: &str) -> Option<OwnedChannel> {
    let id = |prefix: &str| {
        name.strip_prefix(prefix)
            .and_then(|id| Uuid::parse_str(id).ok())
    };
    if let Some(id) = id("private-project-") {
        Some(OwnedChannel::Project(id))
    } else if let Some(id) = id("presence-project-") {
        Some(OwnedChannel::ProjectPresence(id))
    } else if let Some(id) = id("private-user-") {
        Some(OwnedChannel::User(id))
    } else {
        id("presence-whiteboard-").map(OwnedChannel::Whiteboard)
    }
}

/// True for names under liveplan's prefixes (`private-project-`, `presence-project-`,
/// `private-user-`, `presence-whiteboard-`): the HTTP API refuses to publish to them (403)
/// even when what follows is not an id, so an app cannot squat a name liveplan may use.
pub fn reserved_prefix(name: &str) -> bool {
    [
        "private-project-",
        "presence-project-",
        "private-user-",
        "presence-whiteboard-",
    ]
    .iter()
    .any(|prefix| name.starts_with(prefix))
}

/// The presence channel of a whiteboard's canvas.
pub fn canvas(board: Uuid) -> String {
    format!("presence-whiteboard-{board}")
}

/// The channel a signed-in user's server-to-user events go to.
pub fn server_to_user(user_id: &str) -> String {
    format!("#server-to-user-{user_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_prefixes() {
        let kind = |name: &str| {
            let channel = Channel::parse(name).unwrap();
            (channel.kind, channel.cache)
        };
        assert_eq!(kind("news"), (ChannelKind::Public, false));
        assert_eq!(kind("cache-news"), (ChannelKind::Public, true));
        assert_eq!(kind("private-a"), (ChannelKind::Private, false));
        assert_eq!(kind("private-cache-a"), (ChannelKind::Private, true));
        assert_eq!(
            kind("private-encrypted-a"),
            (ChannelKind::PrivateEncrypted, false)
        );
        assert_eq!(kind("presence-a"), (ChannelKind::Presence, false));
        assert_eq!(kind("presence-cache-a"), (ChannelKind::Presence, true));
    }

    #[test]
    fn liveplan_channels_are_recognized_by_prefix_and_id() {
        let id = Uuid::now_v7();
        let owned = |name: String| Channel::parse(&name).unwrap().owned;
        assert_eq!(
            owned(format!("private-project-{id}")),
            Some(OwnedChannel::Project(id))
        );
        assert_eq!(
            owned(format!("presence-project-{id}")),
            Some(OwnedChannel::ProjectPresence(id))
        );
        assert_eq!(
            owned(format!("private-user-{id}")),
            Some(OwnedChannel::User(id))
        );
        assert_eq!(
            owned(format!("presence-whiteboard-{id}")),
            Some(OwnedChannel::Whiteboard(id))
        );
        assert_eq!(owned("private-project-nope".to_owned()), None);
        assert!(reserved_prefix("private-project-nope"));
        assert!(!reserved_prefix("private-projects"));
    }

    #[test]
    fn bad_names_are_refused() {
        assert_eq!(Channel::parse(""), Err(ChannelError::Empty));
        assert_eq!(Channel::parse(&"a".repeat(201)), Err(ChannelError::TooLong));
        assert!(Channel::parse(&"a".repeat(200)).is_ok());
        assert_eq!(Channel::parse("a b"), Err(ChannelError::InvalidCharacter));
        assert_eq!(Channel::parse("é"), Err(ChannelError::InvalidCharacter));
        assert_eq!(
            Channel::parse("#server-to-user-1"),
            Err(ChannelError::Reserved)
        );
        assert!(Channel::parse("a_b-c=d@e,f.g;h").is_ok());
    }
}
