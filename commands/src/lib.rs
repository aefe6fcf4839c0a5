//! The write side: the CQRS framework over the PostgreSQL event store, command metadata, bounded
//! retries of optimistic-concurrency conflicts, and the real implementations of the domain's services.

mod bus;
pub mod data_keys;
mod error;
mod file_gc;
pub mod files;
pub mod host;
mod metadata;
mod models;
mod passwords;
pub mod redis;
mod routing;
pub mod scan;
mod store;
mod upcasters;

pub use bus::CommandBus;
pub use error::CommandError;
pub use file_gc::{sweep_unreferenced_files, SweepError, SweepReport};
pub use files::{FileStore, FileStoreError, LocalFileStore, Staged, StoredBlob};
pub use metadata::CommandMetadata;
pub use models::{BaseModelInfo, LocalModels, ModelLookupError};
pub use passwords::Argon2Passwords;
pub use scan::{Clamd, ClamdAddress, ScanError, Verdict};
pub use store::EventRepository;
