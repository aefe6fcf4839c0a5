mod audit;
mod auth;
mod health;
mod users;

pub(crate) use audit::{AuditEventDto, AuditPage};
pub(crate) use auth::{LoginRequest, LogoutRequest, RefreshRequest, TokenResponse};
pub(crate) use users::{ChangePasswordRequest, CreateUserRequest, PatchUserRequest, UpdateProfileRequest, UserDto, UserPage};

use crate::{ApiError, AppState};
use axum::routing::{get, post, put};
use axum::Router;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/api/auth/login", post(auth::login))
        .route("/api/auth/refresh", post(auth::refresh))
        .route("/api/auth/logout", post(auth::logout))
        .route("/api/users/profile", get(users::get_profile).put(users::update_profile))
        .route("/api/users/profile/password", put(users::change_password))
        .route("/api/users", get(users::list_users).post(users::create_user))
        .route("/api/users/{id}", get(users::get_user).patch(users::patch_user))
        .route("/api/audit/events", get(audit::events))
        .route("/api/audit/{aggregate_type}/{aggregate_id}", get(audit::history))
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}

pub(crate) use auth::__path_login;
pub(crate) use auth::__path_logout;
pub(crate) use auth::__path_refresh;
pub(crate) use audit::__path_events;
pub(crate) use audit::__path_history;
pub(crate) use health::__path_healthz;
pub(crate) use health::__path_readyz;
pub(crate) use users::{
    __path_change_password, __path_create_user, __path_get_profile, __path_get_user, __path_list_users,
    __path_patch_user, __path_update_profile,
};
