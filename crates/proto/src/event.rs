//! Canonical events: the frozen catalog of names, the streams they are sequenced in, and the
//! event record every transport encodes from.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

macro_rules! catalog {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// Every canonical event name. The list is frozen by a test in this crate: adding or
        /// dropping a name is a deliberate change of the contract.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum EventType { $($variant),* }

        impl EventType {
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(EventType::$variant => $name),* }
            }

            pub fn parse(name: &str) -> Option<EventType> {
                match name { $($name => Some(EventType::$variant),)* _ => None }
            }
        }
    };
}

catalog! {
    ProjectCreated => "project_created",
    ProjectUpdated => "project_updated",
    ProjectDeleted => "project_deleted",
    ProjectCalendarChanged => "project_calendar_changed",
    MemberAdded => "member_added",
    MemberRoleChanged => "member_role_changed",
    MemberRemoved => "member_removed",
    TaskCreated => "task_created",
    TaskUpdated => "task_updated",
    TaskDeleted => "task_deleted",
    TasksReordered => "tasks_reordered",
    TasksBulkMutated => "tasks_bulk_mutated",
    DependencyCreated => "dependency_created",
    DependencyUpdated => "dependency_updated",
    DependencyDeleted => "dependency_deleted",
    DependencyAccepted => "dependency_accepted",
    DependencyRejected => "dependency_rejected",
    ResourceCreated => "resource_created",
    ResourceUpdated => "resource_updated",
    ResourceDeleted => "resource_deleted",
    AssignmentCreated => "assignment_created",
    AssignmentUpdated => "assignment_updated",
    AssignmentDeleted => "assignment_deleted",
    CalendarCreated => "calendar_created",
    CalendarUpdated => "calendar_updated",
    CalendarDeleted => "calendar_deleted",
    RiskCreated => "risk_created",
    RiskUpdated => "risk_updated",
    RiskDeleted => "risk_deleted",
    SprintCreated => "sprint_created",
    SprintUpdated => "sprint_updated",
    SprintDeleted => "sprint_deleted",
    SprintActivated => "sprint_activated",
    SprintClosed => "sprint_closed",
    SprintCancelled => "sprint_cancelled",
    SprintScopeChanged => "sprint_scope_changed",
    BaselineCreated => "baseline_created",
    BaselineActivated => "baseline_activated",
    BaselineDeleted => "baseline_deleted",
    LabelCreated => "label_created",
    LabelUpdated => "label_updated",
    LabelDeleted => "label_deleted",
    BoardConfigUpdated => "board_config_updated",
    TaskCommentCreated => "task_comment_created",
    TaskCommentUpdated => "task_comment_updated",
    TaskCommentDeleted => "task_comment_deleted",
    TaskAttachmentCreated => "task_attachment_created",
    TaskAttachmentDeleted => "task_attachment_deleted",
    WhiteboardCreated => "whiteboard_created",
    WhiteboardUpdated => "whiteboard_updated",
    WhiteboardDeleted => "whiteboard_deleted",
    VersionCreated => "version_created",
    VersionDeleted => "version_deleted",
    CpmComplete => "cpm_complete",
    CpmError => "cpm_error",
    TaskDatesUpdated => "task_dates_updated",
    UserUpdated => "user_updated",
    DatabaseWiped => "database_wiped",
    DatabaseProjectsWiped => "database_projects_wiped",
    PresenceJoin => "presence_join",
    PresenceLeave => "presence_leave",
}

impl EventType {
    /// Ephemeral events are never logged and carry `seq: null`.
    pub fn is_ephemeral(self) -> bool {
        matches!(self, EventType::PresenceJoin | EventType::PresenceLeave)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stream is one gap-free sequence of events: a project's, a user's, or the system's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamKey {
    Project(Uuid),
    User(Uuid),
    System,
}

impl StreamKey {
    /// The stable text form stored in the log: `project:{id}`, `user:{id}`, `system`.
    pub fn to_text(&self) -> String {
        match self {
            StreamKey::Project(id) => format!("project:{id}"),
            StreamKey::User(id) => format!("user:{id}"),
            StreamKey::System => "system".to_owned(),
        }
    }

    pub fn parse(text: &str) -> Option<StreamKey> {
        if text == "system" {
            return Some(StreamKey::System);
        }
        let (kind, id) = text.split_once(':')?;
        let id = Uuid::parse_str(id).ok()?;
        match kind {
            "project" => Some(StreamKey::Project(id)),
            "user" => Some(StreamKey::User(id)),
            _ => None,
        }
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl Serialize for StreamKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_text())
    }
}

impl<'de> Deserialize<'de> for StreamKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        StreamKey::parse(&text).ok_or_else(|| serde::de::Error::custom("invalid stream key"))
    }
}

/// One canonical event as committed (or, for ephemeral events, as emitted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub stream: StreamKey,
    /// The position in its stream; `None` only for ephemeral events.
    pub seq: Option<i64>,
    pub event_type: EventType,
    /// The minimal description of what changed (CONTRACT §5).
    pub payload: serde_json::Value,
    /// The full record after the change (`{id}` after a delete).
    pub data: serde_json::Value,
    pub actor_id: Option<Uuid>,
    pub tab_id: Option<String>,
    pub ts: DateTime<Utc>,
    /// The project the event concerns, also for `system` stream events such as
    /// `project_created`, so subscribers can be filtered by membership.
    pub project_id: Option<Uuid>,
    /// What the writer's own client must get back for the change this event starts (a Bryntum
    /// revision as the client sent it, with real ids), carried by the first event of that
    /// change only. It travels with the event so any node can answer the writer; the native
    /// WebSocket and SSE encoders never print it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frozen catalog (CONTRACT §5). Changing this list is changing the contract.
    const FROZEN: &str = "project_created project_updated project_deleted project_calendar_changed
member_added member_role_changed member_removed
task_created task_updated task_deleted tasks_reordered tasks_bulk_mutated
dependency_created dependency_updated dependency_deleted dependency_accepted dependency_rejected
resource_created resource_updated resource_deleted
assignment_created assignment_updated assignment_deleted
calendar_created calendar_updated calendar_deleted
risk_created risk_updated risk_deleted
sprint_created sprint_updated sprint_deleted sprint_activated sprint_closed sprint_cancelled sprint_scope_changed
baseline_created baseline_activated baseline_deleted
label_created label_updated label_deleted board_config_updated
task_comment_created task_comment_updated task_comment_deleted
task_attachment_created task_attachment_deleted
whiteboard_created whiteboard_updated whiteboard_deleted
version_created version_deleted
cpm_complete cpm_error task_dates_updated
user_updated database_wiped database_projects_wiped
presence_join presence_leave";

    #[test]
    fn catalog_is_frozen() {
        let frozen: Vec<&str> = FROZEN.split_whitespace().collect();
        let ours: Vec<&str> = EventType::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(ours, frozen);
        for name in frozen {
            let parsed = EventType::parse(name).expect(name);
            assert_eq!(serde_json::to_value(parsed).unwrap(), name);
        }
        assert_eq!(EventType::parse("task_moved"), None);
    }

    #[test]
    fn stream_keys_round_trip() {
        let id = Uuid::now_v7();
        for key in [
            StreamKey::Project(id),
            StreamKey::User(id),
            StreamKey::System,
        ] {
            assert_eq!(StreamKey::parse(&key.to_text()), Some(key));
        }
        assert_eq!(StreamKey::parse("project:nope"), None);
        assert_eq!(
            StreamKey::parse("team:00000000-0000-0000-0000-000000000000"),
            None
        );
    }
}
