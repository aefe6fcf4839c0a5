//! The TrainingTask aggregate: one LoRA fine-tuning job and its runs.
//!
//! ```text
//! created --start--> queued --worker--> running --> completed | failed
//!    ^                 |                  |  \--stop--> stopping --worker--> stopped
//!    |                 \------stop------------------------------------------> stopped
//!  stopped | failed --start (resumes from the last checkpoint)--> queued
//! ```
//!
//! Each start opens a new run (`attempt`); a worker's reports name their run, and reports of an older run
//! are ignored, so a late or redelivered message never changes a newer run.

mod command;
mod config;
mod event;
#[cfg(test)]
mod tests;

pub use command::TrainingTaskCommand;
pub use config::{
    ConfigError, Preset, RegisterAs, TrainingConfig, DEVICES, SCHEDULES, TARGETS, UNTRAINED_BELOW_PARAMETERS,
};
pub use event::TrainingTaskEvent;

use crate::Actor;
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Errors a training task command can be refused with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrainingTaskError {
    #[error("a training task with this id already exists")]
    AlreadyExists,
    #[error("no such training task")]
    NotFound,
    #[error("invalid configuration: {0}")]
    InvalidConfig(ConfigError),
    #[error("the name must be 1 to 100 characters, without control characters")]
    InvalidName,
    #[error("a {status} task cannot be {action}")]
    InvalidState { status: TaskStatus, action: &'static str },
}

/// The dataset version a task trains on, fixed when the task is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetRef {
    pub dataset_id: Uuid,
    pub version: u32,
    /// The stored file, so that a worker needs no read model to find it.
    pub sha256: String,
}

/// What a progress report says (the ML crate's progress callback, as recorded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingMetrics {
    pub step: u64,
    pub total_steps: u64,
    pub epoch: f64,
    pub loss: f64,
    pub learning_rate: f64,
    pub tokens_per_sec: f64,
    pub eta_secs: f64,
    pub eval_loss: Option<f64>,
}

/// What a finished run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingResult {
    pub steps: u64,
    /// `completed` or `early_stopped`.
    pub stop_reason: String,
    pub final_loss: Option<f64>,
    pub best_eval_loss: Option<f64>,
    pub train_examples: u64,
    pub eval_examples: u64,
    /// Where it ran, in words (`cpu (2 threads)`).
    pub device: String,
    /// The PEFT adapter folder and the merged model folder, relative to the platform's data folder.
    pub adapter_path: String,
    pub merged_path: Option<String>,
    pub duration_secs: f64,
    /// The file naming the records held out for evaluation (`{"records": [positions]}`), relative to the
    /// data folder; none without an eval split (and in results recorded before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_records_path: Option<String>,
    /// What the loss curve says the owner should know (`loss_not_falling`, `eval_loss_rising`); each also
    /// raises a `training_warning` alert for the owner.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<TrainingWarning>,
    /// The examples' tokens trained on over every epoch and segment (padding not counted); none in results
    /// recorded before it was counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trained_tokens: Option<u64>,
}

/// A warning about a completed run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingWarning {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    #[default]
    Created,
    Queued,
    Running,
    /// The worker running it died or shut down: the run waits for another worker, which resumes it from its
    /// last checkpoint (a crashed worker's run is redelivered after the ack wait).
    Interrupted,
    Stopping,
    Stopped,
    Completed,
    Failed,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 8] = [
        TaskStatus::Created,
        TaskStatus::Queued,
        TaskStatus::Running,
        TaskStatus::Interrupted,
        TaskStatus::Stopping,
        TaskStatus::Stopped,
        TaskStatus::Completed,
        TaskStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Created => "created",
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Interrupted => "interrupted",
            TaskStatus::Stopping => "stopping",
            TaskStatus::Stopped => "stopped",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
        }
    }

    /// Whether a worker has taken the current run (a worker taken for lost may still report: its reports
    /// count, and show it running again).
    pub fn is_running(self) -> bool {
        matches!(self, TaskStatus::Running | TaskStatus::Stopping | TaskStatus::Interrupted)
    }

    /// Whether a worker owns the task now (or will, once it picks the run up).
    pub fn is_active(self) -> bool {
        matches!(self, TaskStatus::Queued | TaskStatus::Running | TaskStatus::Interrupted | TaskStatus::Stopping)
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state the TrainingTask aggregate decides on.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct TrainingTask {
    pub id: Option<Uuid>,
    pub owner_id: Option<Uuid>,
    pub base_model_id: String,
    pub dataset: Option<DatasetRef>,
    pub config: Option<TrainingConfig>,
    pub status: TaskStatus,
    /// The current (or last) run; 0 before the first start.
    pub attempt: u32,
    /// The last step reported.
    pub step: u64,
    /// The worker that runs (or last ran) the current run.
    #[serde(default)]
    pub worker: Option<String>,
    /// What the last completed run produced.
    pub result: Option<TrainingResult>,
}

/// What keeps a task from becoming a model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotAModel {
    #[error("the training task is {0}; only a completed task makes a model")]
    NotCompleted(TaskStatus),
    #[error("the task was trained with merge: false")]
    NotMerged,
}

/// What a model registered from a completed task is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelMaterial {
    /// The completed run's merged weights.
    pub source: crate::model::ModelSource,
    pub base_model_id: String,
    /// The run's result, kept with the model.
    pub metrics: serde_json::Value,
}

impl TrainingTask {
    fn exists(&self) -> bool {
        self.id.is_some()
    }

    /// The model this task's last completed run makes (for a registration, by a user or for `register_as`).
    pub fn model_material(&self) -> Result<ModelMaterial, NotAModel> {
        let (Some(task_id), TaskStatus::Completed, Some(result)) = (self.id, self.status, &self.result) else {
            return Err(NotAModel::NotCompleted(self.status));
        };
        let merged_path = result.merged_path.clone().ok_or(NotAModel::NotMerged)?;
        Ok(ModelMaterial {
            source: crate::model::ModelSource::TrainingTask { task_id, merged_path },
            base_model_id: self.base_model_id.clone(),
            metrics: serde_json::to_value(result).unwrap_or_default(),
        })
    }

    /// Whether `actor` may see and command this task: its owner, or an admin.
    pub fn visible_to(&self, actor: &Actor) -> bool {
        actor.may_see(crate::Owned::TrainingTask, self.owner_id)
    }
}

impl Aggregate for TrainingTask {
    const TYPE: &'static str = "TrainingTask";
    type Command = TrainingTaskCommand;
    type Event = TrainingTaskEvent;
    type Error = TrainingTaskError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in command::decide(self, command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            TrainingTaskEvent::TrainingTaskCreated { task_id, owner_id, base_model_id, dataset, config, .. } => {
                self.id = Some(task_id);
                self.owner_id = Some(owner_id);
                self.base_model_id = base_model_id;
                self.dataset = Some(dataset);
                self.config = Some(config);
            }
            TrainingTaskEvent::TrainingStartRequested { attempt } => {
                self.attempt = attempt;
                self.status = TaskStatus::Queued;
            }
            TrainingTaskEvent::TrainingStarted { worker, .. } => {
                self.status = TaskStatus::Running;
                self.worker = Some(worker);
            }
            TrainingTaskEvent::TrainingProgressed { metrics, .. } => {
                self.step = metrics.step;
                // A worker taken for lost that was only slow: its report shows it runs after all.
                if self.status == TaskStatus::Interrupted {
                    self.status = TaskStatus::Running;
                }
            }
            TrainingTaskEvent::TrainingInterrupted { step, .. } => {
                self.step = step;
                self.status = TaskStatus::Interrupted;
            }
            TrainingTaskEvent::TrainingStopRequested { .. } => self.status = TaskStatus::Stopping,
            TrainingTaskEvent::TrainingStopped { step, .. } => {
                self.step = step;
                self.status = TaskStatus::Stopped;
            }
            TrainingTaskEvent::TrainingCompleted { result, .. } => {
                self.step = result.steps;
                self.status = TaskStatus::Completed;
                self.result = Some(result);
            }
            TrainingTaskEvent::TrainingFailed { .. } => self.status = TaskStatus::Failed,
        }
    }
}
