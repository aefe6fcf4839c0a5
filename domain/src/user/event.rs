//! Events of the User aggregate. Payloads are versioned (`event_version`); a change of shape bumps the
//! version and adds an upcaster (see `commands::upcast`). The JSON of each is documented in
//! docs/events.md for NATS integrators.

use crate::values::{Email, Username};
use crate::Role;
use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserEvent {
    UserRegistered {
        user_id: Uuid,
        username: Username,
        email: Email,
        display_name: String,
        role: Role,
        /// argon2id PHC string; redacted whenever a payload leaves the store.
        password_hash: String,
    },
    /// Only the fields that changed are present.
    ProfileUpdated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        email: Option<Email>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        display_name: Option<String>,
    },
    PasswordChanged {
        password_hash: String,
    },
    RoleChanged {
        role: Role,
    },
    UserDeactivated,
    UserActivated,
    /// `user_agent` and `address`: the client that logged in, as it said (absent in older events).
    SessionStarted {
        session_id: Uuid,
        expires_at: DateTime<Utc>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_agent: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<String>,
    },
    SessionRefreshed {
        session_id: Uuid,
        generation: u32,
        expires_at: DateTime<Utc>,
        /// Absent in older events.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refreshed_at: Option<DateTime<Utc>>,
    },
    SessionEnded {
        session_id: Uuid,
        reason: SessionEndReason,
    },
    /// A named API key: `prefix` is its first characters, shown to tell keys apart; `secret_hash` the hex
    /// SHA-256 of the whole secret (which is shown once, to its creator, and never stored); redacted
    /// whenever a payload leaves the store.
    ApiKeyCreated {
        key_id: Uuid,
        name: String,
        prefix: String,
        secret_hash: String,
        created_at: DateTime<Utc>,
    },
    /// `by`: who revoked it (its owner, or an admin).
    ApiKeyRevoked {
        key_id: Uuid,
        by: Uuid,
    },
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEndReason {
    Logout,
    /// An already rotated refresh token was presented: the whole family is revoked.
    RefreshTokenReuse,
    PasswordChanged,
    Deactivated,
    /// Ended by its user (from this or another session).
    Revoked,
    /// Ended by an admin.
    RevokedByAdmin,
    /// Past its expiry: forgotten at the user's next login.
    Expired,
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            UserEvent::UserRegistered { .. } => "UserRegistered",
            UserEvent::ProfileUpdated { .. } => "ProfileUpdated",
            UserEvent::PasswordChanged { .. } => "PasswordChanged",
            UserEvent::RoleChanged { .. } => "RoleChanged",
            UserEvent::UserDeactivated => "UserDeactivated",
            UserEvent::UserActivated => "UserActivated",
            UserEvent::SessionStarted { .. } => "SessionStarted",
            UserEvent::SessionRefreshed { .. } => "SessionRefreshed",
            UserEvent::SessionEnded { .. } => "SessionEnded",
            UserEvent::ApiKeyCreated { .. } => "ApiKeyCreated",
            UserEvent::ApiKeyRevoked { .. } => "ApiKeyRevoked",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
