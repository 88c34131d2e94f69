//! A rate limit on a WebSocket client's continuation frames, counted as they are read.
//!
//! The WebSocket library joins a fragmented message before the dialect sees it, so a
//! dialect's per-message rate limit counts a message of 6,000 fragments once, and a message
//! whose fragments never end (empty continuations are legal) never reaches it at all. The
//! frames' headers are therefore read here, off the bytes the socket reads (payloads are
//! skipped, not parsed), and each continuation frame is counted against an allowance of its
//! own, the same quota as the dialect's messages: a message of `k` frames costs one message
//! and `k - 1` continuations. Over it, a read fails with [`TooManyFragments`], which the
//! dialect closes with 1008; what the client sends after that is read and discarded while the
//! close goes out, so that closing with unread input does not reset the connection and
//! destroy the close frame on its way.

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::io;
use std::num::NonZeroU32;

/// The read error once a client sent continuation frames too fast.
#[derive(Debug, thiserror::Error)]
#[error("too many continuation frames")]
pub struct TooManyFragments;

impl TooManyFragments {
    pub fn is(err: &io::Error) -> bool {
        err.get_ref()
            .is_some_and(|inner| inner.is::<TooManyFragments>())
    }
}

/// Where the reader is in the client's frames.
enum Position {
    /// In a frame header: the bytes of it so far (at most 14).
    Header { bytes: [u8; 14], have: usize },
    /// In a payload: how much of it is left.
    Payload(u64),
}

pub struct FragmentLimit {
    allowance: DefaultDirectRateLimiter,
    position: Position,
    over: bool,
}

const HEADER_START: Position = Position::Header {
    bytes: [0; 14],
    have: 0,
};

impl FragmentLimit {
    pub fn new(per_second: u32, burst: u32) -> Self {
        let quota = Quota::per_second(NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        Self {
            allowance: RateLimiter::direct(quota),
            position: HEADER_START,
            over: false,
        }
    }

    /// Whether the allowance was spent: what the client sends from then on is discarded.
    pub fn is_over(&self) -> bool {
        self.over
    }

    /// Counts the frames that start in `read` (the bytes just read, in order); an error when
    /// the allowance runs out (once: then [`FragmentLimit::is_over`]).
    pub fn feed(&mut self, mut read: &[u8]) -> io::Result<()> {
        if self.over {
            return Ok(());
        }
        while !read.is_empty() && !self.over {
            match &mut self.position {
                Position::Payload(left) => {
                    let skip = usize::try_from(*left).unwrap_or(usize::MAX).min(read.len());
                    *left -= skip as u64;
                    read = &read[skip..];
                    if *left == 0 {
                        self.position = HEADER_START;
                    }
                }
                Position::Header { bytes, have } => {
                    bytes[*have] = read[0];
                    *have += 1;
                    read = &read[1..];
                    if let Some((opcode, length)) = parse_header(&bytes[..*have]) {
                        if opcode == 0 && self.allowance.check().is_err() {
                            self.over = true;
                        }
                        self.position = if length == 0 {
                            HEADER_START
                        } else {
                            Position::Payload(length)
                        };
                    }
                }
            }
        }
        if self.over {
            Err(io::Error::other(TooManyFragments))
        } else {
            Ok(())
        }
    }
}

/// A complete frame header's opcode and payload length; `None` while it is incomplete.
fn parse_header(header: &[u8]) -> Option<(u8, u64)> {
    let [first, second, rest @ ..] = header else {
        return None;
    };
    let short = second & 0x7f;
    let extended = match short {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    if rest.len() < extended + mask {
        return None;
    }
    let length = match short {
        126 => u64::from(u16::from_be_bytes([rest[0], rest[1]])),
        127 => u64::from_be_bytes(rest[..8].try_into().ok()?),
        n => u64::from(n),
    };
    Some((first & 0x0f, length))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first, 0x80 | payload.len() as u8, 1, 2, 3, 4];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn continuations_are_counted_whole_messages_are_not() {
        let mut limit = FragmentLimit::new(1, 3);
        // Unfragmented messages, pings: never counted.
        for _ in 0..50 {
            limit.feed(&masked(0x81, b"{}")).unwrap();
            limit.feed(&masked(0x89, b"")).unwrap();
        }
        // A first fragment and three continuations, fed a byte at a time: within the burst.
        let mut stream = masked(0x01, b"ab");
        for _ in 0..3 {
            stream.extend(masked(0x00, b"c"));
        }
        for byte in &stream {
            limit.feed(std::slice::from_ref(byte)).unwrap();
        }
        // The fourth continuation is over it: one error, then the limit says so.
        assert!(!limit.is_over());
        assert!(TooManyFragments::is(
            &limit.feed(&masked(0x00, b"")).unwrap_err()
        ));
        assert!(limit.is_over());
    }

    #[test]
    fn long_payloads_are_skipped_not_read_as_headers() {
        let mut limit = FragmentLimit::new(1, 1);
        // A 300-byte payload of zero bytes (which would look like continuation headers).
        let mut frame = vec![0x82, 0x80 | 126, 1, 44, 9, 9, 9, 9];
        frame.extend(std::iter::repeat_n(0u8, 300));
        limit.feed(&frame).unwrap();
        limit.feed(&masked(0x81, b"{}")).unwrap();
    }
}
