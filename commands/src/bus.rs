use crate::{Argon2Passwords, CommandError, CommandMetadata};
use bonsai_domain::dataset::{Dataset, DatasetCommand};
use bonsai_domain::user::{User, UserCommand};
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::CqrsFramework;
use cqrs_es::{Aggregate, AggregateError};
use postgres_es::{PostgresCqrs, PostgresEventRepository};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Events between snapshots of one aggregate: a user who logs in daily has a long history.
const SNAPSHOT_EVERY: usize = 50;

/// Executes commands against the event store. Cheap to clone.
#[derive(Clone)]
pub struct CommandBus {
    users: Arc<PostgresCqrs<User>>,
    datasets: Arc<PostgresCqrs<Dataset>>,
    pool: PgPool,
    max_attempts: u32,
}

impl CommandBus {
    pub fn new(pool: PgPool) -> Self {
        // No cqrs-es queries are attached: read models are built from NATS by durable consumers
        // (ARCHITECTURE.md), never in-process after commit.
        let store = PersistedEventStore::new_snapshot_store(PostgresEventRepository::new(pool.clone()), SNAPSHOT_EVERY)
            .with_upcasters(crate::upcasters::all());
        let users =
            CqrsFramework::new(store, vec![], Box::new(Argon2Passwords) as Box<dyn bonsai_domain::user::UserServices>);
        // Dataset histories are short (a few versions and validations): no snapshots.
        let dataset_store = PersistedEventStore::new_event_store(PostgresEventRepository::new(pool.clone()))
            .with_upcasters(crate::upcasters::all());
        let datasets = CqrsFramework::new(dataset_store, vec![], ());
        Self { users: Arc::new(users), datasets: Arc::new(datasets), pool, max_attempts: 8 }
    }

    /// Executes a user command, retrying optimistic-concurrency conflicts a bounded number of times
    /// (each retry reloads the aggregate and decides again).
    #[tracing::instrument(skip_all, fields(aggregate = "User", %user_id, correlation_id = %meta.correlation_id), err)]
    pub async fn user(&self, user_id: Uuid, command: UserCommand, meta: &CommandMetadata) -> Result<(), CommandError> {
        self.execute(&self.users, user_id, command, meta).await
    }

    /// Executes a dataset command, with the same bounded conflict retries as [`CommandBus::user`].
    #[tracing::instrument(skip_all, fields(aggregate = "Dataset", %dataset_id, correlation_id = %meta.correlation_id), err)]
    pub async fn dataset(
        &self,
        dataset_id: Uuid,
        command: DatasetCommand,
        meta: &CommandMetadata,
    ) -> Result<(), CommandError> {
        self.execute(&self.datasets, dataset_id, command, meta).await
    }

    async fn execute<A>(
        &self,
        cqrs: &PostgresCqrs<A>,
        id: Uuid,
        command: A::Command,
        meta: &CommandMetadata,
    ) -> Result<(), CommandError>
    where
        A: Aggregate,
        A::Command: Clone,
        A::Error: Into<CommandError>,
    {
        let id = id.to_string();
        for attempt in 1..=self.max_attempts {
            match cqrs.execute_with_metadata(&id, command.clone(), meta.to_map()).await {
                Ok(()) => return Ok(()),
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
