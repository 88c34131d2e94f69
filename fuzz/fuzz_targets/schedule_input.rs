//! Dates and durations as the scheduler reads them (CONTRACT §9): a project body and its
//! calendars, tasks and dependencies, each validated as the API validates it (what fails is
//! dropped, as the API would refuse it), then read into the scheduler's plan the way a store
//! read is (`domain::schedule::plan_of`) and scheduled. The input is one JSON object
//! `{"project": {…}, "calendars": […], "tasks": […], "dependencies": […]}`; a record's
//! `id` is kept when it is a UUID.
#![no_main]

use domain::collections::{CALENDARS, Collection, DEPENDENCIES, TASKS};
use domain::projects::validate_project;
use domain::schedule::{PlanRecords, plan_of, schedule_json};
use domain::validate::{JsonObject, Mode, validate_fields};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use uuid::Uuid;

/// Records per collection: the scheduler's cost grows with them, and a fuzz input is small.
const MAX_RECORDS: usize = 64;

fn records(document: &Value, collection: &Collection, offset: u128) -> Vec<(Uuid, JsonObject)> {
    document
        .get(collection.name)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .take(MAX_RECORDS)
        .enumerate()
        .filter_map(|(i, record)| {
            let id = record
                .get("id")
                .and_then(Value::as_str)
                .and_then(|t| Uuid::parse_str(t).ok())
                .unwrap_or(Uuid::from_u128(offset + i as u128));
            let body = validate_fields(collection, record, Mode::Create).ok()?;
            Some((id, body))
        })
        .collect()
}

/// The records as the store lists them: in id order, each id once.
fn bodies(rows: &[(Uuid, JsonObject)]) -> impl Iterator<Item = (Uuid, &JsonObject)> {
    let mut rows: Vec<_> = rows.iter().map(|(id, body)| (*id, body)).collect();
    rows.sort_by_key(|(id, _)| *id);
    rows.dedup_by_key(|(id, _)| *id);
    rows.into_iter()
}

fuzz_target!(|data: &[u8]| {
    let Ok(document) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let project = match document.get("project") {
        Some(project) => match validate_project(project, true) {
            Ok(project) => project,
            Err(_) => return,
        },
        None => JsonObject::new(),
    };
    let calendars = records(&document, &CALENDARS, 1 << 64);
    let tasks = records(&document, &TASKS, 2 << 64);
    let links = records(&document, &DEPENDENCIES, 3 << 64);
    let created_on = chrono::NaiveDate::from_ymd_opt(2026, 1, 5).expect("a date");
    let plan = plan_of(
        &project,
        created_on,
        PlanRecords {
            calendars: bodies(&calendars),
            tasks: bodies(&tasks),
            links: bodies(&links),
        },
        1,
    );
    if let Ok(schedule) = cpm::schedule(&plan.input()) {
        let _ = schedule_json(&schedule, chrono::DateTime::UNIX_EPOCH);
    }
});
