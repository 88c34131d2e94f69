//! Project roles are numbers compared with `>=`, as in TruePPM.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub enum Role {
    Viewer,
    Member,
    Scheduler,
    Admin,
    Owner,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Member,
        Role::Scheduler,
        Role::Admin,
        Role::Owner,
    ];

    pub fn level(self) -> i64 {
        match self {
            Role::Viewer => 1,
            Role::Member => 100,
            Role::Scheduler => 200,
            Role::Admin => 300,
            Role::Owner => 400,
        }
    }

    pub fn from_level(level: i64) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.level() == level)
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::Scheduler => "scheduler",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }
}

impl From<Role> for i64 {
    fn from(role: Role) -> i64 {
        role.level()
    }
}

impl TryFrom<i64> for Role {
    type Error = String;
    fn try_from(level: i64) -> Result<Self, Self::Error> {
        Role::from_level(level)
            .ok_or_else(|| format!("role must be one of 1, 100, 200, 300, 400, not {level}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_round_trip_and_order() {
        for role in Role::ALL {
            assert_eq!(Role::from_level(role.level()), Some(role));
        }
        assert!(Role::Owner > Role::Admin && Role::Member > Role::Viewer);
        assert_eq!(Role::from_level(150), None);
        assert!(serde_json::from_str::<Role>("250").is_err());
        assert_eq!(serde_json::to_string(&Role::Scheduler).unwrap(), "200");
    }
}
