//! Commands of the User aggregate and the decisions they lead to.

use super::{SessionEndReason, User, UserError, UserEvent, UserServices};
use crate::values::{DisplayName, Email, Password, Username};
use crate::Role;
use chrono::{DateTime, Utc};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub enum UserCommand {
    Register {
        username: Username,
        email: Email,
        display_name: Option<DisplayName>,
        password: Password,
        role: Role,
    },
    UpdateProfile {
        email: Option<Email>,
        display_name: Option<DisplayName>,
    },
    /// Self-service change: the current password must match. Every session ends.
    ChangePassword {
        current: Password,
        new: Password,
    },
    /// `by` is the acting admin: an admin may not demote themselves (the last way back in).
    ChangeRole {
        role: Role,
        by: Uuid,
    },
    SetActive {
        active: bool,
        by: Uuid,
    },
    /// Login: checks the password and opens a session whose refresh token has generation 0; sessions past
    /// their expiry are forgotten (so a user's state stays as small as their live sessions).
    StartSession {
        password: Password,
        session_id: Uuid,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        /// The client, as it said (kept to its first 256 characters).
        user_agent: Option<String>,
        address: Option<String>,
    },
    /// Rotation: `generation` is the presented token's; the next token gets `generation + 1`.
    RefreshSession {
        session_id: Uuid,
        generation: u32,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    },
    /// Ends a session; ending one that is not live is a no-op.
    EndSession {
        session_id: Uuid,
        reason: SessionEndReason,
    },
    /// Ends every live session but `except` (sign out everywhere else, or everywhere).
    EndAllSessions {
        reason: SessionEndReason,
        except: Option<Uuid>,
    },
    /// A new API key. The secret is made (and shown) by the caller: the aggregate keeps its hash only.
    /// `name` is checked here (a thing name: 1 to 100 characters, no control characters).
    CreateApiKey {
        key_id: Uuid,
        name: String,
        prefix: String,
        secret_hash: String,
        now: DateTime<Utc>,
    },
    /// `by`: the owner or an admin (the caller checks which may).
    RevokeApiKey {
        key_id: Uuid,
        by: Uuid,
    },
}

/// The most live (unrevoked) API keys a user may hold.
pub const MAX_API_KEYS: usize = 20;

/// The most characters of a client's user agent kept with its session.
pub const MAX_USER_AGENT_CHARS: usize = 256;

pub(super) async fn decide(
    user: &User,
    command: UserCommand,
    services: &dyn UserServices,
) -> Result<Vec<UserEvent>, UserError> {
    if let UserCommand::Register { username, email, display_name, password, role } = command {
        if user.exists() {
            return Err(UserError::AlreadyExists);
        }
        let password_hash = services.hash_password(&password).await?;
        return Ok(vec![UserEvent::UserRegistered {
            user_id: super::user_id_for(&username),
            username,
            email,
            display_name: display_name.map(String::from).unwrap_or_default(),
            role,
            password_hash,
        }]);
    }
    let Some(user_id) = user.id else {
        return Err(match command {
            UserCommand::StartSession { .. } => UserError::InvalidCredentials,
            _ => UserError::NotFound,
        });
    };
    match command {
        UserCommand::Register { .. } => unreachable!("handled above"),
        UserCommand::UpdateProfile { email, display_name } => {
            let email = email.filter(|e| Some(e) != user.email.as_ref());
            let display_name = display_name.map(String::from).filter(|d| *d != user.display_name);
            if email.is_none() && display_name.is_none() {
                return Ok(vec![]);
            }
            Ok(vec![UserEvent::ProfileUpdated { email, display_name }])
        }
        UserCommand::ChangePassword { current, new } => {
            if !services.verify_password(&current, &user.password_hash).await {
                return Err(UserError::WrongPassword);
            }
            let password_hash = services.hash_password(&new).await?;
            let mut events = vec![UserEvent::PasswordChanged { password_hash }];
            events.extend(end_all_sessions(user, SessionEndReason::PasswordChanged));
            Ok(events)
        }
        UserCommand::ChangeRole { role, by } => {
            if by == user_id && role != Role::Admin {
                return Err(UserError::SelfLockout);
            }
            if user.role == Some(role) {
                return Ok(vec![]);
            }
            Ok(vec![UserEvent::RoleChanged { role }])
        }
        UserCommand::SetActive { active, by } => {
            if by == user_id && !active {
                return Err(UserError::SelfLockout);
            }
            match (user.active, active) {
                (true, false) => {
                    let mut events = vec![UserEvent::UserDeactivated];
                    events.extend(end_all_sessions(user, SessionEndReason::Deactivated));
                    Ok(events)
                }
                (false, true) => Ok(vec![UserEvent::UserActivated]),
                _ => Ok(vec![]),
            }
        }
        UserCommand::StartSession { password, session_id, now, expires_at, user_agent, address } => {
            // The password is checked first, so that "deactivated" is only told to the owner.
            if !services.verify_password(&password, &user.password_hash).await {
                return Err(UserError::InvalidCredentials);
            }
            if !user.active {
                return Err(UserError::Inactive);
            }
            let mut expired: Vec<Uuid> =
                user.sessions.iter().filter(|(_, s)| s.expires_at <= now).map(|(id, _)| *id).collect();
            expired.sort();
            let mut events: Vec<UserEvent> = expired
                .into_iter()
                .map(|session_id| UserEvent::SessionEnded { session_id, reason: SessionEndReason::Expired })
                .collect();
            let user_agent = user_agent.map(|a| a.chars().take(MAX_USER_AGENT_CHARS).collect());
            events.push(UserEvent::SessionStarted { session_id, expires_at, user_agent, address });
            Ok(events)
        }
        UserCommand::RefreshSession { session_id, generation, now, expires_at } => {
            if !user.active {
                return Err(UserError::Inactive);
            }
            let session = user.sessions.get(&session_id).ok_or(UserError::SessionInvalid)?;
            if session.expires_at <= now {
                return Err(UserError::SessionInvalid);
            }
            if generation < session.generation {
                return Err(UserError::RefreshTokenReused);
            }
            if generation > session.generation {
                return Err(UserError::SessionInvalid);
            }
            Ok(vec![UserEvent::SessionRefreshed {
                session_id,
                generation: generation + 1,
                expires_at,
                refreshed_at: Some(now),
            }])
        }
        UserCommand::EndSession { session_id, reason } => {
            if !user.sessions.contains_key(&session_id) {
                return Ok(vec![]);
            }
            Ok(vec![UserEvent::SessionEnded { session_id, reason }])
        }
        UserCommand::EndAllSessions { reason, except } => Ok(end_all_sessions(user, reason)
            .filter(|e| !matches!(e, UserEvent::SessionEnded { session_id, .. } if Some(*session_id) == except))
            .collect()),
        UserCommand::CreateApiKey { key_id, name, prefix, secret_hash, now } => {
            if !user.active {
                return Err(UserError::Inactive);
            }
            let name = crate::values::thing_name(&name).ok_or(UserError::InvalidApiKeyName)?;
            if user.api_keys.contains_key(&key_id) || user.revoked_api_keys.contains(&key_id) {
                return Err(UserError::ApiKeyExists);
            }
            if user.api_keys.len() >= MAX_API_KEYS {
                return Err(UserError::TooManyApiKeys);
            }
            Ok(vec![UserEvent::ApiKeyCreated { key_id, name, prefix, secret_hash, created_at: now }])
        }
        UserCommand::RevokeApiKey { key_id, by } => {
            if user.revoked_api_keys.contains(&key_id) {
                return Err(UserError::ApiKeyRevoked);
            }
            if !user.api_keys.contains_key(&key_id) {
                return Err(UserError::UnknownApiKey);
            }
            Ok(vec![UserEvent::ApiKeyRevoked { key_id, by }])
        }
    }
}

fn end_all_sessions(user: &User, reason: SessionEndReason) -> impl Iterator<Item = UserEvent> + '_ {
    let mut ids: Vec<Uuid> = user.sessions.keys().copied().collect();
    ids.sort();
    ids.into_iter().map(move |session_id| UserEvent::SessionEnded { session_id, reason })
}
