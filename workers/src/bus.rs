use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::{self, stream};
use bonsai_projections::Subjects;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The JetStream stream that carries the events of the instance whose subjects start with `prefix`.
pub fn stream_name(prefix: &str) -> String {
    Subjects::new(prefix).stream_name()
}

/// The NATS side of the platform: a JetStream context and the instance's subjects.
#[derive(Clone)]
pub struct EventBus {
    pub js: jetstream::Context,
    pub subjects: Subjects,
}

impl EventBus {
    pub fn new(client: async_nats::Client, prefix: impl Into<String>) -> Self {
        Self { js: jetstream::new(client), subjects: Subjects::new(prefix) }
    }

    pub fn stream_name(&self) -> String {
        self.subjects.stream_name()
    }

    /// The name of a worker's or projection's durable consumer on this instance's stream.
    pub fn durable_name(&self, name: &str) -> String {
        format!("{}_{name}", self.stream_name().to_lowercase())
    }

    /// Core NATS subject on which the relay leader is woken.
    pub fn wake_subject(&self) -> String {
        self.subjects.relay_wake()
    }

    /// Wakes the relay leader, wherever it runs (fire and forget: the relay also polls).
    pub async fn wake_relay(&self) -> Result<(), async_nats::PublishError> {
        self.js.client().publish(self.wake_subject(), bytes::Bytes::new()).await
    }

    /// Creates the events stream if it does not exist. Publishes are de-duplicated by message id
    /// within the duplicate window, which covers a relay that crashed between publish and checkpoint.
    pub async fn ensure_stream(&self) -> Result<stream::Stream, async_nats::Error> {
        let config = stream::Config {
            name: self.stream_name(),
            subjects: vec![self.subjects.all_events()],
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(300),
            ..Default::default()
        };
        Ok(self.js.get_or_create_stream(config).await?)
    }

    /// The durable pull consumer `config.durable_name` on the events stream, creating stream and consumer
    /// if needed (for workers that fetch one message at a time).
    pub async fn durable_consumer(
        &self,
        config: pull::Config,
    ) -> Result<async_nats::jetstream::consumer::Consumer<pull::Config>, async_nats::Error> {
        let stream = self.ensure_stream().await?;
        current_consumer(&stream, config).await
    }

    /// The message stream of the durable pull consumer `config.durable_name` on the events stream,
    /// creating stream and consumer if needed.
    pub async fn durable_messages(&self, config: pull::Config) -> Result<pull::Stream, async_nats::Error> {
        let stream = self.ensure_stream().await?;
        let consumer = current_consumer(&stream, config).await?;
        Ok(consumer.messages().await?)
    }

    /// Like [`EventBus::durable_messages`], but pulling at most `batch` messages at a time: a worker takes
    /// no more than it can work on, so the rest go to the other nodes' workers on the same consumer.
    pub async fn durable_messages_batched(
        &self,
        config: pull::Config,
        batch: usize,
    ) -> Result<pull::Stream, async_nats::Error> {
        let stream = self.ensure_stream().await?;
        let consumer = current_consumer(&stream, config).await?;
        Ok(consumer.stream().max_messages_per_batch(batch.max(1)).messages().await?)
    }
}

/// The durable consumer `config.durable_name`, created, or updated to `config` where it exists with other
/// settings (a new release's `max_ack_pending`, say: NATS keeps a durable's settings until told otherwise).
/// A setting NATS cannot change on an existing consumer leaves it as it is, with a warning.
async fn current_consumer(
    stream: &async_nats::jetstream::stream::Stream,
    config: pull::Config,
) -> Result<async_nats::jetstream::consumer::Consumer<pull::Config>, async_nats::Error> {
    let name = config.durable_name.clone().ok_or("a durable consumer needs a name")?;
    match stream.create_consumer(config.clone()).await {
        Ok(consumer) => Ok(consumer),
        Err(error) => {
            tracing::warn!(%error, consumer = %name, "the durable consumer keeps its earlier settings");
            Ok(stream.get_or_create_consumer(&name, config).await?)
        }
    }
}

/// Opens something with `open` (a consumer, a subscription) until it succeeds, waiting a second after each
/// failure, which is logged as `what`; `None` once `shutdown` fires.
pub(crate) async fn open_with_retry<T, E, Fut>(
    what: &str,
    shutdown: &CancellationToken,
    mut open: impl FnMut() -> Fut,
) -> Option<T>
where
    E: std::fmt::Display,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    while !shutdown.is_cancelled() {
        match open().await {
            Ok(opened) => return Some(opened),
            Err(error) => {
                tracing::warn!(%error, what, "unavailable, retrying in 1 s");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    None
}
