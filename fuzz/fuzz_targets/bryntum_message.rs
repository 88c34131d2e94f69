//! A Bryntum client message (CONTRACT §8) through everything that runs before the store: the
//! parse, the project name, and for `project_change` each revision's phantom resolution,
//! mapping to liveplan fields, the domain's validation of every change, and the way back
//! (the record as a dataset would send it). Only the reads and writes are left out.
#![no_main]

use domain::batch::BatchOp;
use domain::records::check_body_size;
use domain::validate::{Mode, validate_fields};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use server::dialects::bryntum::mapping::{self, BryntumStore, Units};
use server::dialects::bryntum::phantoms::{self, PhantomMap};
use server::dialects::bryntum::protocol::{self, Command};
use server::dialects::bryntum::session;
use std::collections::HashMap;
use uuid::Uuid;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(incoming) = protocol::parse(text) else {
        return;
    };
    let label = incoming.data.get("project").cloned().unwrap_or(Value::Null);
    let _ = session::project_name(&label);
    if incoming.command != Some(Command::ProjectChange) {
        return;
    }
    let Some(revisions) = incoming.data.get("revisions").and_then(Value::as_array) else {
        return;
    };
    for revision in revisions.iter().take(session::MAX_REVISIONS) {
        revision_through(revision);
    }
});

fn revision_through(revision: &Value) {
    let Some(revision) = revision.as_object() else {
        return;
    };
    let Some(Value::Object(changes)) = revision.get("changes") else {
        return;
    };
    let mut changes = Value::Object(changes.clone());
    // Half of the candidates are taken as phantoms the project saw before, so that resent
    // records (updates of what the first send made) are reached too.
    let known: HashMap<String, Uuid> = phantoms::candidates(&changes)
        .into_iter()
        .filter(|p| p.len() % 2 == 0)
        .map(|p| {
            let id = Uuid::from_u128(p.len() as u128 + 1);
            (p, id)
        })
        .collect();
    let resolution = phantoms::resolve(&mut changes, &PhantomMap::from(known));
    let stored = Map::new();
    let units = match changes.get("project") {
        Some(Value::Object(update)) => {
            Units::from_project(&session::merged_project(&stored, update))
        }
        _ => Units::from_project(&stored),
    };
    // The stored bodies the mapping asks for: a unit other than days, so conversions run.
    let mut current = HashMap::new();
    for (_, id) in session::ids_needing_current(&changes, &resolution) {
        let mut body = Map::new();
        body.insert("durationUnit".into(), "hour".into());
        body.insert("lagUnit".into(), "week".into());
        current.insert(id, body);
    }
    let _ = session::echo(revision, "client-1", changes.clone());
    let Ok(ops) = session::revision_ops(&changes, &resolution, &units, &current) else {
        return;
    };
    for op in ops {
        let (collection, id, fields, mode) = match op {
            BatchOp::Create {
                collection,
                id,
                fields,
            } => (collection, id, fields, Mode::Create),
            BatchOp::Update {
                collection,
                id,
                fields,
            } => (collection, id, fields, Mode::Patch),
            BatchOp::Remove { .. } => continue,
        };
        let Ok(body) = validate_fields(collection, &fields, mode) else {
            continue;
        };
        if check_body_size(collection, &body).is_err() {
            continue;
        }
        let store = BryntumStore::from_collection(collection.name).expect("a Bryntum store");
        let record = mapping::to_bryntum(store, &id.to_string(), &body, &units);
        if store == BryntumStore::Tasks {
            let _ = mapping::task_tree(vec![record]);
        }
    }
}
