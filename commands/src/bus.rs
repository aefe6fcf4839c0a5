use crate::store::EventRepository;
use crate::{Argon2Passwords, CommandError, CommandMetadata};
use bonsai_domain::alert::{Alert, AlertCommand};
use bonsai_domain::dataset::{Dataset, DatasetCommand};
use bonsai_domain::model::{Model, ModelCommand};
use bonsai_domain::qa::{QaCommand, QaSession};
use bonsai_domain::training::{TrainingTask, TrainingTaskCommand};
use bonsai_domain::user::{User, UserCommand, UserServices};
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventStore};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The event store of aggregate type `A`.
pub type Store<A> = PersistedEventStore<EventRepository, A>;

/// An aggregate type the bus keeps: its store and the services its commands are decided with.
pub trait Stored: Aggregate + Clone + Default {
    fn store(bus: &CommandBus) -> &Store<Self>;
    fn services(bus: &CommandBus) -> &Self::Services;
    /// The aggregate's refusal as the bus reports it.
    fn refused(error: Self::Error) -> CommandError;
}

/// A command type and the aggregate type it is executed on, so that `execute(id, command, meta)` needs no
/// type named: the command says which aggregate it is for.
pub trait CommandOf: Clone + Send + Sync {
    type Aggregate: Stored<Command = Self>;
}

macro_rules! stored {
    ($aggregate:ty, $command:ty, $field:ident, |$bus:ident| $services:expr) => {
        impl Stored for $aggregate {
            fn store(bus: &CommandBus) -> &Store<Self> {
                &bus.$field
            }
            fn services($bus: &CommandBus) -> &Self::Services {
                $services
            }
            fn refused(error: Self::Error) -> CommandError {
                error.into()
            }
        }
        impl CommandOf for $command {
            type Aggregate = $aggregate;
        }
    };
}

stored!(User, UserCommand, users, |bus| &bus.user_services);
stored!(Dataset, DatasetCommand, datasets, |_bus| &());
stored!(TrainingTask, TrainingTaskCommand, training, |_bus| &());
stored!(Model, ModelCommand, models, |_bus| &());
stored!(QaSession, QaCommand, qa, |_bus| &());
stored!(Alert, AlertCommand, alerts, |_bus| &());

/// Executes commands against the event store. Cheap to clone.
///
/// The loop is cqrs-es's own (`CqrsFramework::execute`: load, handle, commit) run on its event store
/// directly, so that a caller can have the aggregate's state after the command without reading a view
/// that may lag. No cqrs-es queries are attached: read models are built from NATS by durable consumers
/// (ARCHITECTURE.md), never in-process after commit.
#[derive(Clone)]
pub struct CommandBus {
    users: Arc<Store<User>>,
    user_services: Arc<Box<dyn UserServices>>,
    datasets: Arc<Store<Dataset>>,
    training: Arc<Store<TrainingTask>>,
    models: Arc<Store<Model>>,
    qa: Arc<Store<QaSession>>,
    alerts: Arc<Store<Alert>>,
    pool: PgPool,
    max_attempts: u32,
    /// Called after every successful command (see [`CommandBus::on_append`]).
    appended: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl CommandBus {
    /// The event store's database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn new(pool: PgPool) -> Self {
        // A user who logs in daily has a long history: the User's state is kept in its snapshot, written
        // with every append (one statement, see store.rs), so loading it is one row whatever its age.
        let users = PersistedEventStore::new_aggregate_store(EventRepository::new(pool.clone()))
            .with_upcasters(crate::upcasters::all());
        // Dataset histories are short (a few versions and validations): no snapshots.
        let datasets = PersistedEventStore::new_event_store(EventRepository::new(pool.clone()))
            .with_upcasters(crate::upcasters::all());
        // A task's history is its progress reports (bounded rate) and a few transitions per run: the state
        // is kept in its snapshot, as for users, so that loading it stays one row however long it trained.
        let training = PersistedEventStore::new_aggregate_store(EventRepository::new(pool.clone()))
            .with_upcasters(crate::upcasters::all());
        // A model's and a conversation's histories grow (test reports, questions) and every question loads
        // both: their (bounded) states are kept in snapshots, so a load is one row.
        let models = PersistedEventStore::new_aggregate_store(EventRepository::new(pool.clone()))
            .with_upcasters(crate::upcasters::all());
        let qa = PersistedEventStore::new_aggregate_store(EventRepository::new(pool.clone()))
            .with_upcasters(crate::upcasters::all());
        // An alert's history is a handful of transitions (a recurring one: one raise and resolve per episode).
        let alerts = PersistedEventStore::new_event_store(EventRepository::new(pool.clone()))
            .with_upcasters(crate::upcasters::all());
        Self {
            users: Arc::new(users),
            user_services: Arc::new(Box::new(Argon2Passwords)),
            datasets: Arc::new(datasets),
            training: Arc::new(training),
            models: Arc::new(models),
            qa: Arc::new(qa),
            alerts: Arc::new(alerts),
            pool,
            max_attempts: 8,
            appended: None,
        }
    }

    /// Calls `hook` after every command that succeeded (it may have appended events): the binary uses
    /// it to wake the relay at once instead of waiting for its next poll.
    pub fn on_append(mut self, hook: Arc<dyn Fn() + Send + Sync>) -> Self {
        self.appended = Some(hook);
        self
    }

    /// Executes `command` on the aggregate `id` of its type: load, decide, append, retrying optimistic-
    /// concurrency conflicts a bounded number of times (each retry reloads the aggregate and decides again).
    #[tracing::instrument(skip_all, fields(aggregate = <C::Aggregate as Aggregate>::TYPE, %id,
        correlation_id = %meta.correlation_id), err(level = "info"))]
    pub async fn execute<C: CommandOf>(
        &self,
        id: Uuid,
        command: C,
        meta: &CommandMetadata,
    ) -> Result<(), CommandError> {
        let aggregate = (C::Aggregate::store(self), C::Aggregate::services(self));
        self.run(aggregate.0, aggregate.1, id, command, meta, false).await.map(drop)
    }

    /// [`CommandBus::execute`], answering the aggregate's state as the command left it (never behind, unlike
    /// a view).
    #[tracing::instrument(skip_all, fields(aggregate = <C::Aggregate as Aggregate>::TYPE, %id,
        correlation_id = %meta.correlation_id), err(level = "info"))]
    pub async fn execute_and_get<C: CommandOf>(
        &self,
        id: Uuid,
        command: C,
        meta: &CommandMetadata,
    ) -> Result<C::Aggregate, CommandError> {
        let aggregate = (C::Aggregate::store(self), C::Aggregate::services(self));
        let state = self.run(aggregate.0, aggregate.1, id, command, meta, true).await?;
        Ok(state.unwrap_or_default())
    }

    /// The aggregate `id` as its committed events leave it (never behind, unlike a view): what a handler or
    /// a worker checks before it acts.
    pub async fn load<A: Stored>(&self, id: Uuid) -> Result<A, CommandError> {
        let context = A::store(self).load_aggregate(&id.to_string()).await.map_err(|e| convert::<A>(e, 1))?;
        Ok(context.aggregate)
    }

    /// [`CommandBus::load`] with the sequence of the last event it folds (0: no events): a cache of the state
    /// compares it with the sequences of the events it hears of on NATS.
    pub async fn load_versioned<A: Stored>(&self, id: Uuid) -> Result<(A, i64), CommandError> {
        let context = A::store(self).load_aggregate(&id.to_string()).await.map_err(|e| convert::<A>(e, 1))?;
        Ok((context.aggregate, context.current_sequence as i64))
    }

    /// Load, decide, append; on a conflict (another writer appended first) again from the load, a
    /// bounded number of times. With `want_state`, answers the aggregate as the command left it.
    async fn run<A>(
        &self,
        store: &Store<A>,
        services: &A::Services,
        id: Uuid,
        command: A::Command,
        meta: &CommandMetadata,
        want_state: bool,
    ) -> Result<Option<A>, CommandError>
    where
        A: Stored,
        A::Command: Clone,
    {
        let id = id.to_string();
        for attempt in 1..=self.max_attempts {
            match Self::attempt(store, services, &id, command.clone(), meta, want_state).await {
                Ok(state) => {
                    if let Some(hook) = &self.appended {
                        hook();
                    }
                    return Ok(state);
                }
                Err(AggregateError::AggregateConflict) if attempt < self.max_attempts => {
                    // Jittered back-off so that racing writers stop colliding in lock-step.
                    let jitter = rand::random::<u64>() % (2 * u64::from(attempt) + 1);
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
                Err(e) => return Err(convert::<A>(e, attempt)),
            }
        }
        Err(CommandError::Conflict { attempts: self.max_attempts })
    }

    async fn attempt<A: Aggregate + Clone>(
        store: &Store<A>,
        services: &A::Services,
        id: &str,
        command: A::Command,
        meta: &CommandMetadata,
        want_state: bool,
    ) -> Result<Option<A>, AggregateError<A::Error>> {
        let mut context = store.load_aggregate(id).await?;
        let loaded = context.aggregate.clone();
        let sink: EventSink<A> = EventSink::default();
        // The sink applies each event to the aggregate as the command decides it.
        context.aggregate().handle(command, services, &sink).await.map_err(AggregateError::UserError)?;
        let state = want_state.then(|| context.aggregate().clone());
        // `commit` applies the events to the context's aggregate again to build the snapshot (cqrs-es 0.5's
        // own `execute` does the same): it must get the state as loaded, or every event is applied twice to
        // the snapshot (harmless for an event that sets a field, wrong for one that appends to a list).
        context.aggregate = loaded;
        store.commit(sink.collect().await, context, meta.to_map()).await?;
        Ok(state)
    }

    /// Whether any user was ever registered (first-start bootstrap).
    pub async fn any_user_exists(&self) -> Result<bool, CommandError> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events WHERE aggregate_type = 'User')")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| CommandError::Store(e.to_string()))
    }
}

fn convert<A: Stored>(error: AggregateError<A::Error>, attempts: u32) -> CommandError {
    match error {
        AggregateError::UserError(e) => A::refused(e),
        AggregateError::AggregateConflict => CommandError::Conflict { attempts },
        AggregateError::DatabaseConnectionError(e) => CommandError::Store(e.to_string()),
        AggregateError::DeserializationError(e) => CommandError::Store(format!("deserialisation: {e}")),
        AggregateError::UnexpectedError(e) => CommandError::Store(e.to_string()),
    }
}
