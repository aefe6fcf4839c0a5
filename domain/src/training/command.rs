//! Commands of the TrainingTask aggregate and the decisions they lead to.

use super::{
    DatasetRef, TaskStatus, TrainingConfig, TrainingMetrics, TrainingResult, TrainingTask, TrainingTaskError,
    TrainingTaskEvent,
};
use crate::Actor;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub enum TrainingTaskCommand {
    /// The caller has checked that `dataset` is a valid version the owner may use and that the base model
    /// is installed: those are other aggregates' and the platform's facts.
    CreateTrainingTask {
        task_id: Uuid,
        owner_id: Uuid,
        name: String,
        description: String,
        base_model_id: String,
        dataset: DatasetRef,
        config: TrainingConfig,
    },
    StartTraining {
        by: Actor,
    },
    StopTraining {
        by: Actor,
    },
    /// A worker took run `attempt`. Ignored unless that run is queued (or running: a crashed worker's run
    /// redelivered to another).
    MarkTrainingStarted {
        attempt: u32,
        worker: String,
        resumed_from_step: Option<u64>,
    },
    RecordTrainingProgress {
        attempt: u32,
        metrics: TrainingMetrics,
    },
    /// Run `attempt`'s worker stopped without finishing it (see `TrainingInterrupted`). Ignored unless that
    /// worker still holds the run: a report about a worker that another has replaced changes nothing.
    RecordTrainingInterrupted {
        attempt: u32,
        worker: String,
        reason: String,
    },
    /// The run stopped because it was asked to.
    RecordTrainingStopped {
        attempt: u32,
        step: u64,
    },
    CompleteTraining {
        attempt: u32,
        result: TrainingResult,
    },
    FailTraining {
        attempt: u32,
        code: String,
        message: String,
    },
}

fn refuse(task: &TrainingTask, action: &'static str) -> Result<Vec<TrainingTaskEvent>, TrainingTaskError> {
    Err(TrainingTaskError::InvalidState { status: task.status, action })
}

pub(super) fn decide(
    task: &TrainingTask,
    command: TrainingTaskCommand,
) -> Result<Vec<TrainingTaskEvent>, TrainingTaskError> {
    use TrainingTaskCommand as C;
    use TrainingTaskEvent as E;
    if let C::CreateTrainingTask { task_id, owner_id, name, description, base_model_id, dataset, config } = command {
        if task.exists() {
            return Err(TrainingTaskError::AlreadyExists);
        }
        let name = crate::values::thing_name(&name).ok_or(TrainingTaskError::InvalidName)?;
        let config = config.validated().map_err(TrainingTaskError::InvalidConfig)?;
        return Ok(vec![E::TrainingTaskCreated {
            task_id,
            owner_id,
            name,
            description,
            base_model_id,
            dataset,
            config,
        }]);
    }
    if !task.exists() {
        return Err(TrainingTaskError::NotFound);
    }
    if let C::StartTraining { by } | C::StopTraining { by } = &command {
        if !task.visible_to(by) {
            return Err(TrainingTaskError::NotFound);
        }
    }
    // A report about another run than the current one changes nothing.
    let current = |attempt: u32| attempt == task.attempt;
    match command {
        C::CreateTrainingTask { .. } => unreachable!("handled above"),
        C::StartTraining { .. } => match task.status {
            TaskStatus::Created | TaskStatus::Stopped | TaskStatus::Failed => {
                Ok(vec![E::TrainingStartRequested { attempt: task.attempt + 1 }])
            }
            _ => refuse(task, "started"),
        },
        C::StopTraining { .. } => match task.status {
            // No worker has it now: stopped at once (a worker that picks the run up later skips it).
            TaskStatus::Queued | TaskStatus::Interrupted => {
                Ok(vec![E::TrainingStopped { attempt: task.attempt, step: task.step }])
            }
            TaskStatus::Running => Ok(vec![E::TrainingStopRequested { attempt: task.attempt }]),
            TaskStatus::Stopping => Ok(vec![]),
            _ => refuse(task, "stopped"),
        },
        C::MarkTrainingStarted { attempt, worker, resumed_from_step } => {
            if current(attempt)
                && matches!(task.status, TaskStatus::Queued | TaskStatus::Running | TaskStatus::Interrupted)
            {
                Ok(vec![E::TrainingStarted { attempt, worker, resumed_from_step }])
            } else {
                Ok(vec![])
            }
        }
        C::RecordTrainingInterrupted { attempt, worker, reason } => {
            let holds = task.worker.as_deref() == Some(worker.as_str());
            match task.status {
                TaskStatus::Running if current(attempt) && holds => {
                    Ok(vec![E::TrainingInterrupted { attempt, worker, step: task.step, reason }])
                }
                // It was asked to stop: with its worker gone, it has stopped (a later start resumes it).
                TaskStatus::Stopping if current(attempt) && holds => {
                    Ok(vec![E::TrainingStopped { attempt, step: task.step }])
                }
                _ => Ok(vec![]),
            }
        }
        C::RecordTrainingProgress { attempt, metrics } => {
            if current(attempt) && task.status.is_running() {
                Ok(vec![E::TrainingProgressed { attempt, metrics }])
            } else {
                Ok(vec![])
            }
        }
        C::RecordTrainingStopped { attempt, step } => {
            if current(attempt) && task.status.is_running() {
                Ok(vec![E::TrainingStopped { attempt, step }])
            } else {
                Ok(vec![])
            }
        }
        C::CompleteTraining { attempt, result } => {
            if current(attempt) && task.status.is_running() {
                Ok(vec![E::TrainingCompleted { attempt, result }])
            } else {
                Ok(vec![])
            }
        }
        C::FailTraining { attempt, code, message } => {
            if current(attempt) && task.status.is_active() {
                Ok(vec![E::TrainingFailed { attempt, code, message }])
            } else {
                Ok(vec![])
            }
        }
    }
}
