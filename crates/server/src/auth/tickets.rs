//! WebSocket tickets: 256 random bits, shown once, stored only as their SHA-256.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

pub const TICKET_TTL_SECS: i64 = 30;

/// A new ticket secret and the hash to store.
pub fn mint() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = URL_SAFE_NO_PAD.encode(bytes);
    let hash = digest(&secret);
    (secret, hash)
}

pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn tickets_are_long_and_distinct() {
        let (a, hash_a) = super::mint();
        let (b, _) = super::mint();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(hash_a, super::digest(&a));
        assert_ne!(hash_a, a);
    }
}
