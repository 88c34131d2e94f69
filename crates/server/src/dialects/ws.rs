//! What every WebSocket dialect shares: close codes and what a hub [`CloseReason`] closes
//! with, the close handshake, ticket authentication, the per-socket message rate limit, the
//! buffer sizes and the [`Flow`] of a connection's loop. The node-wide ping sweep every
//! WebSocket dialect uses is `live::pings::PingSweep`.
//!
//! Nothing here knows a dialect's frames. It imports no other part of the server but the
//! ticket digest, `net`'s socket type and its fragment limit error.

use crate::auth::tickets;
use crate::net::fragment_limit::TooManyFragments;
use crate::net::ws_upgrade::NativeSocket;
use domain::Domain;
use futures::{SinkExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hub::CloseReason;
use proto::ApiError;
use std::num::NonZeroU32;
use std::time::Duration;
use store::UserRow;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use uuid::Uuid;

pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
pub const CLOSE_UNSUPPORTED: u16 = 1003;
pub const CLOSE_INVALID_DATA: u16 = 1007;
pub const CLOSE_POLICY: u16 = 1008;
pub const CLOSE_TOO_BIG: u16 = 1009;
pub const CLOSE_SERVER_ERROR: u16 = 1011;
pub const CLOSE_NO_TICKET: u16 = 4001;
pub const CLOSE_FORBIDDEN: u16 = 4003;
pub const CLOSE_NOT_FOUND: u16 = 4404;

/// How long a closing handshake may take before the TCP connection is simply dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// The longest ticket secret accepted for hashing (ours are 43 characters).
pub const MAX_TICKET_LEN: usize = 256;

/// Buffers sized for many idle sockets: the library's defaults (128 KiB each way) cost memory
/// per connection that small JSON frames never need; both grow on demand up to the limits.
/// The read buffer is allocated whole and zero-filled on every read attempt, so it is resident
/// on every socket although clients send little (pings, pongs, small JSON): 512 bytes hold
/// those, and a rare large frame is read in 512-byte steps into a buffer that grows to fit it.
pub const READ_BUFFER: usize = 512;
/// Frames are gathered up to this size before a write; it is a threshold, not an allocation.
pub const WRITE_BUFFER: usize = 16 * 1024;
/// Output a socket may hold unsent before the connection is dropped (backpressure normally
/// keeps it near `WRITE_BUFFER`).
pub const MAX_WRITE_BUFFER: usize = 1024 * 1024;

/// The WebSocket settings of a dialect whose frames are read whole up to `read_limit` (so a
/// frame above the dialect's own limit can still be refused with a proper 1009; beyond
/// `read_limit` the library drops the connection unread, which bounds the memory one client
/// can make the server hold).
pub fn config(read_limit: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(read_limit))
        .max_frame_size(Some(read_limit))
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
}

/// What a connection's loop does after one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Close with this code and text (the close handshake), then end.
    Close(u16, &'static str),
    /// The client is gone (or the socket failed): end without a word.
    Gone,
}

/// The close code and text for a hub eviction.
pub fn close_for(reason: CloseReason) -> (u16, &'static str) {
    let text = match reason {
        CloseReason::AccessRevoked => "access to this project was revoked",
        CloseReason::LoggedOut => "the session ended",
        CloseReason::SessionExpired => "the session expired",
        CloseReason::Shutdown => "the server is going away; reconnect with since",
    };
    (reason.ws_close_code(), text)
}

/// What a failed read of a client frame closes with: a client that broke the framing (an
/// unmasked frame, RSV bits, a reserved opcode, a fragmented or oversized control frame, a
/// stray continuation) gets 1002 and one that sent text that is not UTF-8 gets 1007, as
/// RFC 6455 §7.4.1 says, rather than a dropped connection (1006 on its side). A read that
/// failed because the connection is gone, or a frame over the read limit (left unread on
/// purpose, see [`config`]), ends without a word. Continuation frames over the socket's
/// allowance (`net::fragment_limit`, set with `LiveIo::limit_fragments`) get 1008.
pub fn close_for_read_error(err: &tungstenite::Error) -> Flow {
    use tungstenite::error::ProtocolError;
    match err {
        tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Flow::Gone,
        tungstenite::Error::Protocol(_) => Flow::Close(CLOSE_PROTOCOL_ERROR, "protocol error"),
        tungstenite::Error::Utf8(_) => Flow::Close(CLOSE_INVALID_DATA, "text frames must be UTF-8"),
        tungstenite::Error::Io(err) if TooManyFragments::is(err) => {
            Flow::Close(CLOSE_POLICY, "too many frames")
        }
        _ => Flow::Gone,
    }
}

/// Sends a close frame and waits (briefly) for the client's answer, so the frame is read
/// before the TCP connection goes away: closing with unread input would reset the connection
/// and the client might never see the code. A stream that ended at a read error (the library
/// fuses it then) is no longer read, so the client's bytes still arriving are read and dropped
/// here, off the connection itself, until the client closes or the grace runs out.
pub async fn close_handshake(socket: &mut NativeSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: Utf8Bytes::from_static(reason),
    };
    let goodbye = async {
        if socket.send(Message::Close(Some(frame))).await.is_err() {
            return;
        }
        while let Some(Ok(message)) = socket.next().await {
            if matches!(message, Message::Close(_)) {
                return;
            }
        }
        let mut discard = [0u8; 1024];
        while matches!(socket.get_mut().read(&mut discard).await, Ok(read) if read > 0) {}
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, goodbye).await;
}

/// Who a ticket (or another proof of a session) stands for.
#[derive(Debug, Clone)]
pub struct TicketHolder {
    pub user: UserRow,
    pub session_id: Uuid,
    /// When the session expires: the socket is closed then (4003).
    pub expires_at: store::Timestamp,
}

/// Why a ticket does not open a socket.
#[derive(Debug)]
pub enum TicketRefused {
    /// Missing, unknown, expired, spent, too long, or its session or user is gone.
    Unusable,
    /// The store failed; the client may try again.
    Failed(ApiError),
}

/// Spends a single-use ticket (CONTRACT §6) and finds its session's user.
pub async fn redeem_ticket(domain: &Domain, ticket: &str) -> Result<TicketHolder, TicketRefused> {
    if ticket.is_empty() || ticket.len() > MAX_TICKET_LEN {
        return Err(TicketRefused::Unusable);
    }
    let row = domain
        .consume_ticket(&tickets::digest(ticket))
        .await
        .map_err(TicketRefused::Failed)?
        .ok_or(TicketRefused::Unusable)?;
    session_holder(domain, row.session_id, row.user_id).await
}

/// The user of a live session, provided it is still `user_id`'s: a ticket outlives nothing,
/// so a session logged out (or a user deactivated) after minting makes it worthless.
pub async fn session_holder(
    domain: &Domain,
    session_id: Uuid,
    user_id: Uuid,
) -> Result<TicketHolder, TicketRefused> {
    let (session, user) = domain
        .session_user(session_id)
        .await
        .map_err(TicketRefused::Failed)?
        .ok_or(TicketRefused::Unusable)?;
    if user.id != user_id {
        return Err(TicketRefused::Unusable);
    }
    Ok(TicketHolder {
        user,
        session_id,
        expires_at: session.expires_at,
    })
}

/// A socket's allowance of client messages: `per_second` on average, bursts of `burst`.
pub struct MessageLimiter(DefaultDirectRateLimiter);

impl MessageLimiter {
    pub fn new(per_second: u32, burst: u32) -> Self {
        let quota = Quota::per_second(NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        Self(RateLimiter::direct(quota))
    }

    /// Counts one message; `false` when it is over the allowance.
    pub fn allows(&self) -> bool {
        self.0.check().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evictions_close_with_their_code() {
        assert_eq!(
            close_for(CloseReason::Shutdown),
            (
                CLOSE_GOING_AWAY,
                "the server is going away; reconnect with since"
            )
        );
        assert_eq!(close_for(CloseReason::AccessRevoked).0, CLOSE_FORBIDDEN);
        assert_eq!(close_for(CloseReason::LoggedOut).0, CLOSE_FORBIDDEN);
        assert_eq!(close_for(CloseReason::SessionExpired).0, CLOSE_FORBIDDEN);
    }

    #[test]
    fn the_limiter_allows_the_burst_then_refuses() {
        let limiter = MessageLimiter::new(1, 5);
        for _ in 0..5 {
            assert!(limiter.allows());
        }
        assert!(!limiter.allows());
    }
}
