//! The Dataset aggregate: a named collection of immutable file versions, each validated once
//! (`uploaded -> validating -> valid | invalid`), and archiving.
//!
//! Files are referenced by content (sha256); storing them is the file store's job (crate `commands`),
//! parsing them the validation worker's. The aggregate only decides which transitions are allowed.

mod command;
mod event;
#[cfg(test)]
mod tests;

pub use command::{DatasetCommand, ValidationSummary};

pub use event::DatasetEvent;

use crate::training::DatasetRef;
use crate::{Actor, Owned};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Errors a dataset command can be refused with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatasetError {
    #[error("a dataset with this id already exists")]
    AlreadyExists,
    #[error("no such dataset")]
    NotFound,
    #[error("the dataset is archived")]
    Archived,
    #[error("the dataset has no version {0}")]
    UnknownVersion(u32),
}

/// Why a dataset version cannot be trained or tested on ([`Dataset::trainable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotTrainable {
    #[error("no such dataset")]
    Unknown,
    #[error("the dataset is archived")]
    Archived,
    #[error("the dataset has no version {0}")]
    UnknownVersion(u32),
    #[error("version {version} of the dataset is {}; validate it first", .status.as_str())]
    NotValid { version: u32, status: VersionStatus },
}

/// One stored file: content-addressed (the store's key is the sha256), with what detection found.
/// `filename` is the uploader's name for it, kept as metadata only; it never names anything on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetFile {
    pub sha256: String,
    pub size: u64,
    pub filename: String,
    /// `jsonl`, `json` or `csv`.
    pub format: String,
}

/// Where one version is in its validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionStatus {
    Uploaded,
    Validating,
    Valid,
    Invalid,
}

impl VersionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionStatus::Uploaded => "uploaded",
            VersionStatus::Validating => "validating",
            VersionStatus::Valid => "valid",
            VersionStatus::Invalid => "invalid",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetVersion {
    pub number: u32,
    pub file: DatasetFile,
    pub status: VersionStatus,
}

/// The state the Dataset aggregate decides on.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Dataset {
    pub id: Option<Uuid>,
    pub owner_id: Option<Uuid>,
    pub versions: Vec<DatasetVersion>,
    pub archived: bool,
}

impl Dataset {
    fn exists(&self) -> bool {
        self.id.is_some()
    }

    /// The newest version's number (0 before the upload).
    pub fn latest_version(&self) -> u32 {
        self.versions.last().map_or(0, |v| v.number)
    }

    pub fn version(&self, number: u32) -> Option<&DatasetVersion> {
        self.versions.iter().find(|v| v.number == number)
    }

    /// The version `by` may train or test on (`None`: the newest), as a task or a model test records it: the
    /// dataset must be visible to `by` (another user's is unknown, never revealed), not archived, and the
    /// version validated.
    pub fn trainable(&self, by: &Actor, version: Option<u32>) -> Result<DatasetRef, NotTrainable> {
        if !self.exists() || !by.may_see(Owned::Dataset, self.owner_id) {
            return Err(NotTrainable::Unknown);
        }
        if self.archived {
            return Err(NotTrainable::Archived);
        }
        let number = version.unwrap_or_else(|| self.latest_version());
        let v = self.version(number).ok_or(NotTrainable::UnknownVersion(number))?;
        if v.status != VersionStatus::Valid {
            return Err(NotTrainable::NotValid { version: number, status: v.status });
        }
        let dataset_id = self.id.expect("an existing dataset has an id");
        Ok(DatasetRef { dataset_id, version: number, sha256: v.file.sha256.clone() })
    }

    fn set_status(&mut self, number: u32, status: VersionStatus) {
        if let Some(v) = self.versions.iter_mut().find(|v| v.number == number) {
            v.status = status;
        }
    }
}

impl Aggregate for Dataset {
    const TYPE: &'static str = "Dataset";
    type Command = DatasetCommand;
    type Event = DatasetEvent;
    type Error = DatasetError;
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
            DatasetEvent::DatasetUploaded { dataset_id, owner_id, file, .. } => {
                self.id = Some(dataset_id);
                self.owner_id = Some(owner_id);
                self.versions = vec![DatasetVersion { number: 1, file, status: VersionStatus::Uploaded }];
            }
            DatasetEvent::DatasetVersionAdded { version, file } => {
                self.versions.push(DatasetVersion { number: version, file, status: VersionStatus::Uploaded });
            }
            DatasetEvent::DatasetValidationRequested { version, .. } => {
                self.set_status(version, VersionStatus::Validating)
            }
            DatasetEvent::DatasetValidated { version, .. } => self.set_status(version, VersionStatus::Valid),
            DatasetEvent::DatasetValidationFailed { version, .. } => self.set_status(version, VersionStatus::Invalid),
            DatasetEvent::DatasetArchived => self.archived = true,
        }
    }
}
