//! Events of the TrainingTask aggregate. Payloads are versioned (`event_version`); the JSON of each is
//! documented in docs/events.md for NATS integrators.

use super::{DatasetRef, TrainingConfig, TrainingMetrics, TrainingResult};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TrainingTaskEvent {
    /// A task that trains `base_model_id` on one fixed, validated dataset version with `config`.
    TrainingTaskCreated {
        task_id: Uuid,
        owner_id: Uuid,
        name: String,
        description: String,
        base_model_id: String,
        dataset: DatasetRef,
        config: TrainingConfig,
    },
    /// Run number `attempt` is queued for a training worker; from the second attempt on, the worker
    /// resumes from the task's last checkpoint.
    TrainingStartRequested {
        attempt: u32,
    },
    /// A worker took run `attempt` (again, after a worker crash); `resumed_from_step` is the checkpoint it
    /// continues from.
    TrainingStarted {
        attempt: u32,
        worker: String,
        resumed_from_step: Option<u64>,
    },
    /// A progress report, at a bounded rate (every evaluation is reported).
    TrainingProgressed {
        attempt: u32,
        metrics: TrainingMetrics,
    },
    /// The worker running run `attempt` stopped without finishing it: it shut down (`reason: "shutdown"`) or
    /// it stopped renewing its node's lease (`"worker_lost"`: killed, crashed, cut off). The run resumes
    /// from its last checkpoint (at or before `step`) when another worker takes it.
    TrainingInterrupted {
        attempt: u32,
        worker: String,
        step: u64,
        reason: String,
    },
    /// Stop was asked for a running task; the worker stops after the current step.
    TrainingStopRequested {
        attempt: u32,
    },
    /// The run ended before its last step (asked to); a later start resumes from `step`.
    TrainingStopped {
        attempt: u32,
        step: u64,
    },
    TrainingCompleted {
        attempt: u32,
        result: TrainingResult,
    },
    /// `code` is machine-readable (`base_model_missing`, `dataset_missing`, `device_unavailable`,
    /// `invalid_data`, `diverged`, `training_error`).
    TrainingFailed {
        attempt: u32,
        code: String,
        message: String,
    },
}

impl DomainEvent for TrainingTaskEvent {
    fn event_type(&self) -> String {
        match self {
            TrainingTaskEvent::TrainingTaskCreated { .. } => "TrainingTaskCreated",
            TrainingTaskEvent::TrainingStartRequested { .. } => "TrainingStartRequested",
            TrainingTaskEvent::TrainingStarted { .. } => "TrainingStarted",
            TrainingTaskEvent::TrainingProgressed { .. } => "TrainingProgressed",
            TrainingTaskEvent::TrainingInterrupted { .. } => "TrainingInterrupted",
            TrainingTaskEvent::TrainingStopRequested { .. } => "TrainingStopRequested",
            TrainingTaskEvent::TrainingStopped { .. } => "TrainingStopped",
            TrainingTaskEvent::TrainingCompleted { .. } => "TrainingCompleted",
            TrainingTaskEvent::TrainingFailed { .. } => "TrainingFailed",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
