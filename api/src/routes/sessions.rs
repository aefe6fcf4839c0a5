//! Session management (design 2.1): a user's login sessions (one per login, each a refresh-token family),
//! read from the User aggregate's own events, listed and signed out one by one or all at once; admins
//! sign a user out everywhere. An ended session's refresh token stops working at once, and its access
//! tokens are refused from the next request on (every node hears of the `SessionEnded` event).

use crate::auth::AuthUser;
use crate::extract::{ApiPath, Correlation};
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use bonsai_commands::CommandMetadata;
use bonsai_domain::user::{Session, SessionEndReason, UserCommand};
use bonsai_domain::Permission;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionDto {
    pub id: Uuid,
    pub started_at: Option<DateTime<Utc>>,
    /// When its refresh token was last used.
    pub last_refreshed_at: Option<DateTime<Utc>>,
    /// When it ends unless refreshed.
    pub expires_at: DateTime<Utc>,
    /// The client that logged in, as it said.
    pub user_agent: Option<String>,
    pub address: Option<String>,
    /// The session of the token that asks.
    pub current: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionList {
    /// Most recently started first.
    pub items: Vec<SessionDto>,
}

/// Your live sessions (logins), most recent first.
#[utoipa::path(get, path = "/api/users/profile/sessions", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = SessionList)))]
pub(crate) async fn list_sessions(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<SessionList>, ApiError> {
    user.require(Permission::ReadOwnProfile)?;
    let now = Utc::now();
    let account = state.commands.load::<bonsai_domain::user::User>(user.id).await?;
    let mut items: Vec<SessionDto> = account
        .sessions
        .iter()
        .filter(|(_, s)| s.expires_at > now)
        .map(|(id, s)| SessionDto {
            id: *id,
            started_at: Session::started_at(*id),
            last_refreshed_at: s.last_refreshed_at,
            expires_at: s.expires_at,
            user_agent: s.user_agent.clone(),
            address: s.address.clone(),
            current: *id == user.session_id,
        })
        .collect();
    items.sort_by_key(|s| std::cmp::Reverse(s.id));
    Ok(Json(SessionList { items }))
}

async fn end(
    state: &AppState,
    user_id: Uuid,
    by: Uuid,
    correlation: String,
    command: UserCommand,
) -> Result<(), ApiError> {
    // This node refuses the ended sessions' access tokens before it answers.
    crate::auth::end_sessions(state, user_id, command, &CommandMetadata::new(Some(by), correlation)).await?;
    Ok(())
}

/// Signs one of your sessions out (another device, or this one).
#[utoipa::path(delete, path = "/api/users/profile/sessions/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "session id")),
    responses((status = 204, description = "signed out"), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn end_session(
    State(state): State<AppState>,
    user: AuthUser,
    Correlation(correlation): Correlation,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    user.require(Permission::UpdateOwnProfile)?;
    let account = state.commands.load::<bonsai_domain::user::User>(user.id).await?;
    if account.sessions.get(&id).is_none_or(|s| s.expires_at <= Utc::now()) {
        return Err(ApiError::NotFound("no such session".into()));
    }
    let command = UserCommand::EndSession { session_id: id, reason: SessionEndReason::Revoked };
    end(&state, user.id, user.id, correlation, command).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Signs out every session of yours but this one.
#[utoipa::path(delete, path = "/api/users/profile/sessions", tag = "users", security(("bearer" = [])),
    responses((status = 204, description = "signed out everywhere else")))]
pub(crate) async fn end_other_sessions(
    State(state): State<AppState>,
    user: AuthUser,
    Correlation(correlation): Correlation,
) -> Result<StatusCode, ApiError> {
    user.require(Permission::UpdateOwnProfile)?;
    let command = UserCommand::EndAllSessions { reason: SessionEndReason::Revoked, except: Some(user.session_id) };
    end(&state, user.id, user.id, correlation, command).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Signs a user out everywhere (admin).
#[utoipa::path(delete, path = "/api/users/{id}/sessions", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "user id")),
    responses((status = 204, description = "signed out everywhere"), (status = 403, body = crate::ErrorBody),
    (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn end_user_sessions(
    State(state): State<AppState>,
    admin: AuthUser,
    Correlation(correlation): Correlation,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    admin.require(Permission::ManageUsers)?;
    let command = UserCommand::EndAllSessions { reason: SessionEndReason::RevokedByAdmin, except: None };
    end(&state, id, admin.id, correlation, command).await?;
    Ok(StatusCode::NO_CONTENT)
}
