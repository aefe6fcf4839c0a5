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

/// A node of the deployment, as its lease says.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct NodeDto {
    /// `host/pid-suffix`; a training task's `worker` is this name and a device.
    pub name: String,
    /// `api`, `workers` or `all`.
    pub role: String,
    pub version: String,
    /// The address it listens on.
    pub http_addr: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub renewed_at: chrono::DateTime<chrono::Utc>,
    /// Whether it renewed its lease within `lease_secs`: a node that did not is gone (killed, crashed or cut
    /// off), and the training runs it held show as interrupted.
    pub alive: bool,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct NodeList {
    pub items: Vec<NodeDto>,
    /// Which of them answers this request.
    pub this_node: String,
    pub lease_secs: f64,
}

/// The nodes of the deployment (admins): alive ones first, then those gone in the last day.
#[utoipa::path(get, path = "/api/system/nodes", tag = "health", security(("bearer" = [])),
    responses((status = 200, body = NodeList), (status = 401, body = crate::ErrorBody), (status = 403, body = crate::ErrorBody)))]
pub(crate) async fn list_nodes(
    State(state): State<AppState>,
    user: crate::auth::AuthUser,
) -> Result<Json<NodeList>, ApiError> {
    user.require(bonsai_domain::Permission::ReadAllAlerts)?;
    let rows = bonsai_infra::nodes::list(&state.pool, state.node.lease)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let items = rows
        .into_iter()
        .map(|n| NodeDto {
            name: n.name,
            role: n.role,
            version: n.version,
            http_addr: n.http_addr,
            started_at: n.started_at,
            renewed_at: n.renewed_at,
            alive: n.alive,
        })
        .collect();
    Ok(Json(NodeList { items, this_node: state.node.name.clone(), lease_secs: state.node.lease.as_secs_f64() }))
}
