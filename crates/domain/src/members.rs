//! Project membership. Admins manage members below Owner; only Owners make or unmake Owners;
//! a project always keeps at least one Owner; anyone may leave.

use crate::access::{project_role, require};
use crate::records::check_version;
use crate::tx::Tx;
use crate::validate::{as_object, invalid_field};
use crate::{Actor, Domain, DomainResult, OrApi};
use proto::{ApiError, EventType, Role, StreamKey};
use serde_json::{Value, json};
use store::{MembershipRow, Queries, format_ts};
use uuid::Uuid;

pub fn membership_payload(m: &MembershipRow) -> Value {
    json!({ "membership_id": m.id, "user_id": m.user_id, "role": m.role })
}

async fn membership_json(ops: &mut dyn Queries, m: &MembershipRow) -> DomainResult<Value> {
    let user = ops.get_user(m.user_id).await.or_api()?;
    Ok(json!({
        "id": m.id,
        "membership_id": m.id,
        "project_id": m.project_id,
        "user_id": m.user_id,
        "role": m.role,
        "version": m.version,
        "created_at": format_ts(m.created_at),
        "updated_at": format_ts(m.updated_at),
        "user": user.map(|u| json!({
            "id": u.id, "email": u.email, "username": u.username, "display_name": u.display_name,
        })),
    }))
}

fn parse_role(input: &serde_json::Map<String, Value>) -> DomainResult<Role> {
    let value = input
        .get("role")
        .ok_or_else(|| invalid_field("role", "is required"))?;
    value
        .as_i64()
        .and_then(Role::from_level)
        .ok_or_else(|| invalid_field("role", "must be one of 1, 100, 200, 300, 400"))
}

/// Whether `actor_role` may grant or take away `role`.
fn may_manage(actor_role: Role, role: Role) -> DomainResult<()> {
    require(actor_role, Role::Admin, "managing members")?;
    if role == Role::Owner {
        require(actor_role, Role::Owner, "managing owners")?;
    }
    Ok(())
}

async fn owner_count(ops: &mut dyn Queries, project_id: Uuid) -> DomainResult<usize> {
    Ok(ops
        .list_memberships(project_id)
        .await
        .or_api()?
        .iter()
        .filter(|m| m.role == Role::Owner.level())
        .count())
}

async fn load_membership(
    ops: &mut dyn Queries,
    project_id: Uuid,
    id: Uuid,
) -> DomainResult<MembershipRow> {
    ops.get_membership(id)
        .await
        .or_api()?
        .filter(|m| m.project_id == project_id)
        .ok_or_else(|| ApiError::not_found("member"))
}

impl Domain {
    pub async fn list_members(&self, actor: &Actor, project_id: Uuid) -> DomainResult<Vec<Value>> {
        let mut ops = self.store.read().await.or_api()?;
        project_role(&mut *ops, project_id, actor).await?;
        let mut out = Vec::new();
        for m in ops.list_memberships(project_id).await.or_api()? {
            out.push(membership_json(&mut *ops, &m).await?);
        }
        Ok(out)
    }

    pub async fn get_member(
        &self,
        actor: &Actor,
        project_id: Uuid,
        id: Uuid,
    ) -> DomainResult<Value> {
        let mut ops = self.store.read().await.or_api()?;
        project_role(&mut *ops, project_id, actor).await?;
        let m = load_membership(&mut *ops, project_id, id).await?;
        membership_json(&mut *ops, &m).await
    }

    /// `{user_id | email | username, role}`.
    pub async fn add_member(
        &self,
        actor: &Actor,
        project_id: Uuid,
        input: &Value,
    ) -> DomainResult<Value> {
        let input = as_object(input)?;
        let role = parse_role(input)?;
        let mut tx = Tx::begin(self, Some(actor)).await?;
        let (_, actor_role) = tx.project_role(project_id, actor).await?;
        may_manage(actor_role, role)?;
        let user = if let Some(id) = input.get("user_id") {
            let id = id
                .as_str()
                .and_then(|t| Uuid::parse_str(t).ok())
                .ok_or_else(|| invalid_field("user_id", "must be an id"))?;
            tx.ops().get_user(id).await.or_api()?
        } else if let Some(login) = input
            .get("email")
            .or_else(|| input.get("username"))
            .and_then(Value::as_str)
        {
            tx.ops().find_user_by_login(login).await.or_api()?
        } else {
            return Err(invalid_field("user_id", "is required"));
        };
        let user = user.ok_or_else(|| invalid_field("user_id", "no such user"))?;
        if !user.is_active {
            return Err(invalid_field("user_id", "the user is deactivated"));
        }
        if tx.ops().list_memberships(project_id).await.or_api()?.len()
            >= self.limits.max_members_per_project
        {
            return Err(ApiError::invalid(
                "the project has the most members it may have",
            ));
        }
        let row = MembershipRow {
            id: proto::ids::new_id(),
            project_id,
            user_id: user.id,
            role: role.level(),
            version: 1,
            created_at: tx.now,
            updated_at: tx.now,
        };
        tx.ops().insert_membership(&row).await.or_api()?;
        let payload = membership_payload(&row);
        let data = membership_json(tx.ops(), &row).await?;
        tx.emit(
            StreamKey::Project(project_id),
            EventType::MemberAdded,
            payload,
            data.clone(),
            Some(project_id),
        )
        .await?;
        tx.commit().await?;
        Ok(data)
    }

    pub async fn change_member(
        &self,
        actor: &Actor,
        project_id: Uuid,
        id: Uuid,
        input: &Value,
        if_match: Option<i64>,
    ) -> DomainResult<Value> {
        let input = as_object(input)?;
        let role = parse_role(input)?;
        let mut tx = Tx::begin(self, Some(actor)).await?;
        let (_, actor_role) = tx.project_role(project_id, actor).await?;
        let current = load_membership(tx.ops(), project_id, id).await?;
        let current_role = Role::from_level(current.role).ok_or_else(ApiError::internal)?;
        may_manage(actor_role, role.max(current_role))?;
        check_version(if_match, current.version)?;
        if current_role == role {
            return membership_json(tx.ops(), &current).await;
        }
        if current_role == Role::Owner && owner_count(tx.ops(), project_id).await? <= 1 {
            return Err(ApiError::conflict("a project keeps at least one owner"));
        }
        let row = MembershipRow {
            role: role.level(),
            version: current.version + 1,
            updated_at: tx.now,
            ..current
        };
        tx.ops().update_membership(&row).await.or_api()?;
        let data = membership_json(tx.ops(), &row).await?;
        tx.emit(
            StreamKey::Project(project_id),
            EventType::MemberRoleChanged,
            membership_payload(&row),
            data.clone(),
            Some(project_id),
        )
        .await?;
        tx.commit().await?;
        Ok(data)
    }

    pub async fn remove_member(
        &self,
        actor: &Actor,
        project_id: Uuid,
        id: Uuid,
        if_match: Option<i64>,
    ) -> DomainResult<()> {
        let mut tx = Tx::begin(self, Some(actor)).await?;
        let (_, actor_role) = tx.project_role(project_id, actor).await?;
        let current = load_membership(tx.ops(), project_id, id).await?;
        let current_role = Role::from_level(current.role).ok_or_else(ApiError::internal)?;
        if current.user_id != actor.user_id {
            may_manage(actor_role, current_role)?;
        }
        check_version(if_match, current.version)?;
        if current_role == Role::Owner && owner_count(tx.ops(), project_id).await? <= 1 {
            return Err(ApiError::conflict("a project keeps at least one owner"));
        }
        tx.ops().delete_membership(id).await.or_api()?;
        let payload = membership_payload(&current);
        tx.emit(
            StreamKey::Project(project_id),
            EventType::MemberRemoved,
            payload.clone(),
            payload,
            Some(project_id),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
