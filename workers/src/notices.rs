//! Plain (non-durable) NATS subscriptions to relayed events, for what every node must hear of, whichever
//! node's durable consumer handles the event:
//! - User events keep every node's [`UserCache`] as fresh as the users view (each event raises the
//!   version its user's cached row must have), and `SessionEnded` makes every node refuse that
//!   session's access tokens at once;
//! - `ModelUndeployed` makes every node drop the model's loaded engine (its memory is given back
//!   everywhere, not just on the node whose model worker took the event).
//!
//! And one PostgreSQL notification channel: erased data keys ([`follow_key_erasures`]), which must reach every
//! node only once the erasure is committed, as NOTIFY does.

use crate::bus::open_with_retry;
use crate::serving::Engines;
use crate::EventBus;
use async_nats::Message;
use bonsai_projections::user_cache::UserCache;
use futures::StreamExt;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// `(aggregate type, id, sequence)` from a relayed event's `Nats-Msg-Id` (`<type>/<id>/<sequence>`).
fn notice(message_id: &str) -> Option<(&str, Uuid, i64)> {
    let mut parts = message_id.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(kind), Some(id), Some(sequence)) => Some((kind, id.parse().ok()?, sequence.parse().ok()?)),
        _ => None,
    }
}

/// `(aggregate type, id, sequence, event type)` of a relayed event message.
fn headers_of(message: &Message) -> Option<(&str, Uuid, i64, &str)> {
    let headers = message.headers.as_ref()?;
    let event_type = headers.get("Bonsai-Event-Type").map(|v| v.as_str()).unwrap_or_default();
    let (kind, id, sequence) = notice(headers.get("Nats-Msg-Id")?.as_str())?;
    Some((kind, id, sequence, event_type))
}

/// The session a relayed `SessionEnded` event ended, and why.
fn ended_session(payload: &[u8]) -> Option<(Uuid, String)> {
    let event = bonsai_projections::StoredEvent::envelope(payload).ok()?;
    let ended = &event.payload["SessionEnded"];
    Some((ended["session_id"].as_str()?.parse().ok()?, ended["reason"].as_str().unwrap_or_default().to_owned()))
}

/// Calls `on_event` for each message on `subject` until `shutdown`, subscribing again after the
/// subscription ends.
async fn follow(
    bus: &EventBus,
    subject: String,
    what: &str,
    shutdown: &CancellationToken,
    mut on_event: impl FnMut(&str, Uuid, i64, &str, &[u8]),
) {
    let client = bus.js.client();
    while let Some(mut messages) = open_with_retry(what, shutdown, || client.subscribe(subject.clone())).await {
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return,
                message = messages.next() => message,
            };
            let Some(message) = message else { break };
            if let Some((kind, id, sequence, event_type)) = headers_of(&message) {
                on_event(kind, id, sequence, event_type, &message.payload);
            }
        }
    }
}

/// Feeds `cache` until `shutdown`.
pub async fn follow_user_events(
    bus: EventBus,
    cache: Arc<UserCache>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let subject = format!("{}.events.User.*", bus.prefix);
    follow(&bus, subject, "the user events subscription", &shutdown, |kind, user, sequence, event_type, payload| {
        if kind != "User" {
            return;
        }
        cache.note_event(user, sequence, event_type);
        if event_type == "SessionEnded" {
            if let Some((session, reason)) = ended_session(payload) {
                cache.note_session_ended(session, &reason);
            }
        }
    })
    .await;
    Ok(())
}

/// Drops this node's engine of each model that is undeployed, until `shutdown`.
pub async fn follow_model_events(bus: EventBus, engines: Engines, shutdown: CancellationToken) -> anyhow::Result<()> {
    let subject = format!("{}.events.Model.*", bus.prefix);
    follow(&bus, subject, "the model events subscription", &shutdown, |kind, model, _, event_type, _| {
        if kind == "Model" && event_type == "ModelUndeployed" {
            engines.unload(model);
        }
    })
    .await;
    Ok(())
}

/// Forgets each data key that is erased (by any node or by hand) as soon as the erasure commits, until
/// `shutdown`: the erased question's text stops opening on this node at once rather than after
/// `data_keys::FRESH_FOR`. Whenever the channel was not followed (at the start, after a lost connection),
/// every key this process loaded is treated as stale, so no erasure in between is missed.
pub async fn follow_key_erasures(pool: sqlx::PgPool, shutdown: CancellationToken) -> anyhow::Result<()> {
    use bonsai_projections::data_keys::ERASURES_CHANNEL;
    // The listener keeps its connection for good: a pool of its own, so the shared one does not lose a slot.
    let own = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(pool.connect_options().as_ref().clone());
    let connect = || async {
        let mut listener = sqlx::postgres::PgListener::connect_with(&own).await?;
        listener.listen(ERASURES_CHANNEL).await?;
        Ok::<_, sqlx::Error>(listener)
    };
    while let Some(mut listener) = open_with_retry("the data key erasure notices", &shutdown, connect).await {
        bonsai_domain::data_keys::expire_all();
        loop {
            let notice = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                notice = listener.try_recv() => notice,
            };
            match notice {
                Ok(Some(notice)) => match notice.payload().parse::<Uuid>() {
                    Ok(id) => bonsai_domain::data_keys::forget(&[id]),
                    Err(_) => tracing::warn!(payload = notice.payload(), "not a data key id; ignored"),
                },
                // The connection was lost: listen again on a new one, then expire what was loaded meanwhile.
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%error, "data key erasure notices interrupted");
                    break;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_of_events_become_notices() {
        let id = Uuid::new_v4();
        assert_eq!(notice(&format!("User/{id}/42")), Some(("User", id, 42)));
        assert_eq!(notice(&format!("Model/{id}/7")), Some(("Model", id, 7)));
        assert_eq!(notice("User/not-a-uuid/1"), None);
        assert_eq!(notice(&format!("User/{id}")), None);
    }
}
