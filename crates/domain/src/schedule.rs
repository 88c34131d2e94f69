//! The scheduler's side of the domain: reading a project's schedule inputs into the CPM
//! engine's terms, and writing its outputs with `cpm_complete` and `task_dates_updated` in one
//! transaction. The computation itself is pure (`cpm`) and runs wherever the caller likes.
//!
//! Outputs are derived data: writing them neither bumps a task's `version` (a client's
//! `If-Match` stays valid) nor emits `task_updated` (so the scheduler never triggers itself).

use crate::collections;
use crate::tx::Tx;
use crate::validate::{parse_date, parse_day};
use crate::{Domain, DomainResult, OrApi};
use chrono::NaiveDate;
use cpm::{
    CalendarId, Constraint, DateRange, LinkInput, LinkType, ProjectInput, Schedule, TaskInput,
    WeekdayMask, WorkCalendar,
};
use proto::{ApiError, Event, EventType, StreamKey};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use store::{Ops, Page, format_ts};
use uuid::Uuid;

/// `task_dates_updated` lists at most this many tasks; above it says `truncated`.
pub const MAX_LISTED_MOVES: usize = 500;

/// The task fields the scheduler writes.
pub const OUTPUT_FIELDS: &[&str] = &[
    "early_start",
    "early_finish",
    "late_start",
    "late_finish",
    "total_float",
    "free_float",
    "is_critical",
];

/// Whether a committed event changes what the scheduler computes from.
pub fn is_schedule_input(event: &Event) -> bool {
    match event.event_type {
        EventType::TaskCreated
        | EventType::TaskDeleted
        | EventType::TasksBulkMutated
        | EventType::TasksReordered
        | EventType::DependencyCreated
        | EventType::DependencyUpdated
        | EventType::DependencyDeleted
        | EventType::CalendarCreated
        | EventType::CalendarUpdated
        | EventType::CalendarDeleted
        | EventType::ProjectCalendarChanged
        | EventType::ProjectUpdated => true,
        EventType::TaskUpdated => event.payload["changed_fields"]
            .as_array()
            .is_none_or(|fields| {
                fields.iter().filter_map(Value::as_str).any(|name| {
                    collections::TASKS
                        .field(name)
                        .is_some_and(|f| f.schedule_input)
                })
            }),
        _ => false,
    }
}

fn day(body: &serde_json::Map<String, Value>, name: &str) -> Option<NaiveDate> {
    body.get(name).and_then(Value::as_str).and_then(parse_day)
}

fn calendar_of(body: &serde_json::Map<String, Value>) -> WorkCalendar {
    let mut mask = 0u8;
    for day in body
        .get("working_days")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(d @ 1..=7) = day.as_i64() {
            mask |= 1 << (d - 1);
        }
    }
    if body.get("working_days").is_none() {
        mask = WeekdayMask::MON_FRI.0;
    }
    let exceptions = body
        .get("exceptions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| e.get("is_working") != Some(&json!(true)))
        .filter_map(|e| {
            let first = e
                .get("start")
                .and_then(Value::as_str)
                .and_then(parse_date)?;
            let last = e
                .get("end")
                .and_then(Value::as_str)
                .and_then(parse_date)
                .unwrap_or(first);
            Some(DateRange { first, last })
        })
        .collect();
    WorkCalendar {
        working_weekdays: WeekdayMask(mask),
        exceptions,
    }
}

fn constraint_of(body: &serde_json::Map<String, Value>) -> Constraint {
    let date = day(body, "constraint_date");
    match (body.get("constraint_type").and_then(Value::as_str), date) {
        (Some("alap"), _) => Constraint::Alap,
        (Some("snet"), Some(d)) => Constraint::Snet(d),
        (Some("fnet"), Some(d)) => Constraint::Fnet(d),
        (Some("snlt"), Some(d)) => Constraint::Snlt(d),
        (Some("fnlt"), Some(d)) => Constraint::Fnlt(d),
        (Some("mso"), Some(d)) => Constraint::Mso(d),
        (Some("mfo"), Some(d)) => Constraint::Mfo(d),
        _ => Constraint::Asap,
    }
}

/// Reads everything the schedule of `project_id` depends on.
pub async fn load_input(ops: &mut dyn Ops, project_id: Uuid) -> DomainResult<ProjectInput> {
    let project = ops
        .get_project(project_id)
        .await
        .or_api()?
        .ok_or_else(|| ApiError::not_found("project"))?;
    let calendars: BTreeMap<CalendarId, WorkCalendar> = ops
        .list_records(project_id, "calendars", Page::ALL)
        .await
        .or_api()?
        .iter()
        .map(|row| (row.id, calendar_of(&row.body)))
        .collect();
    let project_calendar = day_uuid(&project.body, "calendar_id")
        .and_then(|id| calendars.get(&id).cloned())
        .unwrap_or_default();
    let start = day(&project.body, "start_date").unwrap_or_else(|| project.created_at.date_naive());
    let tasks = ops
        .list_records(project_id, "tasks", Page::ALL)
        .await
        .or_api()?;
    let links = ops
        .list_records(project_id, "dependencies", Page::ALL)
        .await
        .or_api()?;
    let mut input = ProjectInput::new(start);
    input.status_date = day(&project.body, "status_date");
    input.calendar = project_calendar;
    input.tasks = tasks
        .iter()
        .map(|row| {
            let body = &row.body;
            let duration = body.get("duration").and_then(Value::as_f64).unwrap_or(0.0);
            TaskInput {
                id: row.id,
                parent: day_uuid(body, "parent_id"),
                // Whole working days: a fraction of a day still takes that day.
                duration: duration.max(0.0).ceil().min(u32::MAX as f64) as u32,
                is_milestone: body.get("is_milestone") == Some(&json!(true)),
                start_date: day(body, "start_date"),
                constraint: constraint_of(body),
                deadline: day(body, "deadline"),
                manually_scheduled: body.get("manually_scheduled") == Some(&json!(true)),
                scheduled_start: day(body, "scheduled_start"),
                scheduled_finish: day(body, "scheduled_finish"),
                percent_complete: body
                    .get("percent_complete")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0)
                    .clamp(0.0, 100.0) as u8,
                actual_start: day(body, "actual_start"),
                actual_finish: day(body, "actual_finish"),
                calendar: day_uuid(body, "calendar_id").filter(|id| calendars.contains_key(id)),
            }
        })
        .collect();
    input.calendars = calendars;
    input.links = links
        .iter()
        .filter_map(|row| {
            let body = &row.body;
            Some(LinkInput {
                predecessor: day_uuid(body, "predecessor_id")?,
                successor: day_uuid(body, "successor_id")?,
                kind: match body.get("type").and_then(Value::as_str) {
                    Some("SS") => LinkType::SS,
                    Some("FF") => LinkType::FF,
                    Some("SF") => LinkType::SF,
                    _ => LinkType::FS,
                },
                lag: body
                    .get("lag")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0)
                    .round() as i32,
            })
        })
        .collect();
    Ok(input)
}

fn day_uuid(body: &serde_json::Map<String, Value>, name: &str) -> Option<Uuid> {
    body.get(name)
        .and_then(Value::as_str)
        .and_then(|t| Uuid::parse_str(t).ok())
}

fn output_json(t: &cpm::TaskSchedule) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    out.insert("early_start".into(), json!(t.early_start.to_string()));
    out.insert("early_finish".into(), json!(t.early_finish.to_string()));
    out.insert("late_start".into(), json!(t.late_start.to_string()));
    out.insert("late_finish".into(), json!(t.late_finish.to_string()));
    out.insert("total_float".into(), json!(t.total_float));
    out.insert("free_float".into(), json!(t.free_float));
    out.insert("is_critical".into(), json!(t.is_critical));
    out
}

/// The `GET …/schedule` body.
pub fn schedule_json(schedule: &Schedule, computed_at: store::Timestamp) -> Value {
    json!({
        "project_finish": schedule.project_finish.to_string(),
        "critical_path": schedule.critical_path,
        "computed_at": format_ts(computed_at),
        "tasks": schedule.tasks.iter().map(|t| {
            let mut o = output_json(t);
            o.insert("id".into(), json!(t.id));
            Value::Object(o)
        }).collect::<Vec<_>>(),
    })
}

impl Domain {
    /// The inputs of a project's schedule, for a caller with read access (`None` actor: the
    /// scheduler worker itself).
    pub async fn schedule_input(
        &self,
        actor: Option<&crate::Actor>,
        project_id: Uuid,
    ) -> DomainResult<ProjectInput> {
        let mut ops = self.store.read().await.or_api()?;
        if let Some(actor) = actor {
            crate::access::project_role(&mut *ops, project_id, actor).await?;
        }
        load_input(&mut *ops, project_id).await
    }

    /// Writes a computed schedule: the outputs of every task that moved (tasks deleted since
    /// the inputs were read are skipped), then `cpm_complete` and `task_dates_updated`.
    /// Returns the number of tasks that moved.
    pub async fn write_schedule(
        &self,
        project_id: Uuid,
        schedule: &Schedule,
    ) -> DomainResult<usize> {
        let mut tx = Tx::begin(self, None).await?;
        if tx.ops().get_project(project_id).await.or_api()?.is_none() {
            return Ok(0);
        }
        let stored = tx
            .ops()
            .list_records(project_id, "tasks", Page::ALL)
            .await
            .or_api()?;
        let mut by_id: HashMap<Uuid, store::RecordRow> =
            stored.into_iter().map(|r| (r.id, r)).collect();
        let mut moved = Vec::new();
        for task in &schedule.tasks {
            let Some(row) = by_id.get_mut(&task.id) else {
                continue;
            };
            let outputs = output_json(task);
            if outputs.iter().all(|(k, v)| row.body.get(k) == Some(v)) {
                continue;
            }
            row.body.extend(outputs.clone());
            // Outputs never change references: the reference index stays as it is.
            tx.ops().update_record_body(row).await.or_api()?;
            let mut listed = outputs;
            listed.insert("id".into(), json!(task.id));
            listed.insert(
                "start_date".into(),
                row.body.get("start_date").cloned().unwrap_or(Value::Null),
            );
            listed.insert(
                "duration".into(),
                row.body.get("duration").cloned().unwrap_or(Value::Null),
            );
            moved.push(Value::Object(listed));
        }
        let stream = StreamKey::Project(project_id);
        let complete = json!({
            "project_finish": schedule.project_finish.to_string(),
            "critical_path": schedule.critical_path,
        });
        tx.emit(
            stream,
            EventType::CpmComplete,
            complete.clone(),
            complete,
            Some(project_id),
        )
        .await?;
        let count = moved.len();
        let dates = if count > MAX_LISTED_MOVES {
            json!({ "count": count, "truncated": true })
        } else {
            json!({ "count": count, "tasks": moved })
        };
        tx.emit(
            stream,
            EventType::TaskDatesUpdated,
            dates.clone(),
            dates,
            Some(project_id),
        )
        .await?;
        tx.commit().await?;
        Ok(count)
    }

    /// Records that the schedule could not be computed; the previous outputs stay.
    pub async fn write_schedule_error(
        &self,
        project_id: Uuid,
        error: &str,
        details: Value,
    ) -> DomainResult<()> {
        let mut tx = Tx::begin(self, None).await?;
        if tx.ops().get_project(project_id).await.or_api()?.is_none() {
            return Ok(());
        }
        let payload = json!({ "error": error, "details": details });
        tx.emit(
            StreamKey::Project(project_id),
            EventType::CpmError,
            payload.clone(),
            payload,
            Some(project_id),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A scheduler failure in words and details a client can act on.
pub fn describe_error(error: &cpm::CpmError) -> (String, Value) {
    match error {
        cpm::CpmError::Cycle(tasks) => (
            "the dependencies form a cycle".into(),
            json!({ "cycle": tasks }),
        ),
        other => (other.to_string(), Value::Null),
    }
}
