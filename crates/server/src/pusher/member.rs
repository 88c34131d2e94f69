//! What a presence channel says of a liveplan user: the `user_info` of its members, the same
//! whether the user joined by channel authorization, by sign-in or by opening a whiteboard.

use serde::Serialize;
use store::UserRow;

#[derive(Debug, Clone, Serialize)]
pub struct UserInfo {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl UserInfo {
    /// The email is given on liveplan's own channels, whose members share a project; the
    /// app's channels get the name only.
    pub fn of(user: &UserRow, with_email: bool) -> UserInfo {
        UserInfo {
            name: user.display_name.clone(),
            email: with_email.then(|| user.email.clone()),
        }
    }
}
