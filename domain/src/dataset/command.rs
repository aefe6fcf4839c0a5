//! Commands of the Dataset aggregate and the decisions they lead to.

use super::{Dataset, DatasetError, DatasetEvent, DatasetFile, VersionStatus};
use crate::Actor;
use crate::Owned;
use serde_json::Value;
use uuid::Uuid;

/// A finished validation of one version, as the validation worker reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationSummary {
    pub record_count: u64,
    pub shape: Option<String>,
    pub stats: Value,
    pub warnings: Value,
}

#[derive(Debug, Clone)]
pub enum DatasetCommand {
    UploadDataset {
        dataset_id: Uuid,
        owner_id: Uuid,
        name: String,
        description: String,
        file: DatasetFile,
    },
    AddDatasetVersion {
        by: Actor,
        file: DatasetFile,
    },
    /// Validates the latest version; with `tokenizer_model_id`, the stats count that model's tokens.
    RequestValidation {
        by: Actor,
        tokenizer_model_id: Option<String>,
    },
    /// The worker's answer for `version`; ignored unless that version is being validated, so a
    /// redelivered request changes nothing once decided.
    RecordValidation {
        version: u32,
        summary: ValidationSummary,
    },
    RecordValidationFailure {
        version: u32,
        errors: Value,
        error_count: u64,
        record_count: u64,
    },
    ArchiveDataset {
        by: Actor,
    },
}

pub(super) fn decide(dataset: &Dataset, command: DatasetCommand) -> Result<Vec<DatasetEvent>, DatasetError> {
    if let DatasetCommand::UploadDataset { dataset_id, owner_id, name, description, file } = command {
        if dataset.exists() {
            return Err(DatasetError::AlreadyExists);
        }
        return Ok(vec![DatasetEvent::DatasetUploaded { dataset_id, owner_id, name, description, file }]);
    }
    if !dataset.exists() {
        return Err(DatasetError::NotFound);
    }
    if let DatasetCommand::AddDatasetVersion { by, .. }
    | DatasetCommand::RequestValidation { by, .. }
    | DatasetCommand::ArchiveDataset { by } = &command
    {
        if !by.may_see(Owned::Dataset, dataset.owner_id) {
            return Err(DatasetError::NotFound);
        }
    }
    match command {
        DatasetCommand::UploadDataset { .. } => unreachable!("handled above"),
        DatasetCommand::AddDatasetVersion { file, .. } => {
            refuse_if_archived(dataset)?;
            Ok(vec![DatasetEvent::DatasetVersionAdded { version: dataset.latest_version() + 1, file }])
        }
        DatasetCommand::RequestValidation { tokenizer_model_id, .. } => {
            refuse_if_archived(dataset)?;
            let latest = dataset.versions.last().ok_or(DatasetError::NotFound)?;
            if latest.status == VersionStatus::Validating {
                return Ok(vec![]);
            }
            Ok(vec![DatasetEvent::DatasetValidationRequested {
                version: latest.number,
                sha256: latest.file.sha256.clone(),
                tokenizer_model_id,
            }])
        }
        DatasetCommand::RecordValidation { version, summary } => {
            if !awaiting(dataset, version)? {
                return Ok(vec![]);
            }
            let ValidationSummary { record_count, shape, stats, warnings } = summary;
            Ok(vec![DatasetEvent::DatasetValidated { version, record_count, shape, stats, warnings }])
        }
        DatasetCommand::RecordValidationFailure { version, errors, error_count, record_count } => {
            if !awaiting(dataset, version)? {
                return Ok(vec![]);
            }
            Ok(vec![DatasetEvent::DatasetValidationFailed { version, errors, error_count, record_count }])
        }
        DatasetCommand::ArchiveDataset { .. } => {
            if dataset.archived {
                return Ok(vec![]);
            }
            Ok(vec![DatasetEvent::DatasetArchived])
        }
    }
}

fn refuse_if_archived(dataset: &Dataset) -> Result<(), DatasetError> {
    if dataset.archived {
        Err(DatasetError::Archived)
    } else {
        Ok(())
    }
}

/// Whether `version` waits for a validation result. Results for an archived dataset are still
/// recorded: the validation was asked for before the archive, and the history should say how it ended.
fn awaiting(dataset: &Dataset, version: u32) -> Result<bool, DatasetError> {
    let v = dataset.version(version).ok_or(DatasetError::UnknownVersion(version))?;
    Ok(v.status == VersionStatus::Validating)
}
