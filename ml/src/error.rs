//! The ML crate's error type. One enum for the crate (STYLE.md: one `thiserror` enum per layer); the CLI wraps
//! it in `anyhow` with context, the workers map it to failure events.

use std::path::PathBuf;

/// Everything that can go wrong in the ML core.
#[derive(Debug, thiserror::Error)]
pub enum MlError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file (config, index, tokenizer config) could not be parsed.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// `config.json` describes a model this crate cannot run.
    #[error("model config: {0}")]
    Config(String),
    /// Weights are missing, mis-shaped or stored in a form this crate cannot read.
    #[error("weights: {0}")]
    Weights(String),
    /// The tokenizer could not be loaded, trained or run.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The chat template could not be compiled or rendered.
    #[error("chat template: {0}")]
    Template(String),
    /// A GGUF file is malformed or uses something the importer does not support.
    #[error("gguf: {0}")]
    Gguf(String),
    /// Inputs to a model call were invalid (empty prompt, token id out of range, ...).
    #[error("invalid input: {0}")]
    Input(String),
}

impl MlError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        MlError::Io { path: path.into(), source }
    }

    /// Wraps a JSON error with the path it concerns.
    pub fn json(path: impl Into<PathBuf>, source: serde_json::Error) -> Self {
        MlError::Json { path: path.into(), source }
    }
}

/// Result alias for the ML core.
pub type Result<T, E = MlError> = std::result::Result<T, E>;

/// Reads a file, naming it in the error.
pub(crate) fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| MlError::io(path, e))
}

/// Reads and parses a JSON file, naming it in the error.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T> {
    let bytes = read_file(path)?;
    serde_json::from_slice(&bytes).map_err(|e| MlError::json(path, e))
}

/// Writes a value as pretty JSON, naming the file in the error.
pub(crate) fn write_json<T: serde::Serialize>(path: &std::path::Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| MlError::json(path, e))?;
    std::fs::write(path, text + "\n").map_err(|e| MlError::io(path, e))
}
