//! Users, sessions and WebSocket tickets. Password hashing is the caller's job (it is slow and
//! belongs on a blocking thread); this module only ever sees hashes.

use crate::access::require_system_admin;
use crate::tx::Tx;
use crate::validate::{as_object, invalid_field};
use crate::{Actor, Domain, DomainResult, OrApi};
use chrono::Duration;
use proto::{ApiError, EventType, StreamKey};
use serde_json::{Value, json};
use store::{SessionRow, TicketRow, UserRow, format_ts};
use uuid::Uuid;

pub const MIN_PASSWORD_CHARS: usize = 8;
/// Argon2 cost grows with input; an unbounded password is a denial of service.
pub const MAX_PASSWORD_BYTES: usize = 1024;

pub fn user_json(user: &UserRow) -> Value {
    json!({
        "id": user.id,
        "email": user.email,
        "username": user.username,
        "display_name": user.display_name,
        "is_admin": user.is_admin,
        "is_active": user.is_active,
        "version": user.version,
        "created_at": format_ts(user.created_at),
        "updated_at": format_ts(user.updated_at),
    })
}

/// A user change as a client sent it; the password is still plain text here and must be
/// hashed by the caller before [`Domain::update_user`].
#[derive(Debug, Default, Clone)]
pub struct UserInput {
    pub email: Option<String>,
    pub username: Option<Option<String>>,
    pub display_name: Option<String>,
    pub password: Option<String>,
    pub current_password: Option<String>,
    pub is_admin: Option<bool>,
    pub is_active: Option<bool>,
}

/// The same change with the password hashed.
#[derive(Debug, Default, Clone)]
pub struct UserChanges {
    pub email: Option<String>,
    pub username: Option<Option<String>>,
    pub display_name: Option<String>,
    pub password_hash: Option<String>,
    pub is_admin: Option<bool>,
    pub is_active: Option<bool>,
}

impl UserInput {
    pub fn hashed(self, password_hash: Option<String>) -> UserChanges {
        UserChanges {
            email: self.email,
            username: self.username,
            display_name: self.display_name,
            password_hash,
            is_admin: self.is_admin,
            is_active: self.is_active,
        }
    }
}

fn text(input: &serde_json::Map<String, Value>, name: &str) -> DomainResult<Option<String>> {
    match input.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid_field(name, "must be a string")),
    }
}

fn flag(input: &serde_json::Map<String, Value>, name: &str) -> DomainResult<Option<bool>> {
    match input.get(name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid_field(name, "must be true or false")),
    }
}

pub fn check_email(email: &str) -> DomainResult<()> {
    let ok = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !email.contains(char::is_whitespace)
        });
    if ok {
        Ok(())
    } else {
        Err(invalid_field("email", "must be an email address"))
    }
}

pub fn check_username(username: &str) -> DomainResult<()> {
    let ok = (1..=64).contains(&username.len())
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && !username.contains('@');
    if ok {
        Ok(())
    } else {
        Err(invalid_field(
            "username",
            "1 to 64 letters, digits, '.', '_' or '-'",
        ))
    }
}

pub fn check_password(password: &str, min_chars: usize) -> DomainResult<()> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(invalid_field("password", "is longer than 1024 bytes"));
    }
    if password.chars().count() < min_chars {
        return Err(invalid_field(
            "password",
            format!("needs at least {min_chars} characters"),
        ));
    }
    Ok(())
}

/// Parses a user body. `admin_fields` allows `is_admin` and `is_active`.
pub fn parse_user_input(input: &Value, admin_fields: bool) -> DomainResult<UserInput> {
    let object = as_object(input)?;
    for key in object.keys() {
        let known = [
            "email",
            "username",
            "display_name",
            "password",
            "current_password",
        ]
        .contains(&key.as_str())
            || (admin_fields && ["is_admin", "is_active"].contains(&key.as_str()))
            || ["id", "version", "created_at", "updated_at"].contains(&key.as_str());
        if !known {
            return Err(invalid_field(key, "is not a user field you may set"));
        }
    }
    let email = text(object, "email")?;
    if let Some(email) = &email {
        check_email(email)?;
    }
    let username = match object.get("username") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(name)) => {
            check_username(name)?;
            Some(Some(name.clone()))
        }
        Some(_) => return Err(invalid_field("username", "must be a string")),
    };
    let display_name = text(object, "display_name")?;
    if let Some(name) = &display_name
        && (name.trim().is_empty() || name.chars().count() > 200)
    {
        return Err(invalid_field("display_name", "must be 1 to 200 characters"));
    }
    let password = text(object, "password")?;
    if let Some(password) = &password {
        check_password(password, MIN_PASSWORD_CHARS)?;
    }
    Ok(UserInput {
        email,
        username,
        display_name,
        password,
        current_password: text(object, "current_password")?,
        is_admin: flag(object, "is_admin")?,
        is_active: flag(object, "is_active")?,
    })
}

/// A new account.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub password_hash: String,
    pub is_admin: bool,
}

impl Domain {
    /// Creates a user. `actor` is `None` for the operator's CLI and the bootstrap admin.
    pub async fn create_user(&self, actor: Option<&Actor>, new: NewUser) -> DomainResult<Value> {
        if let Some(actor) = actor {
            require_system_admin(actor)?;
        }
        check_email(&new.email)?;
        if let Some(username) = &new.username {
            check_username(username)?;
        }
        let mut tx = Tx::begin(self, actor).await?;
        let display_name = new
            .display_name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .or_else(|| new.username.clone())
            .unwrap_or_else(|| new.email.split('@').next().unwrap_or_default().to_owned());
        let user = UserRow {
            id: proto::ids::new_id(),
            email: new.email,
            username: new.username,
            display_name,
            password_hash: new.password_hash,
            is_admin: new.is_admin,
            is_active: true,
            version: 1,
            created_at: tx.now,
            updated_at: tx.now,
        };
        tx.ops().insert_user(&user).await.or_api()?;
        let data = user_json(&user);
        tx.emit(
            StreamKey::System,
            EventType::UserUpdated,
            json!({ "id": user.id }),
            data.clone(),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(data)
    }

    pub async fn get_user(&self, id: Uuid) -> DomainResult<Option<UserRow>> {
        let mut ops = self.store.read().await.or_api()?;
        ops.get_user(id).await.or_api()
    }

    pub async fn find_user_by_login(&self, login: &str) -> DomainResult<Option<UserRow>> {
        let mut ops = self.store.read().await.or_api()?;
        ops.find_user_by_login(login).await.or_api()
    }

    pub async fn list_users(&self, actor: &Actor) -> DomainResult<Vec<Value>> {
        require_system_admin(actor)?;
        let mut ops = self.store.read().await.or_api()?;
        Ok(ops
            .list_users()
            .await
            .or_api()?
            .iter()
            .map(user_json)
            .collect())
    }

    /// Changes a user. A user changes their own profile; system administrators change anyone,
    /// including `is_admin` and `is_active`. Deactivation ends every session of the user.
    /// Returns the user and whether their sessions were ended.
    pub async fn update_user(
        &self,
        actor: &Actor,
        id: Uuid,
        changes: UserChanges,
        if_match: Option<i64>,
    ) -> DomainResult<(Value, bool)> {
        if actor.user_id != id || changes.is_admin.is_some() || changes.is_active.is_some() {
            require_system_admin(actor)?;
        }
        if actor.user_id == id && changes.is_active == Some(false) {
            return Err(ApiError::conflict("you cannot deactivate yourself"));
        }
        let mut tx = Tx::begin(self, Some(actor)).await?;
        // A user's changes are logged on the system stream: held before the version is checked.
        tx.hold(StreamKey::System).await?;
        let current = tx
            .ops()
            .get_user(id)
            .await
            .or_api()?
            .ok_or_else(|| ApiError::not_found("user"))?;
        crate::records::check_version(if_match, current.version)?;
        let mut user = current.clone();
        if let Some(email) = changes.email {
            user.email = email;
        }
        if let Some(username) = changes.username {
            user.username = username;
        }
        if let Some(name) = changes.display_name {
            user.display_name = name;
        }
        if let Some(hash) = changes.password_hash {
            user.password_hash = hash;
        }
        if let Some(admin) = changes.is_admin {
            user.is_admin = admin;
        }
        if let Some(active) = changes.is_active {
            user.is_active = active;
        }
        if user == current {
            return Ok((user_json(&current), false));
        }
        // Nobody could administer the system again: no user could be made an administrator.
        let loses_admin =
            current.is_admin && current.is_active && !(user.is_admin && user.is_active);
        if loses_admin {
            let others = tx
                .ops()
                .list_users()
                .await
                .or_api()?
                .iter()
                .filter(|u| u.id != id && u.is_admin && u.is_active)
                .count();
            if others == 0 {
                return Err(ApiError::conflict(
                    "the last active system administrator cannot be demoted or deactivated",
                ));
            }
        }
        user.version += 1;
        user.updated_at = tx.now;
        tx.ops().update_user(&user).await.or_api()?;
        let ended =
            (current.is_active && !user.is_active) || user.password_hash != current.password_hash;
        if ended {
            let now = tx.now;
            tx.ops().revoke_user_sessions(id, now).await.or_api()?;
        }
        let data = user_json(&user);
        tx.emit(
            StreamKey::System,
            EventType::UserUpdated,
            json!({ "id": id }),
            data.clone(),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok((data, ended))
    }

    pub async fn create_session(&self, user_id: Uuid, ttl: Duration) -> DomainResult<SessionRow> {
        let mut tx = Tx::begin(self, None).await?;
        let session = SessionRow {
            id: proto::ids::new_id(),
            user_id,
            created_at: tx.now,
            expires_at: tx.now + ttl,
            revoked_at: None,
        };
        tx.ops().insert_session(&session).await.or_api()?;
        tx.commit().await?;
        Ok(session)
    }

    /// The user behind a session, if the session is live and the user active.
    pub async fn session_user(
        &self,
        session_id: Uuid,
    ) -> DomainResult<Option<(SessionRow, UserRow)>> {
        let mut ops = self.store.read().await.or_api()?;
        let Some((session, user)) = ops.get_session_with_user(session_id).await.or_api()? else {
            return Ok(None);
        };
        if session.revoked_at.is_some() || session.expires_at <= store::now() {
            return Ok(None);
        }
        Ok(user.filter(|u| u.is_active).map(|u| (session, u)))
    }

    pub async fn end_session(&self, session_id: Uuid) -> DomainResult<bool> {
        let mut tx = Tx::begin(self, None).await?;
        let now = tx.now;
        let ended = tx.ops().revoke_session(session_id, now).await.or_api()?;
        tx.commit().await?;
        Ok(ended)
    }

    /// Stores a ticket by the hash of its secret.
    pub async fn store_ticket(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        hash: String,
        ttl: Duration,
    ) -> DomainResult<()> {
        let mut tx = Tx::begin(self, None).await?;
        let now = tx.now;
        tx.ops().purge_expired_tickets(now).await.or_api()?;
        tx.ops()
            .insert_ticket(&TicketRow {
                hash,
                user_id,
                session_id,
                expires_at: now + ttl,
                used_at: None,
            })
            .await
            .or_api()?;
        tx.commit().await?;
        Ok(())
    }

    /// Spends a ticket: of two concurrent callers exactly one gets it.
    pub async fn consume_ticket(&self, hash: &str) -> DomainResult<Option<TicketRow>> {
        let mut tx = Tx::begin(self, None).await?;
        let now = tx.now;
        let ticket = tx.ops().consume_ticket(hash, now).await.or_api()?;
        tx.commit().await?;
        Ok(ticket)
    }
}
