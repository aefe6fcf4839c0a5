use crate::auth::AuthUser;
use crate::extract::{page_window, ApiJson, ApiPath, ApiQuery, Correlation};
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use bonsai_commands::CommandMetadata;
use bonsai_domain::user::{user_id_for, UserCommand};
use bonsai_domain::values::{DisplayName, Email, Password, Username};
use bonsai_domain::{Permission, Role};
use bonsai_projections::users::{self, UserRow};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// A user as the API shows it. There is no password hash here, nor anywhere else in the API.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserDto {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub display_name: String,
    #[schema(value_type = String, example = "trainer")]
    pub role: Role,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<UserRow> for UserDto {
    type Error = ApiError;
    fn try_from(r: UserRow) -> Result<Self, ApiError> {
        Ok(UserDto {
            id: r.id,
            username: r.username,
            email: r.email,
            display_name: r.display_name,
            role: r.role.parse().map_err(ApiError::Internal)?,
            is_active: r.is_active,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateProfileRequest {
    #[schema(max_length = 100)]
    pub email: Option<String>,
    #[schema(max_length = 100)]
    pub display_name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangePasswordRequest {
    pub current_password: String,
    #[schema(min_length = 8, max_length = 128)]
    pub new_password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUserRequest {
    /// 3 to 50 letters, digits, `_`, `.` or `-` (stored lower-case).
    #[schema(min_length = 3, max_length = 50, pattern = "^[A-Za-z0-9_.-]+$")]
    pub username: String,
    #[schema(max_length = 100)]
    pub email: String,
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
    #[schema(value_type = String, example = "user", pattern = "^(admin|trainer|user)$")]
    pub role: Role,
    #[schema(max_length = 100)]
    pub display_name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchUserRequest {
    #[schema(value_type = Option<String>, example = "trainer", pattern = "^(admin|trainer|user)$")]
    pub role: Option<Role>,
    pub is_active: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// 1-based page number (default 1).
    #[param(minimum = 1)]
    pub page: Option<i64>,
    /// 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub page_size: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserPage {
    pub items: Vec<UserDto>,
    pub total: i64,
    pub page: i64,
    pub page_size: i64,
}

fn parsed<T>(r: Result<T, bonsai_domain::values::InvalidValue>) -> Result<T, ApiError> {
    r.map_err(ApiError::invalid)
}

async fn ensure_email_free(state: &AppState, email: &Email, except: Option<Uuid>) -> Result<(), ApiError> {
    if users::email_taken(&state.pool, email.as_str(), except).await? {
        return Err(ApiError::Conflict { code: "email_taken", message: "another user has this e-mail address".into() });
    }
    Ok(())
}

async fn view_of(state: &AppState, id: Uuid) -> Result<UserRow, ApiError> {
    crate::fresh::current(state, "users", "User", id).await?;
    users::find(&state.pool, id).await?.ok_or_else(|| ApiError::NotFound("no such user".into()))
}

/// The signed-in user's profile.
#[utoipa::path(get, path = "/api/users/profile", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = UserDto), (status = 401, body = crate::ErrorBody)))]
pub(crate) async fn get_profile(State(state): State<AppState>, user: AuthUser) -> Result<Json<UserDto>, ApiError> {
    user.require(Permission::ReadOwnProfile)?;
    Ok(Json(view_of(&state, user.id).await?.try_into()?))
}

/// Changes the signed-in user's e-mail and/or display name; answers the profile as changed.
#[utoipa::path(put, path = "/api/users/profile", tag = "users", security(("bearer" = [])), request_body = UpdateProfileRequest,
    responses((status = 200, body = UserDto), (status = 409, description = "email_taken", body = crate::ErrorBody),
    (status = 422, description = "validation_failed", body = crate::ErrorBody)))]
pub(crate) async fn update_profile(
    State(state): State<AppState>,
    user: AuthUser,
    Correlation(correlation): Correlation,
    ApiJson(body): ApiJson<UpdateProfileRequest>,
) -> Result<Json<UserDto>, ApiError> {
    user.require(Permission::UpdateOwnProfile)?;
    let email = body.email.as_deref().map(Email::parse).transpose().map_err(ApiError::invalid)?;
    let display_name = body.display_name.as_deref().map(DisplayName::parse).transpose().map_err(ApiError::invalid)?;
    if let Some(email) = &email {
        ensure_email_free(&state, email, Some(user.id)).await?;
    }
    let command = UserCommand::UpdateProfile { email, display_name };
    let meta = CommandMetadata::new(Some(user.id), correlation);
    // Answered from the user's state as the command left it: the view may not show the change yet.
    let after = state.commands.execute_and_get(user.id, command, &meta).await?;
    let dto = UserDto {
        id: user.id,
        email: after.email.map(String::from).unwrap_or_default(),
        display_name: after.display_name,
        role: after.role.unwrap_or(user.role),
        is_active: after.active,
        username: user.username,
        created_at: user.created_at,
        updated_at: Utc::now(),
    };
    Ok(Json(dto))
}

/// Changes the signed-in user's password; every session of the user ends.
#[utoipa::path(put, path = "/api/users/profile/password", tag = "users", security(("bearer" = [])), request_body = ChangePasswordRequest,
    responses((status = 204, description = "changed"), (status = 422, description = "wrong_password or validation_failed", body = crate::ErrorBody)))]
pub(crate) async fn change_password(
    State(state): State<AppState>,
    user: AuthUser,
    Correlation(correlation): Correlation,
    ApiJson(body): ApiJson<ChangePasswordRequest>,
) -> Result<StatusCode, ApiError> {
    user.require(Permission::UpdateOwnProfile)?;
    let new = parsed(Password::parse(&body.new_password))?;
    let current = Password::parse(&body.current_password)
        .map_err(|_| ApiError::from(bonsai_domain::user::UserError::WrongPassword))?;
    let command = UserCommand::ChangePassword { current, new };
    crate::auth::end_sessions(&state, user.id, command, &CommandMetadata::new(Some(user.id), correlation)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// All users, a page at a time (admin).
#[utoipa::path(get, path = "/api/users", tag = "users", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = UserPage), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn list_users(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<UserPage>, ApiError> {
    user.require(Permission::ManageUsers)?;
    let (page, page_size) = page_window(query.page, query.page_size)?;
    let (rows, total) = users::list(&state.pool, page, page_size).await?;
    let items = rows.into_iter().map(UserDto::try_from).collect::<Result<_, _>>()?;
    Ok(Json(UserPage { items, total, page, page_size }))
}

/// Creates a user (admin).
#[utoipa::path(post, path = "/api/users", tag = "users", security(("bearer" = [])), request_body = CreateUserRequest,
    responses((status = 201, body = UserDto), (status = 403, body = crate::ErrorBody),
    (status = 409, description = "username_taken or email_taken", body = crate::ErrorBody),
    (status = 422, description = "validation_failed", body = crate::ErrorBody)))]
pub(crate) async fn create_user(
    State(state): State<AppState>,
    admin: AuthUser,
    Correlation(correlation): Correlation,
    ApiJson(body): ApiJson<CreateUserRequest>,
) -> Result<impl IntoResponse, ApiError> {
    admin.require(Permission::ManageUsers)?;
    let username = parsed(Username::parse(&body.username))?;
    let email = parsed(Email::parse(&body.email))?;
    let password = parsed(Password::parse(&body.password))?;
    let display_name = body.display_name.as_deref().map(DisplayName::parse).transpose().map_err(ApiError::invalid)?;
    ensure_email_free(&state, &email, None).await?;
    let id = user_id_for(&username);
    let command = UserCommand::Register {
        username: username.clone(),
        email: email.clone(),
        display_name: display_name.clone(),
        password,
        role: body.role,
    };
    state.commands.execute(id, command, &CommandMetadata::new(Some(admin.id), correlation)).await?;
    let now = Utc::now();
    let dto = UserDto {
        id,
        username: username.into(),
        email: email.into(),
        display_name: display_name.map(String::from).unwrap_or_default(),
        role: body.role,
        is_active: true,
        created_at: now,
        updated_at: now,
    };
    Ok((StatusCode::CREATED, [(header::LOCATION, format!("/api/users/{id}"))], Json(dto)))
}

/// One user (admin).
#[utoipa::path(get, path = "/api/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "user id")),
    responses((status = 200, body = UserDto), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn get_user(
    State(state): State<AppState>,
    admin: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<UserDto>, ApiError> {
    admin.require(Permission::ManageUsers)?;
    Ok(Json(view_of(&state, id).await?.try_into()?))
}

/// Changes a user's role and/or activation (admin). A deactivated user cannot sign in and their
/// tokens stop working at once.
#[utoipa::path(patch, path = "/api/users/{id}", tag = "users", security(("bearer" = [])), request_body = PatchUserRequest,
    params(("id" = Uuid, Path, description = "user id")),
    responses((status = 200, body = UserDto), (status = 404, body = crate::ErrorBody),
    (status = 422, description = "self_lockout", body = crate::ErrorBody)))]
pub(crate) async fn patch_user(
    State(state): State<AppState>,
    admin: AuthUser,
    Correlation(correlation): Correlation,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<PatchUserRequest>,
) -> Result<Json<UserDto>, ApiError> {
    admin.require(Permission::ManageUsers)?;
    let mut dto: UserDto = view_of(&state, id).await?.try_into()?;
    let meta = CommandMetadata::new(Some(admin.id), correlation);
    if let Some(role) = body.role {
        state.commands.execute(id, UserCommand::ChangeRole { role, by: admin.id }, &meta).await?;
        dto.role = role;
    }
    if let Some(active) = body.is_active {
        crate::auth::end_sessions(&state, id, UserCommand::SetActive { active, by: admin.id }, &meta).await?;
        dto.is_active = active;
    }
    if body.role.is_some() || body.is_active.is_some() {
        // The user's API keys act with the new role, or stop, on this node before it answers.
        state.api_keys.refresh(&state, id).await?;
    }
    dto.updated_at = Utc::now();
    Ok(Json(dto))
}

/// Erases a user's question history (admin; for a person's request to erase their data): every conversation
/// is cleared and its text erased; the audit log keeps the events, with the admin as the actor.
#[utoipa::path(delete, path = "/api/users/{id}/qa-history", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "user id")),
    responses((status = 200, body = super::qa::HistoryDeleted), (status = 403, body = crate::ErrorBody),
    (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn delete_user_history(
    State(state): State<AppState>,
    admin: AuthUser,
    Correlation(correlation): Correlation,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<super::qa::HistoryDeleted>, ApiError> {
    admin.require(Permission::ManageUsers)?;
    view_of(&state, id).await?;
    let by = admin.actor();
    let meta = CommandMetadata::new(Some(admin.id), correlation);
    Ok(Json(super::qa::clear_all(&state, id, by, &meta).await?))
}
