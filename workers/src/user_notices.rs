//! Keeps every node's [`UserCache`] as fresh as the users view: a plain (non-durable) NATS subscription
//! to the User events the relay publishes, each one raising the version its user's cached row must have.
//! Every node runs one, so every node hears of every event, whichever node's consumer applies it.

use crate::bus::open_with_retry;
use crate::EventBus;
use bonsai_projections::user_cache::UserCache;
use futures::StreamExt;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// `(user id, sequence)` from a relayed event's `Nats-Msg-Id` (`User/<id>/<sequence>`).
fn notice(message_id: &str) -> Option<(Uuid, i64)> {
    let mut parts = message_id.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("User"), Some(id), Some(sequence)) => Some((id.parse().ok()?, sequence.parse().ok()?)),
        _ => None,
    }
}

/// Feeds `cache` until `shutdown`, subscribing again after the subscription ends.
pub async fn follow_user_events(
    bus: EventBus,
    cache: Arc<UserCache>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let subject = format!("{}.events.User.*", bus.prefix);
    let client = bus.js.client();
    while let Some(mut messages) =
        open_with_retry("the user events subscription", &shutdown, || client.subscribe(subject.clone())).await
    {
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                message = messages.next() => message,
            };
            let Some(message) = message else { break };
            let Some(headers) = message.headers.as_ref() else { continue };
            let event_type = headers.get("Bonsai-Event-Type").map(|v| v.as_str()).unwrap_or_default();
            if let Some((user, sequence)) = headers.get("Nats-Msg-Id").and_then(|id| notice(id.as_str())) {
                cache.note_event(user, sequence, event_type);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_of_user_events_become_notices() {
        let id = Uuid::new_v4();
        assert_eq!(notice(&format!("User/{id}/42")), Some((id, 42)));
        assert_eq!(notice(&format!("Dataset/{id}/42")), None);
        assert_eq!(notice("User/not-a-uuid/1"), None);
        assert_eq!(notice(&format!("User/{id}")), None);
    }
}
