//! `/api/training`: fine-tuning tasks. Creating one fixes the base model, the dataset version and the
//! settings; starting it queues a run for a training worker, which records progress as events; stopping
//! it pauses the run at a step boundary, and a later start resumes from the last checkpoint (the checkpoints
//! kept are listed with their losses). A task whose `config.register_as` names a model becomes that model when
//! it completes (the training worker registers it): how `/v1/fine_tuning/jobs` makes its `fine_tuned_model`.
//!
//! Commands go through the TrainingTask aggregate, which also decides who may touch a task (another
//! user's is "not found"). Reads come from the training view.

mod dto;
mod stream;

pub(crate) use dto::{
    CheckpointDto, CheckpointList, CreateTaskRequest, ProgressDto, ProgressPoint, ProgressReport, TaskAccepted,
    TaskDto, TaskPage,
};
pub(crate) use stream::{__path_task_events, __path_task_socket, task_events, task_socket};

use crate::auth::AuthUser;
use crate::extract::{page_window, status_filter, ApiJson, ApiPath, ApiQuery, Correlation};
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use bonsai_commands::CommandMetadata;
use bonsai_domain::dataset::NotTrainable;
use bonsai_domain::training::{DatasetRef, Preset, TaskStatus, TrainingConfig, TrainingTask, TrainingTaskCommand};
use bonsai_domain::{Owned, Permission};
use bonsai_infra::ModelLookupError;
use bonsai_projections::training::{self, TaskRow};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;
use uuid::Uuid;

/// The task as the view has it, if `user` may see it; otherwise (also for another user's) 404.
pub(crate) async fn visible(state: &AppState, user: &AuthUser, id: Uuid) -> Result<TaskRow, ApiError> {
    crate::fresh::current(state, "training", "TrainingTask", id).await?;
    match training::find(&state.pool, id).await? {
        Some(row) if user.actor().may_see(Owned::TrainingTask, Some(row.owner_id)) => Ok(row),
        _ => Err(ApiError::NotFound("no such training task".into())),
    }
}

/// The installed base model `id`, checked before the task is recorded (the worker resolves it again).
pub(crate) fn base_model(state: &AppState, id: &str) -> Result<(), ApiError> {
    let lookup = match &state.models {
        Some(models) => models.model_dir(id).map(drop),
        None => Err(ModelLookupError::NotFound(id.to_owned())),
    };
    lookup.map_err(|e| {
        let code = match e {
            ModelLookupError::InvalidId(_) => "validation_failed",
            ModelLookupError::NotFound(_) => "unknown_base_model",
        };
        ApiError::field(code, e.to_string(), "base_model_id")
    })
}

/// Settings for a task that gave none: from the data set version's record count and the base model's size.
pub(crate) async fn chosen_config(
    state: &AppState,
    preset: Preset,
    base_model_id: &str,
    dataset: &DatasetRef,
) -> Result<TrainingConfig, ApiError> {
    let versions = bonsai_projections::datasets::versions(&state.pool, dataset.dataset_id).await?;
    let records = versions
        .iter()
        .find(|v| v.version == dataset.version as i32)
        .and_then(|v| v.record_count)
        .unwrap_or(100)
        .max(1) as u64;
    let (parameters, context) = match state.models.clone() {
        Some(models) => {
            let id = base_model_id.to_owned();
            let info = tokio::task::spawn_blocking(move || models.info(&id)).await.ok().and_then(Result::ok);
            info.map_or((0, None), |m| (m.parameters, m.context_length))
        }
        None => (0, None),
    };
    Ok(TrainingConfig::chosen_for(preset, records, parameters, context))
}

/// The dataset version to train (or test) on, from the Dataset's own events (never behind): it must be
/// visible to `user`, not archived, and `valid`.
pub(crate) async fn dataset_ref(
    state: &AppState,
    user: &AuthUser,
    dataset_id: Uuid,
    version: Option<u32>,
) -> Result<DatasetRef, ApiError> {
    named_dataset_ref(state, user, dataset_id, version, ("dataset_id", "dataset_version")).await
}

/// [`dataset_ref`], its errors naming `fields` (the id's and the version's).
pub(crate) async fn named_dataset_ref(
    state: &AppState,
    user: &AuthUser,
    dataset_id: Uuid,
    version: Option<u32>,
    (id_field, version_field): (&'static str, &'static str),
) -> Result<DatasetRef, ApiError> {
    let dataset = state.commands.load::<bonsai_domain::dataset::Dataset>(dataset_id).await?;
    dataset.trainable(&user.actor(), version).map_err(|e| match e {
        NotTrainable::Unknown => ApiError::field("unknown_dataset", e.to_string(), id_field),
        NotTrainable::Archived => ApiError::Conflict { code: "dataset_archived", message: e.to_string() },
        NotTrainable::UnknownVersion(_) => ApiError::field("unknown_dataset_version", e.to_string(), version_field),
        NotTrainable::NotValid { version, status } => ApiError::Unprocessable {
            code: "dataset_not_valid",
            message: e.to_string(),
            details: Some(json!({ "field": id_field, "version": version, "status": status.as_str() })),
        },
    })
}

/// Creates a fine-tuning task (and, with `start`, queues its first run).
#[utoipa::path(post, path = "/api/training/tasks", tag = "training", security(("bearer" = [])),
    request_body = CreateTaskRequest,
    responses((status = 201, body = TaskAccepted), (status = 403, body = crate::ErrorBody),
    (status = 409, description = "dataset_archived", body = crate::ErrorBody),
    (status = 422, description = "validation_failed, invalid_body, unknown_base_model, unknown_dataset, \
        unknown_dataset_version or dataset_not_valid", body = crate::ErrorBody)))]
pub(crate) async fn create_task(
    State(state): State<AppState>,
    user: AuthUser,
    Correlation(correlation): Correlation,
    ApiJson(request): ApiJson<CreateTaskRequest>,
) -> Result<(StatusCode, Json<TaskAccepted>), ApiError> {
    user.require(Permission::ManageTraining)?;
    let base_model_id = request.base_model_id.trim().to_owned();
    base_model(&state, &base_model_id)?;
    let dataset = dataset_ref(&state, &user, request.dataset_id, request.dataset_version).await?;
    let eval_dataset = match request.eval_dataset_id {
        Some(id) => Some(
            named_dataset_ref(
                &state,
                &user,
                id,
                request.eval_dataset_version,
                ("eval_dataset_id", "eval_dataset_version"),
            )
            .await?,
        ),
        None => None,
    };
    let mut config = match (request.config, request.preset.as_deref()) {
        (Some(config), None) => config,
        (Some(_), Some(_)) => {
            return Err(ApiError::field("validation_failed", "give config or preset, not both", "preset"));
        }
        (None, preset) => {
            let preset = Preset::parse(preset.unwrap_or("balanced")).ok_or_else(|| {
                ApiError::field("validation_failed", "preset must be quick, balanced or thorough", "preset")
            })?;
            chosen_config(&state, preset, &base_model_id, &dataset).await?
        }
    };
    // Only the checked reference: a validation dataset named inside `config` is not taken on trust.
    config.eval_dataset = eval_dataset;
    let new = NewTask { name: request.name, description: request.description, base_model_id, dataset, config };
    let (id, task) = create_with_id(&state, &user, correlation, Uuid::now_v7(), new, request.start).await?;
    Ok((StatusCode::CREATED, Json(TaskAccepted { id, status: task.status.to_string(), attempt: task.attempt })))
}

/// A task to record, its base model and dataset version checked.
pub(crate) struct NewTask {
    pub name: String,
    pub description: String,
    pub base_model_id: String,
    pub dataset: DatasetRef,
    pub config: TrainingConfig,
}

/// Records a new task `id` of `user`'s and, with `start`, queues its first run: what `POST
/// /api/training/tasks` and `POST /v1/fine_tuning/jobs` both do. Returns its id and its state as the commands
/// left it.
pub(crate) async fn create_with_id(
    state: &AppState,
    user: &AuthUser,
    correlation: String,
    id: Uuid,
    new: NewTask,
    start: bool,
) -> Result<(Uuid, TrainingTask), ApiError> {
    let meta = CommandMetadata::new(Some(user.id), correlation);
    let command = TrainingTaskCommand::CreateTrainingTask {
        task_id: id,
        owner_id: user.id,
        name: new.name,
        description: new.description,
        base_model_id: new.base_model_id,
        dataset: new.dataset,
        config: new.config,
    };
    let mut task = state.commands.execute_and_get(id, command, &meta).await?;
    if start {
        let start = TrainingTaskCommand::StartTraining { by: user.actor() };
        task = state.commands.execute_and_get(id, start, &meta).await?;
    }
    Ok((id, task))
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
    /// `created`, `queued`, `running`, `stopping`, `stopped`, `completed` or `failed`.
    pub status: Option<String>,
    /// Only tasks that train on this dataset.
    pub dataset_id: Option<Uuid>,
}

/// Training tasks, newest first: the caller's own, or every user's for an admin.
#[utoipa::path(get, path = "/api/training/tasks", tag = "training", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = TaskPage), (status = 403, body = crate::ErrorBody),
    (status = 422, description = "validation_failed", body = crate::ErrorBody)))]
pub(crate) async fn list_tasks(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<TaskPage>, ApiError> {
    user.require(Permission::ManageTraining)?;
    let (page, page_size) = page_window(query.page, query.page_size)?;
    status_filter(query.status.as_deref(), &TaskStatus::ALL.map(TaskStatus::as_str))?;
    let owner = user.actor().only_own(Owned::TrainingTask);
    let (rows, total) =
        training::list(&state.pool, owner, query.status.as_deref(), query.dataset_id, page, page_size).await?;
    Ok(Json(TaskPage { items: rows.into_iter().map(TaskDto::from).collect(), total, page, page_size }))
}

/// One task: settings, status, latest progress, and its result or error.
#[utoipa::path(get, path = "/api/training/tasks/{id}", tag = "training", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "task id")),
    responses((status = 200, body = TaskDto), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn get_task(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<TaskDto>, ApiError> {
    user.require(Permission::ManageTraining)?;
    Ok(Json(visible(&state, &user, id).await?.into()))
}

/// The task's status, latest progress and loss curve (every recorded report of every run).
#[utoipa::path(get, path = "/api/training/tasks/{id}/progress", tag = "training", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "task id")),
    responses((status = 200, body = ProgressReport), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn task_progress(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<ProgressReport>, ApiError> {
    user.require(Permission::ManageTraining)?;
    let row = visible(&state, &user, id).await?;
    let history = training::progress(&state.pool, id).await?.into_iter().map(ProgressPoint::from).collect();
    let task = TaskDto::from(row);
    Ok(Json(ProgressReport { id, status: task.status, attempt: task.attempt, latest: task.progress, history }))
}

async fn command(
    state: &AppState,
    user: &AuthUser,
    correlation: String,
    id: Uuid,
    command: TrainingTaskCommand,
) -> Result<(StatusCode, Json<TaskAccepted>), ApiError> {
    user.require(Permission::ManageTraining)?;
    let meta = CommandMetadata::new(Some(user.id), correlation);
    let task = state.commands.execute_and_get(id, command, &meta).await?;
    Ok((StatusCode::ACCEPTED, Json(TaskAccepted { id, status: task.status.to_string(), attempt: task.attempt })))
}

/// Queues a new run: the first, or (after a stop or a failure) one that resumes from the last checkpoint.
#[utoipa::path(post, path = "/api/training/tasks/{id}/start", tag = "training", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "task id")),
    responses((status = 202, body = TaskAccepted), (status = 404, body = crate::ErrorBody),
    (status = 409, description = "invalid_state (already queued, running or completed)", body = crate::ErrorBody)))]
pub(crate) async fn start_task(
    State(state): State<AppState>,
    user: AuthUser,
    Correlation(correlation): Correlation,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<(StatusCode, Json<TaskAccepted>), ApiError> {
    let by = user.actor();
    command(&state, &user, correlation, id, TrainingTaskCommand::StartTraining { by }).await
}

/// Stops the task: a queued run at once, a running one after its current step (status `stopping`, then
/// `stopped`). The run's checkpoint is kept; start the task again to resume.
#[utoipa::path(post, path = "/api/training/tasks/{id}/stop", tag = "training", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "task id")),
    responses((status = 202, body = TaskAccepted), (status = 404, body = crate::ErrorBody),
    (status = 409, description = "invalid_state (not queued or running)", body = crate::ErrorBody)))]
pub(crate) async fn stop_task(
    State(state): State<AppState>,
    user: AuthUser,
    Correlation(correlation): Correlation,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<(StatusCode, Json<TaskAccepted>), ApiError> {
    let by = user.actor();
    command(&state, &user, correlation, id, TrainingTaskCommand::StopTraining { by }).await
}

/// Files of a trained adapter, in the PEFT layout.
const ADAPTER_FILES: [(&str, &str); 2] =
    [("adapter_config.json", "application/json"), ("adapter_model.safetensors", "application/octet-stream")];

/// Downloads a file of the task's PEFT adapter (`adapter_config.json` or `adapter_model.safetensors`),
/// written when a run completes or stops: load it with `PeftModel.from_pretrained` or `bonsai merge`.
#[utoipa::path(get, path = "/api/training/tasks/{id}/adapter/{file}", tag = "training", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "task id"), ("file" = String, Path, description = "adapter_config.json or adapter_model.safetensors")),
    responses((status = 200, description = "the file"), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn adapter_file(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath((id, file)): ApiPath<(Uuid, String)>,
) -> Result<axum::response::Response, ApiError> {
    use axum::http::header;
    use axum::response::IntoResponse;
    user.require(Permission::ManageTraining)?;
    visible(&state, &user, id).await?;
    let (name, content_type) = ADAPTER_FILES
        .into_iter()
        .find(|(name, _)| *name == file)
        .ok_or_else(|| ApiError::NotFound("an adapter has adapter_config.json and adapter_model.safetensors".into()))?;
    let dir = state.data_dir.as_ref().ok_or_else(|| ApiError::NotFound("no adapter is stored here".into()))?;
    let path = bonsai_infra::runs::task_dir(dir, id).join("adapter").join(name);
    let bytes = match tokio::fs::read(&path).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::NotFound("the task has no adapter yet: a run writes it when it ends".into()))
        }
        Err(e) => return Err(ApiError::Internal(format!("{}: {e}", path.display()))),
    };
    let disposition = format!("attachment; filename=\"{name}\"");
    Ok(([(header::CONTENT_TYPE, content_type.to_owned()), (header::CONTENT_DISPOSITION, disposition)], bytes)
        .into_response())
}

/// The checkpoints of task `id` on disk, oldest first: `(step, folder)`.
fn checkpoint_dirs(state: &AppState, id: Uuid) -> Vec<(u64, std::path::PathBuf)> {
    let Some(data_dir) = &state.data_dir else { return Vec::new() };
    bonsai_infra::runs::checkpoints(&bonsai_infra::runs::task_dir(data_dir, id))
}

/// The bytes of the files in `dir` (one level down, as a checkpoint is laid out, and below).
fn size_on_disk(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => size_on_disk(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The checkpoints of task `row` kept on disk (the newest two of its runs: a stopped or failed task resumes
/// from the last), oldest first, each with the losses recorded at its step.
pub(crate) async fn checkpoints_of(state: &AppState, row: &TaskRow) -> Result<Vec<CheckpointDto>, ApiError> {
    let id = row.id;
    let found = {
        let state = state.clone();
        tokio::task::spawn_blocking(move || {
            checkpoint_dirs(&state, id)
                .into_iter()
                .map(|(step, dir)| {
                    let created = std::fs::metadata(&dir).and_then(|m| m.modified()).ok().map(DateTime::<Utc>::from);
                    (step, size_on_disk(&dir), created)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
    };
    let history = training::progress(&state.pool, id).await?;
    Ok(found
        .into_iter()
        .map(|(step, size_bytes, created_at)| {
            // The last report at or before the step (reports are recorded at most once a second), and the
            // last evaluation.
            let upto: Vec<_> = history.iter().filter(|p| p.step as u64 <= step).collect();
            let train_loss = upto.iter().rev().find(|p| p.step as u64 == step).or(upto.last()).map(|p| p.loss);
            let eval_loss = upto.iter().rev().find_map(|p| p.eval_loss);
            CheckpointDto { step, train_loss, eval_loss, size_bytes, created_at: created_at.unwrap_or(row.updated_at) }
        })
        .collect())
}

/// The task's checkpoints kept on disk (the newest two: a stopped or failed task resumes from the last),
/// oldest first, with the training and evaluation loss last recorded at each step and the bytes each takes.
#[utoipa::path(get, path = "/api/training/tasks/{id}/checkpoints", tag = "training", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "task id")),
    responses((status = 200, body = CheckpointList), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn task_checkpoints(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<CheckpointList>, ApiError> {
    user.require(Permission::ManageTraining)?;
    let row = visible(&state, &user, id).await?;
    Ok(Json(CheckpointList { id, items: checkpoints_of(&state, &row).await? }))
}
