//! One error type for the whole API, one JSON shape: `{"error": {"code", "message", "details"?}}`.
//! 4xx bodies say what was wrong; 5xx bodies are opaque and the cause is logged.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bonsai_commands::CommandError;
use bonsai_domain::alert::AlertError;
use bonsai_domain::dataset::DatasetError;
use bonsai_domain::model::ModelError;
use bonsai_domain::qa::QaError;
use bonsai_domain::training::TrainingTaskError;
use bonsai_domain::user::UserError;
use bonsai_domain::values::InvalidValue;
use bonsai_projections::ProjectionError;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{code}: {message}")]
    BadRequest { code: &'static str, message: String },
    /// 400 about one field of the request (`details.field`).
    #[error("{code}: {message}")]
    BadField { code: &'static str, message: String, field: String },
    /// 404 about one field of the request: what it names does not exist (`details.field`).
    #[error("{code}: {message}")]
    MissingField { code: &'static str, message: String, field: String },
    #[error("{code}: {message}")]
    Unauthenticated { code: &'static str, message: String },
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("{code}: {message}")]
    Conflict { code: &'static str, message: String },
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// 413: the body (an upload) is over the configured limit.
    #[error("{code}: {message}")]
    PayloadTooLarge { code: &'static str, message: String, details: Option<serde_json::Value> },
    /// 415 with a specific code and details (uploads whose content is not a dataset).
    #[error("{code}: {message}")]
    UnsupportedContent { code: &'static str, message: String, details: Option<serde_json::Value> },
    #[error("{code}: {message}")]
    Unprocessable { code: &'static str, message: String, details: Option<serde_json::Value> },
    #[error("too many requests, retry in {retry_after_secs}s")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// 503 with a specific code and a message the client may see (a dependency that only some requests
    /// need, such as the virus scanner).
    #[error("{code}: {message}")]
    DependencyUnavailable { code: &'static str, message: String },
    /// The cause is logged, not returned: a 500 body must not leak internals.
    #[error("internal: {0}")]
    Internal(String),
}

/// The largest JSON request body, in bytes (uploads have a limit of their own: `max_upload_bytes`).
pub(crate) const JSON_BODY_LIMIT: usize = 2 << 20;

/// The error body of every non-2xx response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `invalid_credentials`, `username_taken`, `validation_failed`, ...
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    /// 429 with a `Retry-After` of `retry_after` in whole seconds, rounded up (a client that waits that long
    /// is let in).
    pub fn rate_limited(retry_after: std::time::Duration) -> Self {
        Self::TooManyRequests { retry_after_secs: (retry_after.as_secs_f64().ceil() as u64).max(1) }
    }

    pub fn unauthenticated(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unauthenticated { code, message: message.into() }
    }

    /// 422 with `code`, naming the request `field` that is wrong in `details`.
    pub fn field(code: &'static str, message: impl Into<String>, field: &str) -> Self {
        Self::Unprocessable { code, message: message.into(), details: Some(serde_json::json!({ "field": field })) }
    }

    pub fn invalid(value: InvalidValue) -> Self {
        Self::Unprocessable {
            code: "validation_failed",
            message: value.to_string(),
            details: Some(serde_json::json!({ "field": value.field, "reason": value.reason })),
        }
    }
}

impl ApiError {
    /// Status, code, message and details, as both error shapes show them.
    fn parts(&self) -> (StatusCode, &str, String, Option<serde_json::Value>) {
        match self {
            ApiError::BadRequest { code, message } => (StatusCode::BAD_REQUEST, code, message.clone(), None),
            ApiError::BadField { code, message, field } => {
                (StatusCode::BAD_REQUEST, code, message.clone(), Some(serde_json::json!({ "field": field })))
            }
            ApiError::MissingField { code, message, field } => {
                (StatusCode::NOT_FOUND, code, message.clone(), Some(serde_json::json!({ "field": field })))
            }
            ApiError::Unauthenticated { code, message } => (StatusCode::UNAUTHORIZED, code, message.clone(), None),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m.clone(), None),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m.clone(), None),
            ApiError::Conflict { code, message } => (StatusCode::CONFLICT, code, message.clone(), None),
            ApiError::UnsupportedMediaType(m) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", m.clone(), None)
            }
            ApiError::PayloadTooLarge { code, message, details } => {
                (StatusCode::PAYLOAD_TOO_LARGE, code, message.clone(), details.clone())
            }
            ApiError::UnsupportedContent { code, message, details } => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, code, message.clone(), details.clone())
            }
            ApiError::Unprocessable { code, message, details } => {
                (StatusCode::UNPROCESSABLE_ENTITY, code, message.clone(), details.clone())
            }
            ApiError::TooManyRequests { retry_after_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests; retry in {retry_after_secs} s"),
                None,
            ),
            ApiError::DependencyUnavailable { code, message } => {
                (StatusCode::SERVICE_UNAVAILABLE, code, message.clone(), None)
            }
            ApiError::Unavailable(cause) => {
                tracing::warn!(%cause, "service unavailable");
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "a dependency is unavailable".to_owned(), None)
            }
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal server error".to_owned(), None)
            }
        }
    }

    /// `Retry-After` on a 429.
    fn with_retry_after(&self, mut response: Response) -> Response {
        if let ApiError::TooManyRequests { retry_after_secs } = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from((*retry_after_secs).max(1)));
        }
        response
    }

    /// The error in OpenAI's shape (`/v1` only): `{"error": {"message", "type", "param", "code"}}`, the same
    /// status and code as the native shape, `param` from the details' `field`.
    pub fn openai_response(self) -> Response {
        let (status, code, message, details) = self.parts();
        let kind = match status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            StatusCode::NOT_FOUND => "invalid_request_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        };
        let param = details.as_ref().and_then(|d| d.get("field")).cloned().unwrap_or(serde_json::Value::Null);
        let body = serde_json::json!({ "error": { "message": message, "type": kind, "param": param, "code": code } });
        self.with_retry_after((status, axum::Json(body)).into_response())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, details) = self.parts();
        let body = ErrorBody { error: ErrorDetail { code: code.to_owned(), message, details } };
        self.with_retry_after((status, axum::Json(body)).into_response())
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::User(e) => e.into(),
            CommandError::Dataset(e) => e.into(),
            CommandError::Training(e) => e.into(),
            CommandError::Model(e) => e.into(),
            CommandError::Qa(e) => e.into(),
            CommandError::Alert(e) => e.into(),
            CommandError::Conflict { .. } => ApiError::Conflict {
                code: "concurrent_modification",
                message: "the resource was modified concurrently; try again".into(),
            },
            CommandError::Store(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<UserError> for ApiError {
    fn from(error: UserError) -> Self {
        let message = error.to_string();
        match error {
            UserError::AlreadyExists => ApiError::Conflict { code: "username_taken", message },
            UserError::NotFound => ApiError::NotFound(message),
            UserError::InvalidCredentials => ApiError::unauthenticated("invalid_credentials", message),
            UserError::Inactive => ApiError::Forbidden(message),
            UserError::WrongPassword => ApiError::Unprocessable { code: "wrong_password", message, details: None },
            UserError::SessionInvalid => ApiError::unauthenticated("invalid_refresh_token", message),
            UserError::RefreshTokenReused => ApiError::unauthenticated("refresh_token_reused", message),
            UserError::SelfLockout => ApiError::Unprocessable { code: "self_lockout", message, details: None },
            UserError::Hashing(cause) => ApiError::Internal(cause),
            UserError::InvalidApiKeyName => ApiError::field("validation_failed", message, "name"),
            UserError::TooManyApiKeys => ApiError::Conflict { code: "too_many_api_keys", message },
            UserError::ApiKeyExists => ApiError::Conflict { code: "api_key_exists", message },
            UserError::UnknownApiKey => ApiError::NotFound(message),
            UserError::ApiKeyRevoked => ApiError::Conflict { code: "api_key_revoked", message },
        }
    }
}

impl From<DatasetError> for ApiError {
    fn from(error: DatasetError) -> Self {
        let message = error.to_string();
        match error {
            DatasetError::AlreadyExists => ApiError::Conflict { code: "dataset_exists", message },
            DatasetError::NotFound | DatasetError::UnknownVersion(_) => ApiError::NotFound(message),
            DatasetError::Archived => ApiError::Conflict { code: "dataset_archived", message },
        }
    }
}

impl From<TrainingTaskError> for ApiError {
    fn from(error: TrainingTaskError) -> Self {
        let message = error.to_string();
        match error {
            TrainingTaskError::AlreadyExists => ApiError::Conflict { code: "training_task_exists", message },
            TrainingTaskError::NotFound => ApiError::NotFound(message),
            TrainingTaskError::InvalidConfig(e) => ApiError::Unprocessable {
                code: "validation_failed",
                message,
                details: Some(serde_json::json!({ "field": format!("config.{}", e.field), "reason": e.message })),
            },
            TrainingTaskError::InvalidName => ApiError::Unprocessable {
                code: "validation_failed",
                message,
                details: Some(serde_json::json!({ "field": "name" })),
            },
            TrainingTaskError::InvalidState { .. } => ApiError::Conflict { code: "invalid_state", message },
        }
    }
}

impl From<ModelError> for ApiError {
    fn from(error: ModelError) -> Self {
        let message = error.to_string();
        match error {
            ModelError::AlreadyExists => ApiError::Conflict { code: "model_exists", message },
            ModelError::NotFound => ApiError::NotFound(message),
            ModelError::InvalidName => ApiError::Unprocessable {
                code: "validation_failed",
                message,
                details: Some(serde_json::json!({ "field": "name" })),
            },
            ModelError::NotReady(_) => ApiError::Conflict { code: "model_not_ready", message },
            ModelError::InvalidTest => ApiError::Unprocessable {
                code: "validation_failed",
                message,
                details: Some(serde_json::json!({ "field": "cases" })),
            },
            ModelError::NotDeployed => ApiError::Conflict { code: "model_not_deployed", message },
            ModelError::InvalidAlias => ApiError::Unprocessable {
                code: "validation_failed",
                message,
                details: Some(serde_json::json!({ "field": "alias" })),
            },
        }
    }
}

impl From<QaError> for ApiError {
    fn from(error: QaError) -> Self {
        let message = error.to_string();
        let invalid = |field: &str, message: String| ApiError::Unprocessable {
            code: "validation_failed",
            message,
            details: Some(serde_json::json!({ "field": field })),
        };
        match error {
            QaError::NotFound => ApiError::NotFound(message),
            QaError::InvalidQuestion => invalid("question", message),
            QaError::InvalidParams(field) => invalid(field, message),
            QaError::InvalidConversation => invalid("messages", message),
            QaError::DuplicateQuestion => ApiError::Conflict { code: "duplicate_question", message },
        }
    }
}

impl From<AlertError> for ApiError {
    fn from(error: AlertError) -> Self {
        let message = error.to_string();
        match error {
            AlertError::NotFound => ApiError::NotFound(message),
            AlertError::AlreadyResolved => ApiError::Conflict { code: "invalid_state", message },
            AlertError::NoteTooLong => ApiError::field("validation_failed", message, "note"),
        }
    }
}

impl From<ProjectionError> for ApiError {
    fn from(error: ProjectionError) -> Self {
        ApiError::Internal(error.to_string())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        ApiError::Internal(error.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let message = rejection.body_text();
        match rejection {
            JsonRejection::JsonDataError(_) => ApiError::Unprocessable { code: "invalid_body", message, details: None },
            JsonRejection::JsonSyntaxError(_) => ApiError::BadRequest { code: "malformed_json", message },
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(message),
            // Over the body limit: 413 with the limit, as for uploads (axum says so only in its message).
            JsonRejection::BytesRejection(_) if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::PayloadTooLarge {
                    code: "body_too_large",
                    message: format!("the request body is over the limit of {JSON_BODY_LIMIT} bytes"),
                    details: Some(serde_json::json!({ "limit_bytes": JSON_BODY_LIMIT })),
                }
            }
            JsonRejection::BytesRejection(_) => ApiError::BadRequest { code: "unreadable_body", message },
            _ => ApiError::BadRequest { code: "bad_request", message },
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest { code: "invalid_query", message: rejection.body_text() }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest { code: "invalid_path", message: rejection.body_text() }
    }
}
