//! The dataset validation worker: a durable JetStream consumer of `<prefix>.events.Dataset.>` that
//! answers every `DatasetValidationRequested` by streaming the stored file through
//! `bonsai_datasets::validate` on a blocking thread and recording the outcome through the command bus.
//!
//! Idempotent by construction: the Dataset aggregate ignores a result for a version that is no longer
//! being validated, so a redelivered request costs one read of the file and changes nothing.

use crate::{EventBus, Processed};
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{AckKind, Message};
use bonsai_commands::{CommandBus, CommandError, CommandMetadata, FileStore, FileStoreError};
use bonsai_datasets::{DatasetError as FormatError, ValidateOptions, ValidationReport};
use bonsai_domain::dataset::{DatasetCommand, DatasetError, DatasetEvent, ValidationSummary};
use bonsai_projections::StoredEvent;
use futures::StreamExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub struct ValidationWorker {
    bus: EventBus,
    commands: CommandBus,
    files: Arc<dyn FileStore>,
}

/// Why a request could not be answered now; a retry may succeed.
#[derive(Debug, thiserror::Error)]
enum Transient {
    #[error("reading the file: {0}")]
    Read(String),
    #[error("recording the result: {0}")]
    Command(CommandError),
}

fn to_value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The command that records `outcome` for `version`.
fn command_for(version: u32, outcome: Result<ValidationReport, FormatError>) -> Result<DatasetCommand, Transient> {
    match outcome {
        Ok(report) if report.valid => Ok(DatasetCommand::RecordValidation {
            version,
            summary: ValidationSummary {
                record_count: report.record_count,
                shape: report.shape.map(|s| to_value(&s).as_str().unwrap_or_default().to_owned()),
                stats: to_value(&report.stats),
                warnings: to_value(&report.warnings),
            },
        }),
        Ok(report) => Ok(DatasetCommand::RecordValidationFailure {
            version,
            errors: to_value(&report.errors),
            error_count: report.error_count,
            record_count: report.record_count,
        }),
        Err(FormatError::Io(e)) => Err(Transient::Read(e.to_string())),
        // The whole file is unusable (empty, not text): one error for the file, at line 0.
        Err(e) => Ok(DatasetCommand::RecordValidationFailure {
            version,
            errors: json!([{"line": 0, "record": 0, "field": null, "kind": e.code(), "message": e.to_string()}]),
            error_count: 1,
            record_count: 0,
        }),
    }
}

impl ValidationWorker {
    pub fn new(bus: EventBus, commands: CommandBus, files: Arc<dyn FileStore>) -> Self {
        Self { bus, commands, files }
    }

    fn durable_name(&self) -> String {
        format!("{}_worker_dataset_validation", self.bus.stream_name().to_lowercase())
    }

    async fn consumer(&self) -> Result<pull::Stream, async_nats::Error> {
        let config = pull::Config {
            durable_name: Some(self.durable_name()),
            filter_subject: format!("{}.events.Dataset.>", self.bus.prefix),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            // A 100 MB file validates in about a second; the margin covers a busy machine.
            ack_wait: Duration::from_secs(120),
            max_ack_pending: 16,
            ..Default::default()
        };
        self.bus.durable_messages(config).await
    }

    /// Runs until `shutdown`, reconnecting the message stream after errors. A validation in progress
    /// finishes before the worker stops (it is not acked otherwise, so it would be redone).
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        while !shutdown.is_cancelled() {
            let mut messages = match self.consumer().await {
                Ok(m) => m,
                Err(error) => {
                    tracing::warn!(%error, "validation consumer unavailable, retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    next = messages.next() => next,
                };
                match next {
                    Some(Ok(message)) => {
                        self.process(&message).await;
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "validation message stream error");
                        break;
                    }
                    None => break,
                }
            }
        }
        Ok(())
    }

    /// Handles one message and acknowledges it accordingly (exposed so tests can drive the worker).
    pub async fn process(&self, message: &Message) -> Processed {
        let outcome = match serde_json::from_slice::<StoredEvent>(&message.payload) {
            Ok(event) => self.handle(&event).await,
            Err(error) => {
                tracing::error!(%error, "message is not an event envelope, terminating");
                Processed::Terminated
            }
        };
        let ack = match outcome {
            Processed::Applied | Processed::AlreadyApplied => AckKind::Ack,
            Processed::Retried => AckKind::Nak(Some(Duration::from_secs(2))),
            Processed::Terminated => AckKind::Term,
        };
        if let Err(error) = message.ack_with(ack).await {
            tracing::warn!(%error, "ack failed; the request will be redelivered and ignored");
        }
        outcome
    }

    /// Validates the file a `DatasetValidationRequested` names and records the result; every other
    /// event is skipped (`AlreadyApplied`).
    #[tracing::instrument(skip_all, fields(dataset_id = %event.aggregate_id, sequence = event.sequence))]
    pub async fn handle(&self, event: &StoredEvent) -> Processed {
        if event.event_type != "DatasetValidationRequested" {
            return Processed::AlreadyApplied;
        }
        let (dataset_id, version, sha256) =
            match (event.aggregate_id.parse::<Uuid>(), serde_json::from_value::<DatasetEvent>(event.payload.clone())) {
                (Ok(id), Ok(DatasetEvent::DatasetValidationRequested { version, sha256 })) => (id, version, sha256),
                _ => {
                    tracing::error!(payload = %event.payload, "undecodable validation request, terminating");
                    return Processed::Terminated;
                }
            };
        let meta = CommandMetadata::system(event.message_id());
        match self.validate(dataset_id, version, &sha256, &meta).await {
            Ok(()) => Processed::Applied,
            Err(Transient::Command(CommandError::Dataset(
                e @ (DatasetError::NotFound | DatasetError::UnknownVersion(_)),
            ))) => {
                tracing::error!(error = %e, "validation request for an unknown dataset version, terminating");
                Processed::Terminated
            }
            Err(error) => {
                tracing::warn!(%error, "validation failed, will retry");
                Processed::Retried
            }
        }
    }

    async fn validate(
        &self,
        dataset_id: Uuid,
        version: u32,
        sha256: &str,
        meta: &CommandMetadata,
    ) -> Result<(), Transient> {
        let files = Arc::clone(&self.files);
        let key = sha256.to_owned();
        let span = tracing::Span::current();
        let started = Instant::now();
        // Reading and parsing a file of up to hundreds of MB is CPU work: never on the runtime's threads.
        let read = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            files.open(&key).map(|reader| bonsai_datasets::validate(reader, &ValidateOptions::default()))
        })
        .await
        .map_err(|e| Transient::Read(format!("the validation thread failed: {e}")))?;
        let command = match read {
            Ok(outcome) => {
                if let Ok(report) = &outcome {
                    let secs = started.elapsed().as_secs_f64();
                    tracing::info!(
                        records = report.record_count,
                        errors = report.error_count,
                        secs,
                        "dataset validated"
                    );
                }
                command_for(version, outcome)?
            }
            // The file is gone (removed by hand): nothing will bring it back, so say so in the result.
            Err(FileStoreError::NotFound(_)) => DatasetCommand::RecordValidationFailure {
                version,
                errors: json!([{"line": 0, "record": 0, "field": null, "kind": "file_missing",
                    "message": "the stored file of this version is missing"}]),
                error_count: 1,
                record_count: 0,
            },
            Err(e) => return Err(Transient::Read(e.to_string())),
        };
        self.commands.dataset(dataset_id, command, meta).await.map_err(Transient::Command)
    }
}
