//! Roles and the one permission table of the platform. Every endpoint names the permission it needs;
//! this table says which roles hold it. The README documents the same table. The ownership rule (who may see
//! a thing someone owns) is written once here, in [`Actor::may_see`].

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

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
            ManageUsers | ReadAudit | ReadAllDatasets | ReadAllTraining | ReadAllModels | ReadAllAlerts => {
                self == Role::Admin
            }
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
    /// Every user's models, deployed or not (others see their own, and every deployed one).
    ReadAllModels,
    /// Alerts: admins see and handle every alert, trainers those of their own tasks and models.
    ManageAlerts,
    /// Every alert, including those of the system and of other users' tasks and models.
    ReadAllAlerts,
}

/// The kinds of things a user owns, each with the permission that shows those of others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owned {
    Dataset,
    TrainingTask,
    Model,
    Alert,
}

impl Owned {
    /// The permission that lets an actor see every user's things of this kind.
    pub fn read_all(self) -> Permission {
        match self {
            Owned::Dataset => Permission::ReadAllDatasets,
            Owned::TrainingTask => Permission::ReadAllTraining,
            Owned::Model => Permission::ReadAllModels,
            Owned::Alert => Permission::ReadAllAlerts,
        }
    }
}

/// Who issues a command or a query: a user and their role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub id: Uuid,
    pub role: Role,
}

impl Actor {
    /// Whether the actor's role holds `permission`.
    pub fn can(&self, permission: Permission) -> bool {
        self.role.can(permission)
    }

    /// The ownership rule: an owner sees their own things, and a role with the kind's read-all permission
    /// sees everyone's (a thing without an owner, such as a system alert, only the latter).
    pub fn may_see(&self, kind: Owned, owner: Option<Uuid>) -> bool {
        owner == Some(self.id) || self.role.can(kind.read_all())
    }

    /// The owner a list of `kind` is narrowed to: the actor, unless they may see everyone's.
    pub fn only_own(&self, kind: Owned) -> Option<Uuid> {
        (!self.role.can(kind.read_all())).then_some(self.id)
    }
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
    fn owners_see_their_own_things_and_admins_see_everyone_s() {
        let (owner, other) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let trainer = Actor { id: owner, role: Role::Trainer };
        let admin = Actor { id: other, role: Role::Admin };
        for kind in [Owned::Dataset, Owned::TrainingTask, Owned::Model, Owned::Alert] {
            assert!(trainer.may_see(kind, Some(owner)));
            assert!(!trainer.may_see(kind, Some(other)), "{kind:?}");
            assert!(!trainer.may_see(kind, None), "{kind:?}: a thing without an owner");
            assert!(admin.may_see(kind, Some(owner)) && admin.may_see(kind, None), "{kind:?}");
            assert_eq!(trainer.only_own(kind), Some(owner));
            assert_eq!(admin.only_own(kind), None);
        }
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("root".parse::<Role>().is_err());
    }
}
