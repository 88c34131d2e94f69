//! Pusher client frames (CONTRACT §10) on one socket's session: each parsed, then checked the
//! way the socket checks it (channel names, subscription and sign-in signatures, presence
//! channel data, client events). The input is frames, one per line. A frame whose `auth` is
//! `SIGN` gets the correct signature, so the checks behind the signature are reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use server::dialects::pusher::protocol::{self, ClientMessage};
use server::dialects::pusher::session::PusherSession;
use server::pusher::channel::Channel;
use server::pusher::credentials::PusherCredentials;
use server::pusher::signature::{channel_auth, user_auth};

const SOCKET_ID: &str = "1234.5678";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let credentials = PusherCredentials::demo();
    let mut session = PusherSession::new(SOCKET_ID.into());
    for line in text.lines().take(64) {
        let Ok(message) = protocol::parse(line) else {
            continue;
        };
        match message {
            ClientMessage::Subscribe {
                channel,
                auth,
                channel_data,
            } => {
                let auth = auth.map(|auth| {
                    if auth == "SIGN" {
                        let presence = channel.starts_with("presence-");
                        let signed = if presence {
                            channel_data.as_deref()
                        } else {
                            None
                        };
                        channel_auth(&credentials, SOCKET_ID, &channel, signed)
                    } else {
                        auth
                    }
                });
                if let Ok(admission) = session.admit(
                    &credentials,
                    &channel,
                    auth.as_deref(),
                    channel_data.as_deref(),
                ) {
                    session.subscribed(&admission);
                }
            }
            ClientMessage::Unsubscribe { channel } => {
                session.unsubscribed(&channel);
            }
            ClientMessage::Signin { auth, user_data } => {
                let auth = if auth == "SIGN" {
                    user_auth(&credentials, SOCKET_ID, &user_data)
                } else {
                    auth
                };
                let _ = session.sign_in(&credentials, &auth, &user_data);
            }
            ClientMessage::ClientEvent { channel, .. } => {
                let _ = session.client_event(&channel);
            }
            ClientMessage::Resume { positions } => {
                for (channel, _, _) in positions {
                    let _ = Channel::parse(&channel);
                }
            }
            ClientMessage::Ping | ClientMessage::Pong => {}
        }
    }
});
