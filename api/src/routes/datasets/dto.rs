//! What the data endpoints answer, and the dataset as its own events describe it.

use crate::auth::AuthUser;
use crate::{ApiError, AppState};
use bonsai_domain::dataset::DatasetError;
use bonsai_domain::dataset::DatasetEvent;
use bonsai_projections::datasets::{DatasetRow, VersionRow};
use bonsai_projections::log::aggregate_history;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// A dataset and its latest version's file.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DatasetDto {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    pub description: String,
    /// The latest version's: `uploaded`, `validating`, `valid` or `invalid`.
    pub status: String,
    /// The latest version's number (1 for a new dataset).
    pub version: i32,
    pub file_size: i64,
    pub sha256: String,
    /// The uploader's file name: metadata only, never a path on the server.
    pub filename: String,
    /// `jsonl`, `json` or `csv`, detected from the content.
    pub format: String,
    /// Valid records of the latest version, once validated.
    pub record_count: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<DatasetRow> for DatasetDto {
    fn from(r: DatasetRow) -> Self {
        DatasetDto {
            id: r.id,
            owner_id: r.owner_id,
            name: r.name,
            description: r.description,
            status: r.status,
            version: r.latest_version,
            file_size: r.file_size,
            sha256: r.sha256,
            filename: r.filename,
            format: r.format,
            record_count: r.record_count,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// One immutable version and the outcome of its last validation.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VersionDto {
    pub version: i32,
    pub status: String,
    pub sha256: String,
    pub file_size: i64,
    pub filename: String,
    pub format: String,
    /// `question_answer`, `alpaca` or `chat`, once validated.
    pub shape: Option<String>,
    pub record_count: Option<i64>,
    /// Records, duplicates, empty answers, min/mean/max/total characters of prompts and answers.
    #[schema(value_type = Option<Object>)]
    pub stats: Option<Value>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub warnings: Option<Value>,
    /// The first 100 errors: `line`, `record`, `field`, `kind`, `message`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub errors: Option<Value>,
    /// Every error, also those not kept.
    pub error_count: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub validated_at: Option<DateTime<Utc>>,
}

impl From<VersionRow> for VersionDto {
    fn from(r: VersionRow) -> Self {
        VersionDto {
            version: r.version,
            status: r.status,
            sha256: r.sha256,
            file_size: r.file_size,
            filename: r.filename,
            format: r.format,
            shape: r.shape,
            record_count: r.record_count,
            stats: r.stats,
            warnings: r.warnings,
            errors: r.errors,
            error_count: r.error_count,
            created_at: r.created_at,
            validated_at: r.validated_at,
        }
    }
}

/// A dataset, every version (oldest first), and the latest version's validation at the top level.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DatasetDetail {
    #[serde(flatten)]
    pub dataset: DatasetDto,
    #[schema(value_type = Option<Object>)]
    pub stats: Option<Value>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub warnings: Option<Value>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub errors: Option<Value>,
    pub error_count: Option<i64>,
    pub versions: Vec<VersionDto>,
}

impl DatasetDetail {
    pub(crate) fn new(dataset: DatasetDto, versions: Vec<VersionDto>) -> Self {
        let latest = versions.iter().find(|v| v.version == dataset.version);
        DatasetDetail {
            stats: latest.and_then(|v| v.stats.clone()),
            warnings: latest.and_then(|v| v.warnings.clone()),
            errors: latest.and_then(|v| v.errors.clone()),
            error_count: latest.and_then(|v| v.error_count),
            dataset,
            versions,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DatasetPage {
    pub items: Vec<DatasetDto>,
    pub total: i64,
    pub page: i64,
    pub page_size: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ValidationAccepted {
    pub id: Uuid,
    /// The version being validated.
    pub version: i32,
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PreviewPage {
    pub id: Uuid,
    pub version: i32,
    pub offset: u64,
    pub limit: u64,
    /// Normalised records: `{"messages": [{"role": "user"|"assistant"|"system", "content": "..."}]}`.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Value>,
}

/// The multipart form of `POST /api/data/upload`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the form for OpenAPI; the handler reads the fields as a stream
pub(crate) struct UploadForm {
    /// The dataset file (JSONL, JSON array or CSV; UTF-8).
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    /// Defaults to the file name.
    pub name: Option<String>,
    pub description: Option<String>,
    /// `jsonl`, `json` or `csv`: checked against what the content is.
    pub format: Option<String>,
    /// Adds a new version to this dataset instead of creating one.
    pub dataset_id: Option<Uuid>,
}

/// The dataset folded from its committed events: the answer to a command, never behind it.
pub(crate) async fn current(state: &AppState, id: Uuid) -> Result<DatasetDto, ApiError> {
    fold(state, id).await?.map(|(dto, _)| dto).ok_or_else(|| ApiError::NotFound("no such dataset".into()))
}

/// 404 unless `user` may see the dataset, 409 if it is archived.
pub(crate) async fn ensure_open(state: &AppState, user: &AuthUser, id: Uuid) -> Result<(), ApiError> {
    match fold(state, id).await? {
        Some((dto, _)) if !user.actor().may_see(bonsai_domain::Owned::Dataset, Some(dto.owner_id)) => {
            Err(DatasetError::NotFound.into())
        }
        Some((_, true)) => Err(DatasetError::Archived.into()),
        Some((_, false)) => Ok(()),
        None => Err(DatasetError::NotFound.into()),
    }
}

/// The dataset and whether it is archived, from its events; `None` if it does not exist.
async fn fold(state: &AppState, id: Uuid) -> Result<Option<(DatasetDto, bool)>, ApiError> {
    let history = aggregate_history(&state.pool, "Dataset", &id.to_string()).await?;
    let mut dto: Option<DatasetDto> = None;
    let mut archived = false;
    for stored in history {
        let event: DatasetEvent =
            serde_json::from_value(stored.payload).map_err(|e| ApiError::Internal(e.to_string()))?;
        let at = stored.recorded_at;
        match (event, dto.as_mut()) {
            (DatasetEvent::DatasetUploaded { dataset_id, owner_id, name, description, file }, _) => {
                dto = Some(DatasetDto {
                    id: dataset_id,
                    owner_id,
                    name,
                    description,
                    status: "uploaded".into(),
                    version: 1,
                    file_size: file.size as i64,
                    sha256: file.sha256,
                    filename: file.filename,
                    format: file.format,
                    record_count: None,
                    created_at: at,
                    updated_at: at,
                });
            }
            (DatasetEvent::DatasetVersionAdded { version, file }, Some(d)) => {
                (d.version, d.status, d.record_count) = (version as i32, "uploaded".into(), None);
                (d.file_size, d.sha256, d.filename, d.format) =
                    (file.size as i64, file.sha256, file.filename, file.format);
                d.updated_at = at;
            }
            (DatasetEvent::DatasetValidationRequested { version, .. }, Some(d)) if version as i32 == d.version => {
                (d.status, d.record_count, d.updated_at) = ("validating".into(), None, at);
            }
            (DatasetEvent::DatasetValidated { version, record_count, .. }, Some(d)) if version as i32 == d.version => {
                (d.status, d.record_count, d.updated_at) = ("valid".into(), Some(record_count as i64), at);
            }
            (DatasetEvent::DatasetValidationFailed { version, record_count, .. }, Some(d))
                if version as i32 == d.version =>
            {
                (d.status, d.record_count, d.updated_at) = ("invalid".into(), Some(record_count as i64), at);
            }
            (DatasetEvent::DatasetArchived, _) => archived = true,
            _ => {}
        }
    }
    Ok(dto.map(|d| (d, archived)))
}
