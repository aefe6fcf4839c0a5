//! OpenAI's files and fine-tuning jobs under `/v1`, on the existing dataset, training and model commands (no
//! second implementation):
//!
//! - A file (`POST /v1/files`, purpose `fine-tune`) is a dataset upload (the same path as
//!   `POST /api/data/upload`: size limit, virus scan, format sniffing), validated at once; `file-<uuid>` is
//!   the dataset's id. `GET /v1/files[/{id}]` read the datasets view.
//! - A job (`POST /v1/fine_tuning/jobs`) is a training task, created and started as `POST
//!   /api/training/tasks` does: `ftjob-<uuid>` is the task's id. Its settings are those chosen for the data set
//!   and the base model (`auto`), with `n_epochs`, `batch_size` and `learning_rate_multiplier` (times the
//!   chosen rate) applied, one checkpoint per epoch, and `register_as` naming its `fine_tuned_model`
//!   (`ft:<base>[:<suffix>]:<id>`): the training worker registers the merged model when the run completes, and
//!   the Model aggregate deploys it once exported. The job has `succeeded` when that model is deployed, so
//!   its name then answers in `/v1/chat/completions`.
//! - Cancel is the stop command; events are the task's events (and its model's); checkpoints are the
//!   task's checkpoints (`GET /api/training/tasks/{id}/checkpoints`).
//!
//! Every training task the caller may see is a job (one made natively has no `fine_tuned_model` unless a
//! model was registered from it). Reads and writes are the caller's own, an admin's everyone's; errors have
//! OpenAI's shape.

use super::datasets::{self, FormKind};
use super::openai::{invalid, request_body, V1};
use super::training::{self, NewTask};
use crate::auth::AuthUser;
use crate::extract::Correlation;
use crate::{ApiError, AppState};
use axum::body::Bytes;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, Query, State};
use axum::response::IntoResponse;
use axum::Json;
use bonsai_commands::CommandMetadata;
use bonsai_domain::dataset::{Dataset, DatasetCommand, VersionStatus};
use bonsai_domain::model::ModelEvent;
use bonsai_domain::training::{Preset, RegisterAs, TaskStatus, TrainingConfig, TrainingTaskCommand, TrainingTaskEvent};
use bonsai_domain::{Owned, Permission};
use bonsai_projections::datasets::DatasetRow;
use bonsai_projections::log::aggregate_history;
use bonsai_projections::models::{self as model_view, ModelRow};
use bonsai_projections::training::{self as task_view, TaskRow};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use utoipa::ToSchema;
use uuid::Uuid;

/// How long a request waits for a file's validation to end (a small file validates in milliseconds).
const VALIDATED_WITHIN: Duration = Duration::from_secs(30);

/// Most items a list answers at once.
const MAX_LIMIT: usize = 100;

/// `<prefix><uuid without dashes>`.
fn prefixed(prefix: &str, id: Uuid) -> String {
    format!("{prefix}{}", id.simple())
}

/// The uuid of `<prefix><uuid>` (a bare uuid is taken too).
fn unprefixed(prefix: &str, id: &str) -> Option<Uuid> {
    id.strip_prefix(prefix).unwrap_or(id).parse().ok()
}

fn file_id(id: Uuid) -> String {
    prefixed("file-", id)
}

fn job_id(id: Uuid) -> String {
    prefixed("ftjob-", id)
}

/// `limit` (default `default`, 1 to 100) and `after` of a list's query.
fn window(query: &HashMap<String, String>, default: usize) -> Result<(usize, Option<String>), ApiError> {
    let limit = match query.get("limit") {
        None => default,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| invalid(format!("limit must be 1 to {MAX_LIMIT}"), "limit"))?,
    };
    Ok((limit, query.get("after").cloned()))
}

/// The page of `items` (in list order) that follows the item `is_cursor` picks (from the start without a
/// cursor; empty when the cursor names no item), at most `limit` long, and whether more follow it.
fn page_after<T>(items: &[T], is_cursor: Option<impl Fn(&T) -> bool>, limit: usize) -> (&[T], bool) {
    let start = match is_cursor {
        Some(is_cursor) => items.iter().position(is_cursor).map_or(items.len(), |at| at + 1),
        None => 0,
    };
    let page = &items[start..(start + limit).min(items.len())];
    (page, items.len() > start + page.len())
}

// ---------------------------------------------------------------------------------------------------------
// Files

/// OpenAI's file `status` of a dataset's latest version.
fn file_status(status: &str) -> &'static str {
    match status {
        "valid" => "processed",
        "invalid" => "error",
        _ => "uploaded",
    }
}

fn file_object(id: Uuid, bytes: i64, created_at: DateTime<Utc>, filename: &str, status: &str) -> Value {
    let details = (status == "invalid")
        .then(|| format!("the file is not a valid fine-tuning data set: see GET /api/data/datasets/{id}"));
    json!({
        "id": file_id(id), "object": "file", "bytes": bytes, "created_at": created_at.timestamp(),
        "filename": filename, "purpose": "fine-tune", "status": file_status(status), "status_details": details,
    })
}

fn file_of(row: &DatasetRow) -> Value {
    file_object(row.id, row.file_size, row.created_at, &row.filename, &row.status)
}

/// The dataset `id` once its latest version is validated (asking for the validation if nobody has), or as
/// it is after [`VALIDATED_WITHIN`].
async fn validated(state: &AppState, user: &AuthUser, correlation: &str, id: Uuid) -> Result<Dataset, ApiError> {
    let deadline = tokio::time::Instant::now() + VALIDATED_WITHIN;
    let mut asked = false;
    loop {
        let dataset = state.commands.load::<Dataset>(id).await?;
        if !user.actor().may_see(Owned::Dataset, dataset.owner_id) {
            return Ok(dataset);
        }
        let status = dataset.versions.last().map(|v| v.status);
        match status {
            Some(VersionStatus::Uploaded) if !asked && !dataset.archived => {
                let meta = CommandMetadata::new(Some(user.id), correlation.to_owned());
                let command = DatasetCommand::RequestValidation { by: user.actor(), tokenizer_model_id: None };
                state.commands.execute(id, command, &meta).await?;
                asked = true;
            }
            Some(VersionStatus::Uploaded | VersionStatus::Validating)
                if tokio::time::Instant::now() < deadline && !dataset.archived =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ => return Ok(dataset),
        }
    }
}

/// `POST /v1/files` (multipart `file`, `purpose` `fine-tune`): a new dataset, validated before the answer
/// (`status` `processed`, or `error` for a file that is not a valid data set).
#[utoipa::path(post, path = "/v1/files", tag = "openai", security(("bearer" = [])),
    responses((status = 200, description = "OpenAI's File object: `id` `file-<dataset id>`, `status` `processed` or \
        `error` (not a valid data set)"), (status = 400, description = "invalid_request_error (`param`: purpose)"),
    (status = 401, description = "authentication_error"), (status = 403, description = "permission_error: the role may not"), (status = 413, description = "dataset_too_large"),
    (status = 415, description = "unsupported_content")))]
pub(crate) async fn create_file(
    State(state): State<AppState>,
    user: Result<AuthUser, ApiError>,
    Correlation(correlation): Correlation,
    multipart: Result<Multipart, MultipartRejection>,
) -> V1 {
    V1(async {
        let user = user?;
        user.require(Permission::ManageDatasets)?;
        let multipart = multipart.map_err(|r| invalid(r.body_text(), "file"))?;
        let id = datasets::store(&state, &user, correlation.clone(), multipart, FormKind::OpenAi).await?;
        validated(&state, &user, &correlation, id).await?;
        let dto = datasets::dto::current(&state, id).await?;
        Ok(Json(file_object(id, dto.file_size, dto.created_at, &dto.filename, &dto.status)).into_response())
    }
    .await)
}

/// `GET /v1/files`: the caller's data sets (every user's for an admin), newest first (`after`, `limit`).
#[utoipa::path(get, path = "/v1/files", tag = "openai", security(("bearer" = [])),
    params(("after" = Option<String>, Query, description = "the last file id of the previous page"),
        ("limit" = Option<u32>, Query, description = "1 to 100 (default 100)"),
        ("purpose" = Option<String>, Query, description = "`fine-tune` (no other files are kept)")),
    responses((status = 200, description = "`{object: list, data: [File], has_more}`"), (status = 401, description = "authentication_error"), (status = 403, description = "permission_error: the role may not")))]
pub(crate) async fn list_files(
    State(state): State<AppState>,
    user: Result<AuthUser, ApiError>,
    Query(query): Query<HashMap<String, String>>,
) -> V1 {
    V1(async {
        let user = user?;
        user.require(Permission::ManageDatasets)?;
        let (limit, after) = window(&query, MAX_LIMIT)?;
        if query.get("purpose").is_some_and(|p| p != "fine-tune") {
            return Ok(Json(json!({"object": "list", "data": [], "has_more": false})).into_response());
        }
        let owner = user.actor().only_own(Owned::Dataset);
        let (rows, _) = bonsai_projections::datasets::list(&state.pool, owner, None, 1, 10_000).await?;
        let after = after.map(|a| unprefixed("file-", &a));
        let (page, has_more) = page_after(&rows, after.map(|a| move |r: &DatasetRow| Some(r.id) == a), limit);
        let page: Vec<Value> = page.iter().map(file_of).collect();
        Ok(Json(json!({"object": "list", "data": page, "has_more": has_more})).into_response())
    }
    .await)
}

/// `GET /v1/files/{id}`.
#[utoipa::path(get, path = "/v1/files/{id}", tag = "openai", security(("bearer" = [])),
    params(("id" = String, Path, description = "`file-<dataset id>`")),
    responses((status = 200, description = "OpenAI's File object"), (status = 404, description = "no such file of yours"),
    (status = 401, description = "authentication_error"), (status = 403, description = "permission_error: the role may not")))]
pub(crate) async fn get_file(
    State(state): State<AppState>,
    user: Result<AuthUser, ApiError>,
    Path(id): Path<String>,
) -> V1 {
    V1(async {
        let user = user?;
        user.require(Permission::ManageDatasets)?;
        let not_found = || ApiError::NotFound(format!("No such file: {id}"));
        let uuid = unprefixed("file-", &id).ok_or_else(not_found)?;
        let row = datasets::visible(&state, &user, uuid).await.map_err(|_| not_found())?;
        Ok(Json(file_of(&row)).into_response())
    }
    .await)
}

// ---------------------------------------------------------------------------------------------------------
// Jobs

/// A hyper-parameter: a number, or `auto` (the setting chosen for the data set and the model).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Setting {
    Auto,
    Value(f64),
}

fn setting(hyper: &Value, name: &str) -> Result<Setting, ApiError> {
    let param = format!("hyperparameters.{name}");
    match hyper.get(name) {
        None | Some(Value::Null) => Ok(Setting::Auto),
        Some(Value::String(s)) if s == "auto" => Ok(Setting::Auto),
        Some(Value::Number(n)) => n.as_f64().map(Setting::Value).ok_or_else(|| invalid("not a number", &param)),
        Some(_) => Err(invalid(format!("{name} must be a number or \"auto\""), &param)),
    }
}

/// A whole number in `range`, or `auto`.
fn whole(hyper: &Value, name: &str, range: std::ops::RangeInclusive<u32>) -> Result<Option<u32>, ApiError> {
    match setting(hyper, name)? {
        Setting::Auto => Ok(None),
        Setting::Value(v) if v.fract() == 0.0 && v >= f64::from(*range.start()) && v <= f64::from(*range.end()) => {
            Ok(Some(v as u32))
        }
        Setting::Value(_) => Err(invalid(
            format!("{name} must be a whole number from {} to {}, or \"auto\"", range.start(), range.end()),
            &format!("hyperparameters.{name}"),
        )),
    }
}

/// OpenAI's job request (the fields Bonsai reads; `integrations` and `metadata` are accepted and ignored).
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct CreateJobRequest {
    /// An installed base model (a folder of `BONSAI_MODELS_DIR`).
    model: String,
    /// `file-<dataset id>`: a data set of yours.
    training_file: String,
    /// Not supported (400).
    validation_file: Option<String>,
    /// `n_epochs` (1 to 1000), `batch_size` (1 to 1024), `learning_rate_multiplier` (times the rate chosen for
    /// the data set and the model, up to 100): each a number or `auto` (the chosen setting).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    hyperparameters: Value,
    /// `{"type": "supervised", "supervised": {"hyperparameters": {...}}}` (the same, OpenAI's newer form).
    #[schema(value_type = Option<Object>)]
    method: Option<Value>,
    /// Up to 64 letters, digits, `-`, `_` or `.`: part of `fine_tuned_model` (`ft:<model>:<suffix>:<id>`).
    suffix: Option<String>,
    /// The training's seed.
    seed: Option<i64>,
}

/// The hyper-parameters of a request: `hyperparameters`, or those of `method.supervised`.
fn hyperparameters(request: &CreateJobRequest) -> Result<Value, ApiError> {
    let Some(method) = &request.method else { return Ok(request.hyperparameters.clone()) };
    match method.get("type").and_then(Value::as_str) {
        None | Some("supervised") => {}
        Some(other) => return Err(invalid(format!("method `{other}` is not supported: only supervised"), "method")),
    }
    let nested = &method["supervised"]["hyperparameters"];
    Ok(if nested.is_object() { nested.clone() } else { request.hyperparameters.clone() })
}

/// `suffix`: up to 64 characters of letters, digits, `-`, `_` and `.`.
fn suffix(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else { return Ok(None) };
    let fits = raw.chars().count() <= 64 && raw.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if fits {
        Ok(Some(raw.to_owned()))
    } else {
        Err(invalid("suffix must be up to 64 letters, digits, '-', '_' or '.'", "suffix"))
    }
}

/// The learning rate `auto` chooses for `base_model_id` (it depends on the model's size only).
async fn auto_learning_rate(state: &AppState, base_model_id: &str) -> f32 {
    let parameters = match state.models.clone() {
        Some(models) => {
            let id = base_model_id.to_owned();
            let info = tokio::task::spawn_blocking(move || models.info(&id)).await.ok().and_then(Result::ok);
            info.map_or(0, |m| m.parameters)
        }
        None => 0,
    };
    TrainingConfig::chosen_for(Preset::Balanced, 1, parameters, None).learning_rate
}

/// The settings of a job: those chosen for the data set and the model, with the request's applied.
async fn job_config(
    state: &AppState,
    base_model_id: &str,
    dataset: &bonsai_domain::training::DatasetRef,
    hyper: &Value,
    seed: Option<i64>,
) -> Result<TrainingConfig, ApiError> {
    let epochs = whole(hyper, "n_epochs", 1..=1000)?;
    let batch_size = whole(hyper, "batch_size", 1..=1024)?;
    let multiplier = match setting(hyper, "learning_rate_multiplier")? {
        Setting::Auto => None,
        Setting::Value(m) if m > 0.0 && m <= 100.0 => Some(m),
        Setting::Value(_) => {
            return Err(invalid(
                "learning_rate_multiplier must be above 0 and at most 100, or \"auto\"",
                "hyperparameters.learning_rate_multiplier",
            ))
        }
    };
    let mut config = training::chosen_config(state, Preset::Balanced, base_model_id, dataset).await?;
    if let Some(epochs) = epochs {
        config.epochs = epochs;
    }
    if let Some(batch_size) = batch_size {
        config.batch_size = batch_size;
    }
    if let Some(multiplier) = multiplier {
        config.learning_rate = (f64::from(config.learning_rate) * multiplier) as f32;
        if config.learning_rate > 1.0 {
            let message = "learning_rate_multiplier makes a learning rate above 1";
            return Err(invalid(message, "hyperparameters.learning_rate_multiplier"));
        }
    }
    if let Some(seed) = seed {
        config.seed = u64::try_from(seed).map_err(|_| invalid("seed must not be negative", "seed"))?;
    }
    // One checkpoint per epoch (the last two are kept), and the warm-up `auto` gives the steps there are.
    let records = bonsai_projections::datasets::versions(&state.pool, dataset.dataset_id)
        .await?
        .iter()
        .find(|v| v.version == dataset.version as i32)
        .and_then(|v| v.record_count)
        .unwrap_or(1)
        .max(1) as u64;
    let steps_per_epoch = records.div_ceil(u64::from(config.batch_size)).max(1);
    config.checkpoint_every = steps_per_epoch as u32;
    config.warmup_steps = (steps_per_epoch * u64::from(config.epochs) / 4).clamp(1, 20) as u32;
    config.merge = true;
    Ok(config)
}

/// `POST /v1/fine_tuning/jobs`: a training task on the installed base model `model` and the data set
/// `training_file`, started at once; its model is registered and deployed when it completes.
#[utoipa::path(post, path = "/v1/fine_tuning/jobs", tag = "openai", security(("bearer" = [])),
    request_body = CreateJobRequest,
    responses((status = 200, description = "OpenAI's fine-tuning job object: `id` `ftjob-<task id>`"),
    (status = 400, description = "invalid_request_error with `param`: training_file, validation_file, \
        hyperparameters.n_epochs, hyperparameters.batch_size, hyperparameters.learning_rate_multiplier, suffix, seed"),
    (status = 404, description = "model_not_found (`param`: model): not an installed base model"), (status = 401, description = "authentication_error"), (status = 403, description = "permission_error: the role may not")))]
pub(crate) async fn create_job(
    State(state): State<AppState>,
    user: Result<AuthUser, ApiError>,
    Correlation(correlation): Correlation,
    body: Bytes,
) -> V1 {
    V1(async {
        let user = user?;
        user.require(Permission::ManageTraining)?;
        let request: CreateJobRequest = request_body(&body, "fine-tuning job request")?;
        let hyper = hyperparameters(&request)?;
        if !(hyper.is_null() || hyper.is_object()) {
            return Err(invalid("hyperparameters must be an object", "hyperparameters"));
        }
        let suffix = suffix(request.suffix.as_deref())?;
        let base_model_id = request.model.trim().to_owned();
        training::base_model(&state, &base_model_id).map_err(|_| ApiError::MissingField {
            code: "model_not_found",
            message: format!("The model `{base_model_id}` is not an installed base model"),
            field: "model".into(),
        })?;
        let given = request.training_file.trim();
        let bad_file = |why: String| invalid(format!("invalid training_file {given}: {why}"), "training_file");
        let dataset_id = unprefixed("file-", given).ok_or_else(|| bad_file("no such file".into()))?;
        let dataset = validated(&state, &user, &correlation, dataset_id).await?;
        let dataset = dataset.trainable(&user.actor(), None).map_err(|e| bad_file(e.to_string()))?;
        let mut config = job_config(&state, &base_model_id, &dataset, &hyper, request.seed).await?;
        // A validation file is evaluated on (its loss is each step's `valid_loss`), in place of a held-out share.
        if let Some(given) = request.validation_file.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            let bad = |why: String| invalid(format!("invalid validation_file {given}: {why}"), "validation_file");
            let eval_id = unprefixed("file-", given).ok_or_else(|| bad("no such file".into()))?;
            let eval = validated(&state, &user, &correlation, eval_id).await?;
            config.eval_dataset = Some(eval.trainable(&user.actor(), None).map_err(|e| bad(e.to_string()))?);
            config.eval_split = 0.0;
            if config.eval_every == 0 {
                config.eval_every = config.checkpoint_every.max(1);
            }
        }
        let id = Uuid::now_v7();
        // The job's id ends the model's name (its random part: uuid v7 begins with the time).
        let short = &id.simple().to_string()[24..];
        let name = match &suffix {
            Some(suffix) => format!("ft:{base_model_id}:{suffix}:{short}"),
            None => format!("ft:{base_model_id}:{short}"),
        };
        config.register_as = Some(RegisterAs { name: name.clone(), deploy: true });
        let new = NewTask {
            name: format!("fine-tuning job {name}").chars().take(100).collect(),
            description: format!("{} (OpenAI fine-tuning job)", job_id(id)),
            base_model_id,
            dataset,
            config,
        };
        let (id, _) = training::create_with_id(&state, &user, correlation, id, new, true).await?;
        let row = training::visible(&state, &user, id).await?;
        Ok(Json(job_object(&state, &row, &mut HashMap::new()).await?).into_response())
    }
    .await)
}

/// The model registered from task `row`: the one its `register_as` names, or the newest.
async fn model_of(
    state: &AppState,
    row: &TaskRow,
    register: Option<&RegisterAs>,
) -> Result<Option<ModelRow>, ApiError> {
    if row.status != TaskStatus::Completed.as_str() {
        return Ok(None);
    }
    let models = model_view::of_task(&state.pool, row.id).await?;
    let named = register.and_then(|r| models.iter().find(|m| m.name == r.name).cloned());
    Ok(named.or_else(|| if register.is_some() { None } else { models.into_iter().next() }))
}

/// OpenAI's job status and error of task `row` (and the model it became).
fn job_status(row: &TaskRow, register: Option<&RegisterAs>, model: Option<&ModelRow>) -> (&'static str, Value) {
    let error = |code: Option<&str>, message: Option<&str>| json!({"code": code, "message": message, "param": null});
    match row.status.as_str() {
        "created" | "queued" => ("queued", Value::Null),
        // Interrupted: waiting for another worker to resume it, which OpenAI's states call running.
        "running" | "interrupted" => ("running", Value::Null),
        "stopping" | "stopped" => ("cancelled", Value::Null),
        "failed" => ("failed", error(row.error_code.as_deref(), row.error_message.as_deref())),
        _ => match (register, model) {
            (None, _) => ("succeeded", Value::Null),
            (Some(_), Some(m)) if m.status == "failed" => {
                ("failed", error(m.error_code.as_deref(), m.error_message.as_deref()))
            }
            (Some(r), Some(m)) if m.status == "ready" && (!r.deploy || m.deployed || m.deployed_at.is_some()) => {
                ("succeeded", Value::Null)
            }
            // Trained; the model is being registered, exported or deployed.
            _ => ("running", Value::Null),
        },
    }
}

/// OpenAI's job object for task `row`. `rates` caches the `auto` learning rate of each base model.
async fn job_object(state: &AppState, row: &TaskRow, rates: &mut HashMap<String, f32>) -> Result<Value, ApiError> {
    let config: Option<TrainingConfig> = serde_json::from_value(row.config.clone()).ok();
    let register = config.as_ref().and_then(|c| c.register_as.as_ref());
    let model = model_of(state, row, register).await?;
    let (status, error) = job_status(row, register, model.as_ref());
    let fine_tuned_model = (status == "succeeded").then(|| model.as_ref().map(|m| m.name.clone())).flatten();
    let finished_at = match status {
        "succeeded" => model.as_ref().and_then(|m| m.deployed_at).or(row.completed_at).or(Some(row.updated_at)),
        "failed" | "cancelled" => Some(row.completed_at.unwrap_or(row.updated_at)),
        _ => None,
    };
    let rate = match rates.get(&row.base_model_id) {
        Some(rate) => *rate,
        None => {
            let rate = auto_learning_rate(state, &row.base_model_id).await;
            rates.insert(row.base_model_id.clone(), rate);
            rate
        }
    };
    let hyperparameters = config.as_ref().map_or(json!({}), |c| {
        let multiplier = (f64::from(c.learning_rate) / f64::from(rate) * 1e6).round() / 1e6;
        json!({"n_epochs": c.epochs, "batch_size": c.batch_size, "learning_rate_multiplier": multiplier})
    });
    let suffix = register.and_then(|r| {
        let parts: Vec<&str> = r.name.split(':').collect();
        (parts.len() == 4).then(|| parts[2].to_owned())
    });
    Ok(json!({
        "id": job_id(row.id),
        "object": "fine_tuning.job",
        "model": row.base_model_id,
        "created_at": row.created_at.timestamp(),
        "finished_at": finished_at.map(|t| t.timestamp()),
        "fine_tuned_model": fine_tuned_model,
        "organization_id": prefixed("user-", row.owner_id),
        "result_files": [],
        "status": status,
        "validation_file": config.as_ref().and_then(|c| c.eval_dataset.as_ref()).map(|d| file_id(d.dataset_id)),
        "training_file": file_id(row.dataset_id),
        "hyperparameters": hyperparameters,
        "method": {"type": "supervised", "supervised": {"hyperparameters": hyperparameters}},
        // Once it has trained: the examples' tokens over every epoch (OpenAI's billable tokens).
        "trained_tokens": row.result.as_ref().and_then(|r| r.get("trained_tokens")).and_then(Value::as_u64),
        "error": error,
        "seed": config.as_ref().map(|c| c.seed),
        "user_provided_suffix": suffix,
        "estimated_finish": null,
        "integrations": [],
    }))
}

/// The task of job `id` if the caller may see it; otherwise 404.
async fn job_task(state: &AppState, user: &AuthUser, id: &str) -> Result<TaskRow, ApiError> {
    let not_found = || ApiError::NotFound(format!("No such fine-tuning job: {id}"));
    let uuid = unprefixed("ftjob-", id).ok_or_else(not_found)?;
    training::visible(state, user, uuid).await.map_err(|e| match e {
        ApiError::NotFound(_) => not_found(),
        other => other,
    })
}

/// `GET /v1/fine_tuning/jobs`: the caller's jobs (every user's for an admin), newest first (`after`,
/// `limit`).
#[utoipa::path(get, path = "/v1/fine_tuning/jobs", tag = "openai", security(("bearer" = [])),
    params(("after" = Option<String>, Query, description = "the last job id of the previous page"),
        ("limit" = Option<u32>, Query, description = "1 to 100 (default 20)")),
    responses((status = 200, description = "`{object: list, data: [job], has_more}`, newest first"), (status = 401, description = "authentication_error"), (status = 403, description = "permission_error: the role may not")))]
pub(crate) async fn list_jobs(
    State(state): State<AppState>,
    user: Result<AuthUser, ApiError>,
    Query(query): Query<HashMap<String, String>>,
) -> V1 {
    V1(async {
        let user = user?;
        user.require(Permission::ManageTraining)?;
        let (limit, after) = window(&query, 20)?;
        let after = match after {
            Some(after) => Some(unprefixed("ftjob-", &after).ok_or_else(|| invalid("not a job id", "after"))?),
            None => None,
        };
        let owner = user.actor().only_own(Owned::TrainingTask);
        let mut rows = task_view::list_after(&state.pool, owner, after, limit as i64 + 1).await?;
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        let mut rates = HashMap::new();
        let mut data = Vec::with_capacity(rows.len());
        for row in &rows {
            data.push(job_object(&state, row, &mut rates).await?);
        }
        Ok(Json(json!({"object": "list", "data": data, "has_more": has_more})).into_response())
    }
    .await)
}

/// `GET /v1/fine_tuning/jobs/{id}`.
#[utoipa::path(get, path = "/v1/fine_tuning/jobs/{id}", tag = "openai", security(("bearer" = [])),
    params(("id" = String, Path, description = "`ftjob-<task id>`")),
    responses((status = 200, description = "OpenAI's fine-tuning job object"),
    (status = 404, description = "no such job of yours"), (status = 401, description = "authentication_error"), (status = 403, description = "permission_error: the role may not")))]
pub(crate) async fn get_job(
    State(state): State<AppState>,
    user: Result<AuthUser, ApiError>,
    Path(id): Path<String>,
) -> V1 {
    V1(async {
        let user = user?;
        user.require(Permission::ManageTraining)?;
        let row = job_task(&state, &user, &id).await?;
        Ok(Json(job_object(&state, &row, &mut HashMap::new()).await?).into_response())
    }
    .await)
}

/// `POST /v1/fine_tuning/jobs/{id}/cancel`: the stop command (a queued run stops at once, a running one
/// after its step). The task keeps its checkpoint: `POST /api/training/tasks/{id}/start` resumes it.
#[utoipa::path(post, path = "/v1/fine_tuning/jobs/{id}/cancel", tag = "openai", security(("bearer" = [])),
    params(("id" = String, Path, description = "`ftjob-<task id>`")),
    responses((status = 200, description = "the job, `cancelled`"), (status = 400, description = "the job has ended"),
    (status = 404, description = "no such job of yours"), (status = 401, description = "authentication_error"), (status = 403, description = "permission_error: the role may not")))]
pub(crate) async fn cancel_job(
    State(state): State<AppState>,
    user: Result<AuthUser, ApiError>,
    Correlation(correlation): Correlation,
    Path(id): Path<String>,
) -> V1 {
    V1(async {
        let user = user?;
        user.require(Permission::ManageTraining)?;
        let row = job_task(&state, &user, &id).await?;
        let meta = CommandMetadata::new(Some(user.id), correlation);
        let command = TrainingTaskCommand::StopTraining { by: user.actor() };
        state.commands.execute(row.id, command, &meta).await.map_err(|e| match ApiError::from(e) {
            ApiError::Conflict { message, .. } => ApiError::BadRequest {
                code: "invalid_request_error",
                message: format!("The job cannot be cancelled: {message}"),
            },
            other => other,
        })?;
        let row = training::visible(&state, &user, row.id).await?;
        Ok(Json(job_object(&state, &row, &mut HashMap::new()).await?).into_response())
    }
    .await)
}

/// One of a job's events: `(position in the event log, event object)`.
type JobEvent = (i64, Value);

fn event(position: i64, at: DateTime<Utc>, level: &str, message: String, kind: &str, data: Value) -> JobEvent {
    let object = json!({
        "id": format!("ftevent-{position}"), "object": "fine_tuning.job.event", "created_at": at.timestamp(),
        "level": level, "message": message, "type": kind, "data": data,
    });
    (position, object)
}

/// The events of job `row`: its task's, then those of the model it became.
async fn job_events(state: &AppState, row: &TaskRow) -> Result<Vec<JobEvent>, ApiError> {
    let mut out = Vec::new();
    for stored in aggregate_history(&state.pool, "TrainingTask", &row.id.to_string()).await? {
        let Ok(decoded) = serde_json::from_value::<TrainingTaskEvent>(stored.payload.clone()) else { continue };
        let (at, position) = (stored.recorded_at, stored.position);
        let info = |message: String| event(position, at, "info", message, "message", json!({}));
        out.push(match decoded {
            TrainingTaskEvent::TrainingTaskCreated { .. } => {
                info(format!("Created fine-tuning job: {}", job_id(row.id)))
            }
            TrainingTaskEvent::TrainingStartRequested { attempt: 1 } => info("Fine-tuning job queued".into()),
            TrainingTaskEvent::TrainingStartRequested { attempt } => {
                info(format!("Fine-tuning job queued again (run {attempt}, from the last checkpoint)"))
            }
            TrainingTaskEvent::TrainingStarted { worker, resumed_from_step, .. } => info(match resumed_from_step {
                Some(step) => format!("Fine-tuning job resumed from step {step} on {worker}"),
                None => format!("Fine-tuning job started on {worker}"),
            }),
            TrainingTaskEvent::TrainingProgressed { metrics: m, .. } => {
                let mut message = format!("Step {}/{}: training loss={:.4}", m.step, m.total_steps, m.loss);
                if let Some(eval) = m.eval_loss {
                    message.push_str(&format!(", validation loss={eval:.4}"));
                }
                let data = json!({"step": m.step, "total_steps": m.total_steps, "train_loss": m.loss,
                    "valid_loss": m.eval_loss, "learning_rate": m.learning_rate, "epoch": m.epoch,
                    "tokens_per_sec": m.tokens_per_sec});
                event(position, at, "info", message, "metrics", data)
            }
            TrainingTaskEvent::TrainingInterrupted { step, worker, reason, .. } => event(
                position,
                at,
                "warn",
                format!("Fine-tuning job interrupted at step {step} ({reason} on {worker}); it resumes from its last checkpoint"),
                "message",
                json!({"step": step, "reason": reason}),
            ),
            TrainingTaskEvent::TrainingStopRequested { .. } => info("Cancelling the fine-tuning job".into()),
            TrainingTaskEvent::TrainingStopped { step, .. } => {
                info(format!("Fine-tuning job cancelled at step {step}"))
            }
            TrainingTaskEvent::TrainingCompleted { result, .. } => {
                let data = json!({"step": result.steps, "train_loss": result.final_loss,
                    "valid_loss": result.best_eval_loss, "duration_secs": result.duration_secs,
                    "warnings": result.warnings});
                let mut message = format!("Training completed: {} steps", result.steps);
                for warning in &result.warnings {
                    message.push_str(&format!(". Warning ({}): {}", warning.code, warning.message));
                }
                let level = if result.warnings.is_empty() { "info" } else { "warn" };
                event(position, at, level, message, "message", data)
            }
            TrainingTaskEvent::TrainingFailed { code, message, .. } => event(
                position,
                at,
                "error",
                format!("Fine-tuning job failed ({code}): {message}"),
                "message",
                json!({}),
            ),
        });
    }
    let config: Option<TrainingConfig> = serde_json::from_value(row.config.clone()).ok();
    let register = config.as_ref().and_then(|c| c.register_as.as_ref());
    if let Some(model) = model_of(state, row, register).await? {
        for stored in aggregate_history(&state.pool, "Model", &model.id.to_string()).await? {
            let Ok(decoded) = serde_json::from_value::<ModelEvent>(stored.payload.clone()) else { continue };
            let (at, position) = (stored.recorded_at, stored.position);
            let info = |message: String| event(position, at, "info", message, "message", json!({}));
            match decoded {
                ModelEvent::ModelRegistered { name, .. } => {
                    out.push(info(format!("New fine-tuned model created: {name}")))
                }
                ModelEvent::ModelExported { .. } => out.push(info("The model is exported and ready to serve".into())),
                ModelEvent::ModelExportFailed { code, message } => out.push(event(
                    position,
                    at,
                    "error",
                    format!("The model could not be exported ({code}): {message}"),
                    "message",
                    json!({}),
                )),
                ModelEvent::ModelDeployed => {
                    out.push(info(format!("The job has successfully completed: {} is deployed", model.name)))
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

/// `GET /v1/fine_tuning/jobs/{id}/events`: newest first (`after`, `limit`); progress reports are `metrics`
/// events whose `data` has the step and the losses.
#[utoipa::path(get, path = "/v1/fine_tuning/jobs/{id}/events", tag = "openai", security(("bearer" = [])),
    params(("id" = String, Path, description = "`ftjob-<task id>`"),
        ("after" = Option<String>, Query, description = "the last event id of the previous page"),
        ("limit" = Option<u32>, Query, description = "1 to 100 (default 20)")),
    responses((status = 200, description = "`{object: list, data: [event], has_more}`, newest first"),
    (status = 404, description = "no such job of yours"), (status = 401, description = "authentication_error"), (status = 403, description = "permission_error: the role may not")))]
pub(crate) async fn list_events(
    State(state): State<AppState>,
    user: Result<AuthUser, ApiError>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> V1 {
    V1(async {
        let user = user?;
        user.require(Permission::ManageTraining)?;
        let (limit, after) = window(&query, 20)?;
        let after = match after {
            Some(after) => Some(
                after
                    .strip_prefix("ftevent-")
                    .and_then(|p| p.parse::<i64>().ok())
                    .ok_or_else(|| invalid("not an event id", "after"))?,
            ),
            None => None,
        };
        let row = job_task(&state, &user, &id).await?;
        let mut events = job_events(&state, &row).await?;
        events.sort_by_key(|(position, _)| std::cmp::Reverse(*position));
        let older: Vec<Value> =
            events.into_iter().filter(|(p, _)| after.is_none_or(|a| *p < a)).map(|(_, e)| e).collect();
        let has_more = older.len() > limit;
        let data: Vec<Value> = older.into_iter().take(limit).collect();
        Ok(Json(json!({"object": "list", "data": data, "has_more": has_more})).into_response())
    }
    .await)
}

/// `GET /v1/fine_tuning/jobs/{id}/checkpoints`: the checkpoints the task keeps (one is written per epoch; the
/// newest two are kept), newest first, with the losses recorded at their step.
#[utoipa::path(get, path = "/v1/fine_tuning/jobs/{id}/checkpoints", tag = "openai", security(("bearer" = [])),
    params(("id" = String, Path, description = "`ftjob-<task id>`"),
        ("after" = Option<String>, Query, description = "the last checkpoint id of the previous page"),
        ("limit" = Option<u32>, Query, description = "1 to 100 (default 10)")),
    responses((status = 200, description = "`{object: list, data: [checkpoint], has_more, first_id, last_id}`"),
    (status = 404, description = "no such job of yours"), (status = 401, description = "authentication_error"), (status = 403, description = "permission_error: the role may not")))]
pub(crate) async fn list_checkpoints(
    State(state): State<AppState>,
    user: Result<AuthUser, ApiError>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> V1 {
    V1(async {
        let user = user?;
        user.require(Permission::ManageTraining)?;
        let (limit, after) = window(&query, 10)?;
        let row = job_task(&state, &user, &id).await?;
        let mut checkpoints = training::checkpoints_of(&state, &row).await?;
        checkpoints.reverse();
        let checkpoint_id = |step: u64| format!("ftckpt-{}-{step}", row.id.simple());
        let (page, has_more) = page_after(
            &checkpoints,
            after.map(|a| move |c: &training::CheckpointDto| checkpoint_id(c.step) == a),
            limit,
        );
        let data: Vec<Value> = page
            .iter()
            .map(|c| {
                json!({
                    "id": checkpoint_id(c.step), "object": "fine_tuning.job.checkpoint",
                    "created_at": c.created_at.timestamp(), "fine_tuning_job_id": job_id(row.id),
                    "fine_tuned_model_checkpoint": null, "step_number": c.step,
                    "metrics": {"step": c.step, "train_loss": c.train_loss, "valid_loss": c.eval_loss},
                    "size_bytes": c.size_bytes,
                })
            })
            .collect();
        let first = data.first().map(|c| c["id"].clone());
        let last = data.last().map(|c| c["id"].clone());
        Ok(Json(json!({"object": "list", "data": data, "has_more": has_more, "first_id": first, "last_id": last}))
            .into_response())
    }
    .await)
}
