//! Plain rows. Bodies are JSON objects; everything else is typed.

use chrono::{DateTime, SecondsFormat, Utc};
use proto::{EventType, StreamKey};
use serde_json::{Map, Value};
use uuid::Uuid;

pub type Timestamp = DateTime<Utc>;
pub type JsonObject = Map<String, Value>;

/// The one text form of timestamps in the store and on the wire.
pub fn format_ts(ts: Timestamp) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Now, truncated to the millisecond so a value survives a round trip through the store.
pub fn now() -> Timestamp {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub username: Option<String>,
    pub display_name: String,
    pub password_hash: String,
    pub is_admin: bool,
    pub is_active: bool,
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TicketRow {
    pub hash: String,
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProjectRow {
    pub id: Uuid,
    pub key: Option<String>,
    pub name: String,
    /// Every other field of the project, unknown client fields included.
    pub body: JsonObject,
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MembershipRow {
    pub id: Uuid,
    pub project_id: Uuid,
    pub user_id: Uuid,
    pub role: i64,
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecordRow {
    pub id: Uuid,
    pub project_id: Uuid,
    pub collection: String,
    pub body: JsonObject,
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One outgoing reference of a record: `field` holds `target_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRef {
    pub field: String,
    pub target_id: Uuid,
}

/// A record that points at some target, and through which field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    pub record_id: Uuid,
    pub collection: String,
    pub field: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: u32,
    pub offset: u32,
}

impl Page {
    pub const ALL: Page = Page {
        limit: u32::MAX,
        offset: 0,
    };
}

/// An event before the store gives it its seq.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub stream: StreamKey,
    pub event_type: EventType,
    pub payload: Value,
    pub data: Value,
    pub actor_id: Option<Uuid>,
    pub tab_id: Option<String>,
    pub ts: Timestamp,
    pub project_id: Option<Uuid>,
    /// See [`proto::Event::echo`].
    pub echo: Option<Value>,
}

impl NewEvent {
    /// The event as logged with `seq`.
    pub fn logged_as(self, seq: i64) -> proto::Event {
        proto::Event {
            stream: self.stream,
            seq: Some(seq),
            event_type: self.event_type,
            payload: self.payload,
            data: self.data,
            actor_id: self.actor_id,
            tab_id: self.tab_id,
            ts: self.ts,
            project_id: self.project_id,
            echo: self.echo,
        }
    }
}
