//! A task's events pushed as they happen, for a live progress bar without polling, two ways:
//! `GET /api/training/tasks/{id}/events` (Server-Sent Events) and `GET /api/training/tasks/{id}/ws`
//! (a WebSocket). Browsers cannot set headers on either, so both also take the access token as the
//! `access_token` query parameter.

use super::{visible, TaskDto};
use crate::auth::AuthUser;
use crate::extract::ApiPath;
use crate::{ApiError, AppState};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::Response;
use bonsai_domain::training::TaskStatus;
use bonsai_domain::{AggregateKind, Permission};
use bonsai_projections::StoredEvent;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use serde_json::json;
use std::convert::Infallible;
use std::time::Duration;
use uuid::Uuid;

/// Whether a run is over after this event.
fn is_final(event: &StoredEvent) -> bool {
    use bonsai_domain::training::TrainingTaskEvent::*;
    matches!(
        event.event(),
        Ok((
            bonsai_domain::Event::TrainingTask(
                TrainingCompleted { .. } | TrainingFailed { .. } | TrainingStopped { .. }
            ),
            _
        ))
    )
}

/// How often an idle stream shows it is alive (an SSE comment, a WebSocket ping).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The task as it stands, then each of its events as committed, until the run ends (at once when it has).
async fn feed(
    state: &AppState,
    user: &AuthUser,
    id: Uuid,
) -> Result<(TaskDto, BoxStream<'static, StoredEvent>), ApiError> {
    user.require(Permission::ManageTraining)?;
    // Subscribed before the snapshot is read, so nothing falls between the two.
    let subject = state.subjects.events_of_one(AggregateKind::TrainingTask, id);
    let live = state.nats.subscribe(subject).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let mut task = TaskDto::from(visible(state, user, id).await?);
    // Whether the run is over comes from the task's committed events, not the view: a final event published
    // before the subscription may not be in the view yet, and would otherwise be waited for forever.
    let committed = state.commands.load::<bonsai_domain::training::TrainingTask>(id).await?;
    let over = matches!(committed.status, TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Stopped);
    task.status = committed.status.to_string();
    if let Some(result) = &committed.result {
        task.result = serde_json::to_value(result).ok();
    }
    if over {
        return Ok((task, futures::stream::empty().boxed()));
    }
    // Ends right after the first final event, which is still sent.
    let events = futures::stream::unfold((live, false), |(mut live, done)| async move {
        if done {
            return None;
        }
        loop {
            let message = live.next().await?;
            let Ok(event) = StoredEvent::envelope(&message.payload) else { continue };
            let done = is_final(&event);
            return Some((event, (live, done)));
        }
    });
    Ok((task, events.boxed()))
}

/// First a `snapshot` event (the task as the view has it, with its status as committed), then every event
/// of the task as it is committed (`event:` its type, `data:` the envelope as on NATS), until the run ends.
/// Comments keep the connection alive every 15 s.
#[utoipa::path(get, path = "/api/training/tasks/{id}/events", tag = "training", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "task id"),
        ("access_token" = Option<String>, Query, description = "the access token, for clients that cannot send headers")),
    responses((status = 200, description = "text/event-stream", content_type = "text/event-stream"),
    (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn task_events(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let (task, events) = feed(&state, &user, id).await?;
    let snapshot =
        Event::default().event("snapshot").json_data(&task).map_err(|e| ApiError::Internal(e.to_string()))?;
    let events = events
        .filter_map(|event| async move { Event::default().event(event.event_type.clone()).json_data(&event).ok() });
    let stream = futures::stream::once(async move { snapshot }).chain(events).map(Ok);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// The same feed over a WebSocket: text messages `{"type": "snapshot", "task": {...}}`, then
/// `{"type": "<event type>", "event": {envelope}}` for each event, then a normal close once the run ends.
/// Pings every 15 s; what the client sends is ignored (a close frame ends the feed).
#[utoipa::path(get, path = "/api/training/tasks/{id}/ws", tag = "training", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "task id"),
        ("access_token" = Option<String>, Query, description = "the access token, for clients that cannot send headers")),
    responses((status = 101, description = "switched to a WebSocket"), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn task_socket(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    // A plain GET (no upgrade headers) gets the API's error shape, not axum's plain text.
    let upgrade = upgrade
        .map_err(|rejection| ApiError::BadRequest { code: "websocket_required", message: rejection.body_text() })?;
    // Checked before the upgrade, so a missing task or a forbidden one is a plain 404/403.
    let (task, events) = feed(&state, &user, id).await?;
    Ok(upgrade.on_upgrade(move |socket| push(socket, task, events)))
}

async fn push(mut socket: WebSocket, task: TaskDto, mut events: BoxStream<'static, StoredEvent>) {
    let text = |value: serde_json::Value| Message::Text(value.to_string().into());
    if socket.send(text(json!({"type": "snapshot", "task": task}))).await.is_err() {
        return;
    }
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    loop {
        tokio::select! {
            event = events.next() => {
                let Some(event) = event else { break };
                let message = text(json!({"type": event.event_type, "event": event}));
                if socket.send(message).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}
