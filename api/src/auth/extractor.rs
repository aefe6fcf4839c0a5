use crate::{ApiError, AppState};
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use bonsai_domain::{Permission, Role};
use uuid::Uuid;

/// An authenticated, active user. Its role comes from the users view, not the token, so a role
/// change or a deactivation takes effect on the next request, not at token expiry. A caller with an API key
/// (see [`super::api_keys`]) acts with its owner's role as the User aggregate has it.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: Uuid,
    pub username: String,
    pub role: Role,
    /// The session of the access token; nil for an API key.
    pub session_id: Uuid,
    /// When the user was created; for an API key, when the key was (its callers reach no profile).
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The API key the request came with, if it came with one rather than an access token.
    pub api_key: Option<Uuid>,
}

impl AuthUser {
    /// The user as the domain's commands and the ownership rule take them.
    pub fn actor(&self) -> bonsai_domain::Actor {
        bonsai_domain::Actor { id: self.id, role: self.role }
    }

    /// 403 unless the user's role holds `permission` (the one table: `Role::can`).
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.role.can(permission) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("the {} role may not do this", self.role)))
        }
    }
}

/// The `access_token` query parameter of a streaming endpoint (a task's `/events` or `/ws`), which browsers
/// open without headers; every other endpoint takes the token from the Authorization header only, so
/// tokens stay out of ordinary URLs.
fn query_token(parts: &Parts) -> Option<String> {
    let path = parts.uri.path();
    if !(path.ends_with("/events") || path.ends_with("/ws")) || !path.starts_with("/api/training/tasks/") {
        return None;
    }
    let query = parts.uri.query()?;
    query.split('&').find_map(|pair| pair.strip_prefix("access_token=")).map(|t| t.to_owned())
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = match parts.headers.get(header::AUTHORIZATION) {
            Some(header) => {
                header.to_str().ok().and_then(|h| h.strip_prefix("Bearer ")).map(str::to_owned).ok_or_else(|| {
                    ApiError::unauthenticated("invalid_token", "the Authorization header is not 'Bearer <token>'")
                })?
            }
            None => query_token(parts).ok_or_else(|| {
                ApiError::unauthenticated("missing_token", "an Authorization: Bearer token is required")
            })?,
        };
        let token = token.trim();
        if super::api_keys::is_api_key(token) {
            return state.api_keys.authenticate(state, parts.uri.path(), token).await;
        }
        let claims = state.tokens.verify_access(token).map_err(|e| {
            // The library's words (which algorithm, which claim) are for the log, not for whoever sent it.
            tracing::info!(error = %e, "access token refused");
            match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::unauthenticated("token_expired", "the access token has expired")
                }
                _ => ApiError::unauthenticated("invalid_token", "invalid token"),
            }
        })?;
        match state.user_cache.session_ended(claims.sid).as_deref() {
            // Deactivation ends every session; the account's state is the answer that helps.
            Some("deactivated") => {
                return Err(ApiError::unauthenticated("account_disabled", "this account is deactivated"));
            }
            Some(_) => {
                return Err(ApiError::unauthenticated("session_ended", "this session was signed out; log in again"))
            }
            None => {}
        }
        let remember = state.tokens.access_ttl.to_std().unwrap_or_default();
        if !state.sessions.exists(state, claims.sub, claims.sid, remember).await? {
            tracing::info!(user = %claims.sub, session = %claims.sid, "access token names no session of its user");
            return Err(ApiError::unauthenticated("invalid_token", "invalid token"));
        }
        let row = state
            .user_cache
            .find(&state.pool, claims.sub)
            .await?
            .ok_or_else(|| ApiError::unauthenticated("invalid_token", "invalid token"))?;
        if !row.is_active {
            return Err(ApiError::unauthenticated("account_disabled", "this account is deactivated"));
        }
        state.limits.request(row.id).await.map_err(ApiError::rate_limited)?;
        let role = row.role.parse().map_err(ApiError::Internal)?;
        Ok(AuthUser {
            id: row.id,
            username: row.username,
            role,
            session_id: claims.sid,
            created_at: row.created_at,
            api_key: None,
        })
    }
}
