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

type Store<A> = PersistedEventStore<EventRepository, A>;

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

    /// Executes a user command, retrying optimistic-concurrency conflicts a bounded number of times
    /// (each retry reloads the aggregate and decides again).
    #[tracing::instrument(skip_all, fields(aggregate = "User", %user_id, correlation_id = %meta.correlation_id), err(level = "info"))]
    pub async fn user(&self, user_id: Uuid, command: UserCommand, meta: &CommandMetadata) -> Result<(), CommandError> {
        self.execute(&self.users, &self.user_services, user_id, command, meta, false).await.map(drop)
    }

    /// [`CommandBus::user`], answering the user's state as the command left it.
    #[tracing::instrument(skip_all, fields(aggregate = "User", %user_id, correlation_id = %meta.correlation_id), err(level = "info"))]
    pub async fn user_state(
        &self,
        user_id: Uuid,
        command: UserCommand,
        meta: &CommandMetadata,
    ) -> Result<User, CommandError> {
        let state = self.execute(&self.users, &self.user_services, user_id, command, meta, true).await?;
        Ok(state.unwrap_or_default())
    }

    /// A user as their committed events leave them (their live sessions, for session management).
    pub async fn user_account(&self, user_id: Uuid) -> Result<User, CommandError> {
        Self::load(&self.users, user_id).await
    }

    /// Executes a dataset command, with the same bounded conflict retries as [`CommandBus::user`].
    #[tracing::instrument(skip_all, fields(aggregate = "Dataset", %dataset_id, correlation_id = %meta.correlation_id), err(level = "info"))]
    pub async fn dataset(
        &self,
        dataset_id: Uuid,
        command: DatasetCommand,
        meta: &CommandMetadata,
    ) -> Result<(), CommandError> {
        self.execute(&self.datasets, &(), dataset_id, command, meta, false).await.map(drop)
    }

    /// Executes a training task command, with the same bounded conflict retries as [`CommandBus::user`].
    #[tracing::instrument(skip_all, fields(aggregate = "TrainingTask", %task_id, correlation_id = %meta.correlation_id), err(level = "info"))]
    pub async fn training(
        &self,
        task_id: Uuid,
        command: TrainingTaskCommand,
        meta: &CommandMetadata,
    ) -> Result<(), CommandError> {
        self.execute(&self.training, &(), task_id, command, meta, false).await.map(drop)
    }

    /// [`CommandBus::training`], answering the task's state as the command left it.
    pub async fn training_state_after(
        &self,
        task_id: Uuid,
        command: TrainingTaskCommand,
        meta: &CommandMetadata,
    ) -> Result<TrainingTask, CommandError> {
        let state = self.execute(&self.training, &(), task_id, command, meta, true).await?;
        Ok(state.unwrap_or_default())
    }

    /// A training task as its committed events leave it (never behind, unlike a view): what a worker
    /// checks before and while it runs the task.
    pub async fn training_state(&self, task_id: Uuid) -> Result<TrainingTask, CommandError> {
        Self::load(&self.training, task_id).await
    }

    /// Executes a model command, answering the model's state as the command left it.
    #[tracing::instrument(skip_all, fields(aggregate = "Model", %model_id, correlation_id = %meta.correlation_id), err(level = "info"))]
    pub async fn model(
        &self,
        model_id: Uuid,
        command: ModelCommand,
        meta: &CommandMetadata,
    ) -> Result<Model, CommandError> {
        let state = self.execute(&self.models, &(), model_id, command, meta, true).await?;
        Ok(state.unwrap_or_default())
    }

    /// A model as its committed events leave it.
    pub async fn model_state(&self, model_id: Uuid) -> Result<Model, CommandError> {
        Self::load(&self.models, model_id).await
    }

    /// Executes a conversation command.
    #[tracing::instrument(skip_all, fields(aggregate = "QaSession", %session_id, correlation_id = %meta.correlation_id), err(level = "info"))]
    pub async fn qa(&self, session_id: Uuid, command: QaCommand, meta: &CommandMetadata) -> Result<(), CommandError> {
        self.execute(&self.qa, &(), session_id, command, meta, false).await.map(drop)
    }

    /// Executes an alert command, answering the alert's state as the command left it.
    #[tracing::instrument(skip_all, fields(aggregate = "Alert", %alert_id, correlation_id = %meta.correlation_id), err(level = "info"))]
    pub async fn alert(
        &self,
        alert_id: Uuid,
        command: AlertCommand,
        meta: &CommandMetadata,
    ) -> Result<Alert, CommandError> {
        let state = self.execute(&self.alerts, &(), alert_id, command, meta, true).await?;
        Ok(state.unwrap_or_default())
    }

    /// An alert as its committed events leave it.
    pub async fn alert_state(&self, alert_id: Uuid) -> Result<Alert, CommandError> {
        Self::load(&self.alerts, alert_id).await
    }

    /// A dataset as its committed events leave it: what creating a training task checks.
    pub async fn dataset_state(&self, dataset_id: Uuid) -> Result<Dataset, CommandError> {
        Self::load(&self.datasets, dataset_id).await
    }

    async fn load<A>(store: &Store<A>, id: Uuid) -> Result<A, CommandError>
    where
        A: Aggregate,
        A::Error: Into<CommandError>,
    {
        let context = store.load_aggregate(&id.to_string()).await.map_err(|e| convert(e, 1))?;
        Ok(context.aggregate)
    }

    /// Load, decide, append; on a conflict (another writer appended first) again from the load, a
    /// bounded number of times. With `want_state`, answers the aggregate as the command left it.
    async fn execute<A>(
        &self,
        store: &Store<A>,
        services: &A::Services,
        id: Uuid,
        command: A::Command,
        meta: &CommandMetadata,
        want_state: bool,
    ) -> Result<Option<A>, CommandError>
    where
        A: Aggregate + Clone,
        A::Command: Clone,
        A::Error: Into<CommandError>,
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
                Err(e) => return Err(convert(e, attempt)),
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

fn convert<E: std::error::Error + Into<CommandError>>(error: AggregateError<E>, attempts: u32) -> CommandError {
    match error {
        AggregateError::UserError(e) => e.into(),
        AggregateError::AggregateConflict => CommandError::Conflict { attempts },
        AggregateError::DatabaseConnectionError(e) => CommandError::Store(e.to_string()),
        AggregateError::DeserializationError(e) => CommandError::Store(format!("deserialisation: {e}")),
        AggregateError::UnexpectedError(e) => CommandError::Store(e.to_string()),
    }
}
