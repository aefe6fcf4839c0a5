//! The read side: the ordered event log (as the relay, projections and audit read it), the projection
//! framework (idempotent apply with a checkpoint in the same transaction, rebuild by replay) and the
//! view tables with their queries.

pub mod alerts;
mod checkpoint;
pub mod data_keys;
pub mod datasets;
mod error;
pub mod log;
pub mod models;
mod projection;
pub mod qa;
pub mod stats;
pub mod subjects;
pub mod training;
pub mod user_cache;
pub mod users;

pub use checkpoint::Cursor;
pub use error::ProjectionError;
pub use log::StoredEvent;
pub use projection::{
    apply_batch, apply_event, catch_up, held, held_alert_key, is_transient, rebuild, retry_held, wait_until_current,
    Applied, Batch, CatchUp, Held, Projection,
};
pub use subjects::Subjects;

/// A row of a page read with `count(*) OVER () AS total`: the page and the total of all matching rows
/// come from one statement, so they agree (read by two statements, an event applied in between can make
/// them disagree), in one round trip.
#[derive(sqlx::FromRow)]
pub(crate) struct Counted<T> {
    #[sqlx(flatten)]
    row: T,
    total: i64,
}

/// The rows and total of a page read as [`Counted`]. An empty page carries no total: past page 1 it is
/// counted by `count`; on page 1 it is 0.
pub(crate) async fn paged<T, Fut>(
    rows: Vec<Counted<T>>,
    page: i64,
    count: impl FnOnce() -> Fut,
) -> Result<(Vec<T>, i64), ProjectionError>
where
    Fut: std::future::Future<Output = Result<i64, sqlx::Error>>,
{
    let total = match rows.first() {
        Some(first) => first.total,
        None if page > 1 => count().await?,
        None => 0,
    };
    Ok((rows.into_iter().map(|r| r.row).collect(), total))
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
