//! The OpenAPI document, generated from the handlers' own annotations and types, and Swagger UI.

use crate::routes::*;
use crate::AppState;
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Bonsai", description = "Train, version and serve your own small language models."),
    paths(
        healthz, readyz, login, refresh, logout, get_profile, update_profile, change_password, list_sessions, end_session,
        end_other_sessions, end_user_sessions, create_api_key, list_api_keys, revoke_api_key, list_user_api_keys,
        revoke_user_api_key, list_users,
        create_user, get_user, patch_user, events, history, upload, list_datasets, get_dataset, validate_dataset,
        preview_dataset, archive_dataset, create_task, list_tasks, get_task, task_progress, task_events, task_checkpoints, task_socket, adapter_file, start_task, stop_task,
        register_model, list_models, get_model, deploy_model, undeploy_model, test_model, make_default, set_alias, remove_alias,
        routing, rollback, base_models, ask, qa_history, conversation,
        delete_history, delete_all_history, delete_user_history, get_question, list_nodes, list_alerts, get_alert, acknowledge_alert, resolve_alert,
        create_file, list_files, get_file, create_job, list_jobs, get_job, cancel_job, list_events, list_checkpoints
    ),
    components(schemas(
        crate::ErrorBody, crate::error::ErrorDetail, LoginRequest, RefreshRequest, LogoutRequest, TokenResponse,
        UserDto, UserPage, UpdateProfileRequest, ChangePasswordRequest, CreateUserRequest, PatchUserRequest,
        AuditEventDto, AuditPage, DatasetDto, DatasetDetail, DatasetPage, VersionDto, ValidationAccepted, PreviewPage,
        UploadForm, CreateTaskRequest, TaskDto, TaskPage, TaskAccepted, ProgressDto, ProgressPoint, ProgressReport,
        CheckpointDto, CheckpointList, CreateJobRequest,
        RegisterModelRequest, ModelDto, ModelPage, ModelAccepted, TestRequest, AliasRequest, Routing, BaseModelDto,
        BaseModelList, AskRequest, QuestionDto, QuestionPage,
        ConversationPage, HistoryDeleted, AlertDto, AlertPage, AlertAction, AlertAccepted, SessionDto, SessionList,
        CreateApiKeyRequest, CreatedApiKey, ApiKeyDto, ApiKeyList, NodeDto, NodeList
    )),
    modifiers(&BearerAuth, &CommonParts),
    tags((name = "auth"), (name = "users"), (name = "audit"), (name = "datasets"), (name = "training"), (name = "models"), (name = "qa"), (name = "alerts"), (name = "health"),
        (name = "openai", description = "OpenAI's files and fine-tuning jobs (OpenAI's shapes and error shape; API keys accepted)"))
)]
pub(crate) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// What every operation shares: any error it answers has the one error shape (a `default` response, beside
/// the codes each operation lists), and every POST takes an optional `Idempotency-Key` (see idempotency.rs).
struct CommonParts;

impl Modify for CommonParts {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, RefOr, Required, ResponseBuilder, Type};
        let error = ResponseBuilder::new()
            .description("any other error, in the one error shape (`code` says which)")
            .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
            .build();
        let key = ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "Safe retries: the same key and request within 24 h answers the first answer again (409 \
                 `idempotency_key_reused` for another request, `idempotency_key_in_progress` while the first runs)",
            ))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(255))
                    .pattern(Some("^[!-~]+$")),
            ))
            .build();
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
                &mut item.head,
                &mut item.options,
                &mut item.trace,
            ]
            .into_iter()
            .flatten()
            {
                operation.responses.responses.entry("default".into()).or_insert_with(|| RefOr::T(error.clone()));
            }
            // Keys are per user: only signed-in POSTs take one.
            if let Some(post) = item.post.as_mut().filter(|post| post.security.is_some()) {
                post.parameters.get_or_insert_with(Vec::new).push(key.clone());
            }
        }
    }
}

pub(crate) fn router() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/api/docs").url("/api/openapi.json", ApiDoc::openapi()))
}
