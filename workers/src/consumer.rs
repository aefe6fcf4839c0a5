//! Durable JetStream pull consumers that feed projections: explicit ack after the view transaction
//! commits, `nak` with delay on a transient failure, `term` for a message that can never be applied.

use crate::bus::open_with_retry;
use crate::EventBus;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{AckKind, Message};
use bonsai_commands::{CommandBus, CommandMetadata};
use bonsai_domain::alert::{alert_id, AlertCommand, AlertSpec, Severity};
use bonsai_projections::{
    apply_batch, apply_event, held_alert_key, retry_held, Applied, Batch, Held, Projection, ProjectionError,
    StoredEvent,
};
use futures::FutureExt;
use futures::StreamExt;
use serde_json::json;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What happened to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processed {
    Applied,
    AlreadyApplied,
    /// Will be redelivered.
    Retried,
    /// Poison: will not be redelivered.
    Terminated,
    /// A projection could not apply it and holds its aggregate at it: acknowledged, as the event is in the
    /// store, from where the aggregate is caught up once the event applies.
    Held,
}

impl Processed {
    /// Acknowledges `message` as this outcome says: ack when done, nak (redeliver after `retry_after`) when
    /// it may succeed later, term when it never will. A failed ack is only logged: the message comes
    /// again and is recognised as done.
    pub(crate) async fn acknowledge(self, message: &Message, retry_after: Duration) -> Self {
        let ack = match self {
            Processed::Applied | Processed::AlreadyApplied | Processed::Held => AckKind::Ack,
            Processed::Retried => AckKind::Nak(Some(retry_after)),
            Processed::Terminated => AckKind::Term,
        };
        if let Err(error) = message.ack_with(ack).await {
            tracing::warn!(%error, "ack failed; the message will be redelivered and skipped");
        }
        self
    }
}

/// The most messages applied in one transaction.
const MAX_BATCH: usize = 256;

/// How often a projection's consumer tries its held aggregates again (and at its start).
const RETRY_HELD_EVERY: Duration = Duration::from_secs(30);

pub struct ProjectionConsumer {
    pool: PgPool,
    bus: EventBus,
    projection: Arc<dyn Projection>,
    /// Where alerts for held aggregates are raised (none: only logged and counted in the lag metric).
    alerts: Option<CommandBus>,
}

impl ProjectionConsumer {
    pub fn new(pool: PgPool, bus: EventBus, projection: Arc<dyn Projection>) -> Self {
        Self { pool, bus, projection, alerts: None }
    }

    /// Raises a critical `projection_held` alert through `commands` for each aggregate the projection is held
    /// at, and resolves it when the aggregate is released.
    pub fn with_alerts(mut self, commands: CommandBus) -> Self {
        self.alerts = Some(commands);
        self
    }

    fn durable_name(&self) -> String {
        self.bus.durable_name(&format!("projection_{}", self.projection.name()))
    }

    async fn consumer(&self) -> Result<pull::Stream, async_nats::Error> {
        // Only the events of the projection's aggregates (an existing consumer is updated to this filter).
        let spec = WorkerConsumer {
            name: self.durable_name(),
            subjects: self.projection.aggregate_types().iter().map(|t| self.bus.subjects.events_of_type(t)).collect(),
            ack_wait: Duration::from_secs(30),
            concurrency: MAX_BATCH,
            max_in_flight: 1024,
            fetch: Fetch::Stream,
        };
        // Batches are applied in one transaction each (see `run`): pulled as a stream, not by `consume`.
        self.bus.durable_messages(spec.config()).await
    }

    /// Runs until `shutdown`, reconnecting the message stream after errors, and trying held aggregates again
    /// every [`RETRY_HELD_EVERY`].
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let what = format!("the {} projection's consumer", self.projection.name());
        let mut retry = tokio::time::interval(RETRY_HELD_EVERY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while let Some(mut messages) = open_with_retry(&what, &shutdown, || self.consumer()).await {
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = retry.tick() => {
                        self.retry_held().await;
                        continue;
                    }
                    next = messages.next() => next,
                };
                match next {
                    Some(Ok(message)) => {
                        // Take whatever else has already arrived, and apply it all in one transaction.
                        let mut batch = vec![message];
                        while batch.len() < MAX_BATCH {
                            match messages.next().now_or_never() {
                                Some(Some(Ok(more))) => batch.push(more),
                                _ => break,
                            }
                        }
                        self.process_batch(&batch).await;
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, projection = self.projection.name(), "message stream error");
                        break;
                    }
                    None => break,
                }
            }
        }
        Ok(())
    }

    /// Applies several messages in one transaction and acks them after the commit; falls back to one
    /// by one (with nak per message) if any of them fails or is not its aggregate's next event.
    pub async fn process_batch(&self, messages: &[Message]) {
        if messages.len() > 1 {
            let payloads = messages.iter().map(|m| &m.payload[..]);
            if let Ok(events) = StoredEvent::all_from_bus(&self.pool, payloads).await {
                if let Ok(Batch::Applied(_)) = apply_batch(&self.pool, self.projection.as_ref(), &events).await {
                    let acks = messages.iter().map(|m| Processed::Applied.acknowledge(m, Duration::ZERO));
                    futures::future::join_all(acks).await;
                    return;
                }
            }
        }
        for message in messages {
            self.process(message).await;
        }
    }

    /// Applies one message and acknowledges it accordingly. Exposed so tests can drive a consumer
    /// message by message.
    #[tracing::instrument(skip_all, fields(projection = self.projection.name()))]
    pub async fn process(&self, message: &Message) -> Processed {
        let outcome = match StoredEvent::from_bus(&self.pool, &message.payload).await {
            Ok(event) => self.apply(&event).await,
            // Not an event envelope: no event is lost by dropping it (the store has every event).
            Err(ProjectionError::Undecodable { event_type, version, reason }) => {
                tracing::error!(%event_type, %version, %reason, "not an event envelope, terminating");
                Processed::Terminated
            }
            Err(error) => {
                tracing::warn!(%error, "event cannot be read, will retry");
                Processed::Retried
            }
        };
        outcome.acknowledge(message, Duration::from_secs(1)).await
    }

    /// Applies one event as [`apply_event`] does; an event that holds its aggregate is acknowledged (it is in
    /// the store, where the aggregate's catch-up reads it) and raises an alert.
    pub async fn apply(&self, event: &StoredEvent) -> Processed {
        match apply_event(&self.pool, self.projection.as_ref(), event).await {
            Ok(Applied::Applied) => Processed::Applied,
            Ok(Applied::AlreadyApplied) => Processed::AlreadyApplied,
            Ok(Applied::Released(sequence)) => {
                self.resolve(&event.aggregate_type, &event.aggregate_id, sequence).await;
                Processed::Applied
            }
            Ok(Applied::Held(held)) => {
                if held.newly {
                    self.raise(&held).await;
                }
                Processed::Held
            }
            Err(error) => {
                tracing::warn!(%error, "projection failed, will retry");
                Processed::Retried
            }
        }
    }

    /// Tries every held aggregate again; raises an alert for each still held, resolves those released.
    pub async fn retry_held(&self) {
        let outcomes = match retry_held(&self.pool, self.projection.as_ref()).await {
            Ok(outcomes) => outcomes,
            Err(error) => {
                tracing::warn!(%error, projection = self.projection.name(), "held aggregates not retried");
                return;
            }
        };
        for outcome in outcomes {
            if let Some(held) = &outcome.held {
                // Raising an open alert is a no-op: this also raises what a rebuild held, or a raise that failed.
                self.raise(held).await;
            }
            if let Some(sequence) = outcome.released {
                self.resolve(&outcome.aggregate_type, &outcome.aggregate_id, sequence).await;
            }
        }
    }

    async fn raise(&self, held: &Held) {
        let Some(commands) = &self.alerts else { return };
        let spec = AlertSpec {
            kind: "projection_held".into(),
            severity: Severity::Critical,
            subject: format!("projection/{}/{}/{}", held.projection, held.aggregate_type, held.aggregate_id),
            message: format!(
                "the {} view cannot apply {} event {} of {} {} ({}); its later events wait in the event store",
                held.projection, held.event_type, held.sequence, held.aggregate_type, held.aggregate_id, held.error
            ),
            details: json!({
                "projection": held.projection, "aggregate_type": held.aggregate_type,
                "aggregate_id": held.aggregate_id, "sequence": held.sequence, "event_type": held.event_type,
                "error": held.error,
            }),
            owner_id: None,
        };
        let key = held.alert_key();
        let command = AlertCommand::Raise { spec, recurring: false };
        if let Err(error) =
            commands.execute_and_get(alert_id(&key), command, &CommandMetadata::system(key.clone())).await
        {
            tracing::warn!(%error, key, "projection_held alert not raised; retried with the held aggregates");
        }
    }

    async fn resolve(&self, aggregate_type: &str, aggregate_id: &str, sequence: i64) {
        let Some(commands) = &self.alerts else { return };
        let key = held_alert_key(self.projection.name(), aggregate_type, aggregate_id, sequence);
        let note = Some("the event was applied: the view caught up".to_owned());
        let command = AlertCommand::Resolve { by: None, note };
        if let Err(error) =
            commands.execute_and_get(alert_id(&key), command, &CommandMetadata::system(key.clone())).await
        {
            tracing::warn!(%error, key, "projection_held alert not resolved");
        }
    }
}

/// The event a worker's message carries, or what to do with a message that does not read: terminate what is
/// not an event envelope (retrying will not help), retry a sealed field the keys do not open (the fix is the
/// configuration).
pub(crate) async fn read_message(db: &PgPool, message: &Message, consumer: &str) -> Result<StoredEvent, Processed> {
    StoredEvent::from_bus(db, &message.payload).await.map_err(|error| match error {
        ProjectionError::Undecodable { reason, .. } => {
            tracing::error!(%reason, consumer, "message is not an event envelope, terminating");
            Processed::Terminated
        }
        error => {
            tracing::warn!(%error, consumer, "event cannot be read, will retry");
            Processed::Retried
        }
    })
}

/// Subject filters as a consumer's `(filter_subject, filter_subjects)`: one subject as `filter_subject`, as
/// consumers made before several were possible have it.
fn one_or_many(subjects: Vec<String>) -> (String, Vec<String>) {
    match <[String; 1]>::try_from(subjects) {
        Ok([one]) => (one, Vec::new()),
        Err(many) => (String::new(), many),
    }
}

/// How a consumer takes messages from NATS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fetch {
    /// A pull stream of at most `concurrency` messages at a time.
    Stream,
    /// One message at a time and never ahead, for work that outlasts an ack wait (training): a message
    /// waiting in a busy node's buffer would be delivered to a second node as well.
    OneAtATime,
}

/// A durable JetStream consumer on the events stream: the one description every worker and projection
/// consumer is made from.
pub(crate) struct WorkerConsumer {
    pub(crate) name: String,
    /// One or more subject filters ([`bonsai_projections::Subjects`]).
    pub(crate) subjects: Vec<String>,
    /// How long a message may be worked on before it is delivered again.
    pub(crate) ack_wait: Duration,
    /// Messages one node works on at once (and pulls at a time).
    pub(crate) concurrency: usize,
    /// Messages in hand across all nodes: 1 keeps the stream's order cluster-wide; more lets more nodes work.
    pub(crate) max_in_flight: i64,
    pub(crate) fetch: Fetch,
}

impl WorkerConsumer {
    /// The JetStream consumer's settings.
    pub(crate) fn config(&self) -> pull::Config {
        let (filter_subject, filter_subjects) = one_or_many(self.subjects.clone());
        pull::Config {
            durable_name: Some(self.name.clone()),
            filter_subject,
            filter_subjects,
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            max_ack_pending: self.max_in_flight,
            ..Default::default()
        }
    }
}

/// Runs a worker's durable consumer until `shutdown`, handing each message's event (opened, its data keys
/// loaded) and the message itself (to keep a long job's message alive) to `handle`, and acknowledging each as
/// its outcome says; up to `concurrency` messages at once (messages in hand are finished first). The message
/// stream is opened again after errors.
pub(crate) async fn consume<F, Fut>(
    bus: &EventBus,
    db: &PgPool,
    spec: WorkerConsumer,
    shutdown: &CancellationToken,
    handle: F,
) -> anyhow::Result<()>
where
    F: Fn(StoredEvent, Message) -> Fut,
    Fut: std::future::Future<Output = Processed>,
{
    let config = spec.config();
    let name = spec.name.clone();
    let (name, handle) = (&name, &handle);
    let process = |message: Message| async move {
        let outcome = match read_message(db, &message, name).await {
            Ok(event) => handle(event, message.clone()).await,
            Err(outcome) => outcome,
        };
        outcome.acknowledge(&message, Duration::from_secs(2)).await;
    };
    match spec.fetch {
        Fetch::Stream => {
            let concurrency = spec.concurrency.max(1);
            while let Some(messages) =
                open_with_retry(name, shutdown, || bus.durable_messages_batched(config.clone(), concurrency)).await
            {
                let stop = shutdown.clone();
                messages
                    .take_until(async move { stop.cancelled().await })
                    .for_each_concurrent(concurrency, |next| async {
                        match next {
                            Ok(message) => process(message).await,
                            Err(error) => tracing::warn!(%error, consumer = %name, "message stream error"),
                        }
                    })
                    .await;
                if shutdown.is_cancelled() {
                    break;
                }
            }
        }
        Fetch::OneAtATime => {
            while let Some(consumer) = open_with_retry(name, shutdown, || bus.durable_consumer(config.clone())).await {
                'fetching: loop {
                    let batch = tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        batch = consumer.batch().max_messages(1).expires(Duration::from_secs(5)).messages() => batch,
                    };
                    let mut batch = match batch {
                        Ok(batch) => batch,
                        Err(error) => {
                            tracing::warn!(%error, consumer = %name, "fetch failed");
                            break 'fetching;
                        }
                    };
                    loop {
                        let next = tokio::select! {
                            _ = shutdown.cancelled() => return Ok(()),
                            next = batch.next() => next,
                        };
                        match next {
                            Some(Ok(message)) => process(message).await,
                            Some(Err(error)) => {
                                tracing::warn!(%error, consumer = %name, "message error");
                                break 'fetching;
                            }
                            None => break,
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
