//! The User aggregate: identity, profile, role, activation, login sessions (refresh-token families) and API
//! keys (their hashes: the secret never reaches the store).
//!
//! A user's aggregate id is derived from the username ([`user_id_for`]), so "username taken" is decided
//! by the event store's optimistic concurrency itself, with no read model in the way.

mod command;
mod event;
mod services;
#[cfg(test)]
mod tests;

pub use command::{UserCommand, MAX_API_KEYS, MAX_USER_AGENT_CHARS};
pub use event::{SessionEndReason, UserEvent};
pub use services::UserServices;

use crate::values::{Email, Username};
use crate::Role;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use uuid::Uuid;

/// The namespace of username-derived user ids.
const USER_NAMESPACE: Uuid = Uuid::from_u128(0x6b0a_5a1e_0000_4b0b_9a1d_b0a5_a1b0_a5a1);

/// The aggregate id of the user called `username`.
pub fn user_id_for(username: &Username) -> Uuid {
    Uuid::new_v5(&USER_NAMESPACE, username.as_str().as_bytes())
}

/// Errors a user command can be refused with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("a user with this username already exists")]
    AlreadyExists,
    #[error("no such user")]
    NotFound,
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("this account is deactivated")]
    Inactive,
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("the session is unknown, ended or expired")]
    SessionInvalid,
    #[error("the refresh token was already used")]
    RefreshTokenReused,
    #[error("an admin cannot demote or deactivate themselves")]
    SelfLockout,
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error("an API key name is 1 to 100 characters, without control characters")]
    InvalidApiKeyName,
    #[error("at most {MAX_API_KEYS} API keys may be live at once; revoke one first")]
    TooManyApiKeys,
    #[error("an API key with this id already exists")]
    ApiKeyExists,
    #[error("no such API key")]
    UnknownApiKey,
    #[error("this API key is already revoked")]
    ApiKeyRevoked,
}

/// A live login session: the generation of its one valid refresh token, and when it expires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub generation: u32,
    pub expires_at: DateTime<Utc>,
    #[serde(default)]
    pub last_refreshed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
}

impl Session {
    /// When it started: session ids are UUID v7, which carry their creation time.
    pub fn started_at(id: Uuid) -> Option<DateTime<Utc>> {
        let (seconds, nanos) = id.get_timestamp()?.to_unix();
        DateTime::from_timestamp(seconds as i64, nanos)
    }
}

/// The state the User aggregate decides on.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: Option<Uuid>,
    pub username: Option<Username>,
    pub email: Option<Email>,
    pub display_name: String,
    pub role: Option<Role>,
    pub active: bool,
    pub password_hash: String,
    pub sessions: HashMap<Uuid, Session>,
    /// Live API keys, by id (absent in snapshots from before keys).
    #[serde(default)]
    pub api_keys: BTreeMap<Uuid, ApiKey>,
    /// Ids of revoked keys: revoking one again is told apart from an unknown key.
    #[serde(default)]
    pub revoked_api_keys: BTreeSet<Uuid>,
}

/// A live API key of a user: what lists show, and the hash its secret is checked against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub name: String,
    pub prefix: String,
    /// Hex SHA-256 of the secret.
    pub secret_hash: String,
    pub created_at: DateTime<Utc>,
}

impl User {
    fn exists(&self) -> bool {
        self.id.is_some()
    }
}

impl Aggregate for User {
    const TYPE: &'static str = "User";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = Box<dyn UserServices>;

    async fn handle(
        &mut self,
        command: Self::Command,
        services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = command::decide(self, command, services.as_ref()).await?;
        for event in events {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            UserEvent::UserRegistered { user_id, username, email, display_name, role, password_hash } => {
                self.id = Some(user_id);
                self.username = Some(username);
                self.email = Some(email);
                self.display_name = display_name;
                self.role = Some(role);
                self.active = true;
                self.password_hash = password_hash;
            }
            UserEvent::ProfileUpdated { email, display_name } => {
                if let Some(email) = email {
                    self.email = Some(email);
                }
                if let Some(name) = display_name {
                    self.display_name = name;
                }
            }
            UserEvent::PasswordChanged { password_hash } => self.password_hash = password_hash,
            UserEvent::RoleChanged { role } => self.role = Some(role),
            UserEvent::UserDeactivated => self.active = false,
            UserEvent::UserActivated => self.active = true,
            UserEvent::SessionStarted { session_id, expires_at, user_agent, address } => {
                let session = Session { generation: 0, expires_at, last_refreshed_at: None, user_agent, address };
                self.sessions.insert(session_id, session);
            }
            UserEvent::SessionRefreshed { session_id, generation, expires_at, refreshed_at } => {
                let session = self.sessions.entry(session_id).or_insert_with(|| Session {
                    generation,
                    expires_at,
                    last_refreshed_at: None,
                    user_agent: None,
                    address: None,
                });
                session.generation = generation;
                session.expires_at = expires_at;
                session.last_refreshed_at = refreshed_at;
            }
            UserEvent::SessionEnded { session_id, .. } => {
                self.sessions.remove(&session_id);
            }
            UserEvent::ApiKeyCreated { key_id, name, prefix, secret_hash, created_at } => {
                self.api_keys.insert(key_id, ApiKey { name, prefix, secret_hash, created_at });
            }
            UserEvent::ApiKeyRevoked { key_id, .. } => {
                self.api_keys.remove(&key_id);
                self.revoked_api_keys.insert(key_id);
            }
        }
    }
}
