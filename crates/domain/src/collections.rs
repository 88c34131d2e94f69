//! The project collections: their fields, who may write them, which events they emit, and what
//! happens to records that reference a deleted one. Validation, the REST routes and the OpenAPI
//! document are all driven by this one table.

use proto::{EventType, Role};

/// What becomes of a record whose reference points at a record being deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDelete {
    /// The referencing record is deleted too (with its own events and cascades).
    Cascade,
    /// The reference is cleared (or removed from a list) and the record updated.
    Clear,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A string of at most `max` characters; `min` 1 refuses the empty string.
    Text {
        min: usize,
        max: usize,
    },
    Number {
        min: f64,
        max: f64,
    },
    Integer {
        min: i64,
        max: i64,
    },
    Bool,
    /// `2026-03-02`.
    Date,
    /// `2026-03-02` or a local date-time `2026-03-02T09:00:00` (an offset is accepted too).
    DateOrDateTime,
    Choice(&'static [&'static str]),
    /// The id of a record of `collection` in the same project.
    Ref {
        collection: &'static str,
        on_delete: OnDelete,
    },
    /// A list of ids of records of `collection` in the same project.
    RefList {
        collection: &'static str,
        max: usize,
    },
    /// The id of a user who is a member of the project.
    UserRef,
    /// Any JSON value up to `max_bytes` once serialized.
    Json {
        max_bytes: usize,
    },
    /// ISO weekday numbers 1 (Monday) to 7 (Sunday), each at most once.
    Weekdays,
    /// Calendar exceptions: `[{start, end, name?, is_working?}]`.
    Exceptions,
    /// A board rank: a number or a short string.
    Rank,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    pub nullable: bool,
    /// Written only by the server (scheduler outputs, states, authors); ignored in input.
    pub read_only: bool,
    /// A change to it makes the scheduler recompute the project.
    pub schedule_input: bool,
    pub doc: &'static str,
}

const fn field(name: &'static str, kind: Kind, doc: &'static str) -> Field {
    Field {
        name,
        kind,
        required: false,
        nullable: true,
        read_only: false,
        schedule_input: false,
        doc,
    }
}

const fn required(name: &'static str, kind: Kind, doc: &'static str) -> Field {
    Field {
        required: true,
        nullable: false,
        ..field(name, kind, doc)
    }
}

const fn output(name: &'static str, kind: Kind, doc: &'static str) -> Field {
    Field {
        read_only: true,
        ..field(name, kind, doc)
    }
}

const fn schedule(name: &'static str, kind: Kind, doc: &'static str) -> Field {
    Field {
        schedule_input: true,
        ..field(name, kind, doc)
    }
}

const NAME: Kind = Kind::Text { min: 1, max: 500 };
const SHORT: Kind = Kind::Text { min: 0, max: 200 };
const LONG: Kind = Kind::Text {
    min: 0,
    max: 100_000,
};
const DAYS: Kind = Kind::Number {
    min: 0.0,
    max: 100_000.0,
};
const LAG: Kind = Kind::Number {
    min: -100_000.0,
    max: 100_000.0,
};
/// Floats the scheduler computes, in working days: bounded only by the dates it can compute
/// (chrono's ±262,143 years), not by what a client may send as a lag.
const FLOAT_DAYS: Kind = Kind::Number {
    min: -100_000_000.0,
    max: 100_000_000.0,
};
const PERCENT: Kind = Kind::Number {
    min: 0.0,
    max: 100.0,
};
const UNITS: Kind = Kind::Number {
    min: 0.0,
    max: 100_000.0,
};

pub const CONSTRAINT_TYPES: &[&str] =
    &["asap", "alap", "snet", "snlt", "fnet", "fnlt", "mso", "mfo"];
pub const DEPENDENCY_TYPES: &[&str] = &["FS", "SS", "FF", "SF"];
pub const SPRINT_STATES: &[&str] = &["planned", "active", "closed", "cancelled"];

const fn task_ref(on_delete: OnDelete) -> Kind {
    Kind::Ref {
        collection: "tasks",
        on_delete,
    }
}

const fn clear_ref(collection: &'static str) -> Kind {
    Kind::Ref {
        collection,
        on_delete: OnDelete::Clear,
    }
}

/// The events a collection emits for create, update and delete.
#[derive(Debug, Clone, Copy)]
pub struct Events {
    pub created: EventType,
    pub updated: Option<EventType>,
    pub deleted: EventType,
}

#[derive(Debug)]
pub struct Collection {
    /// The path segment: `/api/v1/projects/{id}/{name}`.
    pub name: &'static str,
    /// Singular, for messages ("task not found").
    pub singular: &'static str,
    pub write_role: Role,
    pub events: Events,
    pub fields: &'static [Field],
    /// Largest serialized body (unknown fields included).
    pub max_body_bytes: usize,
    /// Whether `PATCH` is offered (some records are immutable once made).
    pub patchable: bool,
    /// Created by the server from an upload, not from a JSON body.
    pub upload_only: bool,
}

impl Collection {
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

const SMALL_BODY: usize = 256 * 1024;

pub static TASKS: Collection = Collection {
    name: "tasks",
    singular: "task",
    write_role: Role::Member,
    events: Events {
        created: EventType::TaskCreated,
        updated: Some(EventType::TaskUpdated),
        deleted: EventType::TaskDeleted,
    },
    fields: &[
        required("name", NAME, "Task name."),
        schedule(
            "parent_id",
            task_ref(OnDelete::Cascade),
            "Parent (summary) task; deleting the parent deletes its subtree.",
        ),
        field("description", LONG, "Free text."),
        field("status", Kind::Text { min: 0, max: 64 }, "Board status."),
        field("column_id", clear_ref("columns"), "Board column."),
        field("rank", Kind::Rank, "Order on the board or in the tree."),
        schedule(
            "start_date",
            Kind::DateOrDateTime,
            "Planned start; acts as start-no-earlier-than.",
        ),
        schedule("duration", DAYS, "Working days."),
        schedule("is_milestone", Kind::Bool, "A milestone has duration 0."),
        schedule("percent_complete", PERCENT, "Progress, 0 to 100."),
        schedule("actual_start", Kind::DateOrDateTime, "Actual start."),
        schedule("actual_finish", Kind::DateOrDateTime, "Actual finish."),
        schedule(
            "constraint_type",
            Kind::Choice(CONSTRAINT_TYPES),
            "Scheduling constraint; default asap.",
        ),
        schedule(
            "constraint_date",
            Kind::DateOrDateTime,
            "Date of the constraint.",
        ),
        schedule("deadline", Kind::DateOrDateTime, "Caps the late finish."),
        schedule(
            "manually_scheduled",
            Kind::Bool,
            "Keeps its dates; still drives successors.",
        ),
        schedule(
            "calendar_id",
            clear_ref("calendars"),
            "Task calendar; default the project's.",
        ),
        field("assignee_id", Kind::UserRef, "A member of the project."),
        field(
            "sprint_id",
            clear_ref("sprints"),
            "Sprint the task is planned in.",
        ),
        field(
            "story_points",
            Kind::Number {
                min: 0.0,
                max: 10_000.0,
            },
            "Estimate.",
        ),
        field(
            "label_ids",
            Kind::RefList {
                collection: "labels",
                max: 100,
            },
            "Labels.",
        ),
        field(
            "scheduled_start",
            Kind::DateOrDateTime,
            "The bar's start as a client placed it (Bryntum startDate).",
        ),
        field(
            "scheduled_finish",
            Kind::DateOrDateTime,
            "The bar's end as a client placed it (Bryntum endDate, exclusive).",
        ),
        output("early_start", Kind::Date, "Scheduler output."),
        output("early_finish", Kind::Date, "Scheduler output, inclusive."),
        output("late_start", Kind::Date, "Scheduler output."),
        output("late_finish", Kind::Date, "Scheduler output, inclusive."),
        output("total_float", FLOAT_DAYS, "Scheduler output, working days."),
        output("free_float", FLOAT_DAYS, "Scheduler output, working days."),
        output("is_critical", Kind::Bool, "Scheduler output."),
    ],
    max_body_bytes: SMALL_BODY,
    patchable: true,
    upload_only: false,
};

pub static DEPENDENCIES: Collection = Collection {
    name: "dependencies",
    singular: "dependency",
    write_role: Role::Admin,
    events: Events {
        created: EventType::DependencyCreated,
        updated: Some(EventType::DependencyUpdated),
        deleted: EventType::DependencyDeleted,
    },
    fields: &[
        Field {
            schedule_input: true,
            ..required(
                "predecessor_id",
                task_ref(OnDelete::Cascade),
                "Predecessor task.",
            )
        },
        Field {
            schedule_input: true,
            ..required(
                "successor_id",
                task_ref(OnDelete::Cascade),
                "Successor task.",
            )
        },
        Field {
            nullable: false,
            ..schedule(
                "type",
                Kind::Choice(DEPENDENCY_TYPES),
                "FS (default), SS, FF or SF.",
            )
        },
        Field {
            nullable: false,
            ..schedule("lag", LAG, "Working days; negative is a lead.")
        },
    ],
    max_body_bytes: SMALL_BODY,
    patchable: true,
    upload_only: false,
};

pub static RESOURCES: Collection = Collection {
    name: "resources",
    singular: "resource",
    write_role: Role::Scheduler,
    events: Events {
        created: EventType::ResourceCreated,
        updated: Some(EventType::ResourceUpdated),
        deleted: EventType::ResourceDeleted,
    },
    fields: &[
        required("name", NAME, "Resource name."),
        field("email", SHORT, "Contact."),
        field("max_units", UNITS, "Capacity in percent (100 = full time)."),
        field("calendar_id", clear_ref("calendars"), "Resource calendar."),
        field(
            "user_id",
            Kind::UserRef,
            "The member this resource is, if any.",
        ),
    ],
    max_body_bytes: SMALL_BODY,
    patchable: true,
    upload_only: false,
};

pub static ASSIGNMENTS: Collection = Collection {
    name: "assignments",
    singular: "assignment",
    write_role: Role::Scheduler,
    events: Events {
        created: EventType::AssignmentCreated,
        updated: Some(EventType::AssignmentUpdated),
        deleted: EventType::AssignmentDeleted,
    },
    fields: &[
        required("task_id", task_ref(OnDelete::Cascade), "Task."),
        required(
            "resource_id",
            Kind::Ref {
                collection: "resources",
                on_delete: OnDelete::Cascade,
            },
            "Resource.",
        ),
        Field {
            nullable: false,
            ..field("units", UNITS, "Percent of the resource; default 100.")
        },
    ],
    max_body_bytes: SMALL_BODY,
    patchable: true,
    upload_only: false,
};

pub static CALENDARS: Collection = Collection {
    name: "calendars",
    singular: "calendar",
    write_role: Role::Admin,
    events: Events {
        created: EventType::CalendarCreated,
        updated: Some(EventType::CalendarUpdated),
        deleted: EventType::CalendarDeleted,
    },
    fields: &[
        required("name", NAME, "Calendar name."),
        Field {
            nullable: false,
            ..schedule(
                "working_days",
                Kind::Weekdays,
                "ISO weekdays 1 (Mon) to 7 (Sun), at least one; default [1,2,3,4,5].",
            )
        },
        Field {
            nullable: false,
            ..schedule(
                "exceptions",
                Kind::Exceptions,
                "Non-working (or working) date ranges.",
            )
        },
    ],
    max_body_bytes: SMALL_BODY,
    patchable: true,
    upload_only: false,
};

pub static RISKS: Collection = Collection {
    name: "risks",
    singular: "risk",
    write_role: Role::Member,
    events: Events {
        created: EventType::RiskCreated,
        updated: Some(EventType::RiskUpdated),
        deleted: EventType::RiskDeleted,
    },
    fields: &[
        required("title", NAME, "Risk title."),
        field("description", LONG, "Free text."),
        field("probability", PERCENT, "Percent."),
        field("impact", Kind::Integer { min: 0, max: 10 }, "0 to 10."),
        field("status", Kind::Text { min: 0, max: 64 }, "Free status."),
        field("owner_id", Kind::UserRef, "A member."),
        field("task_id", clear_ref("tasks"), "Related task."),
    ],
    max_body_bytes: SMALL_BODY,
    patchable: true,
    upload_only: false,
};

pub static SPRINTS: Collection = Collection {
    name: "sprints",
    singular: "sprint",
    write_role: Role::Scheduler,
    events: Events {
        created: EventType::SprintCreated,
        updated: Some(EventType::SprintUpdated),
        deleted: EventType::SprintDeleted,
    },
    fields: &[
        required("name", NAME, "Sprint name."),
        field("goal", LONG, "Sprint goal."),
        field("start_date", Kind::Date, "First day."),
        field("end_date", Kind::Date, "Last day."),
        output(
            "state",
            Kind::Choice(SPRINT_STATES),
            "planned, active, closed or cancelled; changed by the activate/close/cancel actions.",
        ),
    ],
    max_body_bytes: SMALL_BODY,
    patchable: true,
    upload_only: false,
};

pub static BASELINES: Collection = Collection {
    name: "baselines",
    singular: "baseline",
    write_role: Role::Admin,
    events: Events {
        created: EventType::BaselineCreated,
        updated: None,
        deleted: EventType::BaselineDeleted,
    },
    fields: &[
        required("name", NAME, "Baseline name."),
        output(
            "is_active",
            Kind::Bool,
            "The active baseline; set by the activate action.",
        ),
        output(
            "tasks",
            Kind::Json {
                max_bytes: 64 * 1024 * 1024,
            },
            "Snapshot of every task's dates, taken at creation.",
        ),
    ],
    max_body_bytes: SMALL_BODY,
    patchable: false,
    upload_only: false,
};

pub static LABELS: Collection = Collection {
    name: "labels",
    singular: "label",
    write_role: Role::Member,
    events: Events {
        created: EventType::LabelCreated,
        updated: Some(EventType::LabelUpdated),
        deleted: EventType::LabelDeleted,
    },
    fields: &[
        required("name", Kind::Text { min: 1, max: 100 }, "Label name."),
        field("color", Kind::Text { min: 0, max: 32 }, "CSS color."),
    ],
    max_body_bytes: SMALL_BODY,
    patchable: true,
    upload_only: false,
};

pub static COLUMNS: Collection = Collection {
    name: "columns",
    singular: "column",
    write_role: Role::Admin,
    events: Events {
        created: EventType::BoardConfigUpdated,
        updated: Some(EventType::BoardConfigUpdated),
        deleted: EventType::BoardConfigUpdated,
    },
    fields: &[
        required("name", Kind::Text { min: 1, max: 100 }, "Column title."),
        field(
            "status",
            Kind::Text { min: 0, max: 64 },
            "Task status this column shows.",
        ),
        field(
            "position",
            Kind::Integer {
                min: 0,
                max: 10_000,
            },
            "Order on the board.",
        ),
        field(
            "wip_limit",
            Kind::Integer {
                min: 0,
                max: 10_000,
            },
            "Work-in-progress limit.",
        ),
    ],
    max_body_bytes: SMALL_BODY,
    patchable: true,
    upload_only: false,
};

pub static COMMENTS: Collection = Collection {
    name: "comments",
    singular: "comment",
    write_role: Role::Member,
    events: Events {
        created: EventType::TaskCommentCreated,
        updated: Some(EventType::TaskCommentUpdated),
        deleted: EventType::TaskCommentDeleted,
    },
    fields: &[
        required("task_id", task_ref(OnDelete::Cascade), "Task commented on."),
        required(
            "body",
            Kind::Text {
                min: 1,
                max: 65_536,
            },
            "Comment text.",
        ),
        output("author_id", Kind::UserRef, "Who wrote it."),
    ],
    max_body_bytes: SMALL_BODY,
    patchable: true,
    upload_only: false,
};

pub static ATTACHMENTS: Collection = Collection {
    name: "attachments",
    singular: "attachment",
    write_role: Role::Member,
    events: Events {
        created: EventType::TaskAttachmentCreated,
        updated: None,
        deleted: EventType::TaskAttachmentDeleted,
    },
    fields: &[
        required(
            "task_id",
            task_ref(OnDelete::Cascade),
            "Task the file belongs to.",
        ),
        output(
            "filename",
            Kind::Text { min: 1, max: 255 },
            "Original file name.",
        ),
        output(
            "content_type",
            Kind::Text { min: 1, max: 255 },
            "MIME type.",
        ),
        output(
            "size",
            Kind::Integer {
                min: 0,
                max: i64::MAX,
            },
            "Bytes.",
        ),
        output(
            "sha256",
            Kind::Text { min: 64, max: 64 },
            "Hex digest of the bytes.",
        ),
        output("author_id", Kind::UserRef, "Who uploaded it."),
    ],
    max_body_bytes: SMALL_BODY,
    patchable: false,
    upload_only: true,
};

pub static WHITEBOARDS: Collection = Collection {
    name: "whiteboards",
    singular: "whiteboard",
    write_role: Role::Member,
    events: Events {
        created: EventType::WhiteboardCreated,
        updated: Some(EventType::WhiteboardUpdated),
        deleted: EventType::WhiteboardDeleted,
    },
    fields: &[
        required("name", NAME, "Whiteboard name."),
        field("description", LONG, "Free text."),
    ],
    max_body_bytes: SMALL_BODY,
    patchable: true,
    upload_only: false,
};

pub static VERSIONS: Collection = Collection {
    name: "versions",
    singular: "version",
    write_role: Role::Member,
    events: Events {
        created: EventType::VersionCreated,
        updated: None,
        deleted: EventType::VersionDeleted,
    },
    fields: &[
        required("name", NAME, "Version name."),
        field("description", LONG, "Free text."),
        field(
            "content",
            Kind::Json {
                max_bytes: 8 * 1024 * 1024,
            },
            "Saved project content (Bryntum versions).",
        ),
    ],
    max_body_bytes: 8 * 1024 * 1024 + 64 * 1024,
    patchable: false,
    upload_only: false,
};

pub static ALL: &[&Collection] = &[
    &TASKS,
    &DEPENDENCIES,
    &RESOURCES,
    &ASSIGNMENTS,
    &CALENDARS,
    &RISKS,
    &SPRINTS,
    &BASELINES,
    &LABELS,
    &COLUMNS,
    &COMMENTS,
    &ATTACHMENTS,
    &WHITEBOARDS,
    &VERSIONS,
];

pub fn by_name(name: &str) -> Option<&'static Collection> {
    ALL.iter().copied().find(|c| c.name == name)
}

/// Fields every record carries that only the server writes.
pub const SERVER_FIELDS: &[&str] = &["id", "project_id", "version", "created_at", "updated_at"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_point_at_known_collections() {
        for collection in ALL {
            for f in collection.fields {
                match f.kind {
                    Kind::Ref {
                        collection: target, ..
                    }
                    | Kind::RefList {
                        collection: target, ..
                    } => {
                        assert!(
                            by_name(target).is_some(),
                            "{}.{} -> {target}",
                            collection.name,
                            f.name
                        )
                    }
                    _ => {}
                }
                assert!(!SERVER_FIELDS.contains(&f.name));
            }
        }
    }
}
