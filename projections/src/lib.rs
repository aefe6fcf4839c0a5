//! The read side: the ordered event log (as the relay, projections and audit read it), the projection
//! framework (idempotent apply with a checkpoint in the same transaction, rebuild by replay) and the
//! view tables with their queries.

pub mod alerts;
mod checkpoint;
pub mod datasets;
mod error;
pub mod log;
pub mod models;
mod projection;
pub mod qa;
pub mod stats;
pub mod training;
pub mod user_cache;
pub mod users;

pub use checkpoint::Cursor;
pub use error::ProjectionError;
pub use log::StoredEvent;
pub use projection::{apply_batch, apply_event, rebuild, Applied, Projection};

/// Every projection of the platform, by name (for `bonsai replay` and the consumers).
pub fn all() -> Vec<std::sync::Arc<dyn Projection>> {
    vec![
        std::sync::Arc::new(users::UsersProjection),
        std::sync::Arc::new(datasets::DatasetsProjection),
        std::sync::Arc::new(training::TrainingProjection),
        std::sync::Arc::new(models::ModelsProjection),
        std::sync::Arc::new(qa::QaProjection),
        std::sync::Arc::new(alerts::AlertsProjection),
    ]
}
