//! API keys of the signed-in user (create, list, revoke) and of any user (admin: list, revoke). Creating and
//! revoking are User commands, so both are events in the audit log; the list is read from the User aggregate
//! (never behind) with each key's last use from `api_key_usage`. The secret is in the creation's answer
//! only. How keys authenticate: `crate::auth::api_keys`.

use crate::auth::{api_keys, AuthUser};
use crate::extract::{ApiJson, ApiPath, Correlation};
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use bonsai_commands::CommandMetadata;
use bonsai_domain::user::{User, UserCommand, UserError};
use bonsai_domain::Permission;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Where the signed-in user's keys are.
pub(crate) const API_KEYS_PATH: &str = "/api/users/profile/api-keys";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateApiKeyRequest {
    /// What the key is for (trimmed; 1 to 100 characters, no control characters).
    #[schema(min_length = 1, max_length = 100, example = "ci pipeline")]
    pub name: String,
}

/// A key just created: `secret` is shown here once and stored nowhere (only its hash is kept).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedApiKey {
    pub id: Uuid,
    pub name: String,
    /// The secret's first characters, as lists show them.
    #[schema(example = "bsk_4fQx9ZtA")]
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    /// Use as `Authorization: Bearer <secret>` on `/v1/*` and `/api/qa/*`.
    pub secret: String,
}

/// A live key, without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ApiKeyDto {
    pub id: Uuid,
    pub name: String,
    #[schema(example = "bsk_4fQx9ZtA")]
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    /// Absent until it is first used; updated at most once a minute.
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ApiKeyList {
    /// Oldest first.
    pub items: Vec<ApiKeyDto>,
}

async fn list_of(state: &AppState, user: Uuid) -> Result<ApiKeyList, ApiError> {
    let account = state.commands.load::<User>(user).await?;
    if account.id.is_none() {
        return Err(UserError::NotFound.into());
    }
    let used = api_keys::last_used(&state.pool, user).await.map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut items: Vec<ApiKeyDto> = account
        .api_keys
        .into_iter()
        .map(|(id, key)| ApiKeyDto {
            id,
            name: key.name,
            prefix: key.prefix,
            created_at: key.created_at,
            last_used_at: used.get(&id).copied(),
        })
        .collect();
    items.sort_by_key(|k| (k.created_at, k.id));
    Ok(ApiKeyList { items })
}

/// Revokes `key` of `user`; refused by this node before it answers, by the others as they hear of it.
async fn revoke(state: &AppState, user: Uuid, key: Uuid, by: Uuid, correlation: String) -> Result<(), ApiError> {
    let meta = CommandMetadata::new(Some(by), correlation);
    state.commands.execute(user, UserCommand::RevokeApiKey { key_id: key, by }, &meta).await?;
    state.api_keys.refresh(state, user).await?;
    Ok(())
}

/// Creates an API key for the signed-in user; the answer holds its secret, shown this once.
#[utoipa::path(post, path = "/api/users/profile/api-keys", tag = "users", security(("bearer" = [])),
    request_body = CreateApiKeyRequest,
    responses((status = 201, body = CreatedApiKey),
    (status = 409, description = "too_many_api_keys", body = crate::ErrorBody),
    (status = 422, description = "validation_failed (name)", body = crate::ErrorBody)))]
pub(crate) async fn create_api_key(
    State(state): State<AppState>,
    user: AuthUser,
    Correlation(correlation): Correlation,
    ApiJson(body): ApiJson<CreateApiKeyRequest>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    user.require(Permission::UpdateOwnProfile)?;
    let key_id = Uuid::now_v7();
    let new = api_keys::new_secret(user.id);
    let command = UserCommand::CreateApiKey {
        key_id,
        name: body.name,
        prefix: new.prefix.clone(),
        secret_hash: new.hash,
        now: Utc::now(),
    };
    let meta = CommandMetadata::new(Some(user.id), correlation);
    let after = state.commands.execute_and_get(user.id, command, &meta).await?;
    let key = after.api_keys.get(&key_id).ok_or_else(|| ApiError::Internal("the created key is missing".into()))?;
    let created = CreatedApiKey {
        id: key_id,
        name: key.name.clone(),
        prefix: new.prefix,
        created_at: key.created_at,
        secret: new.secret,
    };
    Ok((StatusCode::CREATED, Json(created)))
}

/// The signed-in user's live API keys (no secrets).
#[utoipa::path(get, path = "/api/users/profile/api-keys", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = ApiKeyList), (status = 401, body = crate::ErrorBody)))]
pub(crate) async fn list_api_keys(State(state): State<AppState>, user: AuthUser) -> Result<Json<ApiKeyList>, ApiError> {
    user.require(Permission::ReadOwnProfile)?;
    Ok(Json(list_of(&state, user.id).await?))
}

/// Revokes one of the signed-in user's API keys: it is refused from now on, on every node.
#[utoipa::path(delete, path = "/api/users/profile/api-keys/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "key id")),
    responses((status = 204, description = "revoked"), (status = 404, body = crate::ErrorBody),
    (status = 409, description = "api_key_revoked", body = crate::ErrorBody)))]
pub(crate) async fn revoke_api_key(
    State(state): State<AppState>,
    user: AuthUser,
    Correlation(correlation): Correlation,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    user.require(Permission::UpdateOwnProfile)?;
    revoke(&state, user.id, id, user.id, correlation).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A user's live API keys (admin).
#[utoipa::path(get, path = "/api/users/{id}/api-keys", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "user id")),
    responses((status = 200, body = ApiKeyList), (status = 403, body = crate::ErrorBody),
    (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn list_user_api_keys(
    State(state): State<AppState>,
    admin: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<ApiKeyList>, ApiError> {
    admin.require(Permission::ManageUsers)?;
    Ok(Json(list_of(&state, id).await?))
}

/// Revokes a user's API key (admin); the event names the admin.
#[utoipa::path(delete, path = "/api/users/{id}/api-keys/{key_id}", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "user id"), ("key_id" = Uuid, Path, description = "key id")),
    responses((status = 204, description = "revoked"), (status = 403, body = crate::ErrorBody),
    (status = 404, body = crate::ErrorBody), (status = 409, description = "api_key_revoked", body = crate::ErrorBody)))]
pub(crate) async fn revoke_user_api_key(
    State(state): State<AppState>,
    admin: AuthUser,
    Correlation(correlation): Correlation,
    ApiPath((id, key_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    admin.require(Permission::ManageUsers)?;
    revoke(&state, id, key_id, admin.id, correlation).await?;
    Ok(StatusCode::NO_CONTENT)
}
