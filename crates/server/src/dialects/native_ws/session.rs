//! One native WebSocket client's state machine, without I/O: given what happened (a client
//! frame, a hub delivery, the sweep's ping), it says what to do next as a plain [`Step`].
//! The socket (`socket.rs`) does the reading, writing and waiting.

use super::protocol::{self, ClientText};
use crate::dialects::ws::{
    CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_UNSUPPORTED, MessageLimiter, close_for,
};
use bytes::Bytes;
use hub::Delivery;

/// A frame from the client, as the session needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFrame<'a> {
    Text(&'a str),
    Binary,
    Ping,
    Pong,
    Close,
    /// A raw frame: what a writer may send; reading never yields one.
    Other,
}

/// What the socket does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing to write.
    Continue,
    /// Send this text frame (an answer of the session's own).
    Reply(String),
    /// Write this hub frame as a text frame; an empty one only asks for a flush (the rest of
    /// a direct write).
    Deliver(Bytes),
    /// Write the dialect's `resync_required` frame.
    Resync { latest_seq: i64 },
    /// Send a ping (the sweep reached this socket).
    Ping,
    /// The WebSocket library queued the pong itself: flush it now rather than whenever an
    /// event next goes out.
    FlushPong,
    /// The client closed: flush the library's close answer (briefly) and end.
    AnswerClose,
    /// Close with this code and text, then end.
    Close(u16, &'static str),
}

/// The native WebSocket's limits, from the node's live settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub frames_per_second: u32,
    pub frame_burst: u32,
    /// The largest client text frame.
    pub max_frame: usize,
}

pub struct NativeSession {
    /// Pings sent since the client last answered one.
    unanswered: u8,
    limiter: MessageLimiter,
    max_frame: usize,
}

impl NativeSession {
    pub fn new(limits: Limits) -> Self {
        Self {
            unanswered: 0,
            limiter: MessageLimiter::new(limits.frames_per_second, limits.frame_burst),
            max_frame: limits.max_frame,
        }
    }

    /// The sweep reached this socket: ping it, or close it when two pings in a row went
    /// unanswered.
    pub fn on_ping_tick(&mut self) -> Step {
        if self.unanswered >= 2 {
            Step::Close(CLOSE_POLICY, protocol::PONG_TIMEOUT)
        } else {
            self.unanswered += 1;
            Step::Ping
        }
    }

    /// A delivery of the hub's.
    pub fn on_delivery(&mut self, delivery: Delivery) -> Step {
        match delivery {
            Delivery::Frame(frame) => Step::Deliver(frame),
            Delivery::ResyncRequired { latest_seq } => Step::Resync { latest_seq },
            Delivery::Closed(reason) => {
                let (code, text) = close_for(reason);
                Step::Close(code, text)
            }
            Delivery::Heartbeat => self.on_ping_tick(),
        }
    }

    /// A frame from the client, counted against the rate limit first.
    pub fn on_client(&mut self, frame: ClientFrame<'_>) -> Step {
        if !self.limiter.allows() {
            return Step::Close(CLOSE_POLICY, protocol::TOO_MANY_FRAMES);
        }
        match frame {
            ClientFrame::Pong => {
                self.unanswered = 0;
                Step::Continue
            }
            ClientFrame::Ping => Step::FlushPong,
            ClientFrame::Close => Step::AnswerClose,
            ClientFrame::Binary => Step::Close(CLOSE_UNSUPPORTED, protocol::BINARY_REFUSED),
            ClientFrame::Other => Step::Continue,
            ClientFrame::Text(text) if text.len() > self.max_frame => {
                Step::Close(CLOSE_TOO_BIG, protocol::TOO_BIG)
            }
            ClientFrame::Text(text) => match protocol::parse_client_text(text) {
                ClientText::Ping => Step::Reply(protocol::pong()),
                ClientText::Reserved => Step::Continue,
                ClientText::Invalid => Step::Reply(protocol::invalid_frame()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialects::ws::{CLOSE_FORBIDDEN, CLOSE_GOING_AWAY};
    use hub::CloseReason;

    fn session() -> NativeSession {
        NativeSession::new(Limits {
            frames_per_second: 20,
            frame_burst: 100,
            max_frame: 64 * 1024,
        })
    }

    #[test]
    fn two_unanswered_pings_close_the_socket() {
        let mut s = session();
        assert_eq!(s.on_ping_tick(), Step::Ping);
        assert_eq!(s.on_delivery(Delivery::Heartbeat), Step::Ping);
        assert_eq!(s.on_ping_tick(), Step::Close(CLOSE_POLICY, "pong timeout"));
    }

    #[test]
    fn a_pong_resets_the_count() {
        let mut s = session();
        assert_eq!(s.on_ping_tick(), Step::Ping);
        assert_eq!(s.on_ping_tick(), Step::Ping);
        assert_eq!(s.on_client(ClientFrame::Pong), Step::Continue);
        assert_eq!(s.on_ping_tick(), Step::Ping);
        assert_eq!(s.on_ping_tick(), Step::Ping);
    }

    #[test]
    fn client_frames() {
        let mut s = session();
        assert_eq!(s.on_client(ClientFrame::Ping), Step::FlushPong);
        assert_eq!(s.on_client(ClientFrame::Close), Step::AnswerClose);
        assert_eq!(s.on_client(ClientFrame::Other), Step::Continue);
        assert_eq!(
            s.on_client(ClientFrame::Binary),
            Step::Close(CLOSE_UNSUPPORTED, "binary frames are not accepted")
        );
        assert_eq!(
            s.on_client(ClientFrame::Text(r#"{"type":"ping"}"#)),
            Step::Reply(protocol::pong())
        );
        assert_eq!(
            s.on_client(ClientFrame::Text(r#"{"type":"later"}"#)),
            Step::Continue
        );
        assert_eq!(
            s.on_client(ClientFrame::Text("[1]")),
            Step::Reply(protocol::invalid_frame())
        );
        let big = " ".repeat(64 * 1024 + 1);
        assert_eq!(
            s.on_client(ClientFrame::Text(&big)),
            Step::Close(CLOSE_TOO_BIG, "client frames are at most 64 KiB")
        );
    }

    #[test]
    fn more_than_the_burst_closes_the_socket() {
        let mut s = session();
        for _ in 0..100 {
            assert_eq!(s.on_client(ClientFrame::Pong), Step::Continue);
        }
        assert_eq!(
            s.on_client(ClientFrame::Pong),
            Step::Close(
                CLOSE_POLICY,
                "too many frames; at most 20 a second, bursts of 100"
            )
        );
    }

    #[test]
    fn deliveries() {
        let mut s = session();
        let frame = Bytes::from_static(b"{}");
        assert_eq!(
            s.on_delivery(Delivery::Frame(frame.clone())),
            Step::Deliver(frame)
        );
        assert_eq!(
            s.on_delivery(Delivery::ResyncRequired { latest_seq: 9 }),
            Step::Resync { latest_seq: 9 }
        );
        assert_eq!(
            s.on_delivery(Delivery::Closed(CloseReason::LoggedOut)),
            Step::Close(CLOSE_FORBIDDEN, "the session ended")
        );
        assert_eq!(
            s.on_delivery(Delivery::Closed(CloseReason::Shutdown)),
            Step::Close(
                CLOSE_GOING_AWAY,
                "the server is going away; reconnect with since"
            )
        );
    }
}
