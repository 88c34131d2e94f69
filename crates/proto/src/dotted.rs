//! The dotted names of the canonical events (`task_created` → `task.created`), as webhooks
//! name them (CONTRACT §12; TruePPM's webhooks and PUNT's SSE types). The catalog itself stays
//! snake_case and frozen ([`crate::event`]); this table is the one explicit mapping, checked by
//! a test to cover every event once.

use crate::EventType;

impl EventType {
    /// The dotted name: the thing changed, a dot, what happened to it.
    pub fn dotted(self) -> &'static str {
        use EventType::*;
        match self {
            ProjectCreated => "project.created",
            ProjectUpdated => "project.updated",
            ProjectDeleted => "project.deleted",
            ProjectCalendarChanged => "project.calendar_changed",
            MemberAdded => "member.added",
            MemberRoleChanged => "member.role_changed",
            MemberRemoved => "member.removed",
            TaskCreated => "task.created",
            TaskUpdated => "task.updated",
            TaskDeleted => "task.deleted",
            TasksReordered => "tasks.reordered",
            TasksBulkMutated => "tasks.bulk_mutated",
            DependencyCreated => "dependency.created",
            DependencyUpdated => "dependency.updated",
            DependencyDeleted => "dependency.deleted",
            DependencyAccepted => "dependency.accepted",
            DependencyRejected => "dependency.rejected",
            ResourceCreated => "resource.created",
            ResourceUpdated => "resource.updated",
            ResourceDeleted => "resource.deleted",
            AssignmentCreated => "assignment.created",
            AssignmentUpdated => "assignment.updated",
            AssignmentDeleted => "assignment.deleted",
            CalendarCreated => "calendar.created",
            CalendarUpdated => "calendar.updated",
            CalendarDeleted => "calendar.deleted",
            RiskCreated => "risk.created",
            RiskUpdated => "risk.updated",
            RiskDeleted => "risk.deleted",
            SprintCreated => "sprint.created",
            SprintUpdated => "sprint.updated",
            SprintDeleted => "sprint.deleted",
            SprintActivated => "sprint.activated",
            SprintClosed => "sprint.closed",
            SprintCancelled => "sprint.cancelled",
            SprintScopeChanged => "sprint.scope_changed",
            BaselineCreated => "baseline.created",
            BaselineActivated => "baseline.activated",
            BaselineDeleted => "baseline.deleted",
            LabelCreated => "label.created",
            LabelUpdated => "label.updated",
            LabelDeleted => "label.deleted",
            BoardConfigUpdated => "board_config.updated",
            TaskCommentCreated => "task_comment.created",
            TaskCommentUpdated => "task_comment.updated",
            TaskCommentDeleted => "task_comment.deleted",
            TaskAttachmentCreated => "task_attachment.created",
            TaskAttachmentDeleted => "task_attachment.deleted",
            WhiteboardCreated => "whiteboard.created",
            WhiteboardUpdated => "whiteboard.updated",
            WhiteboardDeleted => "whiteboard.deleted",
            VersionCreated => "version.created",
            VersionDeleted => "version.deleted",
            CpmComplete => "cpm.complete",
            CpmError => "cpm.error",
            TaskDatesUpdated => "task_dates.updated",
            UserUpdated => "user.updated",
            DatabaseWiped => "database.wiped",
            DatabaseProjectsWiped => "database.projects_wiped",
            PresenceJoin => "presence.join",
            PresenceLeave => "presence.leave",
        }
    }

    /// The event a dotted name stands for.
    pub fn parse_dotted(name: &str) -> Option<EventType> {
        EventType::ALL.iter().copied().find(|e| e.dotted() == name)
    }

    /// Whether the event is written to a project's own stream (`project:{id}`), the log a
    /// project's webhooks are driven from. Project lifecycle, users and database events are
    /// in the `system` stream, and ephemeral events in none.
    pub fn in_project_log(self) -> bool {
        use EventType::*;
        !self.is_ephemeral()
            && !matches!(
                self,
                ProjectCreated
                    | ProjectUpdated
                    | ProjectDeleted
                    | UserUpdated
                    | DatabaseWiped
                    | DatabaseProjectsWiped
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Every event has a dotted name, no two share one, each round-trips, and each is the
    /// snake_case name with one underscore turned into the dot.
    #[test]
    fn every_event_has_one_unique_dotted_name() {
        let mut seen = HashSet::new();
        for event in EventType::ALL {
            let dotted = event.dotted();
            assert!(seen.insert(dotted), "{dotted} is used twice");
            assert_eq!(EventType::parse_dotted(dotted), Some(*event));
            assert_eq!(dotted.matches('.').count(), 1, "{dotted}");
            assert_eq!(dotted.replacen('.', "_", 1), event.as_str(), "{dotted}");
        }
        assert_eq!(seen.len(), EventType::ALL.len());
        assert_eq!(EventType::parse_dotted("task_created"), None);
        assert_eq!(EventType::parse_dotted("task.moved"), None);
        assert_eq!(
            EventType::TaskCommentCreated.dotted(),
            "task_comment.created"
        );
        assert_eq!(
            EventType::SprintScopeChanged.dotted(),
            "sprint.scope_changed"
        );
        assert_eq!(EventType::TasksBulkMutated.dotted(), "tasks.bulk_mutated");
        assert_eq!(EventType::CpmComplete.dotted(), "cpm.complete");
    }

    #[test]
    fn only_project_stream_events_are_in_a_project_log() {
        assert!(EventType::TaskCreated.in_project_log());
        assert!(EventType::ProjectCalendarChanged.in_project_log());
        assert!(!EventType::ProjectUpdated.in_project_log());
        assert!(!EventType::PresenceJoin.in_project_log());
        assert!(!EventType::DatabaseWiped.in_project_log());
    }
}
