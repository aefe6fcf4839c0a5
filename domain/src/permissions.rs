//! Roles and the one permission table of the platform. Every endpoint names the permission it needs;
//! this table says which roles hold it. The README documents the same table.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including user management and the audit log.
    Admin,
    /// Manages datasets, training and models.
    Trainer,
    /// Asks questions and sees deployed models.
    User,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Trainer, Role::User];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Trainer => "trainer",
            Role::User => "user",
        }
    }

    /// The permission table.
    pub fn can(self, permission: Permission) -> bool {
        use Permission::*;
        match permission {
            ReadOwnProfile | UpdateOwnProfile | AskQuestions | ReadDeployedModels => true,
            ManageDatasets | ManageTraining | ManageModels | ManageAlerts => {
                matches!(self, Role::Admin | Role::Trainer)
            }
            ManageUsers | ReadAudit | ReadAllDatasets | ReadAllTraining => self == Role::Admin,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "trainer" => Ok(Role::Trainer),
            "user" => Ok(Role::User),
            other => Err(format!("unknown role '{other}' (expected admin, trainer or user)")),
        }
    }
}

/// What an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ReadOwnProfile,
    UpdateOwnProfile,
    AskQuestions,
    ReadDeployedModels,
    ManageDatasets,
    ManageTraining,
    ManageModels,
    ReadAllDatasets,
    /// Every user's training tasks (others see their own).
    ReadAllTraining,
    ManageUsers,
    ReadAudit,
    /// Alerts: admins see and handle every alert, trainers those of their own tasks and models.
    ManageAlerts,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_admins_manage_users_and_read_the_audit_log() {
        assert!(Role::Admin.can(Permission::ManageUsers));
        assert!(!Role::Trainer.can(Permission::ManageUsers));
        assert!(!Role::User.can(Permission::ReadAudit));
    }

    #[test]
    fn trainers_manage_training_but_users_do_not() {
        assert!(Role::Trainer.can(Permission::ManageTraining));
        assert!(!Role::User.can(Permission::ManageDatasets));
        assert!(Role::User.can(Permission::AskQuestions));
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("root".parse::<Role>().is_err());
    }
}
