//! Errors: file-level ([`DatasetError`]) and per-record ([`RecordError`]).
//!
//! The split matters to callers: a `DatasetError` means the file as a whole cannot be read as a dataset
//! (nothing per line to report), a `RecordError` names one line and is collected into a report.

use serde::{Deserialize, Serialize};

/// Why a file cannot be read as a dataset at all.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The content is not text: binary bytes, a known binary magic number, or UTF-16.
    #[error("the file is not text: {0}")]
    NotText(NotTextReason),
    /// The start of the file is not valid UTF-8.
    #[error("the file is not valid UTF-8 (first bad byte at offset {offset})")]
    InvalidUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: u64,
    },
    /// Text, but not JSONL, a JSON array or CSV with a recognised header.
    #[error("unrecognised format: {0}")]
    UnknownFormat(String),
    /// The file is empty or holds only whitespace.
    #[error("the file is empty")]
    Empty,
    /// Reading failed; this is the server's problem, not the user's.
    #[error("reading the dataset failed")]
    Io(#[from] std::io::Error),
}

/// How the HTTP layer should answer a [`DatasetError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// 415 Unsupported Media Type: not text, not UTF-8, or not a format we read.
    UnsupportedContent,
    /// 422 Unprocessable Entity: a supported format whose content does not validate.
    Invalid,
    /// 500: an I/O failure on our side.
    Internal,
}

impl DatasetError {
    /// The HTTP-facing class of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            DatasetError::NotText(_) | DatasetError::InvalidUtf8 { .. } | DatasetError::UnknownFormat(_) => {
                ErrorClass::UnsupportedContent
            }
            DatasetError::Empty => ErrorClass::Invalid,
            DatasetError::Io(_) => ErrorClass::Internal,
        }
    }

    /// A stable machine-readable code for error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            DatasetError::NotText(_) => "dataset_not_text",
            DatasetError::InvalidUtf8 { .. } => "dataset_invalid_utf8",
            DatasetError::UnknownFormat(_) => "dataset_unknown_format",
            DatasetError::Empty => "dataset_empty",
            DatasetError::Io(_) => "dataset_io",
        }
    }
}

/// What gave a non-text file away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotTextReason {
    /// Starts with a zip archive signature (also .docx, .xlsx, .jar).
    Zip,
    /// Starts with a gzip signature.
    Gzip,
    /// An ELF executable.
    Elf,
    /// A PDF document.
    Pdf,
    /// An image (PNG, JPEG, GIF).
    Image,
    /// Starts with a UTF-16 byte order mark; only UTF-8 is accepted.
    Utf16,
    /// NUL bytes or other control bytes that text files do not contain.
    BinaryBytes,
}

impl std::fmt::Display for NotTextReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotTextReason::Zip => "zip archive",
            NotTextReason::Gzip => "gzip archive",
            NotTextReason::Elf => "ELF executable",
            NotTextReason::Pdf => "PDF document",
            NotTextReason::Image => "image",
            NotTextReason::Utf16 => "UTF-16 text (only UTF-8 is accepted)",
            NotTextReason::BinaryBytes => "binary bytes (NUL or control characters)",
        })
    }
}

/// One bad record: where it is, which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct RecordError {
    /// 1-based line where the record starts (for CSV, the physical line of the row; the header is line 1).
    pub line: u64,
    /// 1-based index of the record among the file's records (blank JSONL lines are not records).
    pub record: u64,
    /// The field at fault, as a path such as `answer` or `messages[2].role`; `None` for the record as a whole.
    pub field: Option<String>,
    /// Machine-readable reason.
    pub kind: RecordErrorKind,
    /// Human-readable reason.
    pub message: String,
}

/// Why a record was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordErrorKind {
    /// Not parseable JSON (or, for a JSON array, broken array structure).
    MalformedJson,
    /// A line (or JSON array element, or CSV row) over [`crate::MAX_RECORD_BYTES`].
    RecordTooLong,
    /// JSON nested deeper than [`crate::MAX_DEPTH`].
    TooDeep,
    /// The record is JSON but not an object.
    NotAnObject,
    /// A key appears twice in one object.
    DuplicateField,
    /// A required field is absent or null.
    MissingField,
    /// A required text field is empty or whitespace.
    EmptyField,
    /// A field has the wrong JSON type.
    WrongType,
    /// A chat message role other than system, user, assistant.
    UnknownRole,
    /// A chat record without any assistant message.
    NoAssistantMessage,
    /// None of the known record shapes' fields are present.
    UnknownShape,
    /// The record's shape differs from the shape of the file's first valid record.
    ShapeMismatch,
    /// This part of the file is not valid UTF-8.
    InvalidUtf8,
    /// Reading failed mid-stream (only from [`crate::records`]; `validate` returns [`DatasetError::Io`]).
    Io,
}
