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

/// A read-only transaction that sees one snapshot of the views, so that a page and its total read in it
/// agree (read one after the other outside it, an event applied in between can make them disagree).
pub(crate) async fn snapshot(db: &sqlx::PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, ProjectionError> {
    let mut tx = db.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
    Ok(tx)
}

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
