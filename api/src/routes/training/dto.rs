//! What the training endpoints take and answer.

use bonsai_domain::training::TrainingConfig;
use bonsai_projections::training::{ProgressRow, TaskRow};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// A new fine-tuning task.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTaskRequest {
    /// 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// An installed base model (a folder of `BONSAI_MODELS_DIR` with config.json and tokenizer.json).
    pub base_model_id: String,
    /// A dataset of yours (any dataset for an admin) whose version is `valid`.
    pub dataset_id: Uuid,
    /// Which version (default: the latest).
    #[schema(minimum = 1)]
    pub dataset_version: Option<u32>,
    /// A validation dataset (yours, `valid`) to evaluate on instead of a held-out share of `dataset_id`
    /// (`eval_split` must then be 0): the eval loss of every `eval_every` steps, early stopping and the
    /// result's `best_eval_loss` are on it. Recorded in the task's `config.eval_dataset`.
    pub eval_dataset_id: Option<Uuid>,
    /// Which version of `eval_dataset_id` (default: the latest).
    #[schema(minimum = 1)]
    pub eval_dataset_version: Option<u32>,
    /// LoRA and optimiser settings; every field is optional (defaults: rank 8, alpha 16, targets q and v,
    /// learning_rate 2e-4, lr_schedule cosine, 3 epochs, batch_size 4, max_seq_len 512, checkpoint_every 50,
    /// device cpu, merge true; `register_as` `{"name", "deploy"}` registers the merged model under that name
    /// when a run completes, and deploys it once exported with `deploy`). Unknown fields are refused. Without
    /// `config`, settings are chosen from the data set's size and the base model (see `preset`) and recorded in
    /// the task's `config`.
    #[schema(value_type = Option<Object>)]
    pub config: Option<TrainingConfig>,
    /// Without `config`: `quick`, `balanced` (default) or `thorough`.
    pub preset: Option<String>,
    /// Queue the first run at once (default false: start it with `POST .../start`).
    #[serde(default)]
    pub start: bool,
}

/// The latest recorded progress of a task's current run.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProgressDto {
    pub step: i64,
    pub total_steps: Option<i64>,
    /// `step / total_steps`, 0 to 1.
    pub fraction: f64,
    pub epoch: Option<f64>,
    pub loss: Option<f64>,
    /// The latest evaluation loss.
    pub eval_loss: Option<f64>,
    pub learning_rate: Option<f64>,
    pub tokens_per_sec: Option<f64>,
    pub eta_secs: Option<f64>,
}

/// A training task.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TaskDto {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    pub description: String,
    pub base_model_id: String,
    pub dataset_id: Uuid,
    pub dataset_version: i32,
    #[schema(value_type = Object)]
    pub config: Value,
    /// `created`, `queued`, `running`, `interrupted` (its worker's node shut down or is gone: another
    /// worker resumes it from its last checkpoint), `stopping`, `stopped`, `completed` or `failed`.
    pub status: String,
    /// The current run (each start is a new one; 0 before the first).
    pub attempt: i32,
    pub progress: ProgressDto,
    /// The worker running (or that last ran) the task.
    pub worker: Option<String>,
    /// Once completed: steps, stop_reason, final_loss, best_eval_loss, examples, device, adapter_path,
    /// merged_path (relative to the data folder), duration_secs.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// Once failed: a machine-readable code and a message.
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl From<TaskRow> for TaskDto {
    fn from(r: TaskRow) -> Self {
        let fraction = match r.total_steps {
            Some(total) if total > 0 => (r.step as f64 / total as f64).min(1.0),
            _ => 0.0,
        };
        let error = r.error_code.map(|code| serde_json::json!({ "code": code, "message": r.error_message }));
        TaskDto {
            id: r.id,
            owner_id: r.owner_id,
            name: r.name,
            description: r.description,
            base_model_id: r.base_model_id,
            dataset_id: r.dataset_id,
            dataset_version: r.dataset_version,
            config: r.config,
            status: r.status,
            attempt: r.attempt,
            progress: ProgressDto {
                step: r.step,
                total_steps: r.total_steps,
                fraction,
                epoch: r.epoch,
                loss: r.loss,
                eval_loss: r.eval_loss,
                learning_rate: r.learning_rate,
                tokens_per_sec: r.tokens_per_sec,
                eta_secs: r.eta_secs,
            },
            worker: r.worker,
            result: r.result,
            error,
            created_at: r.created_at,
            started_at: r.started_at,
            completed_at: r.completed_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TaskPage {
    pub items: Vec<TaskDto>,
    pub total: i64,
    pub page: i64,
    pub page_size: i64,
}

/// The answer to a command on a task: its state as the command left it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TaskAccepted {
    pub id: Uuid,
    pub status: String,
    pub attempt: u32,
}

/// One recorded progress report.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProgressPoint {
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

impl From<ProgressRow> for ProgressPoint {
    fn from(r: ProgressRow) -> Self {
        ProgressPoint {
            attempt: r.attempt,
            step: r.step,
            total_steps: r.total_steps,
            epoch: r.epoch,
            loss: r.loss,
            learning_rate: r.learning_rate,
            tokens_per_sec: r.tokens_per_sec,
            eta_secs: r.eta_secs,
            eval_loss: r.eval_loss,
            recorded_at: r.recorded_at,
        }
    }
}

/// A task's status, latest progress and loss curve.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProgressReport {
    pub id: Uuid,
    pub status: String,
    pub attempt: i32,
    #[serde(flatten)]
    pub latest: ProgressDto,
    /// Every recorded report, run by run, step by step (recorded at most once a second, and at every
    /// evaluation).
    pub history: Vec<ProgressPoint>,
}

/// A checkpoint a task's run wrote and keeps: a stopped or failed task resumes from its last one.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CheckpointDto {
    pub step: u64,
    /// The training loss last recorded at or before the step.
    pub train_loss: Option<f64>,
    /// The evaluation loss last recorded at or before the step (with an `eval_split`).
    pub eval_loss: Option<f64>,
    /// Bytes on disk (adapter and optimiser state).
    pub size_bytes: u64,
    pub created_at: DateTime<Utc>,
}

/// A task's checkpoints, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CheckpointList {
    pub id: Uuid,
    pub items: Vec<CheckpointDto>,
}
