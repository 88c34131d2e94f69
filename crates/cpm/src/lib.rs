//! The Critical Path Method engine of liveplan: calendars, dependency types, lags,
//! constraints, roll-ups, floats, critical path, incremental recompute. Pure: no I/O,
//! no clock, no globals, so the server can run it on any thread and tests can run it
//! against outside oracles (PSPLIB, MPXJ's `MicrosoftScheduler`).
//!
//! The rules follow Microsoft Project as MPXJ's `MicrosoftScheduler` reproduces it,
//! because that is what the people importing their plans will compare against.
//! Where liveplan deviates, the item says so.
//!
//! Entry points: [`schedule`] for a one-shot computation, [`Engine`] to keep the
//! network in memory and repair it after each [`Edit`], and [`Schedule::moved`] to
//! find the tasks a recompute changed (the server's `task_dates_updated`).
//!
//! # Rules
//!
//! - Time is whole working days. A task of `d > 0` days starts at the start of a
//!   working day and finishes at the end of its `d`-th working day (finish dates are
//!   inclusive). A milestone may sit at the end of a day: after a predecessor that
//!   finishes on Friday it shows Friday, not Monday.
//! - Durations are in the task's calendar; lags in the successor's; links between
//!   calendars meet at the real instant (end of Friday is before a Saturday start).
//! - Tasks without predecessors start at the project start (or at their
//!   start-no-earlier-than date, which may be earlier). Tasks with predecessors are not
//!   clamped to the project start, except through an FF link (Microsoft Project's rule);
//!   so an SF link or a lead can put a task before the project start.
//! - Constraints are applied after links and win over them: SNLT/FNLT cap the early
//!   start, MSO/MFO pin both passes, deadlines cap the late finish; float goes negative
//!   instead of the plan silently moving. SNET/`start_date` raise the early start.
//! - ALAP tasks keep their ASAP early dates and report zero float; after the backward
//!   pass their late dates drive non-ALAP successors.
//! - Total float = min(LS − ES, LF − EF) in working days (finish float only for started
//!   tasks); free float is measured per link to each unfinished successor, minus the
//!   lag, floored at 0, and is the total float for a task without successors.
//! - Summaries: links into a summary apply to each of its leaf tasks; links out of a
//!   summary use its rolled-up dates; a summary's start bounds (SNET, `start_date`) are
//!   inherited by its leaves and its other bounds (FNLT, MFO, deadline...) cap its
//!   leaves' late finish.
//!
//! # Where liveplan differs from MPXJ's `MicrosoftScheduler` on purpose
//!
//! The differential test (`oracle/run.sh`) matches MPXJ field by field on random
//! networks with all link types, leads, lags, all constraints, deadlines, milestones,
//! holidays and several calendars. It does not draw the cases below, where liveplan
//! chooses differently:
//!
//! - A constraint date on a non-working day is read as the next working day (start
//!   constraints) or the previous one (finish constraints). MPXJ keeps the raw
//!   date-time, so a task can start on a Saturday there.
//! - Overlapping calendar exceptions are unioned (MS Project refuses them; MPXJ keeps
//!   only one).
//! - `start_date` adds a start-no-earlier-than on top of `constraint` (MPXJ has a
//!   single constraint per task).
//! - Progress: an in-progress task's remaining work (`duration × (100 − percent)`,
//!   rounded up) restarts the working day after the project status date; MPXJ uses the
//!   file's actual/remaining durations and has no status date. Shared rules: finished
//!   tasks are pinned and constrain nothing, a started task's early start is its actual
//!   start, its float is its finish float, and its SS links are satisfied. The
//!   differential test leaves progress out by default (`ORACLE_ON=progress` draws it;
//!   late dates of predecessors of started tasks then differ through MPXJ's
//!   actual-duration rules).
//! - Summaries: MPXJ ignores constraints on summaries and applies the backward bound of
//!   an SS/SF link out of a summary only to its earliest subtask; liveplan applies
//!   summary bounds to all leaves. A summary's free float is its total float, and it is
//!   critical by its own float (MPXJ: when any subtask is critical). The differential
//!   test draws summaries with links into them and FS/FF links out of them, and
//!   compares their dates and total float.
//! - A manually scheduled task without dates is scheduled automatically.

mod calendar;
mod engine;
mod graph;

pub use calendar::{DateRange, WeekdayMask, WorkCalendar};
pub use engine::Engine;

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Task identity. The engine interns ids to dense indices once, so the width of the
/// id costs nothing in the passes; `Uuid` is what the store hands out.
pub type TaskId = Uuid;
/// Calendar identity, as stored by the server.
pub type CalendarId = Uuid;

/// Dependency type. Numeric codes differ between systems (Bryntum: 0=SS, 1=SF, 2=FS,
/// 3=FF; MS Project XML differs again), so the engine only takes this enum and each
/// adapter owns its table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum LinkType {
    /// Successor starts after the predecessor finishes.
    #[default]
    FS,
    /// Successor starts after the predecessor starts.
    SS,
    /// Successor finishes after the predecessor finishes.
    FF,
    /// Successor finishes after the predecessor starts.
    SF,
}

/// Date constraint of a task. Start dates mean the start of that day, finish dates its
/// end (the last working day, inclusive), as the dates clients show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(tag = "type", content = "date")]
pub enum Constraint {
    /// As soon as possible: the default.
    #[default]
    Asap,
    /// As late as possible: once the backward pass has run, the task's late dates
    /// drive its non-ALAP successors (Microsoft Project's rule); its early dates stay
    /// its ASAP dates and its float is reported as 0.
    Alap,
    /// Start no earlier than.
    Snet(NaiveDate),
    /// Finish no earlier than.
    Fnet(NaiveDate),
    /// Start no later than: wins over links, so float can go negative.
    Snlt(NaiveDate),
    /// Finish no later than: wins over links.
    Fnlt(NaiveDate),
    /// Must start on: pins both passes.
    Mso(NaiveDate),
    /// Must finish on: pins both passes.
    Mfo(NaiveDate),
}

/// One task as the scheduler needs it; every other task field is the server's business.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInput {
    pub id: TaskId,
    /// Summary parent. A task with children is a summary: its own duration is ignored,
    /// its dates roll up, links into it apply to all its leaf tasks.
    pub parent: Option<TaskId>,
    /// Working days of the task's calendar.
    pub duration: u32,
    /// Milestones always have duration 0, whatever `duration` says.
    pub is_milestone: bool,
    /// Planned start: acts as start-no-earlier-than (the TruePPM rule), on top of
    /// `constraint`.
    pub start_date: Option<NaiveDate>,
    pub constraint: Constraint,
    /// Caps the late finish (and so the float) without moving the task.
    pub deadline: Option<NaiveDate>,
    /// Manually scheduled tasks keep `scheduled_start`/`scheduled_finish` (when given)
    /// but still drive their successors.
    pub manually_scheduled: bool,
    pub scheduled_start: Option<NaiveDate>,
    pub scheduled_finish: Option<NaiveDate>,
    /// 0..=100; with `actual_start` and no `actual_finish` it sets the remaining
    /// duration that is scheduled from the status date.
    pub percent_complete: u8,
    /// Set: the task has started and its early start is pinned here.
    pub actual_start: Option<NaiveDate>,
    /// Set: the task is finished and pinned to its actual dates.
    pub actual_finish: Option<NaiveDate>,
    /// `None`: the project calendar.
    pub calendar: Option<CalendarId>,
}

impl TaskInput {
    /// An ASAP task of `duration` working days with nothing else set: tests and
    /// adapters start from here and set the fields they have.
    pub fn new(id: TaskId, duration: u32) -> TaskInput {
        TaskInput {
            id,
            parent: None,
            duration,
            is_milestone: false,
            start_date: None,
            constraint: Constraint::Asap,
            deadline: None,
            manually_scheduled: false,
            scheduled_start: None,
            scheduled_finish: None,
            percent_complete: 0,
            actual_start: None,
            actual_finish: None,
            calendar: None,
        }
    }
}

/// A dependency. At most one link per (predecessor, successor) pair, as in MS Project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LinkInput {
    pub predecessor: TaskId,
    pub successor: TaskId,
    #[serde(rename = "type")]
    pub kind: LinkType,
    /// Working days of the successor's calendar; negative is a lead.
    pub lag: i32,
}

/// Everything that determines a schedule. Outputs depend on nothing else, which is
/// what makes the scheduler worker's results reproducible.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectInput {
    /// Tasks without predecessors start here.
    pub start: NaiveDate,
    /// Progress is reported up to and including this day: remaining work of started
    /// tasks is scheduled from the next working day. `None`: from the actual start.
    pub status_date: Option<NaiveDate>,
    /// The project calendar, used by tasks without their own.
    pub calendar: WorkCalendar,
    /// Other calendars tasks may refer to.
    pub calendars: BTreeMap<CalendarId, WorkCalendar>,
    pub tasks: Vec<TaskInput>,
    pub links: Vec<LinkInput>,
}

impl ProjectInput {
    /// An empty Monday-to-Friday project starting on `start`.
    pub fn new(start: NaiveDate) -> ProjectInput {
        ProjectInput {
            start,
            status_date: None,
            calendar: WorkCalendar::default(),
            calendars: BTreeMap::new(),
            tasks: Vec::new(),
            links: Vec::new(),
        }
    }
}

/// The scheduler's outputs for one task (the read-only fields of CONTRACT §4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSchedule {
    pub id: TaskId,
    pub early_start: NaiveDate,
    /// Inclusive: the last working day.
    pub early_finish: NaiveDate,
    pub late_start: NaiveDate,
    /// Inclusive: the last working day.
    pub late_finish: NaiveDate,
    /// min(LS − ES, LF − EF) in working days of the task's calendar; negative when a
    /// constraint or deadline cannot be met.
    pub total_float: i32,
    /// How far the task can slip without moving any successor; never negative, and
    /// equal to the total float (floored at 0) for a task without successors.
    pub free_float: i32,
    /// Total float ≤ 0 (finished tasks are never critical).
    pub is_critical: bool,
}

/// A computed schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// The latest early finish of all tasks (inclusive).
    pub project_finish: NaiveDate,
    /// Critical non-summary tasks in topological order.
    pub critical_path: Vec<TaskId>,
    /// One entry per input task, in input order.
    pub tasks: Vec<TaskSchedule>,
}

impl Schedule {
    /// Looks a task up; linear, because callers that need many lookups build their own
    /// index or use [`Engine::task`].
    pub fn get(&self, id: TaskId) -> Option<&TaskSchedule> {
        self.tasks.iter().find(|t| t.id == id)
    }

    /// The tasks of `newer` whose outputs differ from `self` (or that are new), in
    /// `newer`'s order: what `task_dates_updated` must list after a recompute.
    pub fn moved<'a>(&self, newer: &'a Schedule) -> Vec<&'a TaskSchedule> {
        let old: HashMap<TaskId, &TaskSchedule> = self.tasks.iter().map(|t| (t.id, t)).collect();
        newer
            .tasks
            .iter()
            .filter(|t| old.get(&t.id).is_none_or(|o| *o != *t))
            .collect()
    }
}

/// One change to the inputs. The engine repairs the schedule incrementally for the
/// common edits; structural ones (hierarchy, progress, adding or removing tasks, links
/// into summaries, anything while the plan has ALAP tasks) recompute or rebuild, which
/// is still correct and only slower. Calendar changes: build a new [`Engine`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Edit {
    SetDuration {
        task: TaskId,
        duration: u32,
    },
    SetConstraint {
        task: TaskId,
        constraint: Constraint,
    },
    SetDeadline {
        task: TaskId,
        deadline: Option<NaiveDate>,
    },
    SetStartDate {
        task: TaskId,
        start_date: Option<NaiveDate>,
    },
    /// Refused with [`CpmError::Cycle`] if it would close a cycle; nothing changes then.
    AddLink(LinkInput),
    /// Changes type and lag of an existing link.
    UpdateLink(LinkInput),
    RemoveLink {
        predecessor: TaskId,
        successor: TaskId,
    },
    /// Any other change to one task (parent, calendar, progress, manual dates...).
    ReplaceTask(TaskInput),
    AddTask(TaskInput),
    /// Its links go with it; its subtasks become top-level tasks.
    RemoveTask {
        task: TaskId,
    },
    SetProjectStart(NaiveDate),
    SetStatusDate(Option<NaiveDate>),
}

/// Why a schedule could not be computed or an edit was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CpmError {
    /// The tasks of one cycle, each followed by the next (the last leads to the first).
    /// Edges through the summary hierarchy count: a link from a summary into its own
    /// subtask is a cycle.
    #[error("dependency cycle through {} task(s)", .0.len())]
    Cycle(Vec<TaskId>),
    #[error("unknown task {0}")]
    UnknownTask(TaskId),
    #[error("unknown calendar {0}")]
    UnknownCalendar(CalendarId),
    /// A calendar without a working weekday: which one (`None` is the project's own
    /// [`ProjectInput::calendar`]), so a caller can name it to whoever can fix it.
    #[error("a calendar has no working weekday")]
    EmptyCalendar(Option<CalendarId>),
    #[error("duplicate task id {0}")]
    DuplicateTask(TaskId),
    #[error("link {0} -> {1} already exists")]
    DuplicateLink(TaskId, TaskId),
    #[error("no link {0} -> {1}")]
    UnknownLink(TaskId, TaskId),
    #[error("task {0} is its own ancestor")]
    HierarchyCycle(TaskId),
    /// A lag beyond ±100,000 working days (durations are capped there silently).
    #[error("lag into task {0} is out of range")]
    OutOfRange(TaskId),
    /// More than 2^30 − 1 tasks in one project.
    #[error("{0} tasks is more than one project can hold")]
    TooManyTasks(usize),
    /// Calendar exceptions must lie within about 400 years of the project start, so
    /// that calendar tables stay small.
    /// The second field names the calendar as for [`CpmError::EmptyCalendar`].
    #[error("calendar exception on {0} is too far from the project start")]
    ExceptionOutOfRange(NaiveDate, Option<CalendarId>),
    /// A computed date falls outside [`FIRST_DATE`]..=[`LAST_DATE`] (of this task, when one
    /// is named): the engine holds it, but it has no ISO 8601 four-digit-year form a client
    /// could read.
    #[error("a computed date falls outside 0001-01-01..=9999-12-31")]
    DateOutOfRange(Option<TaskId>),
}

/// The first and last dates a schedule may give: the years ISO 8601 writes with four digits.
pub const FIRST_DATE: NaiveDate = NaiveDate::from_ymd_opt(1, 1, 1).unwrap();
pub const LAST_DATE: NaiveDate = NaiveDate::from_ymd_opt(9999, 12, 31).unwrap();

/// Refuses outputs with a date outside [`FIRST_DATE`]..=[`LAST_DATE`] (a long chain or a big
/// negative float can compute one; nothing checks for it earlier because every input date is
/// within the range). `project_finish` is the latest early finish; the task named is the first
/// out of range.
pub fn check_dates<'a>(
    project_finish: NaiveDate,
    tasks: impl IntoIterator<Item = &'a TaskSchedule>,
) -> Result<(), CpmError> {
    let inside = |date: NaiveDate| (FIRST_DATE..=LAST_DATE).contains(&date);
    for task in tasks {
        let dates = [
            task.early_start,
            task.early_finish,
            task.late_start,
            task.late_finish,
        ];
        if !dates.into_iter().all(inside) {
            return Err(CpmError::DateOutOfRange(Some(task.id)));
        }
    }
    if inside(project_finish) {
        Ok(())
    } else {
        Err(CpmError::DateOutOfRange(None))
    }
}

/// Computes the schedule of `input` from scratch.
pub fn schedule(input: &ProjectInput) -> Result<Schedule, CpmError> {
    let schedule = Engine::new(input.clone())?.schedule();
    check_dates(schedule.project_finish, &schedule.tasks)?;
    Ok(schedule)
}
