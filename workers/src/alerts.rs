//! The alert worker (design 6.3): raises alerts from the platform's events and from resource checks.
//!
//! - Training: a run that fails raises `training_failed` for the task's owner, one that completes with a warning
//!   about its loss curve (`loss_not_falling`, `eval_loss_rising`) raises `training_warning`; a later run that
//!   completes resolves the task's earlier failures.
//! - Models: a failed export raises `model_export_failed`; a test whose accuracy falls more than
//!   `accuracy_drop` below the model's previous test (or, for a first test, below the previous version's
//!   last accuracy) raises `accuracy_drop` (critical while the model is deployed), and one under
//!   `min_accuracy` raises `accuracy_below_minimum`; a later test with neither resolves them.
//! - Resources: every `check_every`, the disk under the data folder and the memory of this node are read;
//!   over their threshold they raise `disk_space_low` (critical) and `memory_high` (warning), which are
//!   resolved once the reading is back a margin under the threshold (no flapping at the edge).
//!
//! Alerts are events of the Alert aggregate, so they reach the alerts view, the audit log and any NATS
//! integration (`<prefix>.events.Alert.<id>`) like every other fact. Ids come from what raised the alert
//! ([`alert_id`]), so redelivered events and repeated checks raise nothing twice.

use crate::consumer::{consume, Fetch, WorkerConsumer};
use crate::{EventBus, Processed};
use bonsai_commands::{CommandBus, CommandError, CommandMetadata};
use bonsai_domain::alert::{alert_id, AlertCommand, AlertSpec, AlertStatus, Severity};
use bonsai_domain::model::ModelEvent;
use bonsai_domain::training::TrainingTaskEvent;
use bonsai_domain::{AggregateKind, Event};
use bonsai_infra::host;
use bonsai_projections::{log, models, ProjectionError, StoredEvent};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How far under its threshold a resource reading must come back before its alert is resolved.
pub(crate) const RESOLVE_MARGIN: f64 = 0.02;

#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// A test this much (absolute accuracy) below its baseline raises `accuracy_drop`.
    pub accuracy_drop: f64,
    /// A test under this accuracy raises `accuracy_below_minimum` (none: never).
    pub min_accuracy: Option<f64>,
    /// Share of the data folder's disk in use that raises `disk_space_low` (above 1: never).
    pub disk_used_ratio: f64,
    /// Share of the memory in use that raises `memory_high` (above 1: never).
    pub memory_used_ratio: f64,
    /// How often resources are checked (zero: never).
    pub check_every: Duration,
    /// The folder whose disk is checked.
    pub data_dir: PathBuf,
    /// This node's name in resource alerts.
    pub node: String,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            accuracy_drop: 0.05,
            min_accuracy: None,
            disk_used_ratio: 0.90,
            memory_used_ratio: 0.95,
            check_every: Duration::from_secs(30),
            data_dir: PathBuf::from("data"),
            node: node_name(),
        }
    }
}

/// The machine's host name (`unknown` when it cannot be read).
pub fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// What a resource reading calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Raise,
    Resolve,
    /// Between the threshold and the margin under it: leave the alert as it is.
    Hold,
}

pub(crate) fn verdict(ratio: f64, threshold: f64) -> Verdict {
    if ratio >= threshold {
        Verdict::Raise
    } else if ratio < threshold - RESOLVE_MARGIN {
        Verdict::Resolve
    } else {
        Verdict::Hold
    }
}

fn percent(ratio: f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}

fn from_view(error: ProjectionError) -> CommandError {
    CommandError::Store(error.to_string())
}

/// An aggregate's first event, typed, read from the event store (not a view, which may lag behind the event
/// at hand), and only that event (a task's history is mostly progress reports).
async fn creation(pool: &PgPool, kind: AggregateKind, id: Uuid) -> Result<Option<Event>, CommandError> {
    let first = log::first_event(pool, kind.as_str(), &id.to_string()).await.map_err(from_view)?;
    Ok(first.and_then(|e| e.event().ok()).map(|(event, _)| event))
}

/// What a model's `ModelRegistered` says of it: `(name, version, owner)`.
fn registration(event: Option<&Event>) -> Option<(&str, u32, Uuid)> {
    match event {
        Some(Event::Model(ModelEvent::ModelRegistered { name, version, owner_id, .. })) => {
            Some((name.as_str(), *version, *owner_id))
        }
        _ => None,
    }
}

/// `'name' vN` of a model from its registration, else its id.
fn model_label(registered: Option<(&str, u32, Uuid)>, model: Uuid) -> String {
    match registered {
        Some((name, version, _)) => format!("'{name}' v{version}"),
        None => model.to_string(),
    }
}

/// A model history's events, typed, with their sequence numbers (undecodable ones left out).
fn typed(history: &[StoredEvent]) -> Vec<(i64, Event)> {
    history.iter().filter_map(|e| e.event().ok().map(|(event, _)| (e.sequence, event))).collect()
}

/// The sequence numbers and accuracies of a model's tests before `sequence`, oldest first.
fn tests_before(history: &[(i64, Event)], sequence: i64) -> impl DoubleEndedIterator<Item = (i64, f64)> + '_ {
    history.iter().filter(move |(s, _)| *s < sequence).filter_map(|(s, e)| match e {
        Event::Model(ModelEvent::ModelTested { accuracy, .. }) => Some((*s, *accuracy)),
        _ => None,
    })
}

pub struct AlertWorker {
    bus: EventBus,
    commands: CommandBus,
    pool: PgPool,
    settings: AlertSettings,
}

impl AlertWorker {
    pub fn new(bus: EventBus, commands: CommandBus, pool: PgPool, settings: AlertSettings) -> Self {
        Self { bus, commands, pool, settings }
    }

    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let name = self.bus.durable_name("worker_alerts");
        let subjects = vec![
            self.bus.subjects.events_of(AggregateKind::TrainingTask),
            self.bus.subjects.events_of(AggregateKind::Model),
        ];
        let spec = WorkerConsumer {
            name,
            subjects,
            ack_wait: Duration::from_secs(60),
            concurrency: 1,
            max_in_flight: 64,
            fetch: Fetch::Stream,
        };
        let events = consume(&self.bus, &self.pool, spec, &shutdown, |e, _| self.handle(e));
        let (events, ()) = tokio::join!(events, self.check_resources(&shutdown));
        events
    }

    async fn raise(
        &self,
        key: &str,
        spec: AlertSpec,
        recurring: bool,
        meta: &CommandMetadata,
    ) -> Result<(), CommandError> {
        self.commands.execute_and_get(alert_id(key), AlertCommand::Raise { spec, recurring }, meta).await.map(drop)
    }

    async fn resolve(&self, id: Uuid, note: String, meta: &CommandMetadata) -> Result<(), CommandError> {
        self.commands.execute_and_get(id, AlertCommand::Resolve { by: None, note: Some(note) }, meta).await.map(drop)
    }

    /// Raises or resolves alerts for one event (exposed so tests can drive it).
    #[tracing::instrument(skip_all, fields(aggregate = %event.aggregate_type, id = %event.aggregate_id, sequence = event.sequence))]
    pub async fn handle(&self, event: StoredEvent) -> Processed {
        let Ok((decoded, id)) = event.event() else { return Processed::Terminated };
        let meta = CommandMetadata::system(event.message_id());
        let outcome = match decoded {
            Event::TrainingTask(TrainingTaskEvent::TrainingFailed { attempt, code, message }) => {
                self.training_failed(id, attempt, &code, &message, &meta).await
            }
            Event::TrainingTask(TrainingTaskEvent::TrainingCompleted { attempt, result }) => {
                self.training_completed(id, attempt, &result.warnings, &meta).await
            }
            Event::Model(ModelEvent::ModelExportFailed { code, message }) => {
                self.export_failed(id, &code, &message, &meta).await
            }
            Event::Model(ModelEvent::ModelTested { accuracy, report, .. }) => {
                self.tested(id, event.sequence, accuracy, &report, &meta).await
            }
            _ => Ok(()),
        };
        match outcome {
            Ok(()) => Processed::Applied,
            Err(error) => {
                tracing::warn!(%error, "alert not recorded, will retry");
                Processed::Retried
            }
        }
    }

    async fn training_failed(
        &self,
        task: Uuid,
        attempt: u32,
        code: &str,
        message: &str,
        meta: &CommandMetadata,
    ) -> Result<(), CommandError> {
        let (name, owner) = self.task_name_and_owner(task).await?;
        let spec = AlertSpec {
            kind: "training_failed".into(),
            severity: Severity::Warning,
            subject: format!("TrainingTask/{task}"),
            message: format!("training task '{name}' failed (run {attempt}, {code}): {message}"),
            details: json!({"task_id": task, "task_name": name, "attempt": attempt, "code": code, "error": message}),
            owner_id: owner,
        };
        self.raise(&format!("training_failed/{task}/{attempt}"), spec, false, meta).await
    }

    /// Training task `task`'s name and owner, from its creation event.
    async fn task_name_and_owner(&self, task: Uuid) -> Result<(String, Option<Uuid>), CommandError> {
        Ok(match creation(&self.pool, AggregateKind::TrainingTask, task).await? {
            Some(Event::TrainingTask(TrainingTaskEvent::TrainingTaskCreated { name, owner_id, .. })) => {
                (name, Some(owner_id))
            }
            _ => (String::new(), None),
        })
    }

    async fn training_completed(
        &self,
        task: Uuid,
        attempt: u32,
        warnings: &[bonsai_domain::training::TrainingWarning],
        meta: &CommandMetadata,
    ) -> Result<(), CommandError> {
        // The ids of the earlier runs' alerts are known (no view needed); resolving one never raised is a no-op.
        for earlier in 1..attempt {
            let id = alert_id(&format!("training_failed/{task}/{earlier}"));
            self.resolve(id, format!("run {attempt} of the task completed"), meta).await?;
        }
        if warnings.is_empty() {
            return Ok(());
        }
        let (name, owner) = self.task_name_and_owner(task).await?;
        let said: Vec<&str> = warnings.iter().map(|w| w.message.as_str()).collect();
        let spec = AlertSpec {
            kind: "training_warning".into(),
            severity: Severity::Warning,
            subject: format!("TrainingTask/{task}"),
            message: format!("training task '{name}' completed run {attempt} with a warning: {}", said.join("; ")),
            details: json!({"task_id": task, "task_name": name, "attempt": attempt, "warnings": warnings}),
            owner_id: owner,
        };
        self.raise(&format!("training_warning/{task}/{attempt}"), spec, false, meta).await
    }

    async fn export_failed(
        &self,
        model: Uuid,
        code: &str,
        message: &str,
        meta: &CommandMetadata,
    ) -> Result<(), CommandError> {
        let created = creation(&self.pool, AggregateKind::Model, model).await?;
        let registered = registration(created.as_ref());
        let label = model_label(registered, model);
        let spec = AlertSpec {
            kind: "model_export_failed".into(),
            severity: Severity::Warning,
            subject: format!("Model/{model}"),
            message: format!("model {label} could not be exported to ONNX ({code}): {message}"),
            details: json!({"model_id": model, "code": code, "error": message}),
            owner_id: registered.map(|(_, _, owner)| owner),
        };
        self.raise(&format!("model_export_failed/{model}"), spec, false, meta).await
    }

    /// What a test's accuracy is compared with: this model's previous test, else the newest earlier
    /// version's last accuracy. `(what it is, accuracy)`.
    async fn baseline(&self, history: &[(i64, Event)], sequence: i64) -> Result<Option<(String, f64)>, CommandError> {
        if let Some((_, accuracy)) = tests_before(history, sequence).next_back() {
            return Ok(Some(("the model's previous test".into(), accuracy)));
        }
        let Some((name, version, _)) = registration(history.first().map(|(_, e)| e)) else { return Ok(None) };
        let version = i32::try_from(version).unwrap_or(0);
        let earlier = models::previous_tested_version(&self.pool, name, version).await.map_err(from_view)?;
        Ok(earlier.map(|(v, accuracy)| (format!("version {v}"), accuracy)))
    }

    async fn tested(
        &self,
        model: Uuid,
        sequence: i64,
        accuracy: f64,
        report: &Value,
        meta: &CommandMetadata,
    ) -> Result<(), CommandError> {
        let state = self.commands.load::<bonsai_domain::model::Model>(model).await?;
        let history = log::aggregate_history(&self.pool, "Model", &model.to_string()).await.map_err(from_view)?;
        let history = typed(&history);
        let label = model_label(registration(history.first().map(|(_, e)| e)), model);
        let subject = format!("Model/{model}");
        let spec = |kind: &str, severity, message: String, details: Value| AlertSpec {
            kind: kind.into(),
            severity,
            subject: subject.clone(),
            message,
            details,
            owner_id: state.owner_id,
        };
        let mut raised = false;
        if let Some(error) = report.get("error") {
            let message = format!("the test of model {label} could not run: {}", error.as_str().unwrap_or_default());
            let details = json!({"model_id": model, "error": error});
            self.raise(
                &format!("model_test_failed/{model}/{sequence}"),
                spec("model_test_failed", Severity::Warning, message, details),
                false,
                meta,
            )
            .await?;
            return Ok(());
        }
        if let Some((against, before)) = self.baseline(&history, sequence).await? {
            let drop = before - accuracy;
            if drop > self.settings.accuracy_drop + 1e-9 {
                let severity = if state.deployed { Severity::Critical } else { Severity::Warning };
                let message = format!(
                    "model {label} scored {accuracy:.3} in a test, {drop:.3} below {against} ({before:.3}){}",
                    if state.deployed { "; it is deployed" } else { "" }
                );
                let details = json!({"model_id": model, "accuracy": accuracy, "baseline": before,
                    "baseline_from": against, "drop": drop, "threshold": self.settings.accuracy_drop,
                    "deployed": state.deployed});
                self.raise(
                    &format!("accuracy_drop/{model}/{sequence}"),
                    spec("accuracy_drop", severity, message, details),
                    false,
                    meta,
                )
                .await?;
                raised = true;
            }
        }
        if let Some(minimum) = self.settings.min_accuracy.filter(|minimum| accuracy < *minimum) {
            let message = format!("model {label} scored {accuracy:.3} in a test, under the minimum {minimum:.3}");
            let details =
                json!({"model_id": model, "accuracy": accuracy, "minimum": minimum, "deployed": state.deployed});
            self.raise(
                &format!("accuracy_below_minimum/{model}/{sequence}"),
                spec("accuracy_below_minimum", Severity::Warning, message, details),
                false,
                meta,
            )
            .await?;
            raised = true;
        }
        if !raised {
            // Earlier tests' alerts, by their known ids, newest test first, back to the last test that raised
            // none: that one already resolved everything before it.
            let earlier: Vec<i64> = tests_before(&history, sequence).rev().map(|(s, _)| s).collect();
            for test in earlier {
                let mut any = false;
                for kind in ["accuracy_drop", "accuracy_below_minimum", "model_test_failed"] {
                    let id = alert_id(&format!("{kind}/{model}/{test}"));
                    let status = self.commands.load::<bonsai_domain::alert::Alert>(id).await?.status;
                    any |= status != AlertStatus::None;
                    if status.is_active() {
                        self.resolve(id, format!("a later test scored {accuracy:.3}"), meta).await?;
                    }
                }
                if !any {
                    break;
                }
            }
        }
        Ok(())
    }

    async fn check_resources(&self, shutdown: &CancellationToken) {
        if self.settings.check_every.is_zero() {
            return;
        }
        let mut ticker = tokio::time::interval(self.settings.check_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if let Err(error) = self.check_once().await {
                tracing::warn!(%error, "resource check not recorded");
            }
        }
    }

    /// Reads the disk and the memory once and raises or resolves their alerts.
    pub async fn check_once(&self) -> Result<(), CommandError> {
        let settings = &self.settings;
        let node = &settings.node;
        match host::disk_usage(&settings.data_dir) {
            Ok(disk) => {
                let ratio = disk.used_ratio();
                let folder = settings.data_dir.display();
                let spec = AlertSpec {
                    kind: "disk_space_low".into(),
                    severity: Severity::Critical,
                    subject: format!("node/{node}/disk"),
                    message: format!(
                        "the disk of {folder} on {node} is {} used, {} GiB left (alert at {})",
                        percent(ratio),
                        disk.available as f64 / f64::from(1 << 30),
                        percent(settings.disk_used_ratio)
                    ),
                    details: json!({"node": node, "folder": folder.to_string(), "used_ratio": ratio,
                        "available_bytes": disk.available, "total_bytes": disk.total,
                        "threshold": settings.disk_used_ratio}),
                    owner_id: None,
                };
                self.condition(spec, ratio, settings.disk_used_ratio).await?;
            }
            Err(error) => tracing::warn!(%error, "the disk could not be read"),
        }
        match host::memory_usage() {
            Ok(memory) => {
                let ratio = memory.used_ratio();
                let spec = AlertSpec {
                    kind: "memory_high".into(),
                    severity: Severity::Warning,
                    subject: format!("node/{node}/memory"),
                    message: format!(
                        "memory on {node} is {} used (alert at {})",
                        percent(ratio),
                        percent(settings.memory_used_ratio)
                    ),
                    details: json!({"node": node, "used_ratio": ratio, "available_bytes": memory.available,
                        "total_bytes": memory.total, "threshold": settings.memory_used_ratio}),
                    owner_id: None,
                };
                self.condition(spec, ratio, settings.memory_used_ratio).await?;
            }
            Err(error) => tracing::warn!(%error, "the memory could not be read"),
        }
        Ok(())
    }

    /// Raises the recurring alert of `spec` when `ratio` is over `threshold`, resolves it when well under.
    async fn condition(&self, spec: AlertSpec, ratio: f64, threshold: f64) -> Result<(), CommandError> {
        let key = format!("{}/{}", spec.kind, spec.subject);
        let meta = CommandMetadata::system(format!("resource-check/{key}"));
        match verdict(ratio, threshold) {
            Verdict::Raise => self.raise(&key, spec, true, &meta).await,
            Verdict::Resolve => {
                let id = alert_id(&key);
                if self.commands.load::<bonsai_domain::alert::Alert>(id).await?.status.is_active() {
                    self.resolve(id, format!("back to {} used", percent(ratio)), &meta).await?;
                }
                Ok(())
            }
            Verdict::Hold => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_raises_over_the_threshold_and_resolves_only_well_under_it() {
        assert_eq!(verdict(0.95, 0.90), Verdict::Raise);
        assert_eq!(verdict(0.90, 0.90), Verdict::Raise);
        assert_eq!(verdict(0.89, 0.90), Verdict::Hold, "just under: no flapping");
        assert_eq!(verdict(0.87, 0.90), Verdict::Resolve);
        assert_eq!(verdict(0.99, 1.01), Verdict::Hold, "a threshold above 1 never raises");
        assert_eq!(verdict(0.0, 0.0), Verdict::Raise);
    }

    #[test]
    fn the_node_has_a_name() {
        assert!(!node_name().is_empty());
    }
}
