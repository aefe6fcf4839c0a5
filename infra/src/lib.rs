//! The outside world's adapters: the file store (uploads, datasets, model artifacts) and its garbage
//! collector, the virus scanner (clamd), Redis (shared cache and rate limits, with a local fallback), the
//! host's disk and memory, the folders of installed base models and of training runs, and the process's bounded in-memory caches
//! (moka, with hit and miss counts for `/metrics`). None of them touches the command bus
//! or the event store; the write side (`bonsai-commands`), the API and the workers use them.

pub mod cache;
mod file_gc;
pub mod files;
pub mod host;
mod models;
pub mod nodes;
pub mod redis;
pub mod runs;
pub mod scan;

pub use cache::Cache;
pub use file_gc::{sweep_unreferenced_files, SweepError, SweepReport};
pub use files::{FileStore, FileStoreError, LocalFileStore, Staged, StoredBlob};
pub use models::{BaseModelInfo, LocalModels, ModelLookupError};
pub use scan::{Clamd, ClamdAddress, ScanError, Verdict};
