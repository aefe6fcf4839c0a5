//! The models view: every registered model with its export status, deployment and last test.

use crate::{Projection, ProjectionError, StoredEvent};
use bonsai_domain::model::{ModelEvent, ModelSource};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

pub struct ModelsProjection;

#[async_trait::async_trait]
impl Projection for ModelsProjection {
    fn name(&self) -> &'static str {
        "models"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["models_view"]
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["Model"]
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        let (decoded, id): (ModelEvent, Uuid) = event.decode()?;
        let (at, seq) = (event.recorded_at, event.sequence);
        let query = match decoded {
            ModelEvent::ModelRegistered { owner_id, name, version, base_model_id, source, metrics, .. } => {
                let task = match &source {
                    ModelSource::TrainingTask { task_id, .. } | ModelSource::TrainingCheckpoint { task_id, .. } => {
                        Some(*task_id)
                    }
                    ModelSource::Installed { .. } => None,
                };
                let source = serde_json::to_value(source).map_err(|e| event.undecodable(e.to_string()))?;
                sqlx::query(
                    "INSERT INTO models_view (id, owner_id, name, model_version, base_model_id, source, \
                     training_task_id, metrics, status, version, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'exporting', $9, $10, $10)",
                )
                .bind(id)
                .bind(owner_id)
                .bind(name)
                .bind(version as i32)
                .bind(base_model_id)
                .bind(source)
                .bind(task)
                .bind(metrics)
                .bind(seq)
                .bind(at)
            }
            ModelEvent::ModelExported { onnx_path, export_secs } => sqlx::query(
                "UPDATE models_view SET status = 'ready', onnx_path = $4, export_secs = $5, version = $2, \
                 updated_at = $3 WHERE id = $1",
            )
            .bind(id)
            .bind(seq)
            .bind(at)
            .bind(onnx_path)
            .bind(export_secs),
            ModelEvent::ModelExportFailed { code, message } => sqlx::query(
                "UPDATE models_view SET status = 'failed', error_code = $4, error_message = $5, version = $2, \
                 updated_at = $3 WHERE id = $1",
            )
            .bind(id)
            .bind(seq)
            .bind(at)
            .bind(code)
            .bind(message),
            ModelEvent::ModelDeployed => sqlx::query(
                "UPDATE models_view SET deployed = true, deployed_at = $3, version = $2, updated_at = $3 WHERE id = $1",
            )
            .bind(id)
            .bind(seq)
            .bind(at),
            ModelEvent::ModelUndeployed | ModelEvent::ModelRolledBack { .. } => {
                sqlx::query("UPDATE models_view SET deployed = false, version = $2, updated_at = $3 WHERE id = $1")
                    .bind(id)
                    .bind(seq)
                    .bind(at)
            }
            ModelEvent::ModelTestRequested { .. } => sqlx::query(
                "UPDATE models_view SET test_report = '{\"status\": \"testing\"}'::jsonb, version = $2, \
                 updated_at = $3 WHERE id = $1",
            )
            .bind(id)
            .bind(seq)
            .bind(at),
            // Defaults and aliases are read from the event store (bonsai_commands::routing).
            ModelEvent::ModelMadeDefault | ModelEvent::ModelAliasSet { .. } | ModelEvent::ModelAliasRemoved { .. } => {
                sqlx::query("UPDATE models_view SET version = $2, updated_at = $3 WHERE id = $1")
                    .bind(id)
                    .bind(seq)
                    .bind(at)
            }
            ModelEvent::ModelTested { accuracy, report, .. } => sqlx::query(
                "UPDATE models_view SET accuracy = $4, test_report = $5, tested_at = $3, version = $2, \
                 updated_at = $3 WHERE id = $1",
            )
            .bind(id)
            .bind(seq)
            .bind(at)
            .bind(accuracy)
            .bind(report),
        };
        query.execute(conn).await?;
        Ok(())
    }
}

/// A row of the models view.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct ModelRow {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    pub model_version: i32,
    pub base_model_id: String,
    pub source: serde_json::Value,
    pub training_task_id: Option<Uuid>,
    pub metrics: serde_json::Value,
    pub status: String,
    pub onnx_path: Option<String>,
    pub export_secs: Option<f64>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub deployed: bool,
    pub accuracy: Option<f64>,
    pub test_report: Option<serde_json::Value>,
    pub tested_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub deployed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, owner_id, name, model_version, base_model_id, source, training_task_id, metrics, status, \
     onnx_path, export_secs, error_code, error_message, deployed, accuracy, test_report, tested_at, version, \
     created_at, deployed_at, updated_at";

pub async fn find<'e>(db: impl PgExecutor<'e>, id: Uuid) -> Result<Option<ModelRow>, ProjectionError> {
    Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM models_view WHERE id = $1")).bind(id).fetch_optional(db).await?)
}

/// The models registered from training task `task_id`, newest first.
pub async fn of_task<'e>(db: impl PgExecutor<'e>, task_id: Uuid) -> Result<Vec<ModelRow>, ProjectionError> {
    let sql = format!("SELECT {COLUMNS} FROM models_view WHERE training_task_id = $1 ORDER BY created_at DESC, id");
    Ok(sqlx::query_as(&sql).bind(task_id).fetch_all(db).await?)
}

/// The next version number for a model called `name` (1 for a new name).
pub async fn next_version<'e>(db: impl PgExecutor<'e>, name: &str) -> Result<i32, ProjectionError> {
    let max: Option<i32> = sqlx::query_scalar("SELECT max(model_version) FROM models_view WHERE name = $1")
        .bind(name)
        .fetch_one(db)
        .await?;
    Ok(max.unwrap_or(0) + 1)
}

/// The newest tested version of model `name` older than `version`: (version, accuracy).
pub async fn previous_tested_version<'e>(
    db: impl PgExecutor<'e>,
    name: &str,
    version: i32,
) -> Result<Option<(i32, f64)>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT model_version, accuracy FROM models_view WHERE name = $1 AND model_version < $2 \
         AND accuracy IS NOT NULL ORDER BY model_version DESC LIMIT 1",
    )
    .bind(name)
    .bind(version)
    .fetch_optional(db)
    .await?)
}

/// The most recently deployed model, if any is deployed.
pub async fn latest_deployed<'e>(db: impl PgExecutor<'e>) -> Result<Option<ModelRow>, ProjectionError> {
    let sql = format!("SELECT {COLUMNS} FROM models_view WHERE deployed ORDER BY deployed_at DESC, id LIMIT 1");
    Ok(sqlx::query_as(&sql).fetch_optional(db).await?)
}

/// A page of models, newest first, with the total: only deployed ones when `deployed_only`, only those of
/// `status` and called `name` (every version) when given.
pub async fn list(
    db: &PgPool,
    deployed_only: bool,
    status: Option<&str>,
    name: Option<&str>,
    page: i64,
    page_size: i64,
) -> Result<(Vec<ModelRow>, i64), ProjectionError> {
    const FILTER: &str =
        "(NOT $1 OR deployed) AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR name = $3)";
    let sql =
        format!("SELECT {COLUMNS}, count(*) OVER () AS total FROM models_view WHERE {FILTER} ORDER BY created_at DESC, id LIMIT $4 OFFSET $5");
    let rows: Vec<crate::Counted<_>> = sqlx::query_as(&sql)
        .bind(deployed_only)
        .bind(status)
        .bind(name)
        .bind(page_size)
        .bind((page - 1) * page_size)
        .fetch_all(db)
        .await?;
    let count = format!("SELECT count(*) FROM models_view WHERE {FILTER}");
    crate::paged(rows, page, || sqlx::query_scalar(&count).bind(deployed_only).bind(status).bind(name).fetch_one(db))
        .await
}

/// Every row, in key order (rebuild comparisons).
pub async fn all_rows(db: &PgPool) -> Result<Vec<ModelRow>, ProjectionError> {
    Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM models_view ORDER BY id")).fetch_all(db).await?)
}
