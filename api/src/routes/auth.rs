use crate::auth::RefreshToken;
use crate::auth::{end_sessions, rate_limit_gate};
use crate::extract::{ApiJson, ClientIp, Correlation};
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use bonsai_commands::CommandMetadata;
use bonsai_domain::user::{user_id_for, SessionEndReason, UserCommand, UserError};
use bonsai_domain::values::{Password, Username};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogoutRequest {
    pub refresh_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
}

fn tokens(state: &AppState, token: RefreshToken) -> TokenResponse {
    TokenResponse {
        access_token: state.tokens.issue_access(token.user_id, token.session_id, Utc::now()),
        refresh_token: state.tokens.issue_refresh(token),
        token_type: "Bearer",
        expires_in: state.tokens.access_ttl.num_seconds(),
    }
}

fn bad_credentials() -> ApiError {
    UserError::InvalidCredentials.into()
}

/// Signs in: an access token and a refresh token (which rotates on every use).
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest, responses(
    (status = 200, body = TokenResponse), (status = 401, description = "invalid_credentials", body = crate::ErrorBody),
    (status = 403, description = "account deactivated", body = crate::ErrorBody),
    (status = 429, description = "too many failed logins (Retry-After)", body = crate::ErrorBody)))]
#[tracing::instrument(skip_all, fields(username = %body.username))]
pub(crate) async fn login(
    State(state): State<AppState>,
    ClientIp(address): ClientIp,
    Correlation(correlation): Correlation,
    headers: axum::http::HeaderMap,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    rate_limit_gate(&state, &body.username, &address).await?;
    // A name or password that could never be valid is a failed login like any other: the answer
    // must not tell which part was wrong.
    let (Ok(username), Ok(password)) = (Username::parse(&body.username), Password::parse(&body.password)) else {
        state.limits.login_failed(&body.username, &address).await;
        return Err(bad_credentials());
    };
    let user_id = user_id_for(&username);
    let session_id = Uuid::now_v7();
    let now = Utc::now();
    let user_agent = headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let command = UserCommand::StartSession {
        password,
        session_id,
        now,
        expires_at: now + state.tokens.refresh_ttl,
        user_agent,
        address: Some(address.clone()),
    };
    match state.commands.execute(user_id, command, &CommandMetadata::new(Some(user_id), correlation)).await {
        Ok(()) => {
            state.limits.login_succeeded(&body.username).await;
            Ok(Json(tokens(&state, RefreshToken { user_id, session_id, generation: 0 })))
        }
        Err(e) => {
            if matches!(e, bonsai_commands::CommandError::User(UserError::InvalidCredentials)) {
                state.limits.login_failed(&body.username, &address).await;
            }
            Err(e.into())
        }
    }
}

/// Exchanges a refresh token for new tokens. The presented token stops working; presenting it again
/// revokes the whole session.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", request_body = RefreshRequest, responses(
    (status = 200, body = TokenResponse),
    (status = 401, description = "invalid_refresh_token or refresh_token_reused", body = crate::ErrorBody)))]
pub(crate) async fn refresh(
    State(state): State<AppState>,
    Correlation(correlation): Correlation,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let token = state
        .tokens
        .verify_refresh(&body.refresh_token)
        .ok_or_else(|| ApiError::unauthenticated("invalid_refresh_token", "the refresh token is not valid"))?;
    let meta = CommandMetadata::new(Some(token.user_id), correlation);
    let now = Utc::now();
    let command = UserCommand::RefreshSession {
        session_id: token.session_id,
        generation: token.generation,
        now,
        expires_at: now + state.tokens.refresh_ttl,
    };
    match state.commands.execute(token.user_id, command, &meta).await {
        Ok(()) => Ok(Json(tokens(&state, RefreshToken { generation: token.generation + 1, ..token }))),
        Err(bonsai_commands::CommandError::User(UserError::RefreshTokenReused)) => {
            // A stolen token may be in use: end the session, so neither copy works any more.
            let end =
                UserCommand::EndSession { session_id: token.session_id, reason: SessionEndReason::RefreshTokenReuse };
            end_sessions(&state, token.user_id, end, &meta).await?;
            Err(UserError::RefreshTokenReused.into())
        }
        Err(bonsai_commands::CommandError::User(UserError::NotFound)) => Err(UserError::SessionInvalid.into()),
        Err(e) => Err(e.into()),
    }
}

/// Ends the session of a refresh token.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", request_body = LogoutRequest, responses(
    (status = 204, description = "session ended"), (status = 401, body = crate::ErrorBody)))]
pub(crate) async fn logout(
    State(state): State<AppState>,
    Correlation(correlation): Correlation,
    ApiJson(body): ApiJson<LogoutRequest>,
) -> Result<StatusCode, ApiError> {
    let token = state
        .tokens
        .verify_refresh(&body.refresh_token)
        .ok_or_else(|| ApiError::unauthenticated("invalid_refresh_token", "the refresh token is not valid"))?;
    let end = UserCommand::EndSession { session_id: token.session_id, reason: SessionEndReason::Logout };
    end_sessions(&state, token.user_id, end, &CommandMetadata::new(Some(token.user_id), correlation)).await?;
    Ok(StatusCode::NO_CONTENT)
}
