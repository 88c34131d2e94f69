//! Per-project webhooks (CONTRACT §12) and the record of their deliveries.
//!
//! A webhook is driven by a durable cursor over its project's log: `cursor` is the last seq of
//! the project's stream it has handled (sent with a final outcome, or passed over by its event
//! filter). What a backend guarantees:
//! - **Lease.** [`crate::Queries::take_webhook_lease`] is one conditional update: of nodes
//!   asking at once, exactly one gets a webhook whose lease is free or expired, so one node at
//!   a time sends a webhook's deliveries. Its owner may renew it.
//! - **Cursor.** [`crate::Queries::advance_webhook_cursor`] moves the cursor only for the lease's
//!   owner and only from the value the owner read, so a node that lost its lease can never move
//!   it, and it never moves backwards.
//! - **Deliveries.** One row per (webhook, seq), made before the first attempt: its id is the
//!   delivery id every attempt sends, across restarts and nodes.
//! - **Lifetime.** A webhook and its deliveries go with their project.

use crate::Timestamp;
use uuid::Uuid;

/// One webhook as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRow {
    pub id: Uuid,
    pub project_id: Uuid,
    pub url: String,
    /// Dotted event names, or `*` for all.
    pub events: Vec<String>,
    pub secret: String,
    pub active: bool,
    /// The last seq of the project's stream this webhook has handled.
    pub cursor: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What one delivery (one event to one webhook) has come to so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDeliveryRow {
    /// The delivery id (`X-Liveplan-Delivery`), stable for its (webhook, seq).
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub seq: i64,
    /// The dotted event name.
    pub event: String,
    /// `pending`, `delivered`, `refused`, `gave_up` or `skipped`.
    pub outcome: String,
    pub attempts: i32,
    pub response_status: Option<i32>,
    /// A short reason for the last failure, fit for the webhook's owner to read.
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// How many deliveries each webhook keeps (its newest).
pub const DELIVERIES_KEPT: u32 = 1_000;
