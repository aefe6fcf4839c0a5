//! Read your own writes, for reads by id. Views are built asynchronously from the event stream, so a client
//! that creates something and reads it back at once could be told 404 (or see the old version after a change).
//! A read by id first waits, briefly and only while the view is behind, until the view has applied every
//! committed event of that aggregate: the per-aggregate positions projections keep make that one indexed query.

use crate::{ApiError, AppState};
use std::time::Duration;
use uuid::Uuid;

/// The longest a read waits for its view; past it, the view is served as it is (a projection far behind shows in
/// `bonsai_projection_lag_events`).
const WITHIN: Duration = Duration::from_secs(3);

/// Waits until `projection` has applied every committed event of the `aggregate_type` aggregate `id` (see the
/// module comment).
pub(crate) async fn current(
    state: &AppState,
    projection: &str,
    aggregate_type: &str,
    id: Uuid,
) -> Result<(), ApiError> {
    let id = id.to_string();
    if !bonsai_projections::wait_until_current(&state.pool, projection, aggregate_type, &id, WITHIN).await? {
        tracing::info!(projection, aggregate_type, id, "view still behind the event store; serving it as it is");
    }
    Ok(())
}
