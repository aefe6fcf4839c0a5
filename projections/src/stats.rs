//! Business figures for monitoring, read from the views at scrape time: training outcomes, models and
//! their accuracy, questions and answer times, active alerts, and how far each projection is behind the event store.

use crate::ProjectionError;
use sqlx::PgPool;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlatformStats {
    /// Training tasks by status.
    pub tasks: Vec<(String, i64)>,
    /// Models by status and whether deployed.
    pub models: Vec<(String, bool, i64)>,
    /// Deployed, tested models: id, name, version, accuracy.
    pub accuracy: Vec<(String, String, i32, f64)>,
    /// Questions by status.
    pub questions: Vec<(String, i64)>,
    /// Mean answer time of answered, uncached questions, in milliseconds.
    pub mean_response_ms: Option<f64>,
    /// The newest event's global position (events ever stored).
    pub events: i64,
    /// Events each projection has yet to apply.
    /// Per projection: events it has yet to apply, and aggregates it is held at (see `projection::Held`).
    pub projection_lag: Vec<(String, i64, i64)>,
    /// Active (open or acknowledged) alerts by kind and severity.
    pub active_alerts: Vec<(String, String, i64)>,
}

pub async fn read(pool: &PgPool) -> Result<PlatformStats, ProjectionError> {
    let tasks = sqlx::query_as("SELECT status, count(*) FROM training_tasks_view GROUP BY status ORDER BY status")
        .fetch_all(pool)
        .await?;
    let models = sqlx::query_as(
        "SELECT status, deployed, count(*) FROM models_view GROUP BY status, deployed ORDER BY status, deployed",
    )
    .fetch_all(pool)
    .await?;
    let accuracy = sqlx::query_as(
        "SELECT id::text, name, model_version, accuracy FROM models_view \
         WHERE deployed AND accuracy IS NOT NULL ORDER BY name, model_version",
    )
    .fetch_all(pool)
    .await?;
    let questions = sqlx::query_as("SELECT status, count(*) FROM qa_history_view GROUP BY status ORDER BY status")
        .fetch_all(pool)
        .await?;
    let mean_response_ms = sqlx::query_scalar(
        "SELECT avg(response_ms)::float8 FROM qa_history_view WHERE status = 'answered' AND NOT coalesce(cached, false)",
    )
    .fetch_one(pool)
    .await?;
    let events: i64 =
        sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events").fetch_one(pool).await?;
    // Each projection's lag counts only the events of its aggregates (it does not receive the others); one that
    // has applied none yet has no checkpoint.
    let projections = crate::all();
    let (names, types): (Vec<&str>, Vec<&str>) = projections
        .iter()
        .flat_map(|p| {
            let name = p.name();
            p.aggregate_types().iter().map(move |t| (name, *t))
        })
        .unzip();
    // Held aggregates' events from the one each is held at count too: their checkpoint has moved past them.
    let projection_lag = sqlx::query_as(
        "WITH p AS (SELECT name, array_agg(aggregate_type) AS types \
                    FROM unnest($1::text[], $2::text[]) AS u(name, aggregate_type) GROUP BY name) \
         SELECT p.name, \
                (SELECT count(*) FROM events e \
                 WHERE e.global_position > coalesce(c.position, 0) AND e.aggregate_type = ANY(p.types))::int8 \
              + (SELECT count(*) FROM projection_held h JOIN events e \
                   ON e.aggregate_type = h.aggregate_type AND e.aggregate_id = h.aggregate_id \
                  AND e.sequence >= h.sequence AND e.global_position <= coalesce(c.position, 0) \
                 WHERE h.projection = p.name)::int8, \
                (SELECT count(*) FROM projection_held h WHERE h.projection = p.name)::int8 \
         FROM p LEFT JOIN projection_checkpoints c ON c.name = p.name ORDER BY p.name",
    )
    .bind(&names)
    .bind(&types)
    .fetch_all(pool)
    .await?;
    let active_alerts = sqlx::query_as(
        "SELECT kind, severity, count(*) FROM alerts_view WHERE status IN ('open', 'acknowledged') \
         GROUP BY kind, severity ORDER BY kind, severity",
    )
    .fetch_all(pool)
    .await?;
    Ok(PlatformStats { tasks, models, accuracy, questions, mean_response_ms, events, projection_lag, active_alerts })
}
