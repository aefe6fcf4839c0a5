use crate::auth::AuthUser;
use crate::extract::{ApiPath, ApiQuery};
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::Json;
use bonsai_domain::Permission;
use bonsai_projections::{log, Cursor, StoredEvent};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// One stored event, secrets redacted.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditEventDto {
    pub position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    /// actor, correlation_id, time
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

impl From<StoredEvent> for AuditEventDto {
    fn from(e: StoredEvent) -> Self {
        let e = e.redacted();
        AuditEventDto {
            position: e.position,
            aggregate_type: e.aggregate_type,
            aggregate_id: e.aggregate_id,
            sequence: e.sequence,
            event_type: e.event_type,
            event_version: e.event_version,
            payload: e.payload,
            metadata: e.metadata,
            recorded_at: e.recorded_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    /// Events after the one at this global position (0 or absent: from the start).
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditPage {
    pub events: Vec<AuditEventDto>,
    /// Pass as `after` for the next page; absent when this page is the end so far.
    pub next_after: Option<i64>,
}

/// The whole event store in commit order, a page at a time (admin).
#[utoipa::path(get, path = "/api/audit/events", tag = "audit", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 403, body = crate::ErrorBody),
    (status = 404, description = "no event at `after`", body = crate::ErrorBody),
    (status = 422, description = "validation_failed (`after` below 0, `limit` outside 1..=1000)", body = crate::ErrorBody)))]
pub(crate) async fn events(
    State(state): State<AppState>,
    admin: AuthUser,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    admin.require(Permission::ReadAudit)?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::Unprocessable {
            code: "validation_failed",
            message: "limit must be between 1 and 1000".into(),
            details: None,
        });
    }
    if query.after.is_some_and(|after| after < 0) {
        return Err(ApiError::field("validation_failed", "after must be 0 or more", "after"));
    }
    let after = match query.after {
        None | Some(0) => Cursor::default(),
        Some(position) => log::cursor_of(&state.pool, position)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no event at position {position}")))?,
    };
    let events = log::read_committed_after(&mut *state.pool.acquire().await?, after, limit).await?;
    let next_after = (events.len() as i64 == limit).then(|| events.last().map(|e| e.position)).flatten();
    Ok(Json(AuditPage { events: events.into_iter().map(AuditEventDto::from).collect(), next_after }))
}

/// One aggregate's full history (admin).
#[utoipa::path(get, path = "/api/audit/{aggregate_type}/{aggregate_id}", tag = "audit", security(("bearer" = [])),
    params(("aggregate_type" = String, Path, example = "User"), ("aggregate_id" = String, Path)),
    responses((status = 200, body = [AuditEventDto]), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn history(
    State(state): State<AppState>,
    admin: AuthUser,
    ApiPath((aggregate_type, aggregate_id)): ApiPath<(String, String)>,
) -> Result<Json<Vec<AuditEventDto>>, ApiError> {
    admin.require(Permission::ReadAudit)?;
    let events = log::aggregate_history(&state.pool, &aggregate_type, &aggregate_id).await?;
    if events.is_empty() {
        return Err(ApiError::NotFound(format!("no {aggregate_type} {aggregate_id}")));
    }
    Ok(Json(events.into_iter().map(AuditEventDto::from).collect()))
}
