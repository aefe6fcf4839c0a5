//! Given/when/then tests of the TrainingTask aggregate.

use super::*;
use crate::Role;
use cqrs_es::test::TestFramework;

fn framework() -> TestFramework<TrainingTask> {
    TestFramework::with(())
}

fn owner() -> Actor {
    Actor { id: Uuid::from_u128(42), role: Role::Trainer }
}

fn dataset() -> DatasetRef {
    DatasetRef { dataset_id: Uuid::from_u128(7), version: 2, sha256: "a".repeat(64) }
}

fn create(config: TrainingConfig) -> TrainingTaskCommand {
    TrainingTaskCommand::CreateTrainingTask {
        task_id: Uuid::from_u128(1),
        owner_id: owner().id,
        name: "  faq bot ".into(),
        description: String::new(),
        base_model_id: "tiny".into(),
        dataset: dataset(),
        config,
    }
}

fn created() -> TrainingTaskEvent {
    TrainingTaskEvent::TrainingTaskCreated {
        task_id: Uuid::from_u128(1),
        owner_id: owner().id,
        name: "faq bot".into(),
        description: String::new(),
        base_model_id: "tiny".into(),
        dataset: dataset(),
        config: TrainingConfig::default(),
    }
}

fn metrics(step: u64) -> TrainingMetrics {
    TrainingMetrics {
        step,
        total_steps: 10,
        epoch: 0.5,
        loss: 2.0,
        learning_rate: 1e-4,
        tokens_per_sec: 100.0,
        eta_secs: 3.0,
        eval_loss: None,
    }
}

fn requested(attempt: u32) -> TrainingTaskEvent {
    TrainingTaskEvent::TrainingStartRequested { attempt }
}

fn started(attempt: u32) -> TrainingTaskEvent {
    TrainingTaskEvent::TrainingStarted { attempt, worker: "w".into(), resumed_from_step: None }
}

#[test]
fn creating_validates_the_config_and_trims_the_name() {
    framework().given_no_previous_events().when(create(TrainingConfig::default())).then_expect_events(vec![created()]);
    let bad = TrainingConfig { rank: 0, ..Default::default() };
    let refused = framework().given_no_previous_events().when(create(bad)).inspect_result();
    assert!(matches!(refused, Err(TrainingTaskError::InvalidConfig(e)) if e.field == "rank"));
    framework()
        .given(vec![created()])
        .when(create(TrainingConfig::default()))
        .then_expect_error(TrainingTaskError::AlreadyExists);
}

#[test]
fn starting_queues_a_new_run_and_only_from_a_resting_state() {
    framework()
        .given(vec![created()])
        .when(TrainingTaskCommand::StartTraining { by: owner() })
        .then_expect_events(vec![requested(1)]);
    framework()
        .given(vec![created(), requested(1), started(1), TrainingTaskEvent::TrainingStopped { attempt: 1, step: 4 }])
        .when(TrainingTaskCommand::StartTraining { by: owner() })
        .then_expect_events(vec![requested(2)]);
    framework()
        .given(vec![created(), requested(1)])
        .when(TrainingTaskCommand::StartTraining { by: owner() })
        .then_expect_error(TrainingTaskError::InvalidState { status: TaskStatus::Queued, action: "started" });
}

#[test]
fn another_users_task_is_not_found_but_an_admin_sees_it() {
    let stranger = Actor { id: Uuid::from_u128(9), role: Role::Trainer };
    framework()
        .given(vec![created()])
        .when(TrainingTaskCommand::StartTraining { by: stranger })
        .then_expect_error(TrainingTaskError::NotFound);
    let admin = Actor { id: Uuid::from_u128(9), role: Role::Admin };
    framework()
        .given(vec![created()])
        .when(TrainingTaskCommand::StartTraining { by: admin })
        .then_expect_events(vec![requested(1)]);
}

#[test]
fn stopping_a_queued_run_stops_it_at_once_and_a_running_one_through_the_worker() {
    framework()
        .given(vec![created(), requested(1)])
        .when(TrainingTaskCommand::StopTraining { by: owner() })
        .then_expect_events(vec![TrainingTaskEvent::TrainingStopped { attempt: 1, step: 0 }]);
    framework()
        .given(vec![created(), requested(1), started(1)])
        .when(TrainingTaskCommand::StopTraining { by: owner() })
        .then_expect_events(vec![TrainingTaskEvent::TrainingStopRequested { attempt: 1 }]);
    framework()
        .given(vec![created()])
        .when(TrainingTaskCommand::StopTraining { by: owner() })
        .then_expect_error(TrainingTaskError::InvalidState { status: TaskStatus::Created, action: "stopped" });
}

#[test]
fn reports_of_an_older_run_change_nothing() {
    let history = vec![
        created(),
        requested(1),
        started(1),
        TrainingTaskEvent::TrainingStopped { attempt: 1, step: 3 },
        requested(2),
    ];
    framework()
        .given(history.clone())
        .when(TrainingTaskCommand::RecordTrainingProgress { attempt: 1, metrics: metrics(4) })
        .then_expect_events(vec![]);
    framework()
        .given(history.clone())
        .when(TrainingTaskCommand::FailTraining { attempt: 1, code: "x".into(), message: "y".into() })
        .then_expect_events(vec![]);
    framework()
        .given(history)
        .when(TrainingTaskCommand::MarkTrainingStarted { attempt: 2, worker: "w".into(), resumed_from_step: Some(3) })
        .then_expect_events(vec![TrainingTaskEvent::TrainingStarted {
            attempt: 2,
            worker: "w".into(),
            resumed_from_step: Some(3),
        }]);
}

#[test]
fn a_run_stopped_while_queued_is_not_started_by_a_late_worker() {
    framework()
        .given(vec![created(), requested(1), TrainingTaskEvent::TrainingStopped { attempt: 1, step: 0 }])
        .when(TrainingTaskCommand::MarkTrainingStarted { attempt: 1, worker: "w".into(), resumed_from_step: None })
        .then_expect_events(vec![]);
}

#[test]
fn progress_and_completion_are_recorded_for_the_running_run() {
    framework()
        .given(vec![created(), requested(1), started(1)])
        .when(TrainingTaskCommand::RecordTrainingProgress { attempt: 1, metrics: metrics(2) })
        .then_expect_events(vec![TrainingTaskEvent::TrainingProgressed { attempt: 1, metrics: metrics(2) }]);
    let result = TrainingResult {
        steps: 10,
        stop_reason: "completed".into(),
        final_loss: Some(1.0),
        best_eval_loss: None,
        train_examples: 20,
        eval_examples: 0,
        device: "cpu".into(),
        adapter_path: "training/1/adapter".into(),
        merged_path: None,
        duration_secs: 1.0,
        eval_records_path: None,
        warnings: Vec::new(),
        trained_tokens: None,
    };
    framework()
        .given(vec![created(), requested(1), started(1), TrainingTaskEvent::TrainingStopRequested { attempt: 1 }])
        .when(TrainingTaskCommand::CompleteTraining { attempt: 1, result: result.clone() })
        .then_expect_events(vec![TrainingTaskEvent::TrainingCompleted { attempt: 1, result }]);
}

#[test]
fn a_completed_task_cannot_be_started_or_stopped() {
    let done = TrainingTaskEvent::TrainingCompleted {
        attempt: 1,
        result: TrainingResult {
            steps: 1,
            stop_reason: "completed".into(),
            final_loss: None,
            best_eval_loss: None,
            train_examples: 1,
            eval_examples: 0,
            device: "cpu".into(),
            adapter_path: "a".into(),
            merged_path: None,
            duration_secs: 0.0,
            eval_records_path: None,
            warnings: Vec::new(),
            trained_tokens: None,
        },
    };
    let history = vec![created(), requested(1), started(1), done];
    framework()
        .given(history.clone())
        .when(TrainingTaskCommand::StartTraining { by: owner() })
        .then_expect_error(TrainingTaskError::InvalidState { status: TaskStatus::Completed, action: "started" });
    framework()
        .given(history)
        .when(TrainingTaskCommand::StopTraining { by: owner() })
        .then_expect_error(TrainingTaskError::InvalidState { status: TaskStatus::Completed, action: "stopped" });
}

#[test]
fn only_a_completed_run_with_merged_weights_makes_a_model() {
    let result = |merged_path: Option<&str>| TrainingResult {
        steps: 4,
        stop_reason: "completed".into(),
        final_loss: Some(1.5),
        best_eval_loss: None,
        train_examples: 20,
        eval_examples: 0,
        device: "cpu".into(),
        adapter_path: "training/1/adapter".into(),
        merged_path: merged_path.map(str::to_owned),
        duration_secs: 1.0,
        eval_records_path: None,
        warnings: Vec::new(),
        trained_tokens: None,
    };
    let task = |events: Vec<TrainingTaskEvent>| {
        let mut task = TrainingTask::default();
        events.into_iter().for_each(|e| task.apply(e));
        task
    };
    let running = task(vec![created(), requested(1), started(1)]);
    assert_eq!(running.model_material(), Err(NotAModel::NotCompleted(TaskStatus::Running)));
    let done = |merged| TrainingTaskEvent::TrainingCompleted { attempt: 1, result: result(merged) };
    let unmerged = task(vec![created(), requested(1), started(1), done(None)]);
    assert_eq!(unmerged.model_material(), Err(NotAModel::NotMerged));
    let merged = task(vec![created(), requested(1), started(1), done(Some("training/1/merged"))]);
    let made = merged.model_material().unwrap();
    let source = crate::model::ModelSource::TrainingTask {
        task_id: Uuid::from_u128(1),
        merged_path: "training/1/merged".into(),
    };
    assert_eq!((made.source, made.base_model_id.as_str()), (source, "tiny"));
    assert_eq!(made.metrics["steps"], 4);
}

fn interrupted(attempt: u32, step: u64) -> TrainingTaskEvent {
    TrainingTaskEvent::TrainingInterrupted { attempt, worker: "w".into(), step, reason: "worker_lost".into() }
}

fn interrupt(attempt: u32, worker: &str) -> TrainingTaskCommand {
    TrainingTaskCommand::RecordTrainingInterrupted { attempt, worker: worker.into(), reason: "worker_lost".into() }
}

#[test]
fn a_run_whose_worker_is_lost_is_interrupted_then_resumed_by_another_worker() {
    let progressed = TrainingTaskEvent::TrainingProgressed { attempt: 1, metrics: metrics(4) };
    let history = vec![created(), requested(1), started(1), progressed.clone()];
    framework().given(history.clone()).when(interrupt(1, "w")).then_expect_events(vec![interrupted(1, 4)]);
    // Only the worker that holds the run, and only for the current run.
    framework().given(history.clone()).when(interrupt(1, "other")).then_expect_events(vec![]);
    framework().given(history.clone()).when(interrupt(2, "w")).then_expect_events(vec![]);
    let mut after = history.clone();
    after.push(interrupted(1, 4));
    // Once is enough: the second report of the same loss records nothing.
    framework().given(after.clone()).when(interrupt(1, "w")).then_expect_events(vec![]);
    // Another worker resumes it.
    let resume =
        TrainingTaskCommand::MarkTrainingStarted { attempt: 1, worker: "w2".into(), resumed_from_step: Some(3) };
    framework().given(after.clone()).when(resume).then_expect_events(vec![TrainingTaskEvent::TrainingStarted {
        attempt: 1,
        worker: "w2".into(),
        resumed_from_step: Some(3),
    }]);
    // A worker taken for lost that reports after all is running again.
    let mut task = TrainingTask::default();
    for event in after.iter().cloned().chain([progressed]) {
        task.apply(event);
    }
    assert_eq!(task.status, TaskStatus::Running);
    // Stopping an interrupted run stops it at once: no worker holds it.
    framework()
        .given(after.clone())
        .when(TrainingTaskCommand::StopTraining { by: owner() })
        .then_expect_events(vec![TrainingTaskEvent::TrainingStopped { attempt: 1, step: 4 }]);
    // A run asked to stop whose worker is lost has stopped.
    let mut stopping = history;
    stopping.push(TrainingTaskEvent::TrainingStopRequested { attempt: 1 });
    framework()
        .given(stopping)
        .when(interrupt(1, "w"))
        .then_expect_events(vec![TrainingTaskEvent::TrainingStopped { attempt: 1, step: 4 }]);
}
