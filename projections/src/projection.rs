//! Applying events to views exactly once and in order per aggregate, and rebuilding views from the event store.
//!
//! The rule: a projection records, per aggregate, the last sequence it applied (`projection_positions`, in the
//! same transaction as the view change), and applies an event only as that aggregate's next one. What JetStream
//! delivers twice is skipped by sequence; what it delivers late or out of order (a retried message after later
//! ones, the messages a killed node held until their `ack_wait` ran out) leaves a gap, which is read from the
//! event store, the source of truth, and applied first. A global checkpoint cannot do this: a message redelivered
//! after later events moved it past is below it, and used to be skipped for good.
//!
//! An event that cannot be applied (undecodable, or refused by the database: a poison event) holds its
//! aggregate at it (`projection_held`): that aggregate's later events wait in the store, while every other
//! aggregate goes on. Held aggregates are retried ([`retry_held`]) and counted in the lag metric, and the consumer
//! raises an alert for each.

use crate::log::{aggregate_events_after, read_committed_after};
use crate::{Cursor, ProjectionError, StoredEvent};
use sqlx::{PgConnection, PgPool};
use std::collections::HashMap;

/// A read model folded from events. `apply` only translates an event into view rows: no decisions.
#[async_trait::async_trait]
pub trait Projection: Send + Sync {
    /// Stable name: the checkpoint key, the NATS consumer name and the `bonsai replay --projection` value.
    fn name(&self) -> &'static str;
    /// The view tables this projection owns (emptied on rebuild).
    fn tables(&self) -> &'static [&'static str];
    /// The aggregate types whose events it folds: its NATS consumer receives only those, and its lag counts
    /// only those (each of the others would cost every projection a delivery and a transaction for nothing).
    fn aggregate_types(&self) -> &'static [&'static str];
    /// Folds one event of its [`Projection::aggregate_types`] into the view (it is given no others).
    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError>;
}

/// An aggregate a projection is held at: the event at `sequence` could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub projection: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub error: String,
    /// Whether this attempt held it (it was not held at this event before): the moment to raise an alert.
    pub newly: bool,
}

impl Held {
    /// The key of the alert raised for it (the same hold gives the same alert on every node).
    pub fn alert_key(&self) -> String {
        held_alert_key(&self.projection, &self.aggregate_type, &self.aggregate_id, self.sequence)
    }
}

/// The alert key of a projection held at `sequence` of an aggregate.
pub fn held_alert_key(projection: &str, aggregate_type: &str, aggregate_id: &str, sequence: i64) -> String {
    format!("projection_held/{projection}/{aggregate_type}/{aggregate_id}/{sequence}")
}

/// What [`apply_event`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Applied (with the aggregate's earlier events it had not applied yet, if any).
    Applied,
    /// Applied before: a redelivery or a replay overlap.
    AlreadyApplied,
    /// Applied, and the aggregate, held at the event of this sequence, is released.
    Released(i64),
    /// The aggregate is held at an event that cannot be applied (this one or an earlier one): it is in the
    /// store and will be applied when the aggregate is released.
    Held(Held),
}

/// What catching an aggregate up from the store did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatchUp {
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// Events applied.
    pub applied: usize,
    /// The sequence the aggregate was held at before, if it was and is no longer.
    pub released: Option<i64>,
    /// Where it is held now.
    pub held: Option<Held>,
}

/// Whether `error` may pass by itself (the database unreachable, a serialisation conflict, keys not yet
/// configured): retried as it is. Any other error holds the aggregate: retrying the same event at once will
/// fail the same way.
pub fn is_transient(error: &ProjectionError) -> bool {
    match error {
        ProjectionError::Undecodable { .. } => false,
        ProjectionError::Sealed { .. } => true,
        ProjectionError::Database(sqlx::Error::Database(db)) => {
            // 40: transaction rollback (serialisation, deadlock); 53: insufficient resources; 57: operator
            // intervention (shutdown, cancel); 08: connection. Data exceptions (22) and constraint violations
            // (23) are the event's own.
            let code = db.code().unwrap_or_default();
            ["40", "53", "57", "08"].iter().any(|class| code.starts_with(class))
        }
        ProjectionError::Database(_) => true,
    }
}

async fn lock_checkpoint(conn: &mut PgConnection, name: &str) -> Result<Cursor, ProjectionError> {
    sqlx::query("INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .execute(&mut *conn)
        .await?;
    let (tx_id, position): (i64, i64) =
        sqlx::query_as("SELECT tx_id::text::bigint, position FROM projection_checkpoints WHERE name = $1 FOR UPDATE")
            .bind(name)
            .fetch_one(&mut *conn)
            .await?;
    Ok(Cursor { tx_id, position })
}

async fn store_checkpoint(conn: &mut PgConnection, name: &str, at: Cursor) -> Result<(), ProjectionError> {
    sqlx::query(
        "UPDATE projection_checkpoints SET tx_id = $2::text::xid8, position = $3, updated_at = now() WHERE name = $1",
    )
    .bind(name)
    .bind(at.tx_id.to_string())
    .bind(at.position)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

type Key = (String, String);

fn key_of(event: &StoredEvent) -> Key {
    (event.aggregate_type.clone(), event.aggregate_id.clone())
}

/// The last sequence applied of each of `keys`' aggregates (absent: none yet), and which of them are held.
async fn positions(
    conn: &mut PgConnection,
    name: &str,
    keys: &[Key],
) -> Result<(HashMap<Key, i64>, HashMap<Key, i64>), ProjectionError> {
    let (types, ids): (Vec<&str>, Vec<&str>) = keys.iter().map(|(t, i)| (t.as_str(), i.as_str())).unzip();
    // One round trip for both: this runs for every batch a consumer applies.
    let rows: Vec<(String, String, Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT k.t, k.i, p.sequence, h.sequence FROM unnest($2::text[], $3::text[]) AS k(t, i) \
         LEFT JOIN projection_positions p ON p.projection = $1 AND p.aggregate_type = k.t AND p.aggregate_id = k.i \
         LEFT JOIN projection_held h ON h.projection = $1 AND h.aggregate_type = k.t AND h.aggregate_id = k.i",
    )
    .bind(name)
    .bind(&types)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let (mut applied, mut held) = (HashMap::new(), HashMap::new());
    for (t, i, at, held_at) in rows {
        let key = (t, i);
        if let Some(at) = at {
            applied.insert(key.clone(), at);
        }
        if let Some(held_at) = held_at {
            held.insert(key, held_at);
        }
    }
    Ok((applied, held))
}

async fn store_positions(conn: &mut PgConnection, name: &str, at: &HashMap<Key, i64>) -> Result<(), ProjectionError> {
    if at.is_empty() {
        return Ok(());
    }
    let mut types = Vec::with_capacity(at.len());
    let mut ids = Vec::with_capacity(at.len());
    let mut sequences = Vec::with_capacity(at.len());
    for ((t, i), s) in at {
        types.push(t.as_str());
        ids.push(i.as_str());
        sequences.push(*s);
    }
    sqlx::query(
        "INSERT INTO projection_positions (projection, aggregate_type, aggregate_id, sequence) \
         SELECT $1, * FROM unnest($2::text[], $3::text[], $4::int8[]) \
         ON CONFLICT (projection, aggregate_type, aggregate_id) DO UPDATE SET sequence = excluded.sequence",
    )
    .bind(name)
    .bind(&types)
    .bind(&ids)
    .bind(&sequences)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Folds `event` into `projection`'s view if it is an event of the projection's aggregates; others pass by.
async fn fold(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    event: &StoredEvent,
) -> Result<(), ProjectionError> {
    if projection.aggregate_types().contains(&event.aggregate_type.as_str()) {
        projection.apply(conn, event).await?;
    }
    Ok(())
}

/// Applies `event` if it is its aggregate's next one, with any earlier events of that aggregate the projection
/// has not applied (read from the store), in one transaction with the aggregate's position. The checkpoint row
/// lock serialises concurrent appliers (and a rebuild) of the same projection.
///
/// Errors are transient ones ([`is_transient`]): the caller retries the message. An event that cannot be
/// applied holds its aggregate instead ([`Applied::Held`]).
pub async fn apply_event(
    pool: &PgPool,
    projection: &dyn Projection,
    event: &StoredEvent,
) -> Result<Applied, ProjectionError> {
    let name = projection.name();
    let key = key_of(event);
    let mut tx = pool.begin().await?;
    let checkpoint = lock_checkpoint(&mut tx, name).await?;
    let (applied, held) = positions(&mut tx, name, std::slice::from_ref(&key)).await?;
    let at = applied.get(&key).copied().unwrap_or(0);
    if event.sequence <= at {
        return Ok(Applied::AlreadyApplied);
    }
    if event.sequence == at + 1 && !held.contains_key(&key) {
        // The common case: the aggregate's next event, as delivered.
        match fold(&mut tx, projection, event).await {
            Ok(()) => {
                store_positions(&mut tx, name, &HashMap::from([(key, event.sequence)])).await?;
                store_checkpoint(&mut tx, name, checkpoint.max(event.cursor())).await?;
                tx.commit().await?;
                return Ok(Applied::Applied);
            }
            Err(error) if is_transient(&error) => return Err(error),
            Err(_) => {} // held below, where each event is tried under a savepoint
        }
    }
    drop(tx);
    // A gap, a held aggregate or a failed event: catch the aggregate up from the store, up to this event.
    let caught = catch_up(pool, projection, &event.aggregate_type, &event.aggregate_id, Some(event.sequence)).await?;
    Ok(match (caught.held, caught.released) {
        (Some(held), _) => Applied::Held(held),
        (None, Some(sequence)) => Applied::Released(sequence),
        (None, None) if caught.applied == 0 => Applied::AlreadyApplied,
        (None, None) => Applied::Applied,
    })
}

/// Applies, in one transaction, an aggregate's events from the store that the projection has not applied (up to
/// sequence `upto`, when given), each under a savepoint: the first that fails holds the aggregate there (what came
/// before it is kept), and an aggregate that applies past where it was held is released.
pub async fn catch_up(
    pool: &PgPool,
    projection: &dyn Projection,
    aggregate_type: &str,
    aggregate_id: &str,
    upto: Option<i64>,
) -> Result<CatchUp, ProjectionError> {
    let name = projection.name();
    let key: Key = (aggregate_type.to_owned(), aggregate_id.to_owned());
    let mut tx = pool.begin().await?;
    let mut checkpoint = lock_checkpoint(&mut tx, name).await?;
    let (applied, held) = positions(&mut tx, name, std::slice::from_ref(&key)).await?;
    let mut at = applied.get(&key).copied().unwrap_or(0);
    let was_held = held.get(&key).copied();
    let mut outcome = CatchUp {
        aggregate_type: aggregate_type.to_owned(),
        aggregate_id: aggregate_id.to_owned(),
        ..Default::default()
    };
    let mut failed = None;
    for event in aggregate_events_after(&mut tx, aggregate_type, aggregate_id, at, upto).await? {
        sqlx::query("SAVEPOINT catch_up").execute(&mut *tx).await?;
        match fold(&mut tx, projection, &event).await {
            Ok(()) => {
                sqlx::query("RELEASE SAVEPOINT catch_up").execute(&mut *tx).await?;
                at = event.sequence;
                checkpoint = checkpoint.max(event.cursor());
                outcome.applied += 1;
            }
            Err(error) if is_transient(&error) => return Err(error),
            Err(error) => {
                sqlx::query("ROLLBACK TO SAVEPOINT catch_up").execute(&mut *tx).await?;
                failed = Some((event, error));
                break;
            }
        }
    }
    if outcome.applied > 0 {
        store_positions(&mut tx, name, &HashMap::from([(key.clone(), at)])).await?;
        store_checkpoint(&mut tx, name, checkpoint).await?;
    }
    match failed {
        Some((event, error)) => {
            tracing::error!(projection = name, aggregate_type, aggregate_id, sequence = event.sequence,
                event_type = %event.event_type, %error, "event cannot be applied: the aggregate is held at it");
            sqlx::query(
                "INSERT INTO projection_held (projection, aggregate_type, aggregate_id, sequence, event_type, error) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (projection, aggregate_type, aggregate_id) DO UPDATE SET \
                   attempts = CASE WHEN projection_held.sequence = excluded.sequence \
                                   THEN projection_held.attempts + 1 ELSE 1 END, \
                   first_failed_at = CASE WHEN projection_held.sequence = excluded.sequence \
                                   THEN projection_held.first_failed_at ELSE now() END, \
                   sequence = excluded.sequence, event_type = excluded.event_type, error = excluded.error, \
                   last_failed_at = now()",
            )
            .bind(name)
            .bind(aggregate_type)
            .bind(aggregate_id)
            .bind(event.sequence)
            .bind(&event.event_type)
            .bind(error.to_string())
            .execute(&mut *tx)
            .await?;
            if was_held.is_some_and(|s| s != event.sequence) {
                outcome.released = was_held;
            }
            outcome.held = Some(Held {
                projection: name.to_owned(),
                aggregate_type: aggregate_type.to_owned(),
                aggregate_id: aggregate_id.to_owned(),
                sequence: event.sequence,
                event_type: event.event_type,
                error: error.to_string(),
                newly: was_held != Some(event.sequence),
            });
        }
        None if was_held.is_some_and(|s| s <= at) => {
            sqlx::query(
                "DELETE FROM projection_held WHERE projection = $1 AND aggregate_type = $2 AND aggregate_id = $3",
            )
            .bind(name)
            .bind(aggregate_type)
            .bind(aggregate_id)
            .execute(&mut *tx)
            .await?;
            tracing::info!(projection = name, aggregate_type, aggregate_id, "held aggregate released");
            outcome.released = was_held;
        }
        None => {}
    }
    tx.commit().await?;
    Ok(outcome)
}

/// The aggregates `projection` is held at.
pub async fn held(pool: &PgPool, projection: &dyn Projection) -> Result<Vec<(String, String, i64)>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, sequence FROM projection_held WHERE projection = $1 \
         ORDER BY first_failed_at",
    )
    .bind(projection.name())
    .fetch_all(pool)
    .await?)
}

/// Tries every aggregate `projection` is held at again (after a fix: an upcaster, a migration, a restart with
/// the missing key), catching each up to its newest event. Returns what each attempt did.
pub async fn retry_held(pool: &PgPool, projection: &dyn Projection) -> Result<Vec<CatchUp>, ProjectionError> {
    let mut outcomes = Vec::new();
    for (aggregate_type, aggregate_id, _) in held(pool, projection).await? {
        outcomes.push(catch_up(pool, projection, &aggregate_type, &aggregate_id, None).await?);
    }
    Ok(outcomes)
}

/// What [`apply_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// Applied in one transaction: this many events (the others were applied before).
    Applied(usize),
    /// Nothing applied: an event is not its aggregate's next one, its aggregate is held, or it failed; the
    /// caller applies the events one by one ([`apply_event`]), which handles each of these.
    OneByOne,
}

/// Applies a run of events (in delivery order) in one transaction with one position update per aggregate: what
/// a consumer does when messages arrive faster than one transaction each could keep up with. Events applied
/// before are skipped. Transient errors are errors; anything else asks for [`Batch::OneByOne`].
pub async fn apply_batch(
    pool: &PgPool,
    projection: &dyn Projection,
    events: &[StoredEvent],
) -> Result<Batch, ProjectionError> {
    let name = projection.name();
    let mut tx = pool.begin().await?;
    let mut checkpoint = lock_checkpoint(&mut tx, name).await?;
    let mut keys: Vec<Key> = events.iter().map(key_of).collect();
    keys.sort_unstable();
    keys.dedup();
    let (mut applied, held) = positions(&mut tx, name, &keys).await?;
    let mut changed = HashMap::new();
    let mut count = 0;
    for event in events {
        let key = key_of(event);
        let at = applied.get(&key).copied().unwrap_or(0);
        if event.sequence <= at {
            continue;
        }
        if event.sequence != at + 1 || held.contains_key(&key) {
            return Ok(Batch::OneByOne);
        }
        match fold(&mut tx, projection, event).await {
            Ok(()) => {}
            Err(error) if is_transient(&error) => return Err(error),
            Err(_) => return Ok(Batch::OneByOne),
        }
        applied.insert(key.clone(), event.sequence);
        changed.insert(key, event.sequence);
        checkpoint = checkpoint.max(event.cursor());
        count += 1;
    }
    if !changed.is_empty() {
        store_positions(&mut tx, name, &changed).await?;
        store_checkpoint(&mut tx, name, checkpoint).await?;
        tx.commit().await?;
    }
    Ok(Batch::Applied(count))
}

/// Rebuilds a view from the event store: empties it and replays every committed event, in one transaction, so
/// readers see the old view until the new one is complete. Returns the number of events replayed. Live
/// consumers block on the checkpoint lock meanwhile, then skip what was replayed (by position).
///
/// An event that cannot be applied does not stop the rebuild: the replay starts again without its aggregate,
/// and that aggregate is then caught up to just before the event and held there (bounded: a store with more
/// such aggregates than [`MAX_HELD_IN_REBUILD`] fails the rebuild).
pub async fn rebuild(pool: &PgPool, projection: &dyn Projection) -> Result<u64, ProjectionError> {
    let mut excluded: Vec<Key> = Vec::new();
    loop {
        match replay_excluding(pool, projection, &excluded).await? {
            Ok(replayed) => {
                for (aggregate_type, aggregate_id) in &excluded {
                    catch_up(pool, projection, aggregate_type, aggregate_id, None).await?;
                }
                return Ok(replayed);
            }
            Err((key, error)) if excluded.len() < MAX_HELD_IN_REBUILD => {
                tracing::warn!(projection = projection.name(), aggregate_type = %key.0, aggregate_id = %key.1, %error,
                    "rebuild: an event cannot be applied; replaying again without its aggregate");
                excluded.push(key);
            }
            Err((_, error)) => return Err(error),
        }
    }
}

/// The most aggregates a rebuild holds before it gives up.
pub(crate) const MAX_HELD_IN_REBUILD: usize = 100;

/// One replay of every event but those of `excluded` aggregates. The outer error is a failure of the rebuild
/// itself; the inner one names the aggregate whose event could not be applied (nothing was committed).
async fn replay_excluding(
    pool: &PgPool,
    projection: &dyn Projection,
    excluded: &[Key],
) -> Result<Result<u64, (Key, ProjectionError)>, ProjectionError> {
    const PAGE: i64 = 1000;
    let name = projection.name();
    let mut tx = pool.begin().await?;
    lock_checkpoint(&mut tx, name).await?;
    for table in projection.tables() {
        sqlx::query(&format!("TRUNCATE {table}")).execute(&mut *tx).await?;
    }
    for table in ["projection_positions", "projection_held"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE projection = $1")).bind(name).execute(&mut *tx).await?;
    }
    let mut at = Cursor::default();
    let mut replayed = 0;
    let mut positions = HashMap::new();
    loop {
        let page = read_committed_after(&mut tx, at, PAGE).await?;
        for event in &page {
            at = event.cursor();
            let key = key_of(event);
            if excluded.contains(&key) || !projection.aggregate_types().contains(&event.aggregate_type.as_str()) {
                continue;
            }
            match fold(&mut tx, projection, event).await {
                Ok(()) => {}
                Err(error) if is_transient(&error) => return Err(error),
                Err(error) => return Ok(Err((key, error))),
            }
            positions.insert(key, event.sequence);
            replayed += 1;
        }
        if (page.len() as i64) < PAGE {
            break;
        }
    }
    store_positions(&mut tx, name, &positions).await?;
    store_checkpoint(&mut tx, name, at).await?;
    tx.commit().await?;
    Ok(Ok(replayed))
}

/// Waits, up to `within`, until `projection` has applied every committed event of one aggregate: a read by id
/// that follows a write (the creator reading what it just made, a client reading back its change) then sees it,
/// though views are built asynchronously. Returns at once when the view is current or the aggregate is held
/// (its view will not catch up by waiting); `false` when it is still behind after `within`.
pub async fn wait_until_current(
    pool: &PgPool,
    projection: &str,
    aggregate_type: &str,
    aggregate_id: &str,
    within: std::time::Duration,
) -> Result<bool, ProjectionError> {
    let deadline = tokio::time::Instant::now() + within;
    let mut pause = std::time::Duration::from_millis(2);
    loop {
        let current: bool = sqlx::query_scalar(
            "SELECT coalesce((SELECT max(sequence) FROM events WHERE aggregate_type = $2 AND aggregate_id = $3), 0) \
                 <= coalesce((SELECT sequence FROM projection_positions \
                              WHERE projection = $1 AND aggregate_type = $2 AND aggregate_id = $3), 0) \
             OR EXISTS (SELECT 1 FROM projection_held \
                        WHERE projection = $1 AND aggregate_type = $2 AND aggregate_id = $3)",
        )
        .bind(projection)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_one(pool)
        .await?;
        if current {
            return Ok(true);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(25));
    }
}
