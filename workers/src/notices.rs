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
use bonsai_domain::model::ModelEvent;
use bonsai_domain::user::{SessionEndReason, UserEvent};
use bonsai_domain::{AggregateKind, Event};
use bonsai_projections::user_cache::UserCache;
use bonsai_projections::{ProjectionError, StoredEvent};
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

/// `(aggregate id, sequence, event)` of a relayed event message, the event typed when it decodes as it is
/// published (personal data sealed: a `UserRegistered` or `ProfileUpdated` does not, and is `Err`).
fn read_notice(message: &Message) -> Option<(Uuid, i64, Result<Event, ProjectionError>)> {
    let headers = message.headers.as_ref()?;
    let (_, id, sequence) = notice(headers.get("Nats-Msg-Id")?.as_str())?;
    let event = StoredEvent::envelope(&message.payload).and_then(|e| e.event().map(|(event, _)| event));
    Some((id, sequence, event))
}

/// The reason string a `SessionEnded` event carries.
fn reason_name(reason: SessionEndReason) -> String {
    serde_json::to_value(reason).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Calls `on_event` for each message on `subject` until `shutdown`, subscribing again after the
/// subscription ends.
async fn follow(
    bus: &EventBus,
    subject: String,
    what: &str,
    shutdown: &CancellationToken,
    mut on_event: impl FnMut(Uuid, i64, Result<Event, ProjectionError>),
) {
    let client = bus.js.client();
    while let Some(mut messages) = open_with_retry(what, shutdown, || client.subscribe(subject.clone())).await {
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return,
                message = messages.next() => message,
            };
            let Some(message) = message else { break };
            if let Some((id, sequence, event)) = read_notice(&message) {
                on_event(id, sequence, event);
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
    let subject = bus.subjects.events_of(AggregateKind::User);
    follow(&bus, subject, "the user events subscription", &shutdown, |user, sequence, event| match event {
        Ok(Event::User(UserEvent::SessionEnded { session_id, reason })) => {
            cache.note_session_ended(session_id, &reason_name(reason))
        }
        Ok(Event::User(event)) => cache.note_event(user, sequence, UserCache::matters(&event)),
        Ok(_) => {}
        // Sealed fields (a registration or a profile change): counted as mattering, which costs one read.
        Err(_) => cache.note_event(user, sequence, true),
    })
    .await;
    Ok(())
}

/// Drops this node's engine of each model that is undeployed, until `shutdown`.
pub async fn follow_model_events(bus: EventBus, engines: Engines, shutdown: CancellationToken) -> anyhow::Result<()> {
    let subject = bus.subjects.events_of(AggregateKind::Model);
    follow(&bus, subject, "the model events subscription", &shutdown, |model, _, event| {
        if let Ok(Event::Model(ModelEvent::ModelUndeployed)) = event {
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
        bonsai_crypto::data_keys::expire_all();
        loop {
            let notice = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                notice = listener.try_recv() => notice,
            };
            match notice {
                Ok(Some(notice)) => match notice.payload().parse::<Uuid>() {
                    Ok(id) => bonsai_crypto::data_keys::forget(&[id]),
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
