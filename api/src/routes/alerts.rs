//! `/api/alerts` (design 6.3): what the alert worker raised (failed training runs and exports, model
//! accuracy drops, low disk, high memory). Admins see and handle every alert; trainers those about
//! their own tasks and models. People acknowledge an alert (someone is on it) and resolve it; resource
//! alerts resolve themselves when the condition clears.

use crate::auth::AuthUser;
use crate::extract::{page_window, status_filter, ApiJson, ApiPath, ApiQuery, Correlation};
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::Json;
use bonsai_commands::CommandMetadata;
use bonsai_domain::alert::{Alert, AlertCommand};
use bonsai_domain::Permission;
use bonsai_domain::{Actor, Owned};
use bonsai_projections::alerts::{self, AlertFilter, AlertRow};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AlertDto {
    pub id: Uuid,
    /// `training_failed`, `training_warning`, `model_export_failed`, `model_test_failed`, `accuracy_drop`,
    /// `accuracy_below_minimum`, `disk_space_low`, `memory_high`, `infected_upload`.
    pub kind: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// What it is about: `TrainingTask/<id>`, `Model/<id>`, `node/<host>/disk`, `node/<host>/memory`.
    pub subject: String,
    pub message: String,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub owner_id: Option<Uuid>,
    /// `open`, `acknowledged` or `resolved`.
    pub status: String,
    /// A condition that can come back (resource alerts): raised again after it was resolved.
    pub recurring: bool,
    pub times_raised: i32,
    pub first_raised_at: DateTime<Utc>,
    pub raised_at: DateTime<Utc>,
    pub acknowledged_by: Option<Uuid>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledge_note: Option<String>,
    /// None when the condition cleared by itself.
    pub resolved_by: Option<Uuid>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolve_note: Option<String>,
}

impl From<AlertRow> for AlertDto {
    fn from(r: AlertRow) -> Self {
        AlertDto {
            id: r.id,
            kind: r.kind,
            severity: r.severity,
            subject: r.subject,
            message: r.message,
            details: r.details,
            owner_id: r.owner_id,
            status: r.status,
            recurring: r.recurring,
            times_raised: r.times_raised,
            first_raised_at: r.first_raised_at,
            raised_at: r.raised_at,
            acknowledged_by: r.acknowledged_by,
            acknowledged_at: r.acknowledged_at,
            acknowledge_note: r.acknowledge_note,
            resolved_by: r.resolved_by,
            resolved_at: r.resolved_at,
            resolve_note: r.resolve_note,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AlertPage {
    pub items: Vec<AlertDto>,
    pub total: i64,
    pub page: i64,
    pub page_size: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertQuery {
    #[param(minimum = 1)]
    pub page: Option<i64>,
    #[param(minimum = 1, maximum = 100)]
    pub page_size: Option<i64>,
    /// `open`, `acknowledged`, `resolved`, or `active` (open or acknowledged).
    pub status: Option<String>,
    pub kind: Option<String>,
    /// `info`, `warning` or `critical`.
    pub severity: Option<String>,
}

/// Alerts, most recently raised first: every alert for admins, those of your tasks and models otherwise.
#[utoipa::path(get, path = "/api/alerts", tag = "alerts", security(("bearer" = [])), params(AlertQuery),
    responses((status = 200, body = AlertPage), (status = 403, body = crate::ErrorBody),
    (status = 422, body = crate::ErrorBody)))]
pub(crate) async fn list_alerts(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<AlertQuery>,
) -> Result<Json<AlertPage>, ApiError> {
    user.require(Permission::ManageAlerts)?;
    let (page, page_size) = page_window(query.page, query.page_size)?;
    status_filter(query.status.as_deref(), &["open", "acknowledged", "resolved", "active"])?;
    if let Some(severity) = query.severity.as_deref().filter(|s| !["info", "warning", "critical"].contains(s)) {
        let message = format!("severity must be info, warning or critical, not '{severity}'");
        return Err(ApiError::field("validation_failed", message, "severity"));
    }
    let filter = AlertFilter {
        owner: user.actor().only_own(Owned::Alert),
        status: query.status,
        kind: query.kind,
        severity: query.severity,
    };
    let (rows, total) = alerts::list(&state.pool, &filter, page, page_size).await?;
    Ok(Json(AlertPage { items: rows.into_iter().map(AlertDto::from).collect(), total, page, page_size }))
}

fn not_found() -> ApiError {
    ApiError::NotFound("no such alert".into())
}

/// One alert.
#[utoipa::path(get, path = "/api/alerts/{id}", tag = "alerts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "alert id")),
    responses((status = 200, body = AlertDto), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn get_alert(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<AlertDto>, ApiError> {
    user.require(Permission::ManageAlerts)?;
    crate::fresh::current(&state, "alerts", "Alert", id).await?;
    match alerts::find(&state.pool, id).await? {
        Some(row) if user.actor().may_see(Owned::Alert, row.owner_id) => Ok(Json(row.into())),
        _ => Err(not_found()),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertAction {
    /// Up to 1,000 characters: what is being done, or what was done.
    #[schema(max_length = 1000)]
    pub note: Option<String>,
}

/// An alert as a command left it (the alerts view follows within moments).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AlertAccepted {
    pub id: Uuid,
    pub status: String,
    pub times_raised: u32,
}

async fn act(
    state: &AppState,
    user: &AuthUser,
    correlation: String,
    id: Uuid,
    command: impl FnOnce(Actor) -> AlertCommand,
) -> Result<Json<AlertAccepted>, ApiError> {
    user.require(Permission::ManageAlerts)?;
    let by = user.actor();
    // Decided on the alert's own events, not the view: an alert just raised can be acted on at once.
    let current: Alert = state.commands.load::<bonsai_domain::alert::Alert>(id).await?;
    if !current.visible_to(&by) {
        return Err(not_found());
    }
    let meta = CommandMetadata::new(Some(user.id), correlation);
    let alert = state.commands.execute_and_get(id, command(by), &meta).await?;
    Ok(Json(AlertAccepted { id, status: alert.status.as_str().to_owned(), times_raised: alert.raised }))
}

/// Acknowledges an open alert: someone is on it (acknowledging again changes nothing).
#[utoipa::path(post, path = "/api/alerts/{id}/acknowledge", tag = "alerts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "alert id")), request_body = AlertAction,
    responses((status = 200, body = AlertAccepted), (status = 404, body = crate::ErrorBody),
    (status = 409, description = "invalid_state: the alert is resolved", body = crate::ErrorBody),
    (status = 422, body = crate::ErrorBody)))]
pub(crate) async fn acknowledge_alert(
    State(state): State<AppState>,
    user: AuthUser,
    Correlation(correlation): Correlation,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(action): ApiJson<AlertAction>,
) -> Result<Json<AlertAccepted>, ApiError> {
    act(&state, &user, correlation, id, |by| AlertCommand::Acknowledge { by, note: action.note }).await
}

/// Resolves an open or acknowledged alert.
#[utoipa::path(post, path = "/api/alerts/{id}/resolve", tag = "alerts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "alert id")), request_body = AlertAction,
    responses((status = 200, body = AlertAccepted), (status = 404, body = crate::ErrorBody),
    (status = 409, description = "invalid_state: already resolved", body = crate::ErrorBody),
    (status = 422, body = crate::ErrorBody)))]
pub(crate) async fn resolve_alert(
    State(state): State<AppState>,
    user: AuthUser,
    Correlation(correlation): Correlation,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(action): ApiJson<AlertAction>,
) -> Result<Json<AlertAccepted>, ApiError> {
    act(&state, &user, correlation, id, |by| AlertCommand::Resolve { by: Some(by), note: action.note }).await
}
