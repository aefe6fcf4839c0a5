//! The HTTP API: one module per resource, JSON in and out, JWT authentication, one permission table
//! (`bonsai_domain::permissions`), one error shape, OpenAPI generated from the handlers' own types.

pub mod auth;
mod conditional;
pub mod console;
mod error;
mod extract;
mod fresh;
mod idempotency;
pub mod metrics;
mod openapi;
mod proxies;
mod routes;
mod state;

pub use auth::{RateLimitSettings, RateLimits, TokenSettings};
pub use error::{ApiError, ErrorBody};
pub use proxies::TrustedProxies;
pub use state::{AppState, NodeGauges, NodeIdentity, VirusScan, DEFAULT_MAX_UPLOAD_BYTES};

use axum::http::{HeaderName, Request};
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What a node that answers no API requests (a worker node) serves: its health, for load balancers and
/// orchestrators, and its metrics, for Prometheus.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", axum::routing::get(routes::healthz))
        .route("/readyz", axum::routing::get(routes::readyz))
        .route("/metrics", axum::routing::get(metrics::metrics))
        .fallback(routes::not_found)
        .with_state(state)
}

/// The whole API. Every request gets an `x-request-id` (kept if the client sent one), which is on
/// every log line of the request and becomes the correlation id of the events it causes.
pub fn router(state: AppState) -> Router {
    routes::router(state.max_upload_bytes)
        .merge(openapi::router())
        // Idempotency-Key on POSTs (safe retries; see idempotency.rs).
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), idempotency::remember))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .route("/metrics", axum::routing::get(metrics::metrics))
        // The web console at `/` when built (see `AppState::with_console_dir`); JSON 404s otherwise.
        .fallback(console::fallback)
        .with_state(state)
        .layer(axum::extract::DefaultBodyLimit::max(error::JSON_BODY_LIMIT))
        .layer(axum::middleware::from_fn(conditional::conditional_get))
        // gzip for clients that accept it (not for event streams, nor for answers under 32 bytes).
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            let request_id = request.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %request_id)
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}
