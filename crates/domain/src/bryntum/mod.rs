//! What the Bryntum Gantt dialect (CONTRACT §8, `crates/server/BRYNTUM.md`) asks of the domain,
//! so the socket holds no rules and reads nothing from the store itself, and so every node
//! answers the same (the state lives in the database, not in a node's memory):
//!
//! - [`dataset`]: a project's records in the collections Bryntum has stores for, its stored
//!   `project` object and the seq the read is current at, from one snapshot.
//! - [`access`]: may this user still read or write a project, and which projects they see.
//! - [`autosave`]: one autosave permission per project per [`autosave::AUTOSAVE_INTERVAL`],
//!   granted in a store transaction.
//! - [`demo`]: a project's demo snapshot, stored, and the reset that puts it back.
//! - [`phantoms`]: the real ids of phantom records, stored per project and bounded.
//!
//! Revisions themselves are [`crate::batch`] requests: their echo travels in their first
//! event ([`crate::batch::BatchRequest::echo`]) and their phantom mappings are recorded in
//! their transaction ([`crate::batch::BatchRequest::phantoms`]). The mapping between Bryntum
//! fields and liveplan fields stays with the dialect.

pub mod access;
pub mod autosave;
pub mod dataset;
pub mod demo;
pub mod phantoms;

use crate::collections::{
    ASSIGNMENTS, CALENDARS, Collection, DEPENDENCIES, RESOURCES, TASKS, VERSIONS,
};
use serde_json::Value;
use store::JsonObject;
use uuid::Uuid;

/// The collections Bryntum Gantt has stores for, references first.
pub static COLLECTIONS: [&Collection; 6] = [
    &CALENDARS,
    &RESOURCES,
    &TASKS,
    &DEPENDENCIES,
    &ASSIGNMENTS,
    &VERSIONS,
];

/// Settings key of a project's Bryntum `project` object (view state the client sends in
/// `changes.project`, merged and kept as one JSON object).
pub fn project_object_key(project_id: Uuid) -> String {
    format!("bryntum.project.{project_id}")
}

/// A stored JSON object setting; anything else (absent, unreadable) is an empty object, as
/// view state must never stop a project from loading.
fn object_setting(text: Option<String>) -> JsonObject {
    text.and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| match v {
            Value::Object(object) => Some(object),
            _ => None,
        })
        .unwrap_or_default()
}
