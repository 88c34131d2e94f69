//! The one Pusher app this server is: its id, key and secret (CONTRACT §10).

use std::fmt;

/// The app's credentials. `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct PusherCredentials {
    pub app_id: String,
    pub key: String,
    pub secret: String,
}

impl PusherCredentials {
    /// `--demo`'s fixed credentials, the ones Pusher's own examples and soketi use.
    pub fn demo() -> PusherCredentials {
        PusherCredentials {
            app_id: "app-id".to_owned(),
            key: "app-key".to_owned(),
            secret: "app-secret".to_owned(),
        }
    }
}

impl fmt::Debug for PusherCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PusherCredentials")
            .field("app_id", &self.app_id)
            .field("key", &self.key)
            .field("secret", &"<redacted>")
            .finish()
    }
}
