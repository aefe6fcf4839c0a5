//! Applying events to views exactly once, and rebuilding views from the event store.

use crate::log::read_committed_after;
use crate::{Cursor, ProjectionError, StoredEvent};
use sqlx::{PgConnection, PgPool};

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

/// What [`apply_event`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// At or before the checkpoint: already in the view (a redelivery or a replay overlap).
    AlreadyApplied,
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

/// Applies `event` and advances the checkpoint in one transaction, unless it was applied before.
/// The checkpoint row lock serialises concurrent appliers (and a rebuild) of the same projection.
pub async fn apply_event(
    pool: &PgPool,
    projection: &dyn Projection,
    event: &StoredEvent,
) -> Result<Applied, ProjectionError> {
    let mut tx = pool.begin().await?;
    let checkpoint = lock_checkpoint(&mut tx, projection.name()).await?;
    if event.cursor() <= checkpoint {
        return Ok(Applied::AlreadyApplied);
    }
    fold(&mut tx, projection, event).await?;
    store_checkpoint(&mut tx, projection.name(), event.cursor()).await?;
    tx.commit().await?;
    Ok(Applied::Applied)
}

/// Applies a run of events (in delivery order) in one transaction with one checkpoint update: what a
/// consumer does when messages arrive faster than one transaction each could keep up with. Events at or
/// before the checkpoint are skipped. On error nothing is applied; the caller retries one by one.
pub async fn apply_batch(
    pool: &PgPool,
    projection: &dyn Projection,
    events: &[StoredEvent],
) -> Result<usize, ProjectionError> {
    let mut tx = pool.begin().await?;
    let mut at = lock_checkpoint(&mut tx, projection.name()).await?;
    let mut applied = 0;
    for event in events {
        if event.cursor() <= at {
            continue;
        }
        fold(&mut tx, projection, event).await?;
        at = event.cursor();
        applied += 1;
    }
    if applied > 0 {
        store_checkpoint(&mut tx, projection.name(), at).await?;
        tx.commit().await?;
    }
    Ok(applied)
}

/// Rebuilds a view from the event store: empties it and replays every committed event, in one
/// transaction, so readers see the old view until the new one is complete. Returns the number of
/// events replayed. Live consumers block on the checkpoint lock meanwhile, then skip what was replayed.
pub async fn rebuild(pool: &PgPool, projection: &dyn Projection) -> Result<u64, ProjectionError> {
    const PAGE: i64 = 1000;
    let mut tx = pool.begin().await?;
    lock_checkpoint(&mut tx, projection.name()).await?;
    for table in projection.tables() {
        sqlx::query(&format!("TRUNCATE {table}")).execute(&mut *tx).await?;
    }
    let mut at = Cursor::default();
    let mut replayed = 0;
    loop {
        let page = read_committed_after(&mut tx, at, PAGE).await?;
        for event in &page {
            fold(&mut tx, projection, event).await?;
            at = event.cursor();
            replayed += 1;
        }
        if (page.len() as i64) < PAGE {
            break;
        }
    }
    store_checkpoint(&mut tx, projection.name(), at).await?;
    tx.commit().await?;
    Ok(replayed)
}
