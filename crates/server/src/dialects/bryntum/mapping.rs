//! The mapping between liveplan records and Bryntum Gantt store records, both ways. Pure: no
//! I/O, no ids invented here (phantoms are resolved before, in `phantoms`).
//!
//! The scheme, per record:
//! - Fields liveplan models are stored under liveplan names and converted (`startDate` ↔
//!   `scheduled_start`, `duration` + `durationUnit` ↔ `duration` in working days, …).
//! - Bryntum's unit fields (`durationUnit`, `lagUnit`) are stored under their Bryntum names so
//!   a duration comes back in the unit the user typed: "3 hours" stays 3 hours, stored as 0.375
//!   working days (never truncated).
//! - Every other field the client sends (`cls`, `effort`, `baselines`, …) is stored as sent,
//!   under its Bryntum name, and returned as is, so dataset → edit → dataset loses nothing.
//! - Server-only fields (scheduler outputs, liveplan fields without a Bryntum meaning) are never
//!   sent to Bryntum clients: the Bryntum engine schedules on its own, and feeding it the server
//!   scheduler's results would make the two engines chase each other.

use chrono::{Duration, NaiveDate};
use domain::collections::{
    ASSIGNMENTS, CALENDARS, Collection, DEPENDENCIES, RESOURCES, SERVER_FIELDS, TASKS, VERSIONS,
};
use domain::validate::parse_day;
use serde_json::{Map, Value, json};

pub type Object = Map<String, Value>;

/// The Bryntum stores liveplan keeps, in the order their records may be created (a record's
/// references are created before it).
pub const STORES: &[BryntumStore] = &[
    BryntumStore::Calendars,
    BryntumStore::Resources,
    BryntumStore::Tasks,
    BryntumStore::Dependencies,
    BryntumStore::Assignments,
    BryntumStore::Versions,
];

/// One of the stores of a Bryntum Gantt client (`tasks`, `dependencies`, …), each kept in a
/// liveplan collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BryntumStore {
    Tasks,
    Dependencies,
    Resources,
    Assignments,
    Calendars,
    Versions,
}

impl BryntumStore {
    /// The store key in a Bryntum `changes` object.
    pub fn from_key(key: &str) -> Option<BryntumStore> {
        Some(match key {
            "tasks" => BryntumStore::Tasks,
            "dependencies" => BryntumStore::Dependencies,
            "resources" => BryntumStore::Resources,
            "assignments" => BryntumStore::Assignments,
            "calendars" => BryntumStore::Calendars,
            "versions" => BryntumStore::Versions,
            _ => return None,
        })
    }

    pub fn key(self) -> &'static str {
        match self {
            BryntumStore::Tasks => "tasks",
            BryntumStore::Dependencies => "dependencies",
            BryntumStore::Resources => "resources",
            BryntumStore::Assignments => "assignments",
            BryntumStore::Calendars => "calendars",
            BryntumStore::Versions => "versions",
        }
    }

    /// The key of the store in a `dataset` (`tasksData`, …).
    pub fn dataset_key(self) -> &'static str {
        match self {
            BryntumStore::Tasks => "tasksData",
            BryntumStore::Dependencies => "dependenciesData",
            BryntumStore::Resources => "resourcesData",
            BryntumStore::Assignments => "assignmentsData",
            BryntumStore::Calendars => "calendarsData",
            BryntumStore::Versions => "versionsData",
        }
    }

    pub fn collection(self) -> &'static Collection {
        match self {
            BryntumStore::Tasks => &TASKS,
            BryntumStore::Dependencies => &DEPENDENCIES,
            BryntumStore::Resources => &RESOURCES,
            BryntumStore::Assignments => &ASSIGNMENTS,
            BryntumStore::Calendars => &CALENDARS,
            BryntumStore::Versions => &VERSIONS,
        }
    }

    pub fn from_collection(name: &str) -> Option<BryntumStore> {
        STORES.iter().copied().find(|s| s.collection().name == name)
    }
}

/// How Bryntum converts between time units. liveplan counts working days of 8 hours and weeks
/// of 5 days; the dataset's `project` says so, so the Bryntum engine converts the same way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Units {
    pub hours_per_day: f64,
    pub days_per_week: f64,
    pub days_per_month: f64,
}

impl Default for Units {
    fn default() -> Self {
        Units {
            hours_per_day: 8.0,
            days_per_week: 5.0,
            days_per_month: 20.0,
        }
    }
}

impl Units {
    /// The units a Bryntum `project` object declares, liveplan's defaults otherwise.
    pub fn from_project(project: &Object) -> Units {
        let read = |key: &str, default: f64| {
            project
                .get(key)
                .and_then(Value::as_f64)
                .filter(|v| v.is_finite() && *v > 0.0)
                .unwrap_or(default)
        };
        let d = Units::default();
        Units {
            hours_per_day: read("hoursPerDay", d.hours_per_day),
            days_per_week: read("daysPerWeek", d.days_per_week),
            days_per_month: read("daysPerMonth", d.days_per_month),
        }
    }

    /// These units with the fields `update` (a Bryntum `project` change) sets.
    pub fn updated(&self, update: &Object) -> Units {
        let read = |key: &str, current: f64| {
            update
                .get(key)
                .and_then(Value::as_f64)
                .filter(|v| v.is_finite() && *v > 0.0)
                .unwrap_or(current)
        };
        Units {
            hours_per_day: read("hoursPerDay", self.hours_per_day),
            days_per_week: read("daysPerWeek", self.days_per_week),
            days_per_month: read("daysPerMonth", self.days_per_month),
        }
    }

    /// The project fields that tell a Bryntum client how liveplan converts units.
    pub fn project_fields(&self) -> Object {
        let mut out = Object::new();
        out.insert("hoursPerDay".into(), number(self.hours_per_day));
        out.insert("daysPerWeek".into(), number(self.days_per_week));
        out.insert("daysPerMonth".into(), number(self.days_per_month));
        out
    }

    /// Working days in one `unit` (Bryntum's names, long or short, singular or plural).
    pub fn days_per(&self, unit: &str) -> Option<f64> {
        // Bryntum's short names are case sensitive only here: `M` is a month, `ms` a millisecond.
        if unit.trim() == "M" {
            return Some(self.days_per_month);
        }
        let unit = unit.trim().to_ascii_lowercase();
        let unit = unit
            .strip_suffix('s')
            .filter(|u| u.len() > 1)
            .unwrap_or(&unit);
        let hour = 1.0 / self.hours_per_day;
        Some(match unit {
            "millisecond" | "ms" => hour / 3_600_000.0,
            "second" | "sec" | "s" => hour / 3_600.0,
            "minute" | "mi" | "min" => hour / 60.0,
            "hour" | "h" => hour,
            "day" | "d" => 1.0,
            "week" | "w" => self.days_per_week,
            "month" | "mo" => self.days_per_month,
            "quarter" | "q" => 3.0 * self.days_per_month,
            "year" | "y" => 12.0 * self.days_per_month,
            _ => return None,
        })
    }
}

/// Removes float noise from a conversion (0.1 weeks → 0.5 days → 0.1 weeks, not 0.1000000001).
fn tidy(value: f64) -> f64 {
    let scaled = (value * 1e9).round() / 1e9;
    if scaled == 0.0 { 0.0 } else { scaled }
}

fn number(value: f64) -> Value {
    let value = tidy(value);
    if value.fract() == 0.0 && value.abs() < 9e15 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

/// A length in Bryntum units → working days.
fn to_days(field: &str, value: &Value, unit: Option<&str>, units: &Units) -> Result<Value, String> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let amount = value
        .as_f64()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("{field} must be a number"))?;
    let unit = unit.unwrap_or("day");
    let per = units
        .days_per(unit)
        .ok_or_else(|| format!("{field}: unknown unit {unit}"))?;
    Ok(number(amount * per))
}

/// Working days → a length in `unit`.
fn from_days(value: &Value, unit: &str, units: &Units) -> Value {
    match (value.as_f64(), units.days_per(unit)) {
        (Some(days), Some(per)) if per > 0.0 => number(days / per),
        _ => value.clone(),
    }
}

const CONSTRAINTS: &[(&str, &str)] = &[
    ("assoonaspossible", "asap"),
    ("aslateaspossible", "alap"),
    ("startnoearlierthan", "snet"),
    ("startnolaterthan", "snlt"),
    ("finishnoearlierthan", "fnet"),
    ("finishnolaterthan", "fnlt"),
    ("muststarton", "mso"),
    ("mustfinishon", "mfo"),
];

/// Bryntum dependency types by number: 0 SS, 1 SF, 2 FS, 3 FF.
const DEPENDENCY_TYPES: [&str; 4] = ["SS", "SF", "FS", "FF"];

fn constraint_in(value: &Value) -> Result<Value, String> {
    match value {
        Value::Null => Ok(Value::Null),
        Value::String(text) => CONSTRAINTS
            .iter()
            .find(|(bryntum, short)| text.eq_ignore_ascii_case(bryntum) || text == short)
            .map(|(_, short)| json!(short))
            .ok_or_else(|| format!("constraintType: unknown constraint {text}")),
        _ => Err("constraintType must be a string or null".into()),
    }
}

fn constraint_out(value: &Value) -> Value {
    value
        .as_str()
        .and_then(|t| CONSTRAINTS.iter().find(|(_, short)| *short == t))
        .map(|(bryntum, _)| json!(bryntum))
        .unwrap_or(Value::Null)
}

fn dependency_type_in(value: &Value) -> Result<Value, String> {
    match value {
        Value::Null => Ok(json!("FS")),
        Value::Number(n) => n
            .as_u64()
            .and_then(|i| DEPENDENCY_TYPES.get(usize::try_from(i).ok()?))
            .map(|t| json!(t))
            .ok_or_else(|| "type must be 0 (SS), 1 (SF), 2 (FS) or 3 (FF)".into()),
        Value::String(t) if DEPENDENCY_TYPES.contains(&t.as_str()) => Ok(json!(t)),
        _ => Err("type must be 0 (SS), 1 (SF), 2 (FS) or 3 (FF)".into()),
    }
}

fn dependency_type_out(value: Option<&Value>) -> Value {
    let name = value.and_then(Value::as_str).unwrap_or("FS");
    json!(
        DEPENDENCY_TYPES
            .iter()
            .position(|t| *t == name)
            .unwrap_or(2)
    )
}

/// Keys Bryntum sends that are bookkeeping, never stored: the id (the record's own), the
/// phantom markers, and tree structure (`children` arrays are derived from `parentId`).
fn is_transient(key: &str, value: &Value) -> bool {
    matches!(key, "id" | "$PhantomId" | "$PhantomParentId")
        || (key == "children" && value.is_array())
        || SERVER_FIELDS.contains(&key)
}

/// What a Bryntum record of `store` means for liveplan: the fields to write. `current` is the
/// stored record when this is an update, for the units the client did not resend.
pub fn to_liveplan(
    store: BryntumStore,
    record: &Object,
    units: &Units,
    current: Option<&Object>,
) -> Result<Object, String> {
    let mut out = Object::new();
    let stored_unit = |key: &str| {
        record
            .get(key)
            .and_then(Value::as_str)
            .or_else(|| current.and_then(|c| c.get(key)).and_then(Value::as_str))
            .map(str::to_owned)
    };
    for (key, value) in record {
        if is_transient(key, value) {
            continue;
        }
        let (name, converted) = match (store, key.as_str()) {
            (BryntumStore::Tasks, "parentId") => ("parent_id", value.clone()),
            (BryntumStore::Tasks, "startDate") => ("scheduled_start", value.clone()),
            (BryntumStore::Tasks, "endDate") => ("scheduled_finish", value.clone()),
            (BryntumStore::Tasks, "duration") => (
                "duration",
                to_days(key, value, stored_unit("durationUnit").as_deref(), units)?,
            ),
            (BryntumStore::Tasks, "percentDone") => ("percent_complete", value.clone()),
            (BryntumStore::Tasks, "constraintType") => ("constraint_type", constraint_in(value)?),
            (BryntumStore::Tasks, "constraintDate") => ("constraint_date", value.clone()),
            (BryntumStore::Tasks, "manuallyScheduled") => (
                "manually_scheduled",
                if value.is_null() {
                    json!(false)
                } else {
                    value.clone()
                },
            ),
            (BryntumStore::Tasks | BryntumStore::Resources, "calendar") => {
                ("calendar_id", value.clone())
            }
            (BryntumStore::Tasks, "note") => ("description", value.clone()),
            (BryntumStore::Dependencies, "from" | "fromEvent") => {
                if key == "from" && record.contains_key("fromEvent") {
                    continue;
                }
                ("predecessor_id", value.clone())
            }
            (BryntumStore::Dependencies, "to" | "toEvent") => {
                if key == "to" && record.contains_key("toEvent") {
                    continue;
                }
                ("successor_id", value.clone())
            }
            (BryntumStore::Dependencies, "type") => ("type", dependency_type_in(value)?),
            (BryntumStore::Dependencies, "lag") => (
                "lag",
                if value.is_null() {
                    json!(0)
                } else {
                    to_days(key, value, stored_unit("lagUnit").as_deref(), units)?
                },
            ),
            (BryntumStore::Assignments, "event" | "eventId") => ("task_id", value.clone()),
            (BryntumStore::Assignments, "resource" | "resourceId") => {
                ("resource_id", value.clone())
            }
            (BryntumStore::Calendars, "intervals") => {
                let (days, exceptions) = intervals_in(value)?;
                out.insert("working_days".into(), json!(days));
                out.insert("exceptions".into(), Value::Array(exceptions));
                // The intervals as sent, so they come back exactly (see `calendar_out`).
                ("intervals", value.clone())
            }
            (_, other) => {
                // A Bryntum field that happens to share a name with a liveplan field of this
                // collection that the mapping gives another meaning to is kept aside, so it
                // can neither be misread nor refused.
                let modeled = store.collection().field(other).is_some()
                    && !matches!(
                        (store, other),
                        (_, "name" | "units" | "description" | "content" | "email")
                    );
                if modeled {
                    continue;
                }
                (other, value.clone())
            }
        };
        out.insert(name.to_owned(), converted);
    }
    if store == BryntumStore::Versions && current.is_none() && !out.contains_key("name") {
        let name = record
            .get("savedAt")
            .and_then(Value::as_str)
            .map(|at| format!("Version {at}"))
            .unwrap_or_else(|| "Version".to_owned());
        out.insert("name".into(), json!(name));
    }
    Ok(out)
}

/// A liveplan record (its stored body and id) as Bryntum sees it. Versions leave out their
/// content (sent by `load_version_content`).
pub fn to_bryntum(store: BryntumStore, id: &str, body: &Object, units: &Units) -> Object {
    let mut out = Object::new();
    out.insert("id".into(), json!(id));
    let collection = store.collection();
    for (key, value) in body {
        let unit = |name: &str, default: &str| {
            body.get(name)
                .and_then(Value::as_str)
                .unwrap_or(default)
                .to_owned()
        };
        let mapped: Option<(&str, Value)> = match (store, key.as_str()) {
            (BryntumStore::Tasks, "parent_id") => Some(("parentId", value.clone())),
            (BryntumStore::Tasks, "scheduled_start") => Some(("startDate", value.clone())),
            (BryntumStore::Tasks, "scheduled_finish") => Some(("endDate", value.clone())),
            (BryntumStore::Tasks, "duration") => Some((
                "duration",
                from_days(value, &unit("durationUnit", "day"), units),
            )),
            (BryntumStore::Tasks, "percent_complete") => Some(("percentDone", value.clone())),
            (BryntumStore::Tasks, "constraint_type") => {
                Some(("constraintType", constraint_out(value)))
            }
            (BryntumStore::Tasks, "constraint_date") => Some(("constraintDate", value.clone())),
            (BryntumStore::Tasks, "manually_scheduled") => {
                Some(("manuallyScheduled", value.clone()))
            }
            (BryntumStore::Tasks | BryntumStore::Resources, "calendar_id") => {
                Some(("calendar", value.clone()))
            }
            (BryntumStore::Tasks, "description") => Some(("note", value.clone())),
            (BryntumStore::Dependencies, "predecessor_id") => {
                out.insert("from".into(), value.clone());
                Some(("fromEvent", value.clone()))
            }
            (BryntumStore::Dependencies, "successor_id") => {
                out.insert("to".into(), value.clone());
                Some(("toEvent", value.clone()))
            }
            (BryntumStore::Dependencies, "type") => {
                Some(("type", dependency_type_out(Some(value))))
            }
            (BryntumStore::Dependencies, "lag") => {
                Some(("lag", from_days(value, &unit("lagUnit", "day"), units)))
            }
            (BryntumStore::Assignments, "task_id") => Some(("event", value.clone())),
            (BryntumStore::Assignments, "resource_id") => Some(("resource", value.clone())),
            (BryntumStore::Calendars, "working_days" | "exceptions" | "intervals") => None,
            (BryntumStore::Versions, "content") => None,
            (_, "name" | "units" | "description" | "email") => Some((key.as_str(), value.clone())),
            (_, other) if collection.field(other).is_some() => None,
            (_, other) if SERVER_FIELDS.contains(&other) => None,
            (_, other) => Some((other, value.clone())),
        };
        if let Some((name, value)) = mapped {
            out.insert(name.to_owned(), value);
        }
    }
    if store == BryntumStore::Tasks {
        out.entry("parentId").or_insert(Value::Null);
        if out.contains_key("duration") {
            out.entry("durationUnit").or_insert(json!("day"));
        }
    }
    if store == BryntumStore::Dependencies {
        out.entry("type").or_insert(json!(2));
        if out.contains_key("lag") {
            out.entry("lagUnit").or_insert(json!("day"));
        }
    }
    if store == BryntumStore::Calendars {
        out.insert("intervals".into(), calendar_intervals(body));
    }
    out
}

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

fn weekday_index(text: &str) -> Option<usize> {
    let text = text.trim();
    // `get` rather than slicing: a multi-byte character must not panic the parser.
    let prefix = text.get(..3)?;
    WEEKDAYS.iter().position(|d| d.eq_ignore_ascii_case(prefix))
}

/// `on Sat at 0:00` (later.js text, as Bryntum writes recurrences) → the weekday, when the time
/// is midnight or absent.
fn recurrence_day(text: &str) -> Option<usize> {
    let rest = text.trim().strip_prefix("on ")?;
    let (day, time) = match rest.split_once(" at ") {
        Some((day, time)) => (day, Some(time.trim())),
        None => (rest, None),
    };
    if time.is_some_and(|t| !matches!(t, "0:00" | "00:00")) {
        return None;
    }
    weekday_index(day)
}

/// Bryntum calendar intervals → (working weekdays 1–7, exceptions). Recurring non-working
/// weekday intervals become `working_days`; dated intervals become exceptions (Bryntum's end
/// is exclusive, liveplan's inclusive). Anything else (working hours, …) is liveplan-opaque
/// and only kept in the stored `intervals`.
pub fn intervals_in(value: &Value) -> Result<(Vec<i64>, Vec<Value>), String> {
    let items = match value {
        Value::Null => return Ok(((1..=5).collect(), Vec::new())),
        Value::Array(items) => items,
        _ => return Err("intervals must be an array".into()),
    };
    let mut working = [true; 7];
    let mut exceptions = Vec::new();
    for item in items {
        let item = item
            .as_object()
            .ok_or("each calendar interval must be an object")?;
        let is_working = item
            .get("isWorking")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let recurrent = (
            item.get("recurrentStartDate").and_then(Value::as_str),
            item.get("recurrentEndDate").and_then(Value::as_str),
        );
        if let (Some(start), Some(end)) = recurrent {
            if let (Some(mut day), Some(end), false) =
                (recurrence_day(start), recurrence_day(end), is_working)
            {
                for _ in 0..7 {
                    working[day] = false;
                    day = (day + 1) % 7;
                    if day == end {
                        break;
                    }
                }
            }
            continue;
        }
        let start = item
            .get("startDate")
            .and_then(Value::as_str)
            .and_then(parse_day);
        let end = item
            .get("endDate")
            .and_then(Value::as_str)
            .and_then(parse_day);
        if let Some(start) = start {
            // Exclusive end at midnight → the day before; a partial last day counts.
            let end_text = item.get("endDate").and_then(Value::as_str).unwrap_or("");
            let last = match end {
                Some(end) if end > start && ends_at_midnight(end_text) => end - Duration::days(1),
                Some(end) if end >= start => end,
                _ => start,
            };
            let mut exception = Object::new();
            exception.insert("start".into(), json!(start.format("%Y-%m-%d").to_string()));
            exception.insert("end".into(), json!(last.format("%Y-%m-%d").to_string()));
            if let Some(name) = item.get("name").and_then(Value::as_str) {
                exception.insert("name".into(), json!(name));
            }
            exception.insert("is_working".into(), json!(is_working));
            exceptions.push(Value::Object(exception));
        }
    }
    let days = (0..7)
        .filter(|d| working[*d])
        .map(|d| d as i64 + 1)
        .collect();
    Ok((days, exceptions))
}

fn ends_at_midnight(text: &str) -> bool {
    match text.split_once('T') {
        None => true,
        Some((_, time)) => time.starts_with("00:00"),
    }
}

/// The intervals to send for a stored calendar: the intervals a Bryntum client stored, while
/// they still say what `working_days`/`exceptions` say; generated ones once another client
/// (REST) has changed those.
fn calendar_intervals(body: &Object) -> Value {
    let days = body.get("working_days").cloned().unwrap_or(json!([]));
    let exceptions = body.get("exceptions").cloned().unwrap_or(json!([]));
    if let Some(stored) = body.get("intervals")
        && let Ok((stored_days, stored_exceptions)) = intervals_in(stored)
        && json!(stored_days) == days
        && Value::Array(stored_exceptions) == exceptions
    {
        return stored.clone();
    }
    let mut out = Vec::new();
    let working: Vec<usize> = days
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .filter_map(|d| usize::try_from(d).ok())
        .filter(|d| (1..=7).contains(d))
        .map(|d| d - 1)
        .collect();
    for day in (0..7).filter(|d| !working.contains(d)) {
        out.push(json!({
            "recurrentStartDate": format!("on {} at 0:00", WEEKDAYS[day]),
            "recurrentEndDate": format!("on {} at 0:00", WEEKDAYS[(day + 1) % 7]),
            "isWorking": false,
        }));
    }
    for exception in exceptions.as_array().into_iter().flatten() {
        let start = exception
            .get("start")
            .and_then(Value::as_str)
            .and_then(parse_day);
        let end = exception
            .get("end")
            .and_then(Value::as_str)
            .and_then(parse_day)
            .or(start);
        if let (Some(start), Some(end)) = (start, end) {
            let mut interval = Object::new();
            interval.insert("startDate".into(), json!(day_text(start)));
            interval.insert("endDate".into(), json!(day_text(end + Duration::days(1))));
            interval.insert(
                "isWorking".into(),
                exception.get("is_working").cloned().unwrap_or(json!(false)),
            );
            if let Some(name) = exception.get("name").filter(|n| n.is_string()) {
                interval.insert("name".into(), name.clone());
            }
            out.push(Value::Object(interval));
        }
    }
    Value::Array(out)
}

fn day_text(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

/// Sorts tasks into Bryntum's tree: roots and `children` arrays, siblings by `parentIndex`
/// (stored as Bryntum sent it), then in store order. Tasks whose parent is missing become
/// roots so nothing disappears.
pub fn task_tree(tasks: Vec<Object>) -> Vec<Value> {
    use std::collections::HashMap;
    let ids: std::collections::HashSet<String> = tasks
        .iter()
        .filter_map(|t| t.get("id").and_then(Value::as_str).map(str::to_owned))
        .collect();
    let mut by_parent: HashMap<Option<String>, Vec<(usize, Object)>> = HashMap::new();
    for (order, task) in tasks.into_iter().enumerate() {
        let parent = task
            .get("parentId")
            .and_then(Value::as_str)
            .filter(|p| ids.contains(*p))
            .map(str::to_owned);
        by_parent.entry(parent).or_default().push((order, task));
    }
    for siblings in by_parent.values_mut() {
        siblings.sort_by(|(a_order, a), (b_order, b)| {
            let index = |t: &Object| t.get("parentIndex").and_then(Value::as_f64);
            match (index(a), index(b)) {
                (Some(x), Some(y)) => x.total_cmp(&y).then(a_order.cmp(b_order)),
                _ => a_order.cmp(b_order),
            }
        });
    }
    fn build(
        parent: Option<String>,
        by_parent: &mut HashMap<Option<String>, Vec<(usize, Object)>>,
        depth: usize,
    ) -> Vec<Value> {
        let Some(siblings) = by_parent.remove(&parent) else {
            return Vec::new();
        };
        siblings
            .into_iter()
            .map(|(_, mut task)| {
                let id = task.get("id").and_then(Value::as_str).map(str::to_owned);
                // The store refuses loops; the depth cap is a second guard for the stack.
                if depth < 1_000 {
                    let children = build(id, by_parent, depth + 1);
                    if !children.is_empty() {
                        task.insert("children".into(), Value::Array(children));
                    }
                }
                Value::Object(task)
            })
            .collect()
    }
    let mut roots = build(None, &mut by_parent, 0);
    // Whatever is left hangs off a loop (cannot happen through the domain): keep it visible.
    let leftovers: Vec<(usize, Object)> = by_parent.into_values().flatten().collect();
    roots.extend(leftovers.into_iter().map(|(_, t)| Value::Object(t)));
    roots
}

#[cfg(test)]
#[path = "mapping_tests.rs"]
mod tests;
