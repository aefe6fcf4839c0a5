//! The write side: the CQRS framework over the PostgreSQL event store, command metadata, bounded
//! retries of optimistic-concurrency conflicts, and the real implementations of the domain's services.

mod bus;
mod error;
pub mod files;
mod metadata;
mod passwords;
mod upcasters;

pub use bus::CommandBus;
pub use error::CommandError;
pub use files::{FileStore, FileStoreError, LocalFileStore, Staged, StoredBlob};
pub use metadata::CommandMetadata;
pub use passwords::Argon2Passwords;
