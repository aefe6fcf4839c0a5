//! `GET /api/training/tasks/{id}/events`: the task's events pushed as they happen (Server-Sent Events),
//! for a live progress bar without polling.

use super::{visible, TaskDto};
use crate::auth::AuthUser;
use crate::extract::ApiPath;
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use bonsai_domain::training::TaskStatus;
use bonsai_domain::Permission;
use bonsai_projections::StoredEvent;
use futures::{Stream, StreamExt};
use std::convert::Infallible;
use std::time::Duration;
use uuid::Uuid;

/// Events after which a run is over.
const FINAL: [&str; 3] = ["TrainingCompleted", "TrainingFailed", "TrainingStopped"];

/// First a `snapshot` event (the task as the view has it, with its status as committed), then every event of the task as it is
/// committed (`event:` its type, `data:` the envelope as on NATS), until the run ends. Comments keep the
/// connection alive every 15 s.
#[utoipa::path(get, path = "/api/training/tasks/{id}/events", tag = "training", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "task id")),
    responses((status = 200, description = "text/event-stream", content_type = "text/event-stream"),
    (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn task_events(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    user.require(Permission::ManageTraining)?;
    // Subscribed before the snapshot is read, so nothing falls between the two.
    let subject = format!("{}.events.TrainingTask.{id}", state.nats_prefix);
    let live = state.nats.subscribe(subject).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let mut task = TaskDto::from(visible(&state, &user, id).await?);
    // Whether the run is over comes from the task's committed events, not the view: a final event published
    // before the subscription may not be in the view yet, and would otherwise be waited for forever.
    let committed = state.commands.training_state(id).await?;
    let over = matches!(committed.status, TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Stopped);
    task.status = committed.status.to_string();
    if let Some(result) = &committed.result {
        task.result = serde_json::to_value(result).ok();
    }
    let snapshot =
        Event::default().event("snapshot").json_data(&task).map_err(|e| ApiError::Internal(e.to_string()))?;
    // Ends right after the first final event, which is still sent.
    let events = futures::stream::unfold((live, false), |(mut live, done)| async move {
        if done {
            return None;
        }
        loop {
            let message = live.next().await?;
            let Ok(event) = serde_json::from_slice::<StoredEvent>(&message.payload) else { continue };
            let Ok(sse) = Event::default().event(event.event_type.clone()).json_data(&event) else { continue };
            let done = FINAL.contains(&event.event_type.as_str());
            return Some((sse, (live, done)));
        }
    });
    let events = if over { futures::stream::empty().boxed() } else { events.boxed() };
    let stream = futures::stream::once(async move { snapshot }).chain(events).map(Ok);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
