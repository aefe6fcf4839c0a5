//! The alerts view: every alert with its latest state, for `/api/alerts` and the `bonsai_alerts` gauge.

use crate::{Projection, ProjectionError, StoredEvent};
use bonsai_domain::alert::AlertEvent;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

pub struct AlertsProjection;

#[async_trait::async_trait]
impl Projection for AlertsProjection {
    fn name(&self) -> &'static str {
        "alerts"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["alerts_view"]
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["Alert"]
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        let (decoded, id): (AlertEvent, Uuid) = event.decode()?;
        let at = event.recorded_at;
        let query = match decoded {
            // Raised again (a recurring condition that came back): the acknowledgement and resolution of
            // the earlier episode are cleared.
            AlertEvent::AlertRaised { spec, recurring } => sqlx::query(
                "INSERT INTO alerts_view (id, kind, severity, subject, message, details, owner_id, status, recurring, \
                 times_raised, first_raised_at, raised_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, 1, $9, $9) \
                 ON CONFLICT (id) DO UPDATE SET severity = $3, message = $5, details = $6, status = 'open', \
                 times_raised = alerts_view.times_raised + 1, raised_at = $9, acknowledged_by = NULL, \
                 acknowledged_at = NULL, acknowledge_note = NULL, resolved_by = NULL, resolved_at = NULL, \
                 resolve_note = NULL",
            )
            .bind(id)
            .bind(spec.kind)
            .bind(spec.severity.as_str())
            .bind(spec.subject)
            .bind(spec.message)
            .bind(spec.details)
            .bind(spec.owner_id)
            .bind(recurring)
            .bind(at),
            AlertEvent::AlertAcknowledged { by, note } => sqlx::query(
                "UPDATE alerts_view SET status = 'acknowledged', acknowledged_by = $2, acknowledged_at = $3, \
                 acknowledge_note = $4 WHERE id = $1",
            )
            .bind(id)
            .bind(by)
            .bind(at)
            .bind(note),
            AlertEvent::AlertResolved { by, note } => sqlx::query(
                "UPDATE alerts_view SET status = 'resolved', resolved_by = $2, resolved_at = $3, resolve_note = $4 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(by)
            .bind(at)
            .bind(note),
        };
        query.execute(conn).await?;
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct AlertRow {
    pub id: Uuid,
    pub kind: String,
    pub severity: String,
    pub subject: String,
    pub message: String,
    pub details: serde_json::Value,
    pub owner_id: Option<Uuid>,
    pub status: String,
    pub recurring: bool,
    pub times_raised: i32,
    pub first_raised_at: DateTime<Utc>,
    pub raised_at: DateTime<Utc>,
    pub acknowledged_by: Option<Uuid>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledge_note: Option<String>,
    pub resolved_by: Option<Uuid>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolve_note: Option<String>,
}

const COLUMNS: &str = "id, kind, severity, subject, message, details, owner_id, status, recurring, times_raised, \
     first_raised_at, raised_at, acknowledged_by, acknowledged_at, acknowledge_note, resolved_by, resolved_at, \
     resolve_note";

/// Which alerts to list.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    /// Only this user's (none: every alert, for admins).
    pub owner: Option<Uuid>,
    /// `open`, `acknowledged`, `resolved`, or `active` (open or acknowledged).
    pub status: Option<String>,
    pub kind: Option<String>,
    pub severity: Option<String>,
}

pub async fn find<'e>(db: impl PgExecutor<'e>, id: Uuid) -> Result<Option<AlertRow>, ProjectionError> {
    Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM alerts_view WHERE id = $1")).bind(id).fetch_optional(db).await?)
}

/// A page of alerts, most recently raised first, with the total.
pub async fn list(
    db: &PgPool,
    filter: &AlertFilter,
    page: i64,
    page_size: i64,
) -> Result<(Vec<AlertRow>, i64), ProjectionError> {
    const WHERE: &str = "($1::uuid IS NULL OR owner_id = $1) \
         AND ($2::text IS NULL OR status = $2 OR ($2 = 'active' AND status IN ('open', 'acknowledged'))) \
         AND ($3::text IS NULL OR kind = $3) AND ($4::text IS NULL OR severity = $4)";
    let sql = format!("SELECT {COLUMNS}, count(*) OVER () AS total FROM alerts_view WHERE {WHERE} ORDER BY raised_at DESC, id LIMIT $5 OFFSET $6");
    let rows: Vec<crate::Counted<_>> = sqlx::query_as(&sql)
        .bind(filter.owner)
        .bind(&filter.status)
        .bind(&filter.kind)
        .bind(&filter.severity)
        .bind(page_size)
        .bind((page - 1) * page_size)
        .fetch_all(db)
        .await?;
    let count = format!("SELECT count(*) FROM alerts_view WHERE {WHERE}");
    crate::paged(rows, page, || {
        sqlx::query_scalar(&count)
            .bind(filter.owner)
            .bind(&filter.status)
            .bind(&filter.kind)
            .bind(&filter.severity)
            .fetch_one(db)
    })
    .await
}

/// Every row, in key order (rebuild comparisons).
pub async fn all_rows(db: &PgPool) -> Result<Vec<AlertRow>, ProjectionError> {
    Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM alerts_view ORDER BY id")).fetch_all(db).await?)
}
