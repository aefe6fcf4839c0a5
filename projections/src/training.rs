//! The training tasks view: each task with its status and latest progress, and every recorded progress
//! report (the loss curve of each run).

use crate::{Projection, ProjectionError, StoredEvent};
use bonsai_domain::training::TrainingTaskEvent;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

pub struct TrainingProjection;

#[async_trait::async_trait]
impl Projection for TrainingProjection {
    fn name(&self) -> &'static str {
        "training"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["training_tasks_view", "training_progress_view"]
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["TrainingTask"]
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        let (decoded, id): (TrainingTaskEvent, Uuid) = event.decode()?;
        let (at, seq) = (event.recorded_at, event.sequence);
        match decoded {
            TrainingTaskEvent::TrainingTaskCreated {
                owner_id,
                name,
                description,
                base_model_id,
                dataset,
                config,
                ..
            } => {
                let config = serde_json::to_value(config).map_err(|e| event.undecodable(e.to_string()))?;
                sqlx::query(
                    "INSERT INTO training_tasks_view (id, owner_id, name, description, base_model_id, dataset_id, \
                     dataset_version, config, status, version, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'created', $9, $10, $10)",
                )
                .bind(id)
                .bind(owner_id)
                .bind(name)
                .bind(description)
                .bind(base_model_id)
                .bind(dataset.dataset_id)
                .bind(dataset.version as i32)
                .bind(config)
                .bind(seq)
                .bind(at)
                .execute(conn)
                .await?;
            }
            TrainingTaskEvent::TrainingStartRequested { attempt } => {
                sqlx::query(
                    "UPDATE training_tasks_view SET status = 'queued', attempt = $2, error_code = NULL, \
                     error_message = NULL, completed_at = NULL, version = $3, updated_at = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(attempt as i32)
                .bind(seq)
                .bind(at)
                .execute(conn)
                .await?;
            }
            TrainingTaskEvent::TrainingStarted { worker, .. } => {
                sqlx::query(
                    "UPDATE training_tasks_view SET status = 'running', worker = $2, \
                     started_at = COALESCE(started_at, $4), version = $3, updated_at = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(worker)
                .bind(seq)
                .bind(at)
                .execute(conn)
                .await?;
            }
            TrainingTaskEvent::TrainingProgressed { attempt, metrics: m } => {
                sqlx::query(
                    "INSERT INTO training_progress_view (task_id, attempt, step, total_steps, epoch, loss, \
                     learning_rate, tokens_per_sec, eta_secs, eval_loss, recorded_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                     ON CONFLICT (task_id, attempt, step) DO UPDATE SET total_steps = EXCLUDED.total_steps, \
                     epoch = EXCLUDED.epoch, loss = EXCLUDED.loss, learning_rate = EXCLUDED.learning_rate, \
                     tokens_per_sec = EXCLUDED.tokens_per_sec, eta_secs = EXCLUDED.eta_secs, \
                     eval_loss = EXCLUDED.eval_loss, recorded_at = EXCLUDED.recorded_at",
                )
                .bind(id)
                .bind(attempt as i32)
                .bind(m.step as i64)
                .bind(m.total_steps as i64)
                .bind(m.epoch)
                .bind(m.loss)
                .bind(m.learning_rate)
                .bind(m.tokens_per_sec)
                .bind(m.eta_secs)
                .bind(m.eval_loss)
                .bind(at)
                .execute(&mut *conn)
                .await?;
                sqlx::query(
                    "UPDATE training_tasks_view SET step = $2, total_steps = $3, epoch = $4, loss = $5, \
                     learning_rate = $6, tokens_per_sec = $7, eta_secs = $8, eval_loss = COALESCE($9, eval_loss), \
                     status = CASE WHEN status = 'interrupted' THEN 'running' ELSE status END, \
                     version = $10, updated_at = $11 WHERE id = $1",
                )
                .bind(id)
                .bind(m.step as i64)
                .bind(m.total_steps as i64)
                .bind(m.epoch)
                .bind(m.loss)
                .bind(m.learning_rate)
                .bind(m.tokens_per_sec)
                .bind(m.eta_secs)
                .bind(m.eval_loss)
                .bind(seq)
                .bind(at)
                .execute(conn)
                .await?;
            }
            TrainingTaskEvent::TrainingInterrupted { step, .. } => {
                sqlx::query(
                    "UPDATE training_tasks_view SET status = 'interrupted', step = $2, eta_secs = NULL, \
                     tokens_per_sec = NULL, version = $3, updated_at = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(step as i64)
                .bind(seq)
                .bind(at)
                .execute(conn)
                .await?;
            }
            TrainingTaskEvent::TrainingStopRequested { .. } => {
                set_status(conn, id, "stopping", seq, at).await?;
            }
            TrainingTaskEvent::TrainingStopped { step, .. } => {
                sqlx::query(
                    "UPDATE training_tasks_view SET status = 'stopped', step = $2, eta_secs = NULL, \
                     completed_at = $4, version = $3, updated_at = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(step as i64)
                .bind(seq)
                .bind(at)
                .execute(conn)
                .await?;
            }
            TrainingTaskEvent::TrainingCompleted { result, .. } => {
                let steps = result.steps as i64;
                let result = serde_json::to_value(result).map_err(|e| event.undecodable(e.to_string()))?;
                sqlx::query(
                    "UPDATE training_tasks_view SET status = 'completed', step = $2, result = $3, eta_secs = 0, \
                     completed_at = $5, version = $4, updated_at = $5 WHERE id = $1",
                )
                .bind(id)
                .bind(steps)
                .bind(result)
                .bind(seq)
                .bind(at)
                .execute(conn)
                .await?;
            }
            TrainingTaskEvent::TrainingFailed { code, message, .. } => {
                sqlx::query(
                    "UPDATE training_tasks_view SET status = 'failed', error_code = $2, error_message = $3, \
                     eta_secs = NULL, completed_at = $5, version = $4, updated_at = $5 WHERE id = $1",
                )
                .bind(id)
                .bind(code)
                .bind(message)
                .bind(seq)
                .bind(at)
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }
}

async fn set_status(
    conn: &mut PgConnection,
    id: Uuid,
    status: &str,
    seq: i64,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE training_tasks_view SET status = $2, version = $3, updated_at = $4 WHERE id = $1")
        .bind(id)
        .bind(status)
        .bind(seq)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}

/// A row of the training tasks view.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct TaskRow {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    pub description: String,
    pub base_model_id: String,
    pub dataset_id: Uuid,
    pub dataset_version: i32,
    pub config: serde_json::Value,
    pub status: String,
    pub attempt: i32,
    pub step: i64,
    pub total_steps: Option<i64>,
    pub epoch: Option<f64>,
    pub loss: Option<f64>,
    pub eval_loss: Option<f64>,
    pub learning_rate: Option<f64>,
    pub tokens_per_sec: Option<f64>,
    pub eta_secs: Option<f64>,
    pub worker: Option<String>,
    pub result: Option<serde_json::Value>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// One recorded progress report.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct ProgressRow {
    pub attempt: i32,
    pub step: i64,
    pub total_steps: i64,
    pub epoch: f64,
    pub loss: f64,
    pub learning_rate: f64,
    pub tokens_per_sec: f64,
    pub eta_secs: f64,
    pub eval_loss: Option<f64>,
    pub recorded_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, owner_id, name, description, base_model_id, dataset_id, dataset_version, config, status, \
     attempt, step, total_steps, epoch, loss, eval_loss, learning_rate, tokens_per_sec, eta_secs, worker, result, \
     error_code, error_message, version, created_at, started_at, completed_at, updated_at";

pub async fn find<'e>(db: impl PgExecutor<'e>, id: Uuid) -> Result<Option<TaskRow>, ProjectionError> {
    let sql = format!("SELECT {COLUMNS} FROM training_tasks_view WHERE id = $1");
    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(db).await?)
}

/// The recorded progress of a task, run by run and step by step.
pub async fn progress<'e>(db: impl PgExecutor<'e>, id: Uuid) -> Result<Vec<ProgressRow>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT attempt, step, total_steps, epoch, loss, learning_rate, tokens_per_sec, eta_secs, eval_loss, \
         recorded_at FROM training_progress_view WHERE task_id = $1 ORDER BY attempt, step",
    )
    .bind(id)
    .fetch_all(db)
    .await?)
}

/// A page of tasks, newest first, with the total count: only `owner`'s when given, only those in `status`
/// and on `dataset` when given.
pub async fn list(
    db: &PgPool,
    owner: Option<Uuid>,
    status: Option<&str>,
    dataset: Option<Uuid>,
    page: i64,
    page_size: i64,
) -> Result<(Vec<TaskRow>, i64), ProjectionError> {
    const FILTER: &str = "($1::uuid IS NULL OR owner_id = $1) AND ($2::text IS NULL OR status = $2) \
         AND ($3::uuid IS NULL OR dataset_id = $3)";
    let sql = format!(
        "SELECT {COLUMNS}, count(*) OVER () AS total FROM training_tasks_view WHERE {FILTER} ORDER BY created_at DESC, id LIMIT $4 OFFSET $5"
    );
    let rows: Vec<crate::Counted<_>> = sqlx::query_as(&sql)
        .bind(owner)
        .bind(status)
        .bind(dataset)
        .bind(page_size)
        .bind((page - 1) * page_size)
        .fetch_all(db)
        .await?;
    let count = format!("SELECT count(*) FROM training_tasks_view WHERE {FILTER}");
    crate::paged(rows, page, || sqlx::query_scalar(&count).bind(owner).bind(status).bind(dataset).fetch_one(db)).await
}

/// Up to `limit` tasks, newest first, created before task `after` when given (a cursor: the last task of
/// the previous page): only `owner`'s when given.
pub async fn list_after<'e>(
    db: impl PgExecutor<'e>,
    owner: Option<Uuid>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<TaskRow>, ProjectionError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM training_tasks_view WHERE ($1::uuid IS NULL OR owner_id = $1) AND ($2::uuid IS NULL \
         OR (created_at, id) < (SELECT created_at, id FROM training_tasks_view WHERE id = $2)) \
         ORDER BY created_at DESC, id DESC LIMIT $3"
    );
    Ok(sqlx::query_as(&sql).bind(owner).bind(after).bind(limit).fetch_all(db).await?)
}

/// Every row of both tables, in key order (rebuild comparisons).
pub async fn all_rows(db: &PgPool) -> Result<(Vec<TaskRow>, Vec<ProgressRow>), ProjectionError> {
    let tasks = sqlx::query_as(&format!("SELECT {COLUMNS} FROM training_tasks_view ORDER BY id")).fetch_all(db).await?;
    let progress = sqlx::query_as(
        "SELECT attempt, step, total_steps, epoch, loss, learning_rate, tokens_per_sec, eta_secs, eval_loss, \
         recorded_at FROM training_progress_view ORDER BY task_id, attempt, step",
    )
    .fetch_all(db)
    .await?;
    Ok((tasks, progress))
}
