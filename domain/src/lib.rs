//! Bonsai's domain: aggregates, their commands, events, errors and value objects.
//!
//! Pure: no database, HTTP or NATS. Decisions live in `handle`; `apply` only folds an event into state.
//! Time and randomness come in through commands, and side effects (password hashing) through the
//! aggregate's services trait, so every decision is testable given/when/then.

pub mod alert;
pub mod audit;
pub mod dataset;
pub mod events;
pub mod model;
pub mod permissions;
pub mod qa;
pub mod training;
pub mod upcast;
pub mod user;
pub mod values;

pub use events::{AggregateKind, Event};
pub use permissions::{Actor, Owned, Permission, Role};
