//! The y-websocket protocol's messages (y-protocols' sync, awareness and auth, lib0 encoding):
//! what a client frame says, the frames the server writes, and the limits. Pure: no I/O, no
//! document. Here rather than in the dialect so the document actor, which speaks them, does
//! not import the dialect (`dialects::whiteboard::protocol` re-exports it with the close codes).
//!
//! Decoding never panics on input: `yrs` checks some values (a client id above 53 bits) with
//! debug assertions, so every decode of client bytes runs under `catch_unwind` and a panic is
//! malformed input like any other.

use std::panic::{AssertUnwindSafe, catch_unwind};
use yrs::StateVector;
use yrs::Update;
use yrs::sync::awareness::AwarenessUpdate;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;

/// Limits (CONTRACT §11).
pub const MAX_UPDATE: usize = 1024 * 1024;
pub const MAX_DOCUMENT: usize = 64 * 1024 * 1024;
pub const MAX_AWARENESS_STATE: usize = 4 * 1024;
/// Yjs clients one connection may bring into the awareness table (a tab has one; a provider
/// per document).
pub const MAX_AWARENESS_CLIENTS: usize = 16;
/// The largest frame read whole: above it the socket is dropped unread; between
/// [`MAX_UPDATE`] and it, closed with 1009.
pub const READ_LIMIT: usize = 2 * MAX_UPDATE;

/// The reason y-websocket's `permissionDeniedHandler` receives.
pub const PERMISSION_DENIED: &str = "permission denied: viewers cannot edit this whiteboard";

/// One client message.
#[derive(Debug)]
pub enum ClientMessage {
    /// Sync step 1: the client's state vector; answered with step 2.
    SyncStep1(StateVector),
    /// Sync step 2 or an update: a document update (still encoded).
    Update(Vec<u8>),
    Awareness(AwarenessUpdate),
    QueryAwareness,
    /// An auth message from a client: meaningless to the server, ignored.
    Auth,
}

/// Why a frame is not a message.
#[derive(Debug, PartialEq, Eq)]
pub enum BadInput {
    /// Truncated, or a value out of range.
    Malformed,
    /// A message type y-protocols does not define.
    UnknownType,
}

impl BadInput {
    pub fn close(&self) -> (u16, &'static str) {
        match self {
            BadInput::Malformed => (1002, "malformed y-websocket message"),
            BadInput::UnknownType => (1003, "unknown y-websocket message type"),
        }
    }
}

fn guarded<T>(decode: impl FnOnce() -> Option<T>) -> Option<T> {
    catch_unwind(AssertUnwindSafe(decode)).ok().flatten()
}

/// The message of one binary frame.
pub fn decode(frame: &[u8]) -> Result<ClientMessage, BadInput> {
    if !plausible_awareness(frame) {
        return Err(BadInput::Malformed);
    }
    let message = guarded(|| Message::decode_v1(frame).ok()).ok_or(BadInput::Malformed)?;
    Ok(match message {
        Message::Sync(SyncMessage::SyncStep1(sv)) => ClientMessage::SyncStep1(sv),
        Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update)) => {
            ClientMessage::Update(update)
        }
        Message::Awareness(update) => ClientMessage::Awareness(update),
        Message::AwarenessQuery => ClientMessage::QueryAwareness,
        Message::Auth(_) => ClientMessage::Auth,
        Message::Custom(..) => return Err(BadInput::UnknownType),
    })
}

/// lib0's variable-length unsigned integer at the start of `bytes`, and the bytes after it.
fn varuint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value: u64 = 0;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f).checked_shl(7 * i as u32)?;
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

/// Whether an awareness message's count of clients fits in the bytes that follow it (each
/// client takes at least three: its id, its clock and its state's length). `yrs` reserves
/// room for the count it reads before reading the clients, so a frame of a few bytes could
/// otherwise make it set up a table for billions (found by the `yjs_message` fuzz target).
/// Other messages pass.
fn plausible_awareness(frame: &[u8]) -> bool {
    const AWARENESS: u64 = 1;
    let Some((AWARENESS, rest)) = varuint(frame) else {
        return true;
    };
    let Some((_, payload)) = varuint(rest) else {
        return true;
    };
    match varuint(payload) {
        Some((count, clients)) => count <= clients.len() as u64 / 3,
        None => true,
    }
}

/// A document update, decoded; `None` when the bytes are not one.
pub fn decode_update(update: &[u8]) -> Option<Update> {
    guarded(|| Update::decode_v1(update).ok())
}

pub fn sync_step1(sv: StateVector) -> Vec<u8> {
    Message::Sync(SyncMessage::SyncStep1(sv)).encode_v1()
}

pub fn sync_step2(update: Vec<u8>) -> Vec<u8> {
    Message::Sync(SyncMessage::SyncStep2(update)).encode_v1()
}

pub fn update(update: Vec<u8>) -> Vec<u8> {
    Message::Sync(SyncMessage::Update(update)).encode_v1()
}

pub fn awareness(update: AwarenessUpdate) -> Vec<u8> {
    Message::Awareness(update).encode_v1()
}

pub fn permission_denied() -> Vec<u8> {
    Message::Auth(Some(PERMISSION_DENIED.to_owned())).encode_v1()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_frames_are_refused_without_panic() {
        assert_eq!(decode(&[]).unwrap_err(), BadInput::Malformed);
        // A varint whose continuation bit promises more bytes than there are.
        assert_eq!(decode(&[0x80]).unwrap_err(), BadInput::Malformed);
        assert_eq!(decode(&[0, 2, 0xff]).unwrap_err(), BadInput::Malformed);
        assert_eq!(decode(&[9, 0]).unwrap_err(), BadInput::UnknownType);
        // An awareness update naming a client id above 53 bits.
        let mut frame = vec![1, 11, 1];
        frame.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 1, 0]);
        assert!(
            decode(&frame).is_err() || matches!(decode(&frame), Ok(ClientMessage::Awareness(_)))
        );
        assert!(decode_update(&[0xff, 0xff]).is_none());
        // An awareness update that claims about 2.5 billion clients in a few bytes (the fuzz
        // target's find): refused before `yrs` reserves room for them.
        let mut claim = vec![1, 20, 0xf4, 0xc0, 0x93, 0xd6, 0x09, 1, 5, 1, b'n'];
        claim.extend([b'u', b'l', b'l', 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(decode(&claim).unwrap_err(), BadInput::Malformed);
        // A real one passes the check.
        let mut one = vec![1, 8, 1, 7, 1, 4];
        one.extend(b"null");
        assert!(matches!(decode(&one), Ok(ClientMessage::Awareness(u)) if u.clients.len() == 1));
        assert!(matches!(decode(&[3]), Ok(ClientMessage::QueryAwareness)));
    }

    #[test]
    fn encoded_messages_decode_back() {
        let frame = update(vec![0, 0]);
        assert!(matches!(decode(&frame), Ok(ClientMessage::Update(u)) if u == [0, 0]));
        let frame = sync_step1(StateVector::default());
        assert!(matches!(decode(&frame), Ok(ClientMessage::SyncStep1(_))));
        assert!(matches!(
            decode(&permission_denied()),
            Ok(ClientMessage::Auth)
        ));
    }
}
