//! What every WebSocket dialect shares: close codes and what a hub [`CloseReason`] closes
//! with, the close handshake, ticket authentication, the per-socket message rate limit, the
//! buffer sizes, the [`Flow`] of a connection's loop, and the node-wide [`PingSweep`].
//!
//! Nothing here knows a dialect's frames. It imports no other part of the server but the
//! ticket digest, so `live` (which owns the sweep) and every dialect can use it.

use crate::auth::tickets;
use domain::Domain;
use futures::{Sink, SinkExt, Stream, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hub::CloseReason;
use proto::ApiError;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use store::UserRow;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use uuid::Uuid;

pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_UNSUPPORTED: u16 = 1003;
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

/// Sends a close frame and waits (briefly) for the client's answer, so the frame is read
/// before the TCP connection goes away: closing with unread input would reset the connection
/// and the client might never see the code.
pub async fn close_handshake<S>(socket: &mut S, code: u16, reason: &'static str)
where
    S: Sink<Message> + Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
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
                break;
            }
        }
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

/// The node's sweep runs at least this often, so an idle connection whose session expired is
/// closed within about this long (connections that receive events are closed at once).
const SWEEP_AT_LEAST_EVERY: Duration = Duration::from_secs(1);
/// The fewest sweeps per ping interval: each WebSocket is pinged by one of them, so pings are
/// spread over the interval instead of all going out at once.
const MIN_PING_SLOTS: u32 = 30;

/// One ping schedule for every WebSocket of the node, whatever its dialect, instead of a
/// timer per socket (which would cost every idle socket memory).
///
/// The ping interval is cut into slots; each sweep (one task for the node, run by `live`)
/// [`advance`](PingSweep::advance)s to the next slot and pings the sockets in it. A socket
/// joins in one of two ways:
/// - with a hub subscription of its own: it puts
///   [`slot_for_new_socket`](PingSweep::slot_for_new_socket) in its
///   `SubscribeRequest::heartbeat_slot`, and the hub delivers `Delivery::Heartbeat` when the
///   sweep reaches it (the native WebSocket);
/// - without one: it holds the [`PingTicks`] of [`join`](PingSweep::join) and awaits
///   [`PingTicks::tick`].
pub struct PingSweep {
    slots: u32,
    period: Duration,
    /// The slot the next sweep pings, `0..slots`.
    next_slot: AtomicU32,
    /// Per slot, the tick count of the sockets that joined without a hub subscription.
    ticks: Box<[watch::Sender<u64>]>,
}

impl PingSweep {
    pub fn new(ping_interval: Duration) -> Self {
        let (slots, period) = sweep_schedule(ping_interval);
        Self {
            slots,
            period,
            next_slot: AtomicU32::new(0),
            ticks: (0..slots).map(|_| watch::channel(0).0).collect(),
        }
    }

    /// How many slots one round of the sweep has.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// How often the sweep runs: `slots × period` is the ping interval.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The slot for a socket opening now: the slot swept last, so its first ping comes one
    /// ping interval (less at most one sweep period) from now.
    pub fn slot_for_new_socket(&self) -> u32 {
        match self.next_slot.load(Ordering::Relaxed) {
            0 => self.slots - 1,
            next => next - 1,
        }
    }

    /// Joins a socket that has no hub subscription of its own.
    pub fn join(&self) -> PingTicks {
        let slot = self.slot_for_new_socket() as usize;
        let mut ticks = self.ticks[slot].subscribe();
        ticks.mark_unchanged();
        PingTicks(ticks)
    }

    /// One sweep: pings the joined sockets of the next slot and hands that slot to
    /// `sweep_hub` (the hub's sweep of the subscriptions in it). The slot moves on only
    /// afterwards, so a socket opening meanwhile takes the slot before, not the one being
    /// swept, and is not pinged at once.
    pub fn advance(&self, sweep_hub: impl FnOnce(u32)) -> u32 {
        let slot = self.next_slot.load(Ordering::Relaxed);
        self.ticks[slot as usize].send_modify(|count| *count = count.wrapping_add(1));
        sweep_hub(slot);
        self.next_slot
            .store((slot + 1) % self.slots, Ordering::Relaxed);
        slot
    }
}

/// A socket's place in the [`PingSweep`], for a socket without a hub subscription.
pub struct PingTicks(watch::Receiver<u64>);

impl PingTicks {
    /// Resolves when the sweep reaches this socket's slot (once per ping interval); never
    /// when the sweep is gone. Cancel-safe.
    pub async fn tick(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// How the ping interval is cut into sweep slots: `(slots, period)`, with `slots × period` the
/// ping interval and `period` at most [`SWEEP_AT_LEAST_EVERY`].
fn sweep_schedule(ping_interval: Duration) -> (u32, Duration) {
    let needed = ping_interval
        .as_nanos()
        .div_ceil(SWEEP_AT_LEAST_EVERY.as_nanos());
    let slots = u32::try_from(needed)
        .unwrap_or(u32::MAX)
        .max(MIN_PING_SLOTS);
    let period = (ping_interval / slots).max(Duration::from_millis(1));
    (slots, period)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn the_schedule_spreads_pings_over_the_interval() {
        assert_eq!(
            sweep_schedule(Duration::from_secs(30)),
            (30, Duration::from_secs(1))
        );
        assert_eq!(
            sweep_schedule(Duration::from_secs(90)),
            (90, Duration::from_secs(1))
        );
        let (slots, period) = sweep_schedule(Duration::from_millis(300));
        assert_eq!(slots, MIN_PING_SLOTS);
        assert_eq!(period, Duration::from_millis(10));
    }

    #[test]
    fn a_new_socket_takes_the_slot_swept_last() {
        let sweep = PingSweep::new(Duration::from_secs(30));
        assert_eq!(sweep.slot_for_new_socket(), 29);
        assert_eq!(sweep.advance(|_| {}), 0);
        assert_eq!(sweep.slot_for_new_socket(), 0);
        assert_eq!(sweep.advance(|_| {}), 1);
        assert_eq!(sweep.slot_for_new_socket(), 1);
    }

    #[test]
    fn a_joined_socket_ticks_once_per_round_in_its_slot() {
        let sweep = PingSweep::new(Duration::from_secs(30));
        let mut ticks = sweep.join();
        // Its slot (29) is swept last in the round: nothing before it.
        for _ in 0..29 {
            sweep.advance(|_| {});
            assert!(ticks.tick().now_or_never().is_none());
        }
        assert_eq!(sweep.advance(|_| {}), 29);
        assert!(ticks.tick().now_or_never().is_some());
        assert!(ticks.tick().now_or_never().is_none());
    }

    #[test]
    fn a_gone_sweep_never_ticks() {
        let sweep = PingSweep::new(Duration::from_secs(30));
        let mut ticks = sweep.join();
        drop(sweep);
        assert!(ticks.tick().now_or_never().is_none());
    }

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
