//! The write side: the CQRS framework over the PostgreSQL event store, command metadata, bounded
//! retries of optimistic-concurrency conflicts, and the real implementations of the domain's services.
//! Adapters to the outside world that never touch the command bus live in `bonsai-infra`.

mod bus;
pub mod data_keys;
mod error;
mod metadata;
mod passwords;
mod routing;
mod store;
mod upcasters;

pub use bus::{CommandBus, CommandOf, Store, Stored};
pub use error::CommandError;
pub use metadata::CommandMetadata;
pub use passwords::Argon2Passwords;
pub use store::EventRepository;
