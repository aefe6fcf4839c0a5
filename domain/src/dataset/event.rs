//! Events of the Dataset aggregate. Payloads are versioned (`event_version`); the JSON of each is
//! documented in docs/events.md for NATS integrators.
//!
//! Validation results carry `stats`, `warnings` and `errors` as JSON values: their schema belongs to the
//! dataset-format library (`bonsai-datasets`), which the domain must not depend on, and the aggregate
//! never decides on their content, only on which version was decided and how.

use super::DatasetFile;
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DatasetEvent {
    /// A new dataset with its first version (version 1).
    DatasetUploaded { dataset_id: Uuid, owner_id: Uuid, name: String, description: String, file: DatasetFile },
    /// A new immutable version; earlier versions stay readable.
    DatasetVersionAdded { version: u32, file: DatasetFile },
    /// `sha256` names the stored file to validate, so the validation worker needs no read model.
    /// `tokenizer_model_id` (version 2) names the model whose tokenizer counts tokens for the stats.
    DatasetValidationRequested { version: u32, sha256: String, tokenizer_model_id: Option<String> },
    DatasetValidated {
        version: u32,
        record_count: u64,
        /// Shape of the records (`question_answer`, `alpaca`, `chat`).
        shape: Option<String>,
        /// Records, duplicates, empty answers, min/mean/max characters (and tokens) of prompts and answers.
        stats: Value,
        /// Things worth a look that do not make the dataset invalid (few records, duplicates, long examples).
        warnings: Value,
    },
    DatasetValidationFailed {
        version: u32,
        /// The first (at most 100) errors: line, record, field, kind, message.
        errors: Value,
        /// Every error, including those not kept.
        error_count: u64,
        /// Valid records seen (0 if the file could not be read as a dataset at all).
        record_count: u64,
    },
    /// The events and files remain for audit; the dataset is hidden and cannot be trained on.
    DatasetArchived,
}

impl DomainEvent for DatasetEvent {
    fn event_type(&self) -> String {
        match self {
            DatasetEvent::DatasetUploaded { .. } => "DatasetUploaded",
            DatasetEvent::DatasetVersionAdded { .. } => "DatasetVersionAdded",
            DatasetEvent::DatasetValidationRequested { .. } => "DatasetValidationRequested",
            DatasetEvent::DatasetValidated { .. } => "DatasetValidated",
            DatasetEvent::DatasetValidationFailed { .. } => "DatasetValidationFailed",
            DatasetEvent::DatasetArchived => "DatasetArchived",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        match self {
            DatasetEvent::DatasetValidationRequested { .. } => "2",
            _ => "1",
        }
        .to_owned()
    }
}
