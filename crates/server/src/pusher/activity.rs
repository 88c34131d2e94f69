//! What happens on channels that Pusher reports by webhook (CONTRACT §10). The socket side
//! records each cluster-wide transition once (on the node that saw it); the webhook sender
//! (`pusher::webhooks`) turns them into deliveries.

/// One transition, as Pusher's webhook events name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelActivity {
    /// The channel's first subscriber in the cluster.
    Occupied { channel: String },
    /// The channel's last subscriber in the cluster left. The sender waits 3 s and asks the
    /// directory again before it reports it (a quick rejoin reports nothing).
    Vacated { channel: String },
    /// A user's first connection to a presence channel in the cluster.
    MemberAdded { channel: String, user_id: String },
    /// A user's last connection to a presence channel in the cluster left (3 s grace, as
    /// `Vacated`).
    MemberRemoved { channel: String, user_id: String },
    /// A `client-*` event a socket sent on a private or presence channel.
    ClientEvent {
        channel: String,
        event: String,
        data: String,
        socket_id: String,
        /// The sender's presence user id, on presence channels.
        user_id: Option<String>,
    },
    /// A subscriber to a cache channel found no cached event.
    CacheMiss { channel: String },
}

/// Where the socket side records activity. Never blocks (a full queue drops, with a warning).
pub trait ActivitySink: Send + Sync + 'static {
    fn record(&self, activity: ChannelActivity);
}

/// No webhooks configured.
pub struct NoActivity;

impl ActivitySink for NoActivity {
    fn record(&self, _activity: ChannelActivity) {}
}
