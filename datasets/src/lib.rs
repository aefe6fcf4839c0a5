//! Dataset formats for Bonsai: detection, streaming validation, preview and reading of fine-tuning data.
//!
//! Accepted content, detected from the bytes (never the file name):
//! - containers: JSONL, a JSON array, CSV/TSV with a header row;
//! - record shapes: question/answer (`question`/`answer` or `prompt`/`response`), Alpaca (`instruction`,
//!   optional `input`, `output`), and OpenAI-style chat (`{"messages": [{"role", "content"}, ...]}`).
//!
//! Every record is normalised to a [`Record`]: a list of role + content messages.
//!
//! Entry points, all streaming over any [`std::io::Read`] with memory bounded by one record (at most
//! [`MAX_RECORD_BYTES`]) plus a fixed buffer, whatever the file size:
//! - [`validate`]: one pass, a serialisable [`ValidationReport`] (errors by line and field, stats, warnings);
//! - [`preview`]: a page of normalised records, stopping as soon as the page is full;
//! - [`records`]: an iterator of normalised records for training;
//! - [`detect`]: format and shape from the start of the file.
//!
//! A file that is not a dataset at all fails up front with a [`DatasetError`]; its [`DatasetError::class`]
//! says whether that is unsupported content (415) or invalid content (422).

mod csv_rows;
mod error;
mod json_array;
mod normalise;
mod raw;
mod read;
mod record;
mod sniff;
mod source;
mod stats;
mod stream;
mod validate;

pub use error::{DatasetError, ErrorClass, NotTextReason, RecordError, RecordErrorKind};
pub use read::{detect, preview, records, Detected, Records, DETECT_RECORDS};
pub use record::{Format, Message, Record, Role, Shape};
pub use stats::{Stats, Summary};
pub use validate::{validate, ValidateOptions, ValidationReport, Warning};

/// Longest record accepted: a JSONL line, a JSON array element or a CSV row (1 MiB).
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// Deepest JSON nesting accepted in a record. A chat record needs 3; the bound keeps hostile input
/// from reaching the parser's recursion limit and gives a clear error instead.
pub const MAX_DEPTH: usize = 32;

/// Record errors kept in a [`ValidationReport`]; the rest are only counted.
pub const MAX_ERRORS_KEPT: usize = 100;

/// Largest page [`preview`] returns.
pub const MAX_PREVIEW_LIMIT: usize = 100;

/// Records whose hashes duplicate detection keeps (about 18 MiB of hash set at most); past this,
/// later records are only checked against the first ones and the report warns.
pub const DUPLICATE_TRACKING_LIMIT: usize = 1 << 20;
