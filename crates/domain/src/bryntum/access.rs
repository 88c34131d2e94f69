//! The access questions a Bryntum socket asks: at `dataset` (may this user read the project),
//! when the hub says access changed (may they still), and for `projects`. Whether a given
//! change is allowed is not asked here: [`Domain::apply_batch_request`] decides that.

use crate::{Actor, Domain, DomainResult, OrApi};
use proto::Role;
use uuid::Uuid;

/// What a user may do with a project right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectAccess {
    /// A member with this role. Every member reads (Viewers too); changes need Member or
    /// more, and each change the role its collection asks.
    Member(Role),
    /// Not a member (any more), or the project is gone: the socket leaves the project.
    Lost,
    /// The user is deactivated or gone: every socket of theirs closes.
    UserInactive,
}

impl ProjectAccess {
    pub fn role(self) -> Option<Role> {
        match self {
            ProjectAccess::Member(role) => Some(role),
            _ => None,
        }
    }

    pub fn may_read(self) -> bool {
        self.role().is_some()
    }

    pub fn may_write(self) -> bool {
        self.role().is_some_and(|role| role >= Role::Member)
    }
}

/// A project in a user's list, as `projects` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisibleProject {
    pub id: Uuid,
    pub name: String,
}

impl Domain {
    /// The actor's access to the project, read as of one moment (the user and the membership
    /// together).
    pub async fn project_access(
        &self,
        actor: &Actor,
        project_id: Uuid,
    ) -> DomainResult<ProjectAccess> {
        let mut ops = self.store.snapshot().await.or_api()?;
        let active = ops
            .get_user(actor.user_id)
            .await
            .or_api()?
            .is_some_and(|user| user.is_active);
        if !active {
            return Ok(ProjectAccess::UserInactive);
        }
        let membership = ops
            .get_project_with_membership(project_id, actor.user_id)
            .await
            .or_api()?
            .and_then(|(_, membership)| membership);
        Ok(membership
            .and_then(|m| Role::from_level(m.role))
            .map_or(ProjectAccess::Lost, ProjectAccess::Member))
    }

    /// The projects the actor is a member of, oldest first (Bryntum clients may name a project
    /// by its 1-based place in this list).
    pub async fn visible_projects(&self, actor: &Actor) -> DomainResult<Vec<VisibleProject>> {
        let mut ops = self.store.read().await.or_api()?;
        let mut rows = ops.list_projects_of_user(actor.user_id).await.or_api()?;
        rows.sort_by_key(|p| (p.created_at, p.id));
        Ok(rows
            .into_iter()
            .map(|p| VisibleProject {
                id: p.id,
                name: p.name,
            })
            .collect())
    }

    /// The member the server acts as when it changes a project on its own (the demo's idle
    /// reset): the highest role, at least Member. `None` when the project is gone or has no
    /// such member.
    pub async fn project_owner(&self, project_id: Uuid) -> DomainResult<Option<Actor>> {
        let mut ops = self.store.snapshot().await.or_api()?;
        if ops.get_project(project_id).await.or_api()?.is_none() {
            return Ok(None);
        }
        let members = ops.list_memberships(project_id).await.or_api()?;
        Ok(members
            .iter()
            .filter(|m| m.role >= Role::Member.level())
            .max_by_key(|m| m.role)
            .map(|owner| Actor {
                user_id: owner.user_id,
                is_admin: false,
                tab_id: None,
            }))
    }
}
