//! `/api/data`: dataset upload, versions, validation, preview and archiving.
//!
//! Commands go through the Dataset aggregate, which also decides who may touch a dataset (another
//! user's is "not found"). Reads come from the datasets view, except the answers to commands, which
//! are folded from the dataset's own committed events so that they never lag behind.

pub(crate) mod dto;
mod upload;

pub(crate) use dto::{DatasetDetail, DatasetDto, DatasetPage, PreviewPage, UploadForm, ValidationAccepted, VersionDto};
pub(crate) use upload::{__path_upload, store, upload, FormKind};

use crate::auth::AuthUser;
use crate::extract::{page_window, status_filter, ApiPath, ApiQuery, Correlation};
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use bonsai_commands::CommandMetadata;
use bonsai_domain::dataset::DatasetCommand;
use bonsai_domain::Owned;
use bonsai_domain::Permission;
use bonsai_infra::{FileStore, FileStoreError, ModelLookupError, Staged, StoredBlob};
use bonsai_projections::datasets::{self, DatasetRow};
use serde::Deserialize;
use std::io::Read;
use utoipa::IntoParams;
use uuid::Uuid;

/// The store of an [`AppState`] built without [`AppState::with_datasets`]: refuses everything.
pub(crate) struct NoFileStore;

#[async_trait::async_trait]
impl FileStore for NoFileStore {
    async fn stage(&self, _: bonsai_infra::files::ByteStream<'_>, _: u64) -> Result<Staged, FileStoreError> {
        Err(FileStoreError::Io(std::io::Error::other("no file store is configured")))
    }
    fn open_staged(&self, _: &Staged) -> Result<Box<dyn Read + Send>, FileStoreError> {
        Err(FileStoreError::Io(std::io::Error::other("no file store is configured")))
    }
    async fn commit(&self, _: Staged) -> Result<StoredBlob, FileStoreError> {
        Err(FileStoreError::Io(std::io::Error::other("no file store is configured")))
    }
    fn open(&self, _: &str) -> Result<Box<dyn Read + Send>, FileStoreError> {
        Err(FileStoreError::Io(std::io::Error::other("no file store is configured")))
    }
    async fn remove(&self, _: &str) -> Result<(), FileStoreError> {
        Ok(())
    }
    async fn list(&self) -> Result<Vec<bonsai_infra::files::BlobInfo>, FileStoreError> {
        Ok(Vec::new())
    }
    async fn remove_stale_partials(&self, _: std::time::SystemTime) -> Result<u64, FileStoreError> {
        Ok(0)
    }
}

fn unprocessable(message: impl Into<String>) -> ApiError {
    ApiError::Unprocessable { code: "validation_failed", message: message.into(), details: None }
}

/// The dataset as the view has it, if `user` may see it; otherwise (also for another user's) 404.
pub(crate) async fn visible(state: &AppState, user: &AuthUser, id: Uuid) -> Result<DatasetRow, ApiError> {
    crate::fresh::current(state, "datasets", "Dataset", id).await?;
    let row = datasets::find(&state.pool, id).await?;
    match row {
        Some(row) if user.actor().may_see(Owned::Dataset, Some(row.owner_id)) => Ok(row),
        _ => Err(ApiError::NotFound("no such dataset".into())),
    }
}

const STATUSES: [&str; 4] = ["uploaded", "validating", "valid", "invalid"];

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// 1-based page number (default 1).
    #[param(minimum = 1)]
    pub page: Option<i64>,
    /// 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub page_size: Option<i64>,
    /// `uploaded`, `validating`, `valid` or `invalid` (the latest version's status).
    pub status: Option<String>,
}

/// Datasets, newest first: the caller's own, or every user's for an admin. Archived ones are not listed.
#[utoipa::path(get, path = "/api/data/datasets", tag = "datasets", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = DatasetPage), (status = 403, body = crate::ErrorBody),
    (status = 422, description = "validation_failed", body = crate::ErrorBody)))]
pub(crate) async fn list_datasets(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<DatasetPage>, ApiError> {
    user.require(Permission::ManageDatasets)?;
    let (page, page_size) = page_window(query.page, query.page_size)?;
    status_filter(query.status.as_deref(), &STATUSES)?;
    let owner = user.actor().only_own(Owned::Dataset);
    let (rows, total) = datasets::list(&state.pool, owner, query.status.as_deref(), page, page_size).await?;
    Ok(Json(DatasetPage { items: rows.into_iter().map(DatasetDto::from).collect(), total, page, page_size }))
}

/// One dataset with every version: status, stats, warnings and errors of each validation.
#[utoipa::path(get, path = "/api/data/datasets/{id}", tag = "datasets", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "dataset id")),
    responses((status = 200, body = DatasetDetail), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn get_dataset(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<DatasetDetail>, ApiError> {
    user.require(Permission::ManageDatasets)?;
    let row = visible(&state, &user, id).await?;
    let versions: Vec<VersionDto> =
        datasets::versions(&state.pool, id).await?.into_iter().map(VersionDto::from).collect();
    Ok(Json(DatasetDetail::new(row.into(), versions)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ValidateQuery {
    /// An installed base model (a folder of `BONSAI_MODELS_DIR`): its tokenizer counts the prompt and
    /// answer tokens in the stats, and examples over 4,096 tokens are flagged as long.
    pub tokenizer_model_id: Option<String>,
}

/// The installed model `id`, checked before the request is recorded (the worker resolves it again).
fn tokenizer_model(state: &AppState, id: &str) -> Result<(), ApiError> {
    let lookup = match &state.models {
        Some(models) => models.tokenizer_dir(id).map(drop),
        None => Err(ModelLookupError::NotFound(id.to_owned())),
    };
    lookup.map_err(|e| {
        let code = match e {
            ModelLookupError::InvalidId(_) => "validation_failed",
            ModelLookupError::NotFound(_) => "unknown_tokenizer_model",
        };
        let details = Some(serde_json::json!({ "field": "tokenizer_model_id" }));
        ApiError::Unprocessable { code, message: e.to_string(), details }
    })
}

/// Validates the latest version in the background; poll the dataset for `valid` or `invalid`.
#[utoipa::path(post, path = "/api/data/datasets/{id}/validate", tag = "datasets", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "dataset id"), ValidateQuery),
    responses((status = 202, body = ValidationAccepted), (status = 404, body = crate::ErrorBody),
    (status = 409, description = "dataset_archived", body = crate::ErrorBody),
    (status = 422, description = "unknown_tokenizer_model or validation_failed", body = crate::ErrorBody)))]
pub(crate) async fn validate_dataset(
    State(state): State<AppState>,
    user: AuthUser,
    Correlation(correlation): Correlation,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<ValidateQuery>,
) -> Result<(StatusCode, Json<ValidationAccepted>), ApiError> {
    user.require(Permission::ManageDatasets)?;
    let tokenizer_model_id = query.tokenizer_model_id.map(|id| id.trim().to_owned()).filter(|id| !id.is_empty());
    if let Some(model) = &tokenizer_model_id {
        tokenizer_model(&state, model)?;
    }
    let meta = CommandMetadata::new(Some(user.id), correlation);
    let command = DatasetCommand::RequestValidation { by: user.actor(), tokenizer_model_id };
    state.commands.execute(id, command, &meta).await?;
    let current = dto::current(&state, id).await?;
    Ok((StatusCode::ACCEPTED, Json(ValidationAccepted { id, version: current.version, status: current.status })))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct PreviewQuery {
    /// Valid records to skip (default 0).
    pub offset: Option<u64>,
    /// 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    /// Which version (default: the latest).
    #[param(minimum = 1)]
    pub version: Option<i32>,
}

/// A page of normalised records (lists of role + content messages), read from the file.
#[utoipa::path(get, path = "/api/data/datasets/{id}/preview", tag = "datasets", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "dataset id"), PreviewQuery),
    responses((status = 200, body = PreviewPage), (status = 404, body = crate::ErrorBody),
    (status = 422, description = "validation_failed", body = crate::ErrorBody)))]
pub(crate) async fn preview_dataset(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<PreviewQuery>,
) -> Result<Json<PreviewPage>, ApiError> {
    user.require(Permission::ManageDatasets)?;
    let offset = query.offset.unwrap_or(0);
    let limit = query.limit.unwrap_or(20);
    if !(1..=bonsai_datasets::MAX_PREVIEW_LIMIT as u64).contains(&limit) {
        return Err(unprocessable("limit must be between 1 and 100"));
    }
    let row = visible(&state, &user, id).await?;
    let number = query.version.unwrap_or(row.latest_version);
    let version = datasets::versions(&state.pool, id)
        .await?
        .into_iter()
        .find(|v| v.version == number)
        .ok_or_else(|| ApiError::NotFound(format!("the dataset has no version {number}")))?;
    let files = state.files.clone();
    let sha256 = version.sha256.clone();
    // Parsing is CPU work and the reader blocks: a blocking thread, not the runtime's.
    let page = tokio::task::spawn_blocking(move || {
        let reader = files.open(&sha256).map_err(|e| ApiError::Internal(e.to_string()))?;
        bonsai_datasets::preview(reader, offset as usize, limit as usize).map_err(upload::content_error)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    let items = page.into_iter().map(|r| serde_json::to_value(r).unwrap_or_default()).collect();
    Ok(Json(PreviewPage { id, version: number, offset, limit, items }))
}

/// Archives a dataset: it leaves every list and cannot be trained on; its events and files remain.
#[utoipa::path(delete, path = "/api/data/datasets/{id}", tag = "datasets", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "dataset id")),
    responses((status = 204, description = "archived"), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn archive_dataset(
    State(state): State<AppState>,
    user: AuthUser,
    Correlation(correlation): Correlation,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    user.require(Permission::ManageDatasets)?;
    let meta = CommandMetadata::new(Some(user.id), correlation);
    state.commands.execute(id, DatasetCommand::ArchiveDataset { by: user.actor() }, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}
