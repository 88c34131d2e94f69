//! Ids are UUID v7: time-ordered, so rows inserted together sit together in indexes.

pub use uuid::Uuid;

/// A fresh time-ordered id.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

/// Parses an id from a path or body, rejecting anything that is not a UUID.
pub fn parse_id(text: &str) -> Option<Uuid> {
    Uuid::parse_str(text).ok()
}
