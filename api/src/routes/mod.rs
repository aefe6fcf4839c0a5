mod alerts;
mod api_keys;
mod audit;
mod auth;
mod datasets;
mod fine_tuning;
mod health;
mod models;
mod openai;
mod qa;
mod sessions;
pub(crate) mod training;
mod users;

pub(crate) use alerts::{AlertAccepted, AlertAction, AlertDto, AlertPage};
pub(crate) use api_keys::{ApiKeyDto, ApiKeyList, CreateApiKeyRequest, CreatedApiKey, API_KEYS_PATH};
pub(crate) use audit::{AuditEventDto, AuditPage};
pub(crate) use auth::{LoginRequest, LogoutRequest, RefreshRequest, TokenResponse};
pub(crate) use datasets::{
    DatasetDetail, DatasetDto, DatasetPage, NoFileStore, PreviewPage, UploadForm, ValidationAccepted, VersionDto,
};
pub(crate) use models::{
    AliasRequest, BaseModelDto, BaseModelList, ModelAccepted, ModelDto, ModelPage, RegisterModelRequest, Routing,
    TestRequest,
};
pub(crate) use qa::{AskRequest, ConversationPage, HistoryDeleted, QuestionDto, QuestionPage};
pub(crate) use sessions::{SessionDto, SessionList};
pub(crate) use training::{
    CheckpointDto, CheckpointList, CreateTaskRequest, ProgressDto, ProgressPoint, ProgressReport, TaskAccepted,
    TaskDto, TaskPage,
};
pub(crate) use users::{
    ChangePasswordRequest, CreateUserRequest, PatchUserRequest, UpdateProfileRequest, UserDto, UserPage,
};

use crate::{ApiError, AppState};
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::Router;

pub(crate) fn router(max_upload_bytes: u64) -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/api/auth/login", post(auth::login))
        .route("/api/auth/refresh", post(auth::refresh))
        .route("/api/auth/logout", post(auth::logout))
        .route("/api/users/profile", get(users::get_profile).put(users::update_profile))
        .route("/api/users/profile/password", put(users::change_password))
        .route("/api/users/profile/sessions", get(sessions::list_sessions).delete(sessions::end_other_sessions))
        .route("/api/users/profile/sessions/{id}", delete(sessions::end_session))
        .route("/api/users/{id}/sessions", delete(sessions::end_user_sessions))
        .route(API_KEYS_PATH, get(api_keys::list_api_keys).post(api_keys::create_api_key))
        .route("/api/users/profile/api-keys/{id}", delete(api_keys::revoke_api_key))
        .route("/api/users/{id}/api-keys", get(api_keys::list_user_api_keys))
        .route("/api/users/{id}/api-keys/{key_id}", delete(api_keys::revoke_user_api_key))
        .route("/api/users/{id}/qa-history", delete(users::delete_user_history))
        .route("/api/users", get(users::list_users).post(users::create_user))
        .route("/api/users/{id}", get(users::get_user).patch(users::patch_user))
        .route("/api/audit/events", get(audit::events))
        .route("/api/audit/{aggregate_type}/{aggregate_id}", get(audit::history))
        // The upload streams to disk; its own limit (plus room for the form's other fields) replaces
        // axum's 2 MB default for this route only.
        .route(
            "/api/data/upload",
            post(datasets::upload).layer(DefaultBodyLimit::max((max_upload_bytes + (1 << 20)) as usize)),
        )
        .route("/api/data/datasets", get(datasets::list_datasets))
        .route("/api/data/datasets/{id}", get(datasets::get_dataset).delete(datasets::archive_dataset))
        .route("/api/data/datasets/{id}/validate", post(datasets::validate_dataset))
        .route("/api/data/datasets/{id}/preview", get(datasets::preview_dataset))
        .route("/api/training/tasks", get(training::list_tasks).post(training::create_task))
        .route("/api/training/tasks/{id}", get(training::get_task))
        .route("/api/training/tasks/{id}/progress", get(training::task_progress))
        .route("/api/training/tasks/{id}/events", get(training::task_events))
        .route("/api/training/tasks/{id}/checkpoints", get(training::task_checkpoints))
        .route("/api/training/tasks/{id}/ws", get(training::task_socket))
        .route("/api/training/tasks/{id}/adapter/{file}", get(training::adapter_file))
        .route("/api/training/tasks/{id}/start", post(training::start_task))
        .route("/api/training/tasks/{id}/stop", post(training::stop_task))
        .route("/api/models", get(models::list_models).post(models::register_model))
        .route("/api/models/{id}", get(models::get_model))
        .route("/api/models/{id}/deploy", post(models::deploy_model))
        .route("/api/models/{id}/undeploy", post(models::undeploy_model))
        .route("/api/models/{id}/test", post(models::test_model))
        .route("/api/models/aliases", get(models::routing))
        .route("/api/models/base", get(models::base_models))
        .route("/api/models/{id}/default", post(models::make_default))
        .route("/api/models/{id}/aliases", post(models::set_alias))
        .route("/api/models/{id}/aliases/{alias}", delete(models::remove_alias))
        .route("/api/models/{id}/rollback", post(models::rollback))
        .route("/api/system/nodes", get(health::list_nodes))
        .route("/api/alerts", get(alerts::list_alerts))
        .route("/api/alerts/{id}", get(alerts::get_alert))
        .route("/api/alerts/{id}/acknowledge", post(alerts::acknowledge_alert))
        .route("/api/alerts/{id}/resolve", post(alerts::resolve_alert))
        .route("/api/qa/ask", post(qa::ask))
        .route("/api/qa/history", get(qa::history).delete(qa::delete_all_history))
        .route("/api/qa/history/{id}", get(qa::conversation).delete(qa::delete_history))
        .route("/api/qa/questions/{id}", get(qa::get_question))
        .route("/v1/models", get(openai::list_models))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route(
            "/v1/files",
            get(fine_tuning::list_files)
                .post(fine_tuning::create_file)
                .layer(DefaultBodyLimit::max((max_upload_bytes + (1 << 20)) as usize)),
        )
        .route("/v1/files/{id}", get(fine_tuning::get_file))
        .route("/v1/fine_tuning/jobs", get(fine_tuning::list_jobs).post(fine_tuning::create_job))
        .route("/v1/fine_tuning/jobs/{id}", get(fine_tuning::get_job))
        .route("/v1/fine_tuning/jobs/{id}/cancel", post(fine_tuning::cancel_job))
        .route("/v1/fine_tuning/jobs/{id}/events", get(fine_tuning::list_events))
        .route("/v1/fine_tuning/jobs/{id}/checkpoints", get(fine_tuning::list_checkpoints))
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}

pub(crate) use alerts::{__path_acknowledge_alert, __path_get_alert, __path_list_alerts, __path_resolve_alert};
pub(crate) use api_keys::{
    __path_create_api_key, __path_list_api_keys, __path_list_user_api_keys, __path_revoke_api_key,
    __path_revoke_user_api_key,
};
pub(crate) use audit::__path_events;
pub(crate) use audit::__path_history;
pub(crate) use auth::__path_login;
pub(crate) use auth::__path_logout;
pub(crate) use auth::__path_refresh;
pub(crate) use datasets::{
    __path_archive_dataset, __path_get_dataset, __path_list_datasets, __path_preview_dataset, __path_upload,
    __path_validate_dataset,
};
pub(crate) use fine_tuning::CreateJobRequest;
pub(crate) use fine_tuning::{
    __path_cancel_job, __path_create_file, __path_create_job, __path_get_file, __path_get_job, __path_list_checkpoints,
    __path_list_events, __path_list_files, __path_list_jobs,
};
pub(crate) use health::__path_healthz;
pub(crate) use health::__path_readyz;
pub(crate) use health::{__path_list_nodes, NodeDto, NodeList};
pub(crate) use health::{healthz, readyz};
pub(crate) use models::{
    __path_base_models, __path_deploy_model, __path_get_model, __path_list_models, __path_make_default,
    __path_register_model, __path_remove_alias, __path_rollback, __path_routing, __path_set_alias, __path_test_model,
    __path_undeploy_model,
};
pub(crate) use qa::{
    __path_ask, __path_conversation, __path_delete_all_history, __path_delete_history, __path_get_question,
    __path_history as __path_qa_history,
};
pub(crate) use sessions::{
    __path_end_other_sessions, __path_end_session, __path_end_user_sessions, __path_list_sessions,
};
pub(crate) use training::{
    __path_adapter_file, __path_create_task, __path_get_task, __path_list_tasks, __path_start_task, __path_stop_task,
    __path_task_checkpoints, __path_task_events, __path_task_progress, __path_task_socket,
};
pub(crate) use users::{
    __path_change_password, __path_create_user, __path_delete_user_history, __path_get_profile, __path_get_user,
    __path_list_users, __path_patch_user, __path_update_profile,
};
