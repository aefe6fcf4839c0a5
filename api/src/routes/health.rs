use crate::{ApiError, AppState};
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "alive")))]
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// PostgreSQL and NATS are reachable. Redis is reported but not required: `ok`; `degraded` when it fails or has
/// not answered yet (the node limits and caches on its own meanwhile); `off` when the node runs without it.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "ready"), (status = 503, description = "a dependency is down", body = crate::ErrorBody)))]
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    sqlx::query("SELECT 1").execute(&state.pool).await.map_err(|e| ApiError::Unavailable(format!("database: {e}")))?;
    if state.nats.connection_state() != async_nats::connection::State::Connected {
        return Err(ApiError::Unavailable("nats: not connected".into()));
    }
    let redis = match state.limits.redis() {
        None => "off",
        Some(redis) => match redis.query::<String>(&redis::cmd("PING")).await {
            Some(_) => "ok",
            None => "degraded",
        },
    };
    Ok(Json(json!({ "status": "ready", "database": "ok", "nats": "ok", "redis": redis })))
}
