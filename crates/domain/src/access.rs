//! The access rules, in one place: every transport asks these.

use crate::{Actor, DomainResult, OrApi};
use proto::{ApiError, Role};
use store::{MembershipRow, ProjectRow, Queries};
use uuid::Uuid;

/// The caller's role in a project. A project the caller is not a member of does not exist for
/// them (404), so its existence never leaks.
pub async fn project_role(
    ops: &mut dyn Queries,
    project_id: Uuid,
    actor: &Actor,
) -> DomainResult<(ProjectRow, Role)> {
    let found = ops
        .get_project_with_membership(project_id, actor.user_id)
        .await
        .or_api()?;
    let (project, membership) = found.ok_or_else(|| ApiError::not_found("project"))?;
    Ok((project, role_in(membership)?))
}

/// The role a membership gives; no membership is the 404 of [`project_role`].
pub(crate) fn role_in(membership: Option<MembershipRow>) -> DomainResult<Role> {
    let membership = membership.ok_or_else(|| ApiError::not_found("project"))?;
    Role::from_level(membership.role).ok_or_else(ApiError::internal)
}

pub fn require(role: Role, needed: Role, action: &str) -> DomainResult<()> {
    if role >= needed {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "{action} needs the {} role or higher",
            needed.name()
        )))
    }
}

pub fn require_system_admin(actor: &Actor) -> DomainResult<()> {
    if actor.is_admin {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only system administrators may do this",
        ))
    }
}

/// The least role that keeps a live connection to a project (CONTRACT §6: Member).
pub const LIVE_ROLE: Role = Role::Member;

/// The least role that manages a project's webhooks, reads included (CONTRACT §12: Admin).
pub const WEBHOOK_ROLE: Role = Role::Admin;
