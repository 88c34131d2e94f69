//! Password login: the one check every way of logging in with a password shares (the REST
//! login and the Bryntum socket's `login` command).

use crate::auth::password;
use crate::http::{HttpError, HttpResult, error};
use domain::Domain;
use proto::ErrorCode;

/// The one refusal of a login, whatever was wrong.
pub fn bad_credentials() -> HttpError {
    error(ErrorCode::InvalidCredentials, "wrong login or password")
}

/// Checks a login and password; the same refusal whatever was wrong. `decoy_hash` is verified
/// against when no account has that login, so unknown and known accounts take the same time
/// to refuse.
pub async fn authenticate(
    domain: &Domain,
    decoy_hash: &str,
    login: &str,
    secret: String,
) -> HttpResult<store::UserRow> {
    let user = domain.find_user_by_login(login).await?;
    let stored = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| decoy_hash.to_owned());
    let matches = password::verify(secret, stored).await?;
    match user {
        Some(user) if matches && user.is_active => Ok(user),
        _ => Err(bad_credentials()),
    }
}
