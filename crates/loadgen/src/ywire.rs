//! The y-protocols wire as a whiteboard client writes and reads it (lib0 encoding): sync step
//! 1/2, update, awareness, and the two framings the `whiteboards` subcommand speaks — plain
//! y-websocket (liveplan, `@y/websocket-server`: one message per frame, the room in the URL)
//! and hocuspocus's (every message starts with the document's name as a varString, and the
//! first one on a document is an auth message carrying a token). Pure: no I/O.
//!
//! Hand-written rather than through `yrs::sync::Message` because hocuspocus's prefix and
//! message types (sync reply 4, sync status 8) are not y-protocols', and because the relay
//! benchmark reads tens of thousands of frames a second on the load generator's own cores:
//! a receiver only needs to find the timestamp in an update, not to decode it.

/// y-protocols' message types, and hocuspocus's additions.
pub const MSG_SYNC: u64 = 0;
pub const MSG_AWARENESS: u64 = 1;
pub const MSG_AUTH: u64 = 2;
/// hocuspocus: a sync message that must not trigger another step 1.
pub const MSG_SYNC_REPLY: u64 = 4;
/// The sync message's subtypes.
pub const SYNC_STEP1: u64 = 0;
pub const SYNC_STEP2: u64 = 1;
pub const SYNC_UPDATE: u64 = 2;
/// hocuspocus's auth subtypes (`@hocuspocus/common`, `AuthMessageType`; 2 is "authenticated").
pub const AUTH_TOKEN: u64 = 0;
pub const AUTH_PERMISSION_DENIED: u64 = 1;

pub fn write_varuint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub fn write_varbytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_varuint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A varuint at the start of `bytes`, and the bytes after it; `None` if truncated or longer
/// than 64 bits.
pub fn read_varuint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value: u64 = 0;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f).checked_shl(7 * i as u32)?;
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

pub fn read_varbytes(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = read_varuint(bytes)?;
    let len = usize::try_from(len).ok()?;
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// How messages are framed on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// y-websocket: the message alone.
    Plain,
    /// hocuspocus: the document's name first.
    Hocuspocus(String),
}

/// One message from the server, as far as a load-generating client cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// The server's state vector (encoded): answer with step 2.
    Step1(&'a [u8]),
    /// The answer to our step 1: the document (an update).
    Step2(&'a [u8]),
    Update(&'a [u8]),
    Awareness,
    /// hocuspocus: authenticated, permission denied, or a token request.
    Auth(u64),
    /// Another message type (query awareness, hocuspocus's sync status and stateless, …).
    Other(u64),
    /// hocuspocus: a message about another document of the socket.
    OtherDocument,
    Malformed,
}

impl Framing {
    fn start(&self, kind: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        if let Framing::Hocuspocus(name) = self {
            write_varbytes(&mut out, name.as_bytes());
        }
        write_varuint(&mut out, kind);
        out
    }

    /// A sync message: step 1 (`payload` = state vector), step 2 or update (an update).
    pub fn sync(&self, step: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = self.start(MSG_SYNC);
        out.reserve(payload.len() + 8);
        write_varuint(&mut out, step);
        write_varbytes(&mut out, payload);
        out
    }

    /// An awareness message setting one client's state (JSON) at `clock`.
    pub fn awareness(&self, client_id: u64, clock: u64, state_json: &str) -> Vec<u8> {
        let mut update = Vec::with_capacity(state_json.len() + 16);
        write_varuint(&mut update, 1);
        write_varuint(&mut update, client_id);
        write_varuint(&mut update, clock);
        write_varbytes(&mut update, state_json.as_bytes());
        let mut out = self.start(MSG_AWARENESS);
        write_varbytes(&mut out, &update);
        out
    }

    /// hocuspocus's first message on a document: the token (`None` on plain y-websocket,
    /// whose authentication is the URL).
    pub fn auth(&self, token: &str) -> Option<Vec<u8>> {
        match self {
            Framing::Plain => None,
            Framing::Hocuspocus(_) => {
                let mut out = self.start(MSG_AUTH);
                write_varuint(&mut out, AUTH_TOKEN);
                write_varbytes(&mut out, token.as_bytes());
                Some(out)
            }
        }
    }

    pub fn parse<'a>(&self, frame: &'a [u8]) -> Incoming<'a> {
        let body = match self {
            Framing::Plain => frame,
            Framing::Hocuspocus(name) => match read_varbytes(frame) {
                Some((doc, rest)) if doc == name.as_bytes() => rest,
                Some(_) => return Incoming::OtherDocument,
                None => return Incoming::Malformed,
            },
        };
        let Some((kind, rest)) = read_varuint(body) else {
            return Incoming::Malformed;
        };
        match kind {
            MSG_SYNC | MSG_SYNC_REPLY => {
                let Some((step, rest)) = read_varuint(rest) else {
                    return Incoming::Malformed;
                };
                let Some((payload, _)) = read_varbytes(rest) else {
                    return Incoming::Malformed;
                };
                match step {
                    SYNC_STEP1 => Incoming::Step1(payload),
                    SYNC_STEP2 => Incoming::Step2(payload),
                    SYNC_UPDATE => Incoming::Update(payload),
                    _ => Incoming::Malformed,
                }
            }
            MSG_AWARENESS => Incoming::Awareness,
            MSG_AUTH if matches!(self, Framing::Hocuspocus(_)) => match read_varuint(rest) {
                Some((sub, _)) => Incoming::Auth(sub),
                None => Incoming::Malformed,
            },
            other => Incoming::Other(other),
        }
    }
}

/// The text an update carries so its receivers can time it: who sent it, its number, and when
/// (nanoseconds on the load generator's clock). Stored as a string value, so it travels in the
/// update's bytes verbatim.
pub fn marker(editor: u64, seq: u64, sent_ns: u64) -> String {
    format!("~lgts:{editor}:{seq}:{sent_ns};")
}

const MARK: &[u8] = b"~lgts:";

/// Every marker in `bytes`, as (editor, seq, sent_ns).
pub fn markers(bytes: &[u8]) -> Vec<(u64, u64, u64)> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(i) = find(&bytes[at..], MARK) {
        let start = at + i + MARK.len();
        at = start;
        if let Some(parsed) = parse_marker(&bytes[start..]) {
            found.push(parsed);
        }
    }
    found
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_marker(bytes: &[u8]) -> Option<(u64, u64, u64)> {
    let end = bytes.iter().take(64).position(|&b| b == b';')?;
    let text = std::str::from_utf8(&bytes[..end]).ok()?;
    let mut parts = text.split(':').map(|p| p.parse::<u64>().ok());
    let parsed = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::sync::{Message, SyncMessage};
    use yrs::updates::decoder::Decode;
    use yrs::updates::encoder::Encode;
    use yrs::{Doc, Map, ReadTxn, StateVector, Transact};

    #[test]
    fn varuints_are_lib0s() {
        let mut out = Vec::new();
        write_varuint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        for v in [0, 1, 127, 128, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            write_varuint(&mut out, v);
            assert_eq!(read_varuint(&out), Some((v, &[][..])), "{v}");
            assert_eq!(read_varuint(&out[..out.len() - 1]), None, "truncated {v}");
        }
        assert_eq!(read_varbytes(&[3, 1, 2]), None);
        assert_eq!(read_varbytes(&[2, 1, 2, 9]), Some((&[1, 2][..], &[9][..])));
    }

    /// What we write, `yrs`'s own y-protocols decoder reads back (and the other way round).
    #[test]
    fn plain_frames_agree_with_yrs() {
        let doc = Doc::with_client_id(7);
        let map = doc.get_or_insert_map("m");
        let update = {
            let mut txn = doc.transact_mut();
            map.insert(&mut txn, "k", marker(3, 4, 5));
            txn.encode_update_v1()
        };
        let plain = Framing::Plain;
        let frame = plain.sync(SYNC_UPDATE, &update);
        match Message::decode_v1(&frame).unwrap() {
            Message::Sync(SyncMessage::Update(u)) => assert_eq!(u, update),
            other => panic!("{other:?}"),
        }
        let sv = doc.transact().state_vector();
        let frame = plain.sync(SYNC_STEP1, &sv.encode_v1());
        match Message::decode_v1(&frame).unwrap() {
            Message::Sync(SyncMessage::SyncStep1(got)) => assert_eq!(got, sv),
            other => panic!("{other:?}"),
        }
        let frame = plain.awareness(42, 1, r#"{"user":"lg"}"#);
        match Message::decode_v1(&frame).unwrap() {
            Message::Awareness(a) => {
                assert_eq!(a.clients.len(), 1);
                assert_eq!(a.clients[&yrs::block::ClientID::new(42)].clock, 1);
            }
            other => panic!("{other:?}"),
        }
        let from_yrs = Message::Sync(SyncMessage::SyncStep2(update.clone())).encode_v1();
        assert_eq!(plain.parse(&from_yrs), Incoming::Step2(&update[..]));
        let step1 = Message::Sync(SyncMessage::SyncStep1(StateVector::default())).encode_v1();
        assert!(matches!(plain.parse(&step1), Incoming::Step1(_)));
        assert_eq!(plain.parse(&[1, 1, 0]), Incoming::Awareness);
        assert_eq!(plain.parse(&[0, 2, 5, 1]), Incoming::Malformed);
        assert_eq!(plain.parse(&[]), Incoming::Malformed);
        // Query awareness (3) is nothing a client answers.
        assert_eq!(plain.parse(&[3]), Incoming::Other(3));
        assert!(plain.auth("t").is_none());
    }

    /// hocuspocus's provider writes `varString(name) varUint(2) varUint(0) varString(token)`
    /// for its authentication, and prefixes the name to every message.
    #[test]
    fn hocuspocus_frames_carry_the_document_name() {
        let h = Framing::Hocuspocus("doc".into());
        assert_eq!(
            h.auth("tok").unwrap(),
            [3, b'd', b'o', b'c', 2, 0, 3, b't', b'o', b'k']
        );
        let frame = h.sync(SYNC_UPDATE, &[9, 9]);
        assert_eq!(frame, [3, b'd', b'o', b'c', 0, 2, 2, 9, 9]);
        assert_eq!(h.parse(&frame), Incoming::Update(&[9, 9]));
        // A sync reply (4) carries a step 1 like a sync message does.
        assert_eq!(
            h.parse(&[3, b'd', b'o', b'c', 4, 0, 1, 0]),
            Incoming::Step1(&[0])
        );
        assert_eq!(
            h.parse(&[3, b'd', b'o', b'c', 2, 2, 10]),
            Incoming::Auth(2) // authenticated
        );
        // hocuspocus's sync status (8), its acknowledgement of an update.
        assert_eq!(h.parse(&[3, b'd', b'o', b'c', 8, 1]), Incoming::Other(8));
        assert_eq!(
            h.parse(&[3, b'x', b'o', b'c', 8, 1]),
            Incoming::OtherDocument
        );
        assert_eq!(h.parse(&[9, b'd']), Incoming::Malformed);
    }

    #[test]
    fn markers_survive_an_update_and_are_found_in_it() {
        let doc = Doc::with_client_id(11);
        let map = doc.get_or_insert_map("m");
        let mut updates = Vec::new();
        for seq in 0..3 {
            let mut txn = doc.transact_mut();
            map.insert(&mut txn, "e11", marker(11, seq, 1_000 + seq));
            updates.push(txn.encode_update_v1());
        }
        assert_eq!(markers(&updates[2]), vec![(11, 2, 1_002)]);
        // Another document receiving the updates holds the last value.
        let other = Doc::with_client_id(12);
        let omap = other.get_or_insert_map("m");
        for u in &updates {
            let mut txn = other.transact_mut();
            txn.apply_update(yrs::Update::decode_v1(u).unwrap())
                .unwrap();
        }
        let txn = other.transact();
        let value = omap.get(&txn, "e11").unwrap().to_string(&txn);
        assert_eq!(value, marker(11, 2, 1_002));
        // Several in one buffer (a step 2), broken ones skipped.
        let joined = [
            marker(1, 2, 3).as_bytes(),
            b"~lgts:1:x:3;",
            b"~lgts:9",
            marker(4, 5, 6).as_bytes(),
        ]
        .concat();
        assert_eq!(markers(&joined), vec![(1, 2, 3), (4, 5, 6)]);
        assert!(markers(b"nothing here").is_empty());
    }
}
