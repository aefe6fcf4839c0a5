//! The dataset validation worker: a durable JetStream consumer of `<prefix>.events.Dataset.>` that
//! answers every `DatasetValidationRequested` by streaming the stored file through
//! `bonsai_datasets::validate` on a blocking thread and recording the outcome through the command bus.
//!
//! With a `tokenizer_model_id` the model's tokenizer (from the local models folder) counts prompt and
//! answer tokens; a model that cannot be loaded any more leaves the token counts out, with a warning.
//!
//! Idempotent by construction: the Dataset aggregate ignores a result for a version that is no longer
//! being validated, so a redelivered request costs one read of the file and changes nothing.

use crate::consumer::{consume, Fetch, WorkerConsumer};
use crate::{EventBus, Processed};
use bonsai_commands::{CommandBus, CommandError, CommandMetadata};
use bonsai_datasets::{DatasetError as FormatError, ValidateOptions, ValidationReport};
use bonsai_domain::dataset::{DatasetCommand, DatasetError, DatasetEvent, ValidationSummary};
use bonsai_domain::{AggregateKind, Event};
use bonsai_infra::{FileStore, FileStoreError, LocalModels};
use bonsai_projections::StoredEvent;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub struct ValidationWorker {
    bus: EventBus,
    commands: CommandBus,
    files: Arc<dyn FileStore>,
    models: Option<LocalModels>,
}

/// What one validation request asks for.
struct Request {
    dataset_id: Uuid,
    version: u32,
    sha256: String,
    tokenizer_model_id: Option<String>,
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

/// What the worker adds to the library's report: which model's tokenizer counted the tokens, or the
/// warning that says why none did.
#[derive(Default)]
struct Tokens {
    counted_by: Option<String>,
    warnings: Vec<Value>,
}

/// The command that records `outcome` for `version`.
fn command_for(
    version: u32,
    outcome: Result<ValidationReport, FormatError>,
    tokens: Tokens,
) -> Result<DatasetCommand, Transient> {
    match outcome {
        Ok(report) if report.valid => Ok(DatasetCommand::RecordValidation {
            version,
            summary: ValidationSummary {
                record_count: report.record_count,
                shape: report.shape.map(|s| to_value(&s).as_str().unwrap_or_default().to_owned()),
                stats: match (to_value(&report.stats), tokens.counted_by) {
                    (Value::Object(mut stats), Some(model)) => {
                        stats.insert("tokenizer_model_id".into(), Value::String(model));
                        Value::Object(stats)
                    }
                    (stats, _) => stats,
                },
                warnings: match to_value(&report.warnings) {
                    Value::Array(mut warnings) => {
                        warnings.extend(tokens.warnings);
                        Value::Array(warnings)
                    }
                    other => other,
                },
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
    /// `models` is where `tokenizer_model_id`s are looked up; without it no token counts are made.
    pub fn new(bus: EventBus, commands: CommandBus, files: Arc<dyn FileStore>, models: Option<LocalModels>) -> Self {
        Self { bus, commands, files, models }
    }

    /// The token counter of model `id`, or the warning that says why there is none.
    fn load_tokenizer(models: Option<&LocalModels>, id: &str) -> Result<bonsai_ml::tokenizer::TextTokenizer, Value> {
        let loaded = match models {
            Some(models) => models
                .tokenizer_dir(id)
                .map_err(|e| e.to_string())
                .and_then(|dir| bonsai_ml::tokenizer::TextTokenizer::load(&dir).map_err(|e| e.to_string())),
            None => Err("no models folder is configured".to_owned()),
        };
        loaded.map_err(|reason| {
            tracing::warn!(model = id, %reason, "no tokenizer; validating without token counts");
            json!({"kind": "tokenizer_unavailable", "model_id": id, "message": reason})
        })
    }

    fn durable_name(&self) -> String {
        self.bus.durable_name("worker_dataset_validation")
    }

    /// Runs until `shutdown`, reconnecting the message stream after errors. A validation in progress
    /// finishes before the worker stops (it is not acked otherwise, so it would be redone).
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let spec = WorkerConsumer {
            name: self.durable_name(),
            subjects: vec![self.bus.subjects.events_of(AggregateKind::Dataset)],
            // A 100 MB file validates in about a second; the margin covers a busy machine.
            ack_wait: Duration::from_secs(120),
            concurrency: 1,
            max_in_flight: 16,
            fetch: Fetch::Stream,
        };
        let worker = &self;
        consume(&self.bus, self.commands.pool(), spec, &shutdown, |event, _| async move { worker.handle(&event).await })
            .await
    }

    /// Validates the file a `DatasetValidationRequested` names and records the result; every other
    /// event is skipped (`AlreadyApplied`).
    #[tracing::instrument(skip_all, fields(dataset_id = %event.aggregate_id, sequence = event.sequence))]
    pub async fn handle(&self, event: &StoredEvent) -> Processed {
        let request = match event.event() {
            Ok((
                Event::Dataset(DatasetEvent::DatasetValidationRequested { version, sha256, tokenizer_model_id }),
                id,
            )) => Request { dataset_id: id, version, sha256, tokenizer_model_id },
            Ok(_) => return Processed::AlreadyApplied,
            Err(error) => {
                tracing::error!(%error, "undecodable event, terminating");
                return Processed::Terminated;
            }
        };
        let meta = CommandMetadata::system(event.message_id());
        match self.validate(request, &meta).await {
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

    async fn validate(&self, request: Request, meta: &CommandMetadata) -> Result<(), Transient> {
        let Request { dataset_id, version, sha256, tokenizer_model_id } = request;
        let files = Arc::clone(&self.files);
        let models = self.models.clone();
        let span = tracing::Span::current();
        let started = Instant::now();
        // Reading and parsing a file of up to hundreds of MB is CPU work: never on the runtime's threads.
        let (read, tokens) = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let tokenizer = tokenizer_model_id.as_deref().map(|id| Self::load_tokenizer(models.as_ref(), id));
            let count = |text: &str| match &tokenizer {
                Some(Ok(t)) => t.count(text),
                _ => 0,
            };
            let options = ValidateOptions {
                tokenizer: matches!(tokenizer, Some(Ok(_))).then_some(&count as &(dyn Fn(&str) -> usize + Sync)),
                ..ValidateOptions::default()
            };
            let read = files.open(&sha256).map(|reader| bonsai_datasets::validate(reader, &options));
            let tokens = match tokenizer {
                Some(Ok(_)) => Tokens { counted_by: tokenizer_model_id, warnings: Vec::new() },
                Some(Err(warning)) => Tokens { counted_by: None, warnings: vec![warning] },
                None => Tokens::default(),
            };
            (read, tokens)
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
                command_for(version, outcome, tokens)?
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
        self.commands.execute(dataset_id, command, meta).await.map_err(Transient::Command)
    }
}
