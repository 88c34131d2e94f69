//! The scheduler's side of the domain: reading a project's schedule inputs into the CPM
//! engine's terms, and writing its outputs with `cpm_complete` and `task_dates_updated` in one
//! transaction. The computation itself is pure (`cpm`) and runs wherever the caller likes.
//!
//! Outputs are derived data: writing them neither bumps a task's `version` (a client's
//! `If-Match` stays valid) nor emits `task_updated` (so the scheduler never triggers itself).

use crate::collections;
use crate::schedule_lease::{mark_scheduled_through, scheduled_through};
use crate::tx::Tx;
use crate::validate::{parse_date, parse_day, parse_exclusive_end_day};
use crate::{Domain, DomainResult, OrApi};
use chrono::NaiveDate;
use cpm::{
    CalendarId, Constraint, DateRange, Edit, LinkInput, LinkType, ProjectInput, Schedule, TaskId,
    TaskInput, TaskSchedule, WeekdayMask, WorkCalendar,
};
use proto::{ApiError, Event, EventType, StreamKey};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use store::{Page, Queries, format_ts};
use uuid::Uuid;

/// `task_dates_updated` lists at most this many tasks; above it says `truncated`.
pub const MAX_LISTED_MOVES: usize = 500;

/// Above this many moved tasks, [`Domain::write_schedule_update`] reads the project's tasks in
/// one query rather than one by one.
const BULK_READ: usize = 256;

/// A computed schedule reduced to what has to be written.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleUpdate {
    pub project_finish: NaiveDate,
    pub critical_path: Vec<TaskId>,
    /// The tasks whose outputs differ from what their bodies hold, in id order.
    pub moved: Vec<TaskSchedule>,
}

/// How [`Domain::write_schedule_update`] ended.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOutcome {
    /// Committed with `cpm_complete` at `seq`; `stored` are the outputs the tasks now hold.
    Written { seq: i64, stored: Vec<TaskSchedule> },
    /// The project no longer exists.
    ProjectGone,
    /// The caller's plan is out of date; nothing was written.
    Superseded,
    /// A schedule computed from this state or a later one was written already (by another
    /// node, see [`crate::schedule_lease`]); nothing was written.
    AlreadyCovered,
}

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
        EventType::TaskUpdated => {
            // A manually scheduled task keeps the bar a client placed, and that bar drives its
            // successors; on any other task the bar is only the client's view of the outputs.
            let manual = event.data["manually_scheduled"] == json!(true);
            event.payload["changed_fields"]
                .as_array()
                .is_none_or(|fields| {
                    fields.iter().filter_map(Value::as_str).any(|name| {
                        collections::TASKS
                            .field(name)
                            .is_some_and(|f| f.schedule_input)
                            || (manual && MANUAL_BAR_FIELDS.contains(&name))
                    })
                })
        }
        _ => false,
    }
}

/// The task fields that hold a manually scheduled task's dates.
const MANUAL_BAR_FIELDS: &[&str] = &["scheduled_start", "scheduled_finish"];

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

/// One task as the scheduler keeps it between computations.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanTask {
    /// Its inputs. `calendar` is the stored `calendar_id` even when no such calendar exists:
    /// [`Plan::input`] drops unknown ones, so a calendar created later is picked up.
    pub input: TaskInput,
    /// The outputs its stored body holds; `None` when it holds none, or not exactly in the
    /// form the scheduler writes (then the next computation writes them whatever they are).
    pub outputs: Option<TaskSchedule>,
    /// The project seq as of which `outputs` is known: an event committed earlier carries an
    /// older body, so its outputs must not overwrite ones the worker wrote since.
    pub outputs_seq: i64,
}

/// Everything a project's schedule depends on, in the stored form, plus the outputs each task
/// holds: what a full read gives ([`load_plan`]), kept current by the committed events
/// ([`Plan::apply`]) so the scheduler does not have to read the project again.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub start: NaiveDate,
    pub status_date: Option<NaiveDate>,
    pub calendar_id: Option<CalendarId>,
    pub calendars: BTreeMap<CalendarId, WorkCalendar>,
    /// By id: the store lists records in id order, and the engine breaks ties in the critical
    /// path by input order, so the order must be the one a full read gives.
    pub tasks: BTreeMap<Uuid, PlanTask>,
    /// Dependency records by id, those that name both tasks.
    pub links: BTreeMap<Uuid, LinkInput>,
    /// Tasks whose held outputs an event changed since the last [`Plan::take_rechecks`]: the
    /// scheduler only writes outputs, so this should not happen, but if something else did,
    /// these tasks must be compared again even where the engine saw nothing move.
    pub rechecks: Vec<Uuid>,
}

/// What one committed event means for a cached [`Plan`].
#[derive(Clone, Debug, PartialEq)]
pub enum PlanEffect {
    /// Nothing the plan holds.
    None,
    Change(PlanChange),
    /// A change the plan cannot follow from the event alone: read the project again.
    Reload,
    /// The project is gone.
    DropProject,
    /// Every project may be gone or replaced (an import, a wipe).
    DropAll,
}

/// A change to one record of a [`Plan`], taken from a committed event.
#[derive(Clone, Debug, PartialEq)]
pub enum PlanChange {
    /// A task created or updated, as its record is after the change.
    Task {
        id: Uuid,
        input: Box<TaskInput>,
        outputs: Option<Box<TaskSchedule>>,
    },
    TaskDeleted(Uuid),
    /// A dependency created or updated; `None` when it does not name both tasks.
    Link {
        id: Uuid,
        link: Option<LinkInput>,
    },
    LinkDeleted(Uuid),
    Calendar {
        id: Uuid,
        calendar: WorkCalendar,
    },
    CalendarDeleted(Uuid),
}

/// What `event` changes in a cached plan of its project.
pub fn plan_effect(event: &Event) -> PlanEffect {
    let data = event.data.as_object();
    let id = || data.and_then(|d| uuid_field(d, "id"));
    let change = match event.event_type {
        EventType::TaskCreated | EventType::TaskUpdated => {
            data.zip(id()).map(|(body, id)| PlanChange::Task {
                id,
                input: Box::new(task_input(id, body)),
                outputs: stored_outputs(id, body).map(Box::new),
            })
        }
        EventType::TaskDeleted => id().map(PlanChange::TaskDeleted),
        EventType::DependencyCreated | EventType::DependencyUpdated => {
            data.zip(id()).map(|(body, id)| PlanChange::Link {
                id,
                link: link_input(body),
            })
        }
        EventType::DependencyDeleted => id().map(PlanChange::LinkDeleted),
        EventType::CalendarCreated | EventType::CalendarUpdated => {
            data.zip(id()).map(|(body, id)| PlanChange::Calendar {
                id,
                calendar: calendar_of(body),
            })
        }
        EventType::CalendarDeleted => id().map(PlanChange::CalendarDeleted),
        // The project's own fields (start, status date, calendar) and the event types the
        // catalog has but nothing emits yet: cheaper to read again than to guess.
        EventType::ProjectUpdated
        | EventType::ProjectCalendarChanged
        | EventType::TasksBulkMutated
        | EventType::TasksReordered => return PlanEffect::Reload,
        EventType::ProjectDeleted => return PlanEffect::DropProject,
        EventType::DatabaseWiped | EventType::DatabaseProjectsWiped => return PlanEffect::DropAll,
        _ => return PlanEffect::None,
    };
    // An event of these types always has its record (or its id); one without is not
    // something the plan can follow.
    change.map_or(PlanEffect::Reload, PlanEffect::Change)
}

fn task_input(id: Uuid, body: &serde_json::Map<String, Value>) -> TaskInput {
    let duration = body.get("duration").and_then(Value::as_f64).unwrap_or(0.0);
    TaskInput {
        id,
        parent: uuid_field(body, "parent_id"),
        // Whole working days: a fraction of a day still takes that day.
        duration: duration.max(0.0).ceil().min(u32::MAX as f64) as u32,
        is_milestone: body.get("is_milestone") == Some(&json!(true)),
        start_date: day(body, "start_date"),
        constraint: constraint_of(body),
        deadline: day(body, "deadline"),
        manually_scheduled: body.get("manually_scheduled") == Some(&json!(true)),
        scheduled_start: day(body, "scheduled_start"),
        // Stored as the client's exclusive bar end (Bryntum `endDate`); the engine wants the
        // last working day.
        scheduled_finish: body
            .get("scheduled_finish")
            .and_then(Value::as_str)
            .and_then(parse_exclusive_end_day),
        percent_complete: body
            .get("percent_complete")
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
            .clamp(0.0, 100.0) as u8,
        actual_start: day(body, "actual_start"),
        actual_finish: day(body, "actual_finish"),
        calendar: uuid_field(body, "calendar_id"),
    }
}

fn link_input(body: &serde_json::Map<String, Value>) -> Option<LinkInput> {
    Some(LinkInput {
        predecessor: uuid_field(body, "predecessor_id")?,
        successor: uuid_field(body, "successor_id")?,
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
}

/// The outputs a body holds, if they are exactly what [`output_json`] would write for them:
/// then comparing against them is the same as comparing the body's fields.
fn stored_outputs(id: Uuid, body: &serde_json::Map<String, Value>) -> Option<TaskSchedule> {
    let date = |name: &str| body.get(name).and_then(Value::as_str).and_then(parse_date);
    let float = |name: &str| {
        body.get(name)
            .and_then(Value::as_i64)
            .and_then(|v| i32::try_from(v).ok())
    };
    let outputs = TaskSchedule {
        id,
        early_start: date("early_start")?,
        early_finish: date("early_finish")?,
        late_start: date("late_start")?,
        late_finish: date("late_finish")?,
        total_float: float("total_float")?,
        free_float: float("free_float")?,
        is_critical: body.get("is_critical").and_then(Value::as_bool)?,
    };
    output_json(&outputs)
        .iter()
        .all(|(k, v)| body.get(k) == Some(v))
        .then_some(outputs)
}

/// Reads everything the schedule of `project_id` depends on, with the outputs the tasks hold;
/// `None` when the project does not exist. `seq` is recorded as the seq the outputs are known
/// at; read inside a write transaction, the plan is the project as of that seq.
pub async fn load_plan(
    ops: &mut dyn Queries,
    project_id: Uuid,
    seq: i64,
) -> DomainResult<Option<Plan>> {
    let Some(project) = ops.get_project(project_id).await.or_api()? else {
        return Ok(None);
    };
    let mut rows = Vec::with_capacity(3);
    for collection in ["calendars", "tasks", "dependencies"] {
        rows.push(
            ops.list_records(project_id, collection, Page::ALL)
                .await
                .or_api()?,
        );
    }
    let bodies = |i: usize| rows[i].iter().map(|row| (row.id, &row.body));
    Ok(Some(plan_of(
        &project.body,
        project.created_at.date_naive(),
        PlanRecords {
            calendars: bodies(0),
            tasks: bodies(1),
            links: bodies(2),
        },
        seq,
    )))
}

/// A project's records as [`plan_of`] reads them: (id, stored body), in id order.
pub struct PlanRecords<C, T, L> {
    pub calendars: C,
    pub tasks: T,
    pub links: L,
}

/// The plan of a project whose stored body is `project` (created on `created_on`, the start
/// when it names none) and whose records are `records`. Pure: [`load_plan`] is this over a
/// store read, and the fuzz target `schedule_input` feeds it validated records.
pub fn plan_of<'a, C, T, L>(
    project: &serde_json::Map<String, Value>,
    created_on: NaiveDate,
    records: PlanRecords<C, T, L>,
    seq: i64,
) -> Plan
where
    C: Iterator<Item = (Uuid, &'a serde_json::Map<String, Value>)>,
    T: Iterator<Item = (Uuid, &'a serde_json::Map<String, Value>)>,
    L: Iterator<Item = (Uuid, &'a serde_json::Map<String, Value>)>,
{
    let calendars = records
        .calendars
        .map(|(id, body)| (id, calendar_of(body)))
        .collect();
    let tasks = records
        .tasks
        .map(|(id, body)| {
            let task = PlanTask {
                input: task_input(id, body),
                outputs: stored_outputs(id, body),
                outputs_seq: seq,
            };
            (id, task)
        })
        .collect();
    let links = records
        .links
        .filter_map(|(id, body)| Some((id, link_input(body)?)))
        .collect();
    Plan {
        start: day(project, "start_date").unwrap_or(created_on),
        status_date: day(project, "status_date"),
        calendar_id: uuid_field(project, "calendar_id"),
        calendars,
        tasks,
        links,
        rechecks: Vec::new(),
    }
}

/// Reads everything the schedule of `project_id` depends on.
pub async fn load_input(ops: &mut dyn Queries, project_id: Uuid) -> DomainResult<ProjectInput> {
    load_plan(ops, project_id, 0)
        .await?
        .map(|plan| plan.input())
        .ok_or_else(|| ApiError::not_found("project"))
}

impl Plan {
    /// The engine's input, exactly as [`load_input`] would read it from the store.
    pub fn input(&self) -> ProjectInput {
        let mut input = ProjectInput::new(self.start);
        input.status_date = self.status_date;
        input.calendar = self
            .calendar_id
            .and_then(|id| self.calendars.get(&id).cloned())
            .unwrap_or_default();
        input.calendars = self.calendars.clone();
        input.tasks = self
            .tasks
            .values()
            .map(|t| {
                let mut task = t.input.clone();
                task.calendar = task.calendar.filter(|id| self.calendars.contains_key(id));
                task
            })
            .collect();
        input.links = self.links.values().copied().collect();
        input
    }

    /// Applies a change committed at `seq`. Returns the engine edits that take an engine of
    /// the plan before the change to the plan after it, or `None` when the engine must be
    /// built again (tasks added or removed, hierarchy, calendars, progress...).
    pub fn apply(&mut self, seq: i64, change: PlanChange) -> Option<Vec<Edit>> {
        match change {
            PlanChange::Task { id, input, outputs } => {
                let Some(task) = self.tasks.get_mut(&id) else {
                    self.tasks.insert(
                        id,
                        PlanTask {
                            input: *input,
                            outputs: outputs.map(|o| *o),
                            outputs_seq: seq,
                        },
                    );
                    return None;
                };
                if seq > task.outputs_seq {
                    let outputs = outputs.map(|o| *o);
                    if task.outputs != outputs {
                        task.outputs = outputs;
                        self.rechecks.push(id);
                    }
                    task.outputs_seq = seq;
                }
                let old = std::mem::replace(&mut task.input, *input);
                task_edits(&old, &task.input)
            }
            PlanChange::TaskDeleted(id) => match self.tasks.remove(&id) {
                Some(_) => None,
                None => Some(Vec::new()),
            },
            PlanChange::Link { id, link } => {
                let old = match link {
                    Some(link) => self.links.insert(id, link),
                    None => self.links.remove(&id),
                };
                Some(link_edits(old, link))
            }
            PlanChange::LinkDeleted(id) => Some(link_edits(self.links.remove(&id), None)),
            PlanChange::Calendar { id, calendar } => {
                if self.calendars.get(&id) == Some(&calendar) {
                    return Some(Vec::new());
                }
                self.calendars.insert(id, calendar);
                None
            }
            PlanChange::CalendarDeleted(id) => match self.calendars.remove(&id) {
                Some(_) => None,
                None => Some(Vec::new()),
            },
        }
    }

    /// The tasks to compare again whatever the engine reports (see [`Plan::rechecks`]).
    pub fn take_rechecks(&mut self) -> Vec<Uuid> {
        std::mem::take(&mut self.rechecks)
    }

    /// Records that the worker wrote `written` in the transaction of `seq`.
    pub fn mark_stored(&mut self, seq: i64, written: &[TaskSchedule]) {
        for outputs in written {
            if let Some(task) = self.tasks.get_mut(&outputs.id)
                && seq >= task.outputs_seq
            {
                task.outputs = Some(outputs.clone());
                task.outputs_seq = seq;
            }
        }
    }
}

/// The engine's cheap edits for a task change, or `None` for anything else.
fn task_edits(old: &TaskInput, new: &TaskInput) -> Option<Vec<Edit>> {
    let mut probe = old.clone();
    probe.duration = new.duration;
    probe.constraint = new.constraint;
    probe.deadline = new.deadline;
    probe.start_date = new.start_date;
    if probe != *new {
        return None;
    }
    let task = new.id;
    let mut edits = Vec::new();
    if old.duration != new.duration {
        edits.push(Edit::SetDuration {
            task,
            duration: new.duration,
        });
    }
    if old.constraint != new.constraint {
        edits.push(Edit::SetConstraint {
            task,
            constraint: new.constraint,
        });
    }
    if old.deadline != new.deadline {
        edits.push(Edit::SetDeadline {
            task,
            deadline: new.deadline,
        });
    }
    if old.start_date != new.start_date {
        edits.push(Edit::SetStartDate {
            task,
            start_date: new.start_date,
        });
    }
    Some(edits)
}

fn link_edits(old: Option<LinkInput>, new: Option<LinkInput>) -> Vec<Edit> {
    match (old, new) {
        (None, None) => Vec::new(),
        (None, Some(new)) => vec![Edit::AddLink(new)],
        (Some(old), None) => vec![Edit::RemoveLink {
            predecessor: old.predecessor,
            successor: old.successor,
        }],
        (Some(old), Some(new)) if old == new => Vec::new(),
        (Some(old), Some(new))
            if (old.predecessor, old.successor) == (new.predecessor, new.successor) =>
        {
            vec![Edit::UpdateLink(new)]
        }
        (Some(old), Some(new)) => vec![
            Edit::RemoveLink {
                predecessor: old.predecessor,
                successor: old.successor,
            },
            Edit::AddLink(new),
        ],
    }
}

fn uuid_field(body: &serde_json::Map<String, Value>, name: &str) -> Option<Uuid> {
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
        // One snapshot, so tasks, links and calendars all come from the same moment.
        let mut ops = self.store.snapshot().await.or_api()?;
        if let Some(actor) = actor {
            crate::access::project_role(&mut *ops, project_id, actor).await?;
        }
        load_input(&mut *ops, project_id).await
    }

    /// Reads a project's [`Plan`] for the scheduler worker from one snapshot, without holding
    /// up writers: `on_snapshot` is called with the project's seq as of that snapshot before
    /// the records are read, so the plan holds exactly the events up to that seq and every
    /// event committed later has a greater one. `None` when the project does not exist.
    pub async fn load_plan(
        &self,
        project_id: Uuid,
        on_snapshot: impl FnOnce(i64) + Send,
    ) -> DomainResult<Option<Plan>> {
        let mut ops = self.store.snapshot().await.or_api()?;
        let seq = ops
            .latest_seq(StreamKey::Project(project_id))
            .await
            .or_api()?;
        on_snapshot(seq);
        load_plan(&mut *ops, project_id, seq).await
    }

    /// Writes the outputs of the tasks that moved (tasks deleted meanwhile are skipped), then
    /// `cpm_complete` and `task_dates_updated`, in one transaction. The transaction holds the
    /// project's stream before it reads anything, so (by the store's concurrency contract) no
    /// other change to the project's rows commits between these reads and the commit.
    /// `still_current` is asked last, with the stream held: when it says no (the project was
    /// replaced or deleted since the plan was read), nothing is written. `through`, on a node
    /// that shares its database with others, is the project seq the update was computed from
    /// (see [`crate::schedule_lease`]).
    pub async fn write_schedule_update(
        &self,
        project_id: Uuid,
        update: &ScheduleUpdate,
        still_current: impl FnOnce() -> bool + Send,
        through: Option<i64>,
    ) -> DomainResult<WriteOutcome> {
        let mut tx = Tx::begin(self, None).await?;
        let stream = StreamKey::Project(project_id);
        tx.ops().lock_stream(stream).await.or_api()?;
        if tx.ops().get_project(project_id).await.or_api()?.is_none() {
            return Ok(WriteOutcome::ProjectGone);
        }
        if let Some(seq) = through {
            if scheduled_through(tx.ops(), project_id).await? >= seq {
                return Ok(WriteOutcome::AlreadyCovered);
            }
            mark_scheduled_through(tx.ops(), project_id, seq).await?;
        }
        // A few rows are cheaper read one by one; many, in one pass over the project.
        let mut rows: HashMap<Uuid, store::RecordRow> = HashMap::new();
        if update.moved.len() > BULK_READ {
            for row in tx
                .ops()
                .list_records(project_id, "tasks", Page::ALL)
                .await
                .or_api()?
            {
                rows.insert(row.id, row);
            }
        } else {
            for task in &update.moved {
                if let Some(row) = tx.ops().get_record(task.id).await.or_api()?
                    && row.project_id == project_id
                    && row.collection == "tasks"
                {
                    rows.insert(row.id, row);
                }
            }
        }
        let mut count = 0;
        let mut listed = Vec::new();
        let mut stored = Vec::new();
        for task in &update.moved {
            let Some(row) = rows.get_mut(&task.id) else {
                continue;
            };
            stored.push(task.clone());
            let outputs = output_json(task);
            if outputs.iter().all(|(k, v)| row.body.get(k) == Some(v)) {
                continue;
            }
            row.body.extend(outputs.clone());
            // Outputs never change references: the reference index stays as it is.
            tx.ops().update_record_body(row).await.or_api()?;
            count += 1;
            if count <= MAX_LISTED_MOVES {
                let mut entry = outputs;
                entry.insert("id".into(), json!(task.id));
                entry.insert(
                    "start_date".into(),
                    row.body.get("start_date").cloned().unwrap_or(Value::Null),
                );
                entry.insert(
                    "duration".into(),
                    row.body.get("duration").cloned().unwrap_or(Value::Null),
                );
                listed.push(Value::Object(entry));
            }
        }
        let complete = json!({
            "project_finish": update.project_finish.to_string(),
            "critical_path": update.critical_path,
        });
        tx.emit(
            stream,
            EventType::CpmComplete,
            complete.clone(),
            complete,
            Some(project_id),
        )
        .await?;
        let dates = if count > MAX_LISTED_MOVES {
            json!({ "count": count, "truncated": true })
        } else {
            json!({ "count": count, "tasks": listed })
        };
        tx.emit(
            stream,
            EventType::TaskDatesUpdated,
            dates.clone(),
            dates,
            Some(project_id),
        )
        .await?;
        if !still_current() {
            return Ok(WriteOutcome::Superseded);
        }
        let events = tx.commit().await?;
        let seq = events.first().and_then(|e| e.seq).unwrap_or(0);
        Ok(WriteOutcome::Written { seq, stored })
    }

    /// Records that the schedule could not be computed; the previous outputs stay. `through`
    /// as for [`Domain::write_schedule_update`].
    pub async fn write_schedule_error(
        &self,
        project_id: Uuid,
        error: &str,
        details: Value,
        through: Option<i64>,
    ) -> DomainResult<()> {
        let mut tx = Tx::begin(self, None).await?;
        tx.hold(StreamKey::Project(project_id)).await?;
        if tx.ops().get_project(project_id).await.or_api()?.is_none() {
            return Ok(());
        }
        if let Some(seq) = through {
            if scheduled_through(tx.ops(), project_id).await? >= seq {
                return Ok(());
            }
            mark_scheduled_through(tx.ops(), project_id, seq).await?;
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
        cpm::CpmError::EmptyCalendar(calendar) => (
            format!("{}: it has no working days", calendar_name(*calendar)),
            json!({ "calendar_id": calendar, "reason": "no working days" }),
        ),
        cpm::CpmError::ExceptionOutOfRange(day, calendar) => (
            format!(
                "{}: its exception on {day} is too far from the project start",
                calendar_name(*calendar)
            ),
            json!({
                "calendar_id": calendar,
                "reason": "exception too far from the project start",
                "date": day.to_string(),
            }),
        ),
        cpm::CpmError::DateOutOfRange(task) => (
            "the schedule reaches a date before 0001-01-01 or after 9999-12-31".into(),
            json!({ "task_id": task, "reason": "date out of range" }),
        ),
        other => (other.to_string(), Value::Null),
    }
}

/// A calendar as an error message names it: `None` is the built-in Monday-to-Friday week a
/// project without `calendar_id` runs on.
fn calendar_name(calendar: Option<CalendarId>) -> String {
    match calendar {
        Some(id) => format!("calendar {id} cannot be scheduled on"),
        None => "the project's default calendar cannot be scheduled on".to_owned(),
    }
}
