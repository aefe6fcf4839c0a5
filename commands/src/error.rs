use bonsai_domain::alert::AlertError;
use bonsai_domain::dataset::DatasetError;
use bonsai_domain::model::ModelError;
use bonsai_domain::qa::QaError;
use bonsai_domain::training::TrainingTaskError;
use bonsai_domain::user::UserError;

/// Why a command was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The aggregate refused the command (a business rule).
    #[error(transparent)]
    User(#[from] UserError),
    /// The Dataset aggregate refused the command.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// The TrainingTask aggregate refused the command.
    #[error(transparent)]
    Training(#[from] TrainingTaskError),
    /// The Model aggregate refused the command.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The QaSession aggregate refused the command.
    #[error(transparent)]
    Qa(#[from] QaError),
    /// The Alert aggregate refused the command.
    #[error(transparent)]
    Alert(#[from] AlertError),
    /// Other writers kept winning the race for this aggregate; the caller may try again.
    #[error("the aggregate was changed concurrently {attempts} times in a row")]
    Conflict { attempts: u32 },
    /// The event store failed (connection, serialisation): not the caller's fault.
    #[error("event store failure: {0}")]
    Store(String),
}
