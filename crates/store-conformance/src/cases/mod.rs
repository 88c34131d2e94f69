//! The cases, one behaviour each. Every `Store`, `Queries` and `WriteTx` method is called by at
//! least one of them, and so is what must fail: duplicate keys, writes through a read handle,
//! a closed store, a seq that would go backwards, a write over a newer version.

mod accounts;
mod app_channels;
mod bryntum;
mod handles;
mod log;
mod nodes;
mod projects;
mod retention;
mod webhooks;
mod whiteboards;

pub use accounts::*;
pub use app_channels::*;
pub use bryntum::*;
pub use handles::*;
pub use log::*;
pub use nodes::*;
pub use projects::*;
pub use retention::*;
pub use webhooks::*;
pub use whiteboards::*;

pub(crate) use proto::{EventType, StreamKey};
pub(crate) use serde_json::json;
pub(crate) use std::sync::Arc;
pub(crate) use std::time::Duration;
pub(crate) use store::{
    MembershipRow, NewEvent, Page, ProjectRow, RecordRef, RecordRow, SessionRow, Store, StoreError,
    TicketRow, UserRow, now,
};
pub(crate) use uuid::Uuid;

pub(crate) fn user(email: &str) -> UserRow {
    let at = now();
    UserRow {
        id: Uuid::now_v7(),
        email: email.into(),
        username: None,
        display_name: email.into(),
        password_hash: "x".into(),
        is_admin: false,
        is_active: true,
        version: 1,
        created_at: at,
        updated_at: at,
    }
}

pub(crate) fn project(id: Uuid) -> ProjectRow {
    let at = now();
    ProjectRow {
        id,
        key: None,
        name: "p".into(),
        body: Default::default(),
        version: 1,
        created_at: at,
        updated_at: at,
    }
}

pub(crate) fn membership(project_id: Uuid, user_id: Uuid, role: i64) -> MembershipRow {
    let at = now();
    MembershipRow {
        id: Uuid::now_v7(),
        project_id,
        user_id,
        role,
        version: 1,
        created_at: at,
        updated_at: at,
    }
}

pub(crate) fn record(project_id: Uuid, collection: &str, body: serde_json::Value) -> RecordRow {
    let at = now();
    RecordRow {
        id: Uuid::now_v7(),
        project_id,
        collection: collection.into(),
        body: body.as_object().cloned().unwrap_or_default(),
        version: 1,
        created_at: at,
        updated_at: at,
    }
}

pub(crate) fn session(user_id: Uuid) -> SessionRow {
    let at = now();
    SessionRow {
        id: Uuid::now_v7(),
        user_id,
        created_at: at,
        expires_at: at + chrono::Duration::hours(1),
        revoked_at: None,
    }
}

pub(crate) fn conflict_words<T: std::fmt::Debug>(result: Result<T, StoreError>) -> String {
    match result {
        Err(StoreError::Conflict { what }) => what,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

pub(crate) fn event(stream: StreamKey) -> NewEvent {
    NewEvent {
        stream,
        event_type: EventType::TaskCreated,
        payload: json!({ "n": 1 }),
        data: json!({ "name": "ü ✓" }),
        actor_id: Some(Uuid::now_v7()),
        tab_id: Some("tab-1".into()),
        ts: now(),
        project_id: None,
        echo: None,
    }
}
