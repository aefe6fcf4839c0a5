//! The event repository under cqrs-es: postgres-es's, with appends done in one statement.
//!
//! Sensitive fields are sealed on the way in and opened on the way out (`bonsai_crypto::sealed`): event
//! payloads field by field, snapshots of aggregates that hold such fields whole. Erasable fields (question
//! and answer text) take the data keys of their questions, created before the append and loaded before a read.
//!
//! postgres-es appends with `BEGIN`, one `INSERT` per event, the snapshot write and `COMMIT`: four
//! round trips or more per command. Here the events go in with one `INSERT ... SELECT FROM UNNEST` and
//! the snapshot is written by the same statement (a data-modifying CTE), so a command costs one round
//! trip to load and one to append, and the append is atomic without an explicit transaction. The rows
//! are inserted in sequence order, so their global positions (the relay's order within a transaction)
//! follow the aggregate's sequence.
//!
//! Optimistic concurrency rests on the events' primary key (aggregate, id, sequence): a writer that
//! decided on an outdated state appends a sequence number that exists and the whole statement fails
//! with a unique violation, snapshot included. The snapshot is therefore written unconditionally
//! (an upsert), which also lets a missing or outdated snapshot heal itself:
//!
//! [`EventRepository::get_snapshot`] returns a snapshot only when it is as new as the aggregate's last
//! event. One that is behind (written by an older strategy, or by hand) or missing while events exist
//! is returned with an undecodable payload, which makes cqrs-es rebuild the aggregate from all of its
//! events (its documented path for a snapshot whose shape changed); the next append rewrites it.

use crate::data_keys::{self, Erasure};
use bonsai_crypto::sealed;
use cqrs_es::persist::{PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::{PgPool, Row};

const APPEND: &str =
    "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[]) AS e(t, i, s, k, v, p, m) ORDER BY s";

const APPEND_WITH_SNAPSHOT: &str = "WITH appended AS ( \
       INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
       SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[]) AS e(t, i, s, k, v, p, m) ORDER BY s \
       RETURNING sequence) \
     INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload) \
     SELECT $1[1], $8, max(sequence), $9, $10 FROM appended \
     ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE \
       SET last_sequence = EXCLUDED.last_sequence, current_snapshot = EXCLUDED.current_snapshot, \
           payload = EXCLUDED.payload";

/// The snapshot and, in the same read, the aggregate's last sequence number.
/// (`ORDER BY ... LIMIT 1` rather than `max()`: the planner then always walks the primary key backwards
/// and reads one entry, where `max()` on freshly grown statistics scanned every event of the aggregate.)
const SNAPSHOT: &str = "SELECT s.last_sequence, s.current_snapshot, s.payload AS payload, e.last AS last_event \
     FROM (SELECT (SELECT sequence FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
                   ORDER BY sequence DESC LIMIT 1) AS last) e \
     LEFT JOIN snapshots s ON s.aggregate_type = $1 AND s.aggregate_id = $2";

/// postgres-es's repository for reads and replays; appends and snapshot reads of its own.
pub struct EventRepository {
    inner: PostgresEventRepository,
    pool: PgPool,
}

impl EventRepository {
    pub fn new(pool: PgPool) -> Self {
        Self { inner: PostgresEventRepository::new(pool.clone()), pool }
    }
}

fn persistence_error(error: sqlx::Error) -> PersistenceError {
    match &error {
        sqlx::Error::Database(e) if e.code().as_deref() == Some("23505") => PersistenceError::OptimisticLockError,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            PersistenceError::ConnectionError(Box::new(error))
        }
        _ => PersistenceError::UnknownError(Box::new(error)),
    }
}

fn unsealing(error: bonsai_crypto::SealError) -> PersistenceError {
    PersistenceError::UnknownError(Box::new(error))
}

/// An event's payload as stored: its sensitive fields sealed (see `bonsai_crypto::sealed`; its data keys
/// prepared).
fn sealed_payload(event: &SerializedEvent) -> Result<Value, PersistenceError> {
    let mut payload = event.payload.clone();
    sealed::seal_event(&event.aggregate_type, &event.aggregate_id, &event.event_type, &mut payload)
        .map_err(unsealing)?;
    Ok(payload)
}

/// Events as the aggregate reads them: sealed fields opened.
fn opened(mut events: Vec<SerializedEvent>) -> Result<Vec<SerializedEvent>, PersistenceError> {
    for event in &mut events {
        let context = sealed::context(&event.aggregate_type, &event.aggregate_id);
        sealed::open_all(&mut event.payload, &context).map_err(unsealing)?;
    }
    Ok(events)
}

impl EventRepository {
    /// `events` with their sealed fields opened, their data keys loaded first.
    async fn opened(&self, events: Vec<SerializedEvent>) -> Result<Vec<SerializedEvent>, PersistenceError> {
        data_keys::load(&self.pool, events.iter().map(|e| &e.payload)).await?;
        opened(events)
    }
}

impl PersistedEventRepository for EventRepository {
    async fn get_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.opened(self.inner.get_events::<A>(aggregate_id).await?).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.opened(self.inner.get_last_events::<A>(aggregate_id, last_sequence).await?).await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        let row = sqlx::query(SNAPSHOT)
            .bind(A::TYPE)
            .bind(aggregate_id)
            .fetch_one(&self.pool)
            .await
            .map_err(persistence_error)?;
        let last_event: Option<i64> = row.try_get("last_event").map_err(persistence_error)?;
        let Some(last_event) = last_event else {
            return Ok(None); // a new aggregate
        };
        let last_sequence: Option<i64> = row.try_get("last_sequence").map_err(persistence_error)?;
        let current_snapshot: Option<i64> = row.try_get("current_snapshot").map_err(persistence_error)?;
        let snapshot = match (last_sequence, current_snapshot) {
            (Some(last_sequence), Some(current_snapshot)) if last_sequence == last_event => {
                let stored = row.try_get("payload").map_err(persistence_error)?;
                let mut state = sealed::unwrap_snapshot(A::TYPE, aggregate_id, stored).map_err(unsealing)?;
                data_keys::load(&self.pool, [&state]).await?;
                sealed::open_all(&mut state, &sealed::context(A::TYPE, aggregate_id)).map_err(unsealing)?;
                SerializedSnapshot {
                    aggregate_id: aggregate_id.to_owned(),
                    aggregate: state,
                    current_sequence: last_sequence as usize,
                    current_snapshot: current_snapshot as usize,
                }
            }
            // Behind the events or missing: undecodable on purpose, so that cqrs-es replays every event.
            (_, current_snapshot) => SerializedSnapshot {
                aggregate_id: aggregate_id.to_owned(),
                aggregate: Value::Bool(false),
                current_sequence: 0,
                current_snapshot: current_snapshot.unwrap_or(0) as usize,
            },
        };
        Ok(Some(snapshot))
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        if events.is_empty() {
            return Ok(());
        }
        // The data keys of the questions whose text this append seals exist before it (a key created by an
        // append that then fails is left unused).
        for event in events {
            let ids = sealed::event_data_keys(&event.aggregate_type, &event.event_type, &event.payload);
            let owner = sealed::context(&event.aggregate_type, &event.aggregate_id);
            data_keys::prepare(&self.pool, &owner, ids).await?;
        }
        if let Some((aggregate_id, payload, _)) = &snapshot_update {
            let owner = sealed::context(A::TYPE, aggregate_id);
            data_keys::prepare(&self.pool, &owner, sealed::snapshot_data_keys(A::TYPE, payload)).await?;
        }
        let payloads = events.iter().map(sealed_payload).collect::<Result<Vec<Value>, _>>()?;
        let column = |f: fn(&SerializedEvent) -> String| events.iter().map(f).collect::<Vec<String>>();
        let query = match &snapshot_update {
            None => sqlx::query(APPEND),
            Some(_) => sqlx::query(APPEND_WITH_SNAPSHOT),
        }
        .bind(column(|e| e.aggregate_type.clone()))
        .bind(column(|e| e.aggregate_id.clone()))
        .bind(events.iter().map(|e| e.sequence as i64).collect::<Vec<i64>>())
        .bind(column(|e| e.event_type.clone()))
        .bind(column(|e| e.event_version.clone()))
        .bind(payloads)
        .bind(events.iter().map(|e| e.metadata.clone()).collect::<Vec<Value>>());
        let query = match snapshot_update {
            None => query,
            Some((aggregate_id, payload, current_snapshot)) => {
                let payload = sealed::seal_snapshot(A::TYPE, &aggregate_id, payload).map_err(unsealing)?;
                query.bind(aggregate_id).bind(current_snapshot as i64).bind(payload)
            }
        };
        let erasures: Vec<Erasure> = events
            .iter()
            .filter_map(|e| Erasure::of(&e.aggregate_type, &e.aggregate_id, e.sequence as i64, &e.payload))
            .collect();
        if erasures.is_empty() {
            query.execute(&self.pool).await.map_err(persistence_error)?;
            return Ok(());
        }
        // The append and the erasures it makes commit together.
        let mut tx = self.pool.begin().await.map_err(persistence_error)?;
        query.execute(&mut *tx).await.map_err(persistence_error)?;
        let mut erased = Vec::new();
        for erasure in &erasures {
            erased.extend(erasure.apply(&mut tx).await.map_err(persistence_error)?);
        }
        tx.commit().await.map_err(persistence_error)?;
        bonsai_crypto::data_keys::forget(&erased);
        Ok(())
    }

    // The replay streams are postgres-es's own and hand out payloads as stored (sealed fields sealed); the
    // platform replays through the event log reader (`bonsai_projections::log`), which opens them.
    async fn stream_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<ReplayStream, PersistenceError> {
        self.inner.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.inner.stream_all_events::<A>().await
    }
}
