//! The trainer's error type (LoRA files and merging included).

use crate::error::MlError;

/// Everything that can stop a training run, an adapter load or a merge.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Loading or saving the model, tokenizer or template failed.
    #[error(transparent)]
    Model(#[from] MlError),
    /// The training configuration is unusable (rank 0, no targets, batch larger than the data, ...).
    #[error("invalid training configuration: {0}")]
    Config(String),
    /// The dataset could not be read or yields no trainable example.
    #[error("dataset: {0}")]
    Data(String),
    /// An adapter folder is malformed or does not fit the base model.
    #[error("adapter: {0}")]
    Adapter(String),
    /// A checkpoint could not be written or read back.
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: std::path::PathBuf, message: String },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The loss became NaN or infinite (learning rate too high, or corrupt data).
    #[error("training diverged at step {step}: loss {loss}")]
    Diverged { step: usize, loss: f64 },
    /// The requested device is not available (not built in, no driver, no GPU).
    #[error("device {0} is not available; use --device cpu")]
    DeviceUnavailable(String),
    /// The device failed while training (a driver, cuBLAS or kernel error).
    #[error("device error: {0}")]
    Device(String),
}

impl TrainError {
    pub(crate) fn io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io { path: path.into(), source }
    }
}
