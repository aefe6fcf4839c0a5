//! The datasets view: each dataset with its latest status, and every version with its validation
//! outcome (stats, warnings, errors) as the validation worker recorded it.

use crate::{Projection, ProjectionError, StoredEvent};
use bonsai_domain::dataset::{DatasetEvent, DatasetFile};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

pub struct DatasetsProjection;

async fn insert_version(
    conn: &mut PgConnection,
    id: Uuid,
    version: u32,
    file: &DatasetFile,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO dataset_versions_view (dataset_id, version, sha256, file_size, filename, format, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'uploaded', $7)",
    )
    .bind(id)
    .bind(version as i32)
    .bind(&file.sha256)
    .bind(file.size as i64)
    .bind(&file.filename)
    .bind(&file.format)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets a version's status, and the dataset's when that version is the latest.
async fn set_status(
    conn: &mut PgConnection,
    id: Uuid,
    version: u32,
    status: &str,
    seq: i64,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE dataset_versions_view SET status = $3 WHERE dataset_id = $1 AND version = $2")
        .bind(id)
        .bind(version as i32)
        .bind(status)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE datasets_view SET version = $4, updated_at = $5, \
         status = CASE WHEN latest_version = $2 THEN $3 ELSE status END WHERE id = $1",
    )
    .bind(id)
    .bind(version as i32)
    .bind(status)
    .bind(seq)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait::async_trait]
impl Projection for DatasetsProjection {
    fn name(&self) -> &'static str {
        "datasets"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["datasets_view", "dataset_versions_view"]
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["Dataset"]
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        let (decoded, id): (DatasetEvent, Uuid) = event.decode()?;
        let (at, seq) = (event.recorded_at, event.sequence);
        match decoded {
            DatasetEvent::DatasetUploaded { owner_id, name, description, file, .. } => {
                sqlx::query(
                    "INSERT INTO datasets_view (id, owner_id, name, description, status, latest_version, version, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, 'uploaded', 1, $5, $6, $6)",
                )
                .bind(id)
                .bind(owner_id)
                .bind(name)
                .bind(description)
                .bind(seq)
                .bind(at)
                .execute(&mut *conn)
                .await?;
                insert_version(conn, id, 1, &file, at).await?;
            }
            DatasetEvent::DatasetVersionAdded { version, file } => {
                insert_version(conn, id, version, &file, at).await?;
                sqlx::query(
                    "UPDATE datasets_view SET latest_version = $2, status = 'uploaded', version = $3, updated_at = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(version as i32)
                .bind(seq)
                .bind(at)
                .execute(conn)
                .await?;
            }
            DatasetEvent::DatasetValidationRequested { version, .. } => {
                sqlx::query(
                    "UPDATE dataset_versions_view SET record_count = NULL, shape = NULL, stats = NULL, warnings = NULL, \
                     errors = NULL, error_count = NULL, validated_at = NULL WHERE dataset_id = $1 AND version = $2",
                )
                .bind(id)
                .bind(version as i32)
                .execute(&mut *conn)
                .await?;
                set_status(conn, id, version, "validating", seq, at).await?;
            }
            DatasetEvent::DatasetValidated { version, record_count, shape, stats, warnings } => {
                sqlx::query(
                    "UPDATE dataset_versions_view SET record_count = $3, shape = $4, stats = $5, warnings = $6, \
                     errors = '[]'::jsonb, error_count = 0, validated_at = $7 WHERE dataset_id = $1 AND version = $2",
                )
                .bind(id)
                .bind(version as i32)
                .bind(record_count as i64)
                .bind(shape)
                .bind(stats)
                .bind(warnings)
                .bind(at)
                .execute(&mut *conn)
                .await?;
                set_status(conn, id, version, "valid", seq, at).await?;
            }
            DatasetEvent::DatasetValidationFailed { version, errors, error_count, record_count } => {
                sqlx::query(
                    "UPDATE dataset_versions_view SET record_count = $3, errors = $4, error_count = $5, validated_at = $6 \
                     WHERE dataset_id = $1 AND version = $2",
                )
                .bind(id)
                .bind(version as i32)
                .bind(record_count as i64)
                .bind(errors)
                .bind(error_count as i64)
                .bind(at)
                .execute(&mut *conn)
                .await?;
                set_status(conn, id, version, "invalid", seq, at).await?;
            }
            DatasetEvent::DatasetArchived => {
                sqlx::query("UPDATE datasets_view SET archived = true, version = $2, updated_at = $3 WHERE id = $1")
                    .bind(id)
                    .bind(seq)
                    .bind(at)
                    .execute(conn)
                    .await?;
            }
        }
        Ok(())
    }
}

/// A dataset with its latest version's file (a row of the datasets view joined with that version).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct DatasetRow {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    pub description: String,
    pub status: String,
    pub latest_version: i32,
    pub archived: bool,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub sha256: String,
    pub file_size: i64,
    pub filename: String,
    pub format: String,
    pub record_count: Option<i64>,
}

/// A row of the dataset versions view.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct VersionRow {
    pub dataset_id: Uuid,
    pub version: i32,
    pub sha256: String,
    pub file_size: i64,
    pub filename: String,
    pub format: String,
    pub status: String,
    pub record_count: Option<i64>,
    pub shape: Option<String>,
    pub stats: Option<serde_json::Value>,
    pub warnings: Option<serde_json::Value>,
    pub errors: Option<serde_json::Value>,
    pub error_count: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub validated_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "d.id, d.owner_id, d.name, d.description, d.status, d.latest_version, d.archived, d.version, \
     d.created_at, d.updated_at, v.sha256, v.file_size, v.filename, v.format, v.record_count";
const FROM: &str =
    "datasets_view d JOIN dataset_versions_view v ON v.dataset_id = d.id AND v.version = d.latest_version";
const VERSION_COLUMNS: &str = "dataset_id, version, sha256, file_size, filename, format, status, record_count, shape, \
     stats, warnings, errors, error_count, created_at, validated_at";

/// A dataset that is not archived.
pub async fn find<'e>(db: impl PgExecutor<'e>, id: Uuid) -> Result<Option<DatasetRow>, ProjectionError> {
    let sql = format!("SELECT {COLUMNS} FROM {FROM} WHERE d.id = $1 AND NOT d.archived");
    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(db).await?)
}

/// Every version of a dataset, oldest first.
pub async fn versions<'e>(db: impl PgExecutor<'e>, id: Uuid) -> Result<Vec<VersionRow>, ProjectionError> {
    let sql = format!("SELECT {VERSION_COLUMNS} FROM dataset_versions_view WHERE dataset_id = $1 ORDER BY version");
    Ok(sqlx::query_as(&sql).bind(id).fetch_all(db).await?)
}

/// A page of datasets that are not archived, newest first, with the total count: only `owner`'s
/// when given, and only those in `status` when given.
pub async fn list(
    db: &PgPool,
    owner: Option<Uuid>,
    status: Option<&str>,
    page: i64,
    page_size: i64,
) -> Result<(Vec<DatasetRow>, i64), ProjectionError> {
    const FILTER: &str =
        "NOT d.archived AND ($1::uuid IS NULL OR d.owner_id = $1) AND ($2::text IS NULL OR d.status = $2)";
    let sql =
        format!("SELECT {COLUMNS}, count(*) OVER () AS total FROM {FROM} WHERE {FILTER} ORDER BY d.created_at DESC, d.id LIMIT $3 OFFSET $4");
    let rows: Vec<crate::Counted<_>> = sqlx::query_as(&sql)
        .bind(owner)
        .bind(status)
        .bind(page_size)
        .bind((page - 1) * page_size)
        .fetch_all(db)
        .await?;
    let count = format!("SELECT count(*) FROM datasets_view d WHERE {FILTER}");
    crate::paged(rows, page, || sqlx::query_scalar(&count).bind(owner).bind(status).fetch_one(db)).await
}

/// Every row of both tables, in key order (rebuild comparisons).
pub async fn all_rows(db: &PgPool) -> Result<(Vec<DatasetRow>, Vec<VersionRow>), ProjectionError> {
    let datasets = sqlx::query_as(&format!("SELECT {COLUMNS} FROM {FROM} ORDER BY d.id")).fetch_all(db).await?;
    let versions =
        sqlx::query_as(&format!("SELECT {VERSION_COLUMNS} FROM dataset_versions_view ORDER BY dataset_id, version"))
            .fetch_all(db)
            .await?;
    Ok((datasets, versions))
}
