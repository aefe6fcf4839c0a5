//! The training worker: a durable JetStream consumer of `<prefix>.events.TrainingTask.>` that runs every
//! `TrainingStartRequested` with `bonsai_ml::train::train` on a dedicated thread and records what happens
//! through the command bus: started, progress (at a bounded rate), stopped, completed or failed.
//!
//! - A task's files live in `<data_dir>/training/<task_id>/`: the dataset file it trains on, its
//!   checkpoints, `adapter/` and (with `merge`) `merged/`.
//! - Stop: the worker reads the task's state every second while it trains; a stop request sets the
//!   trainer's cancel flag, which is checked before every step. The trainer then writes a checkpoint of the
//!   step it reached, so a later start resumes from there.
//! - Crash or shutdown: the message is not acknowledged while training (JetStream is told the work is in
//!   progress instead), so a run whose worker died is redelivered, and the next worker resumes it from its
//!   last checkpoint. A worker that shuts down stops the run at a step boundary the same way.
//! - Scheduling: each device (`cpu`, `cuda`) has its own durable consumer, `<stream>_worker_training_<device>`,
//!   and a worker runs only its device's tasks, so a task waits (queued) until a worker of its device is free.
//!   Each worker fetches one message at a time, so it trains one task at a time; more workers of a device
//!   train more of its tasks at once. A node runs one worker per device in `BONSAI__TRAINING_DEVICES`.
//! - A task whose settings ask for it (`register_as`, as a fine-tuning job of the OpenAI-compatible API does)
//!   becomes a model when its run completes: the worker registers the merged weights under that name (the
//!   model is deployed by its own aggregate once exported, with `deploy`). The model's id derives from the
//!   task's and the run's, so a redelivered start registers nothing twice.

use crate::consumer::{consume, Fetch, WorkerConsumer};
use crate::{EventBus, Processed};
use async_nats::jetstream::{AckKind, Message};
use bonsai_commands::{CommandBus, CommandError, CommandMetadata};
use bonsai_domain::model::{ModelCommand, ModelError};
use bonsai_domain::training::{
    TaskStatus, TrainingConfig, TrainingMetrics, TrainingResult, TrainingTaskCommand, TrainingTaskEvent,
    TrainingWarning,
};
use bonsai_domain::{AggregateKind, Event};
use bonsai_infra::{FileStore, FileStoreError, LocalModels};
use bonsai_ml::lora::{LoraConfig, Target};
use bonsai_ml::train::optim::AdamWConfig;
use bonsai_ml::train::{Device, Hyper, Progress, StopReason, TrainConfig, TrainError, TrainOutcome};
use bonsai_projections::StoredEvent;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often a running task's progress is recorded at most (evaluations are always recorded).
pub(crate) const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// How long a node's lease lasts by default (`BONSAI__NODE_LEASE_SECS`): a run whose node has not renewed
/// it for this long is interrupted, and JetStream gives its message to another worker after four leases.
pub const DEFAULT_NODE_LEASE: Duration = Duration::from_secs(15);

pub struct TrainingWorker {
    /// The device whose tasks this worker runs (`cpu` or `cuda`): each device has a durable consumer of its
    /// own, so a task waits for a worker that serves its device.
    device: String,
    bus: EventBus,
    commands: CommandBus,
    files: Arc<dyn FileStore>,
    models: LocalModels,
    data_dir: PathBuf,
    name: String,
    progress_interval: Duration,
    /// Threads a CPU run computes on (0: one per core).
    threads: usize,
    /// The node's lease: a run's message is given to another worker after four leases without news.
    lease: Duration,
}

/// Why a run could not be carried out: recorded as the task's failure.
struct Failure {
    code: &'static str,
    message: String,
}

impl Failure {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl From<TrainError> for Failure {
    fn from(error: TrainError) -> Self {
        let code = match &error {
            TrainError::Config(_) => "invalid_config",
            TrainError::Data(_) => "invalid_data",
            TrainError::Diverged { .. } => "diverged",
            TrainError::DeviceUnavailable(_) | TrainError::Device(_) => "device_unavailable",
            TrainError::Model(_) => "base_model_unusable",
            TrainError::Adapter(_) | TrainError::Checkpoint { .. } | TrainError::Io { .. } => "training_error",
        };
        Failure::new(code, error.to_string())
    }
}

/// How a run on the training thread ended, as the worker saw it.
enum Ended {
    Trained(TrainOutcome),
    Failed(Failure),
    /// The worker is shutting down: the run stays the task's current one and is picked up again.
    Interrupted,
    /// Another worker took the run over (this one was taken for lost): it is that worker's now.
    Superseded,
}

/// The trainer's configuration for a task's settings.
fn train_config(config: &TrainingConfig, base: PathBuf, data: PathBuf, out: PathBuf) -> Result<TrainConfig, Failure> {
    let targets =
        Target::parse_list(&config.targets.join(",")).map_err(|e| Failure::new("invalid_config", e.to_string()))?;
    let device: Device = config.device.parse().map_err(|e: String| Failure::new("invalid_config", e))?;
    Ok(TrainConfig {
        base,
        data,
        out,
        lora: LoraConfig {
            rank: config.rank as usize,
            alpha: config.alpha,
            dropout: config.dropout,
            targets,
            use_rslora: config.use_rslora,
        },
        hyper: Hyper {
            lr: config.learning_rate,
            epochs: config.epochs as usize,
            max_steps: config.max_steps.map(|s| s as usize),
            batch_size: config.batch_size as usize,
            grad_accum: config.grad_accum as usize,
            warmup_steps: config.warmup_steps as usize,
            schedule: bonsai_ml::train::optim::LrSchedule::parse(&config.lr_schedule).unwrap_or_default(),
            max_grad_norm: config.max_grad_norm,
            seed: config.seed,
            adamw: AdamWConfig { weight_decay: config.weight_decay, ..AdamWConfig::default() },
            eval_every: config.eval_every as usize,
            patience: config.patience.map(|p| p as usize),
            checkpoint_every: config.checkpoint_every as usize,
            pad_id: 0,
        },
        max_seq_len: config.max_seq_len as usize,
        eval_split: config.eval_split,
        eval_data: None,
        resume: None,
        merge: config.merge,
        device,
    })
}

/// How many checkpoints a run folder keeps (the newest; older ones are removed as new ones are written).
const KEEP_CHECKPOINTS: usize = 2;

/// The newest complete checkpoint in `dir`.
pub fn latest_checkpoint(dir: &Path) -> Option<(u64, PathBuf)> {
    bonsai_infra::runs::checkpoints(dir).pop()
}

/// The file of a task's folder that holds how long its earlier segments trained (seconds), so that a resumed
/// run's `duration_secs` covers every segment, not only the last.
const TRAINED_SECS_FILE: &str = "trained_secs";

/// Seconds the earlier segments of the run in `dir` trained (0 when none were recorded).
pub(crate) fn trained_secs(dir: &Path) -> f64 {
    std::fs::read_to_string(dir.join(TRAINED_SECS_FILE)).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0.0)
}

/// Records that the run in `dir` has trained `secs` in all (best effort: a lost figure only shortens the
/// reported duration).
pub(crate) fn record_trained_secs(dir: &Path, secs: f64) {
    if let Err(error) = std::fs::write(dir.join(TRAINED_SECS_FILE), format!("{secs}")) {
        tracing::warn!(%error, dir = %dir.display(), "could not record the training time so far");
    }
}

/// Removes all but the newest `keep` checkpoints of `dir`; returns how many went.
pub(crate) fn prune_checkpoints(dir: &Path, keep: usize) -> usize {
    let found = bonsai_infra::runs::checkpoints(dir);
    let old = found.len().saturating_sub(keep);
    for (_, path) in &found[..old] {
        if let Err(error) = std::fs::remove_dir_all(path) {
            tracing::warn!(%error, path = %path.display(), "could not remove an old checkpoint");
        }
    }
    old
}

fn metrics(p: &Progress) -> TrainingMetrics {
    TrainingMetrics {
        step: p.step as u64,
        total_steps: p.total_steps as u64,
        epoch: p.epoch,
        loss: p.loss,
        learning_rate: f64::from(p.lr),
        tokens_per_sec: p.tokens_per_sec,
        eta_secs: p.eta_secs,
        eval_loss: p.eval_loss,
    }
}

/// Records as interrupted every run whose worker's node is gone: the task shows `running` (or `stopping`),
/// has had no news for a lease, and no live node's name prefixes its worker's. Returns how many it found.
/// Every node runs this; the TrainingTask aggregate records each loss once (a run another worker has taken
/// meanwhile is left alone), and a run recorded so leaves the view's `running` for the next look.
pub async fn interrupt_lost_runs(commands: &CommandBus, lease: Duration) -> Result<usize, CommandError> {
    let lost: Vec<(Uuid, i32, String)> = sqlx::query_as(
        "SELECT v.id, v.attempt, v.worker FROM training_tasks_view v \
         WHERE v.status IN ('running', 'stopping') AND v.worker IS NOT NULL \
           AND v.updated_at < now() - make_interval(secs => $1) \
           AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.renewed_at > now() - make_interval(secs => $1) \
                             AND starts_with(v.worker, n.name || '/'))",
    )
    .bind(lease.as_secs_f64())
    .fetch_all(commands.pool())
    .await
    .map_err(|e| CommandError::Store(e.to_string()))?;
    let found = lost.len();
    for (task_id, attempt, worker) in lost {
        tracing::warn!(%task_id, attempt, %worker, "the node running this training is gone: run interrupted");
        let meta = CommandMetadata::system(format!("lease:{worker}"));
        let reason = "worker_lost".to_owned();
        let command = TrainingTaskCommand::RecordTrainingInterrupted { attempt: attempt as u32, worker, reason };
        commands.execute(task_id, command, &meta).await?;
    }
    Ok(found)
}

/// The id of the model run `attempt` of task `task_id` becomes (with `register_as`).
pub fn model_of(task_id: Uuid, attempt: u32) -> Uuid {
    Uuid::new_v5(&task_id, format!("model/{attempt}").as_bytes())
}

/// `path` relative to `root` (as recorded in events: the data folder may move between machines).
fn relative(path: &Path, root: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

impl TrainingWorker {
    pub fn new(
        bus: EventBus,
        commands: CommandBus,
        files: Arc<dyn FileStore>,
        models: LocalModels,
        data_dir: PathBuf,
        device: &str,
    ) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "bonsai".to_owned());
        Self {
            device: device.to_owned(),
            bus,
            commands,
            files,
            models,
            data_dir,
            name: format!("{}/{device}", bonsai_infra::nodes::instance_name(&host)),
            progress_interval: DEFAULT_PROGRESS_INTERVAL,
            threads: 0,
            lease: DEFAULT_NODE_LEASE,
        }
    }

    /// Runs as a worker of node `node` (its name in `nodes`, whose lease says whether this worker is alive).
    pub fn with_node(mut self, node: &str) -> Self {
        self.name = format!("{node}/{}", self.device);
        self
    }

    /// The node lease: JetStream gives a run's message to another worker after four leases without news
    /// (the worker sends news every sixth of that).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    fn ack_wait(&self) -> Duration {
        self.lease * 4
    }

    /// Runs CPU training on `threads` threads (0: one per core), leaving the other cores to serving and the API.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Records progress at most this often (evaluations and the last step always).
    pub fn with_progress_interval(mut self, interval: Duration) -> Self {
        self.progress_interval = interval;
        self
    }

    /// Where task `id` keeps its files.
    pub fn task_dir(data_dir: &Path, id: Uuid) -> PathBuf {
        bonsai_infra::runs::task_dir(data_dir, id)
    }

    fn durable_name(&self) -> String {
        self.bus.durable_name(&format!("worker_training_{}", self.device))
    }

    /// Runs until `shutdown`; a run in progress is stopped at its next step and left to be resumed.
    ///
    /// Messages are fetched one at a time, never ahead: a message waiting in a busy worker's buffer would
    /// outlive its ack wait and be delivered to a second worker as well, which would then train the same
    /// run twice.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let spec = WorkerConsumer {
            name: self.durable_name(),
            subjects: vec![self.bus.subjects.events_of(AggregateKind::TrainingTask)],
            // A run keeps its message alive every sixth of this; a worker silent for this long has died.
            ack_wait: self.ack_wait(),
            concurrency: 1,
            // Each worker holds one message at most: this bounds the workers training at once.
            max_in_flight: 256,
            fetch: Fetch::OneAtATime,
        };
        let worker = &self;
        let stop = &shutdown;
        consume(&self.bus, self.commands.pool(), spec, &shutdown, |event, message| async move {
            worker.handle(&event, Some(&message), stop).await
        })
        .await
    }

    /// Runs the training a `TrainingStartRequested` asks for, if its run is still the task's current one;
    /// every other event is skipped. `message`, when given, is kept alive while the run lasts.
    #[tracing::instrument(skip_all, fields(task_id = %event.aggregate_id, sequence = event.sequence))]
    pub async fn handle(
        &self,
        event: &StoredEvent,
        message: Option<&Message>,
        shutdown: &CancellationToken,
    ) -> Processed {
        let (task_id, attempt) = match event.event() {
            Ok((Event::TrainingTask(TrainingTaskEvent::TrainingStartRequested { attempt }), id)) => (id, attempt),
            Ok(_) => return Processed::AlreadyApplied,
            Err(error) => {
                tracing::error!(%error, "undecodable event, terminating");
                return Processed::Terminated;
            }
        };
        let meta = CommandMetadata::system(event.message_id());
        match self.train(task_id, attempt, message, shutdown, &meta).await {
            Ok(processed) => processed,
            Err(error) => {
                tracing::warn!(%error, "recording the run failed, will retry");
                Processed::Retried
            }
        }
    }

    async fn train(
        &self,
        task_id: Uuid,
        attempt: u32,
        message: Option<&Message>,
        shutdown: &CancellationToken,
        meta: &CommandMetadata,
    ) -> Result<Processed, CommandError> {
        let task = self.commands.load::<bonsai_domain::training::TrainingTask>(task_id).await?;
        // Another device's task: that device's workers (their own consumer) run it.
        if task.config.as_ref().is_some_and(|c| c.device != self.device) {
            return Ok(Processed::AlreadyApplied);
        }
        if task.attempt == attempt && task.status == TaskStatus::Completed {
            // Redelivered after the run completed: the model it asked for may not be registered yet.
            self.register_model(task_id, &task, meta).await?;
            return Ok(Processed::AlreadyApplied);
        }
        if task.attempt != attempt
            || !matches!(task.status, TaskStatus::Queued | TaskStatus::Running | TaskStatus::Interrupted)
        {
            return Ok(Processed::AlreadyApplied);
        }
        let (Some(config), Some(dataset)) = (task.config.clone(), task.dataset.clone()) else {
            return Ok(Processed::Terminated);
        };
        let dir = Self::task_dir(&self.data_dir, task_id);
        let prepared = self.prepare(&dir, &task.base_model_id, &dataset.sha256, &config).await;
        let mut train_cfg = match prepared {
            Ok(cfg) => cfg,
            Err(failure) => {
                self.record_failure(task_id, attempt, failure, meta).await?;
                return Ok(Processed::Applied);
            }
        };
        let resumed = latest_checkpoint(&dir);
        train_cfg.resume = resumed.as_ref().map(|(_, path)| path.clone());
        let resumed_from_step = resumed.map(|(step, _)| step);
        // A run resumed from a checkpoint goes on from the earlier segments' time; a fresh one starts at 0.
        let earlier_secs = if resumed_from_step.is_some() { trained_secs(&dir) } else { 0.0 };
        let started =
            TrainingTaskCommand::MarkTrainingStarted { attempt, worker: self.name.clone(), resumed_from_step };
        let state = self.commands.execute_and_get(task_id, started, meta).await?;
        if state.status != TaskStatus::Running || state.attempt != attempt {
            return Ok(Processed::AlreadyApplied);
        }
        tracing::info!(attempt, ?resumed_from_step, "training started");
        let began = Instant::now();
        let ended = self.supervise(task_id, attempt, train_cfg, message, shutdown, meta).await;
        let trained = earlier_secs + began.elapsed().as_secs_f64();
        if matches!(&ended, Ended::Interrupted | Ended::Trained(_)) {
            record_trained_secs(&dir, trained);
        }
        let command = match ended {
            Ended::Interrupted => {
                tracing::info!(attempt, "training interrupted by shutdown; it resumes when a worker restarts");
                let interrupted = TrainingTaskCommand::RecordTrainingInterrupted {
                    attempt,
                    worker: self.name.clone(),
                    reason: "shutdown".to_owned(),
                };
                if let Err(error) = self.commands.execute(task_id, interrupted, meta).await {
                    tracing::warn!(%error, "could not record the interruption");
                }
                return Ok(Processed::Retried);
            }
            Ended::Superseded => {
                tracing::warn!(attempt, "another worker took this run over; leaving it to that worker");
                return Ok(Processed::AlreadyApplied);
            }
            Ended::Failed(failure) => {
                self.record_failure(task_id, attempt, failure, meta).await?;
                return Ok(Processed::Applied);
            }
            Ended::Trained(outcome) if outcome.stop == StopReason::Cancelled => {
                TrainingTaskCommand::RecordTrainingStopped { attempt, step: outcome.steps as u64 }
            }
            Ended::Trained(outcome) => TrainingTaskCommand::CompleteTraining {
                attempt,
                result: TrainingResult {
                    steps: outcome.steps as u64,
                    stop_reason: match outcome.stop {
                        StopReason::EarlyStopped => "early_stopped",
                        _ => "completed",
                    }
                    .to_owned(),
                    final_loss: outcome.history.last().map(|r| r.loss),
                    best_eval_loss: outcome.best_eval_loss,
                    train_examples: outcome.train_examples as u64,
                    eval_examples: outcome.eval_examples as u64,
                    device: outcome.device.clone(),
                    adapter_path: relative(&outcome.adapter_dir, &self.data_dir),
                    merged_path: outcome.merged_dir.as_deref().map(|d| relative(d, &self.data_dir)),
                    duration_secs: trained,
                    eval_records_path: outcome
                        .adapter_dir
                        .parent()
                        .map(|run| run.join(bonsai_ml::train::EVAL_RECORDS_FILE))
                        .filter(|file| file.is_file())
                        .map(|file| relative(&file, &self.data_dir)),
                    trained_tokens: Some(outcome.trained_tokens),
                    warnings: bonsai_ml::train::warnings(&outcome.history)
                        .into_iter()
                        .map(|w| TrainingWarning { code: w.code, message: w.message })
                        .collect(),
                },
            },
        };
        let task = self.commands.execute_and_get(task_id, command, meta).await?;
        if task.status == TaskStatus::Completed && task.attempt == attempt {
            self.register_model(task_id, &task, meta).await?;
        }
        Ok(Processed::Applied)
    }

    /// Registers the model a completed task asked for (`register_as`), once: the id is the task's and the
    /// run's, so a second call finds it registered.
    async fn register_model(
        &self,
        task_id: Uuid,
        task: &bonsai_domain::training::TrainingTask,
        meta: &CommandMetadata,
    ) -> Result<(), CommandError> {
        let Some(register) = task.config.as_ref().and_then(|c| c.register_as.clone()) else { return Ok(()) };
        let Some(owner_id) = task.owner_id else { return Ok(()) };
        let made = match task.model_material() {
            Ok(made) => made,
            Err(why) => {
                tracing::warn!(%why, "the task asked to become a model but cannot");
                return Ok(());
            }
        };
        let model_id = model_of(task_id, task.attempt);
        let version = bonsai_projections::models::next_version(self.commands.pool(), &register.name)
            .await
            .map_err(|e| CommandError::Store(e.to_string()))? as u32;
        let command = ModelCommand::RegisterModel {
            model_id,
            owner_id,
            name: register.name,
            version,
            base_model_id: made.base_model_id,
            source: made.source,
            metrics: made.metrics,
            deploy_when_ready: register.deploy,
        };
        match self.commands.execute(model_id, command, meta).await {
            Ok(()) | Err(CommandError::Model(ModelError::AlreadyExists)) => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn record_failure(
        &self,
        task_id: Uuid,
        attempt: u32,
        failure: Failure,
        meta: &CommandMetadata,
    ) -> Result<(), CommandError> {
        tracing::warn!(attempt, code = failure.code, message = %failure.message, "training failed");
        let command =
            TrainingTaskCommand::FailTraining { attempt, code: failure.code.to_owned(), message: failure.message };
        self.commands.execute(task_id, command, meta).await
    }

    /// The task folder with the dataset file in it, and the trainer's configuration.
    async fn prepare(
        &self,
        dir: &Path,
        base_model_id: &str,
        sha256: &str,
        config: &TrainingConfig,
    ) -> Result<TrainConfig, Failure> {
        let base =
            self.models.model_dir(base_model_id).map_err(|e| Failure::new("base_model_missing", e.to_string()))?;
        let data = dir.join("data");
        self.copy_dataset(dir, sha256, &data).await?;
        let mut cfg = train_config(config, base, data, dir.to_path_buf())?;
        if let Some(eval) = &config.eval_dataset {
            let eval_data = dir.join("eval_data");
            self.copy_dataset(dir, &eval.sha256, &eval_data).await?;
            cfg.eval_data = Some(eval_data);
        }
        Ok(cfg)
    }

    /// Copies the stored dataset file `sha256` to `target` in the task folder `dir` (once: a resumed run
    /// finds it there).
    async fn copy_dataset(&self, dir: &Path, sha256: &str, target: &Path) -> Result<(), Failure> {
        let (files, sha, target) = (Arc::clone(&self.files), sha256.to_owned(), target.to_path_buf());
        let dir_owned = dir.to_path_buf();
        // Copying up to hundreds of MB is blocking I/O: not on the runtime's threads.
        let copied = tokio::task::spawn_blocking(move || -> Result<(), Failure> {
            std::fs::create_dir_all(&dir_owned).map_err(|e| Failure::new("training_error", e.to_string()))?;
            if target.is_file() {
                return Ok(());
            }
            let mut reader = files.open(&sha).map_err(|e| match e {
                FileStoreError::NotFound(_) => Failure::new("dataset_missing", "the dataset's stored file is missing"),
                other => Failure::new("training_error", other.to_string()),
            })?;
            let partial = target.with_extension("partial");
            let mut out = std::fs::File::create(&partial).map_err(|e| Failure::new("training_error", e.to_string()))?;
            std::io::copy(&mut reader, &mut out).map_err(|e| Failure::new("training_error", e.to_string()))?;
            std::fs::rename(&partial, &target).map_err(|e| Failure::new("training_error", e.to_string()))
        })
        .await
        .map_err(|e| Failure::new("training_error", format!("the copying thread failed: {e}")))?;
        copied
    }

    /// Runs the trainer on its own thread and, meanwhile, records its progress, watches for a stop request
    /// and keeps the message alive.
    async fn supervise(
        &self,
        task_id: Uuid,
        attempt: u32,
        cfg: TrainConfig,
        message: Option<&Message>,
        shutdown: &CancellationToken,
        meta: &CommandMetadata,
    ) -> Ended {
        let (run_dir, every) = (cfg.out.clone(), cfg.hyper.checkpoint_every);
        let cancel = Arc::new(AtomicBool::new(false));
        let (progress_tx, mut progress_rx) = tokio::sync::mpsc::unbounded_channel::<Progress>();
        let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
        let span = tracing::Span::current();
        let flag = Arc::clone(&cancel);
        let pool = match self.threads {
            0 => None,
            n => match rayon::ThreadPoolBuilder::new().num_threads(n).thread_name(|i| format!("train-{i}")).build() {
                Ok(pool) => Some(pool),
                Err(e) => {
                    return Ended::Failed(Failure::new("training_error", format!("cannot start {n} threads: {e}")))
                }
            },
        };
        // Training is minutes of CPU (or GPU) work: a thread of its own, never the runtime's.
        let thread = std::thread::Builder::new().name(format!("train-{}", &task_id.simple().to_string()[..8])).spawn(
            move || {
                let _entered = span.enter();
                let mut on_progress = |p: &Progress| {
                    let _ = progress_tx.send(p.clone());
                };
                let outcome = match &pool {
                    Some(pool) => pool.install(|| bonsai_ml::train::train(cfg, &mut on_progress, &flag)),
                    None => bonsai_ml::train::train(cfg, &mut on_progress, &flag),
                };
                let _ = done_tx.send(outcome);
            },
        );
        if let Err(e) = thread {
            return Ended::Failed(Failure::new("training_error", format!("cannot start the training thread: {e}")));
        }
        let mut last_recorded: Option<Instant> = None;
        let mut pending: Option<Progress> = None;
        let mut interrupted = false;
        let mut watch = tokio::time::interval(Duration::from_secs(1));
        let mut keep_alive = tokio::time::interval(self.ack_wait() / 6);
        let mut superseded = false;
        let outcome = loop {
            tokio::select! {
                done = &mut done_rx => break done,
                Some(p) = progress_rx.recv() => {
                    // The checkpoint of the step before this one's is complete: old ones can go.
                    if every > 0 && p.step % every == 0 {
                        let dir = run_dir.clone();
                        let _ = tokio::task::spawn_blocking(move || prune_checkpoints(&dir, KEEP_CHECKPOINTS)).await;
                    }
                    let due = last_recorded.is_none_or(|t| t.elapsed() >= self.progress_interval)
                        || p.eval_loss.is_some()
                        || p.step == p.total_steps;
                    if due {
                        self.record_progress(task_id, attempt, &p, meta).await;
                        last_recorded = Some(Instant::now());
                        pending = None;
                    } else {
                        pending = Some(p);
                    }
                }
                _ = watch.tick() => {
                    if let Some(p) = pending.take() {
                        if last_recorded.is_none_or(|t| t.elapsed() >= self.progress_interval) {
                            self.record_progress(task_id, attempt, &p, meta).await;
                            last_recorded = Some(Instant::now());
                        } else {
                            pending = Some(p);
                        }
                    }
                    // A store that cannot be read now is asked again next second; the run goes on.
                    match self.commands.load::<bonsai_domain::training::TrainingTask>(task_id).await {
                        // Taken for lost while it ran (its node's lease lapsed), and resumed by another worker.
                        Ok(state) if state.worker.as_deref() != Some(self.name.as_str()) => {
                            superseded = true;
                            cancel.store(true, Ordering::Relaxed);
                        }
                        // Stopped, or another run: an interrupted status is this run taken for lost too
                        // early; its next report shows it running again.
                        Ok(state)
                            if state.attempt != attempt
                                || !matches!(state.status, TaskStatus::Running | TaskStatus::Interrupted) =>
                        {
                            cancel.store(true, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(error) => tracing::warn!(%error, "could not read the task's state"),
                    }
                }
                _ = keep_alive.tick() => {
                    if let Some(message) = message {
                        if let Err(error) = message.ack_with(AckKind::Progress).await {
                            tracing::warn!(%error, "could not extend the run's message");
                        }
                    }
                }
                _ = shutdown.cancelled(), if !interrupted => {
                    interrupted = true;
                    cancel.store(true, Ordering::Relaxed);
                }
            }
        };
        let dir = run_dir.clone();
        let _ = tokio::task::spawn_blocking(move || prune_checkpoints(&dir, KEEP_CHECKPOINTS)).await;
        // Reports the thread sent before it finished.
        while let Ok(p) = progress_rx.try_recv() {
            pending = Some(p);
        }
        if let Some(p) = pending {
            self.record_progress(task_id, attempt, &p, meta).await;
        }
        match outcome {
            Err(_) => Ended::Failed(Failure::new("training_error", "the training thread panicked")),
            Ok(Ok(outcome)) if superseded && outcome.stop == StopReason::Cancelled => Ended::Superseded,
            Ok(Ok(outcome)) if interrupted && outcome.stop == StopReason::Cancelled => Ended::Interrupted,
            Ok(Ok(outcome)) => Ended::Trained(outcome),
            Ok(Err(error)) => Ended::Failed(error.into()),
        }
    }

    /// Records one progress report. A report that cannot be recorded is logged and dropped: the next
    /// one supersedes it, and the run must not stop for it.
    async fn record_progress(&self, task_id: Uuid, attempt: u32, p: &Progress, meta: &CommandMetadata) {
        let command = TrainingTaskCommand::RecordTrainingProgress { attempt, metrics: metrics(p) };
        if let Err(error) = self.commands.execute(task_id, command, meta).await {
            tracing::warn!(%error, step = p.step, "could not record progress");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_complete_checkpoint_is_found_and_old_ones_pruned() {
        let dir = std::env::temp_dir().join(format!("bonsai-ckpt-{}", Uuid::new_v4()));
        assert_eq!(latest_checkpoint(&dir), None, "no folder, no checkpoint");
        for name in
            ["checkpoint-4", "checkpoint-12", "checkpoint-8", "checkpoint-30.partial", "checkpoint-x", "adapter"]
        {
            std::fs::create_dir_all(dir.join(name)).unwrap();
        }
        assert_eq!(latest_checkpoint(&dir), Some((12, dir.join("checkpoint-12"))));
        assert_eq!(prune_checkpoints(&dir, 2), 1);
        assert!(!dir.join("checkpoint-4").exists() && dir.join("checkpoint-8").exists());
        assert!(dir.join("adapter").exists() && dir.join("checkpoint-x").exists(), "only checkpoints are pruned");
        assert_eq!(prune_checkpoints(&dir, 2), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_training_time_of_earlier_segments_is_kept_in_the_run_folder() {
        let dir = std::env::temp_dir().join(format!("bonsai-secs-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(trained_secs(&dir), 0.0, "nothing recorded yet");
        record_trained_secs(&dir, 12.5);
        record_trained_secs(&dir, trained_secs(&dir) + 7.5);
        assert_eq!(trained_secs(&dir), 20.0, "a second segment adds to the first");
        std::fs::write(dir.join(TRAINED_SECS_FILE), "garbage").unwrap();
        assert_eq!(trained_secs(&dir), 0.0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn task_settings_become_the_trainers() {
        let config =
            TrainingConfig { targets: vec!["q".into(), "down".into()], max_steps: Some(9), ..Default::default() };
        let cfg = train_config(&config, "b".into(), "d".into(), "o".into()).ok().unwrap();
        assert_eq!(cfg.lora.targets, vec![Target::Q, Target::Down]);
        assert_eq!((cfg.hyper.max_steps, cfg.hyper.batch_size, cfg.merge), (Some(9), 4, true));
        let cuda = TrainingConfig { device: "cuda".into(), ..Default::default() };
        assert_eq!(train_config(&cuda, "b".into(), "d".into(), "o".into()).ok().unwrap().device, Device::Cuda);
    }
}
