//! The event log in commit order, as every reader outside the write side sees it.

use crate::{Cursor, ProjectionError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor, PgPool};

/// One committed event with its position. This is also the JSON envelope published on NATS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub position: i64,
    pub tx_id: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
}

impl StoredEvent {
    pub fn cursor(&self) -> Cursor {
        Cursor { tx_id: self.tx_id, position: self.position }
    }

    /// The payload as the aggregate's event type `E`, and the aggregate id; a poison event when either
    /// cannot be read (retrying will not help).
    pub fn decode<E: serde::de::DeserializeOwned>(&self) -> Result<(E, uuid::Uuid), ProjectionError> {
        let event = serde_json::from_value(self.payload.clone()).map_err(|e| self.undecodable(e.to_string()))?;
        let id = self.aggregate_id.parse().map_err(|_| self.undecodable("aggregate id is not a uuid"))?;
        Ok((event, id))
    }

    /// This event as a poison event, for `reason`.
    pub fn undecodable(&self, reason: impl Into<String>) -> ProjectionError {
        ProjectionError::Undecodable {
            event_type: self.event_type.clone(),
            version: self.event_version.clone(),
            reason: reason.into(),
        }
    }

    /// The payload with secrets replaced, for anything that leaves the store.
    pub fn redacted(mut self) -> Self {
        bonsai_domain::audit::redact(&mut self.payload);
        self
    }

    /// The event as the relay publishes it: read as stored ([`read_stored_after`]: personal data sealed, so
    /// that JetStream's files hold none in the clear, and question text erasable), password hashes redacted.
    pub fn for_bus(self) -> Self {
        self.redacted()
    }

    /// An event as a bus message carries it, with its sealed fields opened (the data keys of its erasable
    /// fields read from `db` when this process has not loaded them). Not an envelope: `Undecodable`
    /// (retrying will not help); a sealed field that the installed keys do not open: `Sealed` (retried: the
    /// fix is the configuration).
    pub async fn from_bus(db: &sqlx::PgPool, payload: &[u8]) -> Result<Self, ProjectionError> {
        let event = Self::envelope(payload)?;
        crate::data_keys::load_from(db, [&event.payload]).await?;
        event.opened()
    }

    /// Several bus messages as [`StoredEvent::from_bus`] reads one, their data keys read at once.
    pub async fn all_from_bus<'p>(
        db: &sqlx::PgPool,
        payloads: impl IntoIterator<Item = &'p [u8]>,
    ) -> Result<Vec<Self>, ProjectionError> {
        let events = payloads.into_iter().map(Self::envelope).collect::<Result<Vec<_>, _>>()?;
        crate::data_keys::load_from(db, events.iter().map(|e| &e.payload)).await?;
        events.into_iter().map(Self::opened).collect()
    }

    /// The envelope of a bus message, its sealed fields as published (enough for the fields that are never
    /// sealed: ids, types, status).
    pub fn envelope(payload: &[u8]) -> Result<Self, ProjectionError> {
        serde_json::from_slice(payload).map_err(|e| ProjectionError::Undecodable {
            event_type: "(not an event envelope)".into(),
            version: "-".into(),
            reason: e.to_string(),
        })
    }

    /// The event with its sealed fields opened (their data keys loaded).
    fn opened(mut self) -> Result<Self, ProjectionError> {
        let context = bonsai_crypto::sealed::context(&self.aggregate_type, &self.aggregate_id);
        bonsai_crypto::sealed::open_all(&mut self.payload, &context)
            .map_err(|e| ProjectionError::Sealed { event_type: self.event_type.clone(), reason: e.to_string() })?;
        Ok(self)
    }

    /// The NATS subject of this event.
    pub fn subject(&self, subjects: &crate::Subjects) -> String {
        subjects.events_of_one(&self.aggregate_type, &self.aggregate_id)
    }

    /// The event, typed ([`bonsai_domain::Event`]), and its aggregate's id; a poison event when either cannot
    /// be read (retrying will not help).
    pub fn event(&self) -> Result<(bonsai_domain::Event, uuid::Uuid), ProjectionError> {
        let event = bonsai_domain::Event::decode(&self.aggregate_type, &self.payload)
            .map_err(|e| self.undecodable(e.to_string()))?;
        let id = self.aggregate_id.parse().map_err(|_| self.undecodable("aggregate id is not a uuid"))?;
        Ok((event, id))
    }

    /// The de-duplication id: the same event always gets the same one.
    pub fn message_id(&self) -> String {
        format!("{}/{}/{}", self.aggregate_type, self.aggregate_id, self.sequence)
    }
}

const COLUMNS: &str = "global_position, tx_id::text::bigint AS tx_id, aggregate_type, aggregate_id, sequence, \
     event_type, event_version, payload, metadata, recorded_at";

#[derive(sqlx::FromRow)]
struct Row {
    global_position: i64,
    tx_id: i64,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: Value,
    metadata: Value,
    recorded_at: DateTime<Utc>,
}

impl From<Row> for StoredEvent {
    /// Old payload versions are upcast here, so no reader ever sees them; sealed fields stay sealed.
    fn from(r: Row) -> Self {
        let (event_version, payload) =
            bonsai_domain::upcast::upcast(&r.aggregate_type, &r.event_type, &r.event_version, r.payload);
        StoredEvent {
            position: r.global_position,
            tx_id: r.tx_id,
            aggregate_type: r.aggregate_type,
            aggregate_id: r.aggregate_id,
            sequence: r.sequence,
            event_type: r.event_type,
            event_version,
            payload,
            metadata: r.metadata,
            recorded_at: r.recorded_at,
        }
    }
}

/// `rows` as readers see them: upcast, sealed fields opened (data keys loaded through `conn` first).
async fn opened(conn: &mut PgConnection, rows: Vec<Row>) -> Result<Vec<StoredEvent>, ProjectionError> {
    let events: Vec<StoredEvent> = rows.into_iter().map(StoredEvent::from).collect();
    crate::data_keys::load(&mut *conn, events.iter().map(|e| &e.payload)).await?;
    events.into_iter().map(StoredEvent::opened).collect()
}

const AFTER: &str = "WHERE (tx_id, global_position) > ($1::text::xid8, $2) \
       AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
     ORDER BY tx_id, global_position LIMIT $3";

async fn rows_after(conn: &mut PgConnection, after: Cursor, limit: i64) -> Result<Vec<Row>, ProjectionError> {
    let sql = format!("SELECT {COLUMNS} FROM events {AFTER}");
    Ok(sqlx::query_as(&sql).bind(after.tx_id.to_string()).bind(after.position).bind(limit).fetch_all(conn).await?)
}

/// Up to `limit` events after `after` in commit order, only from transactions older than every one
/// still running (`tx_id < xmin`): an event of a slow transaction is never skipped, it is waited for.
pub async fn read_committed_after(
    conn: &mut PgConnection,
    after: Cursor,
    limit: i64,
) -> Result<Vec<StoredEvent>, ProjectionError> {
    let rows = rows_after(conn, after, limit).await?;
    opened(conn, rows).await
}

/// As [`read_committed_after`], with sealed fields as stored (the relay publishes them so).
pub async fn read_stored_after(pool: &PgPool, after: Cursor, limit: i64) -> Result<Vec<StoredEvent>, ProjectionError> {
    Ok(rows_after(&mut *pool.acquire().await?, after, limit).await?.into_iter().map(StoredEvent::from).collect())
}

/// The cursor of the event at `position`, for "events after position N" pages.
pub async fn cursor_of<'e>(db: impl PgExecutor<'e>, position: i64) -> Result<Option<Cursor>, ProjectionError> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT tx_id::text::bigint FROM events WHERE global_position = $1")
        .bind(position)
        .fetch_optional(db)
        .await?;
    Ok(row.map(|(tx_id,)| Cursor { tx_id, position }))
}

/// An aggregate's first event (its creation), without reading the rest of its history.
pub async fn first_event(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Option<StoredEvent>, ProjectionError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence LIMIT 1"
    );
    let mut conn = pool.acquire().await?;
    let row: Option<Row> =
        sqlx::query_as(&sql).bind(aggregate_type).bind(aggregate_id).fetch_optional(&mut *conn).await?;
    Ok(opened(&mut conn, row.into_iter().collect()).await?.pop())
}

/// One aggregate's whole history, in sequence order.
pub async fn aggregate_history(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Vec<StoredEvent>, ProjectionError> {
    let sql = format!("SELECT {COLUMNS} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence");
    let mut conn = pool.acquire().await?;
    let rows: Vec<Row> = sqlx::query_as(&sql).bind(aggregate_type).bind(aggregate_id).fetch_all(&mut *conn).await?;
    opened(&mut conn, rows).await
}

/// One aggregate's events after sequence `after` (and up to `upto`, when given), in sequence order, opened
/// as readers see them: what a projection reads to fill a gap in what it was delivered.
pub async fn aggregate_events_after(
    conn: &mut PgConnection,
    aggregate_type: &str,
    aggregate_id: &str,
    after: i64,
    upto: Option<i64>,
) -> Result<Vec<StoredEvent>, ProjectionError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 \
           AND ($4::int8 IS NULL OR sequence <= $4) ORDER BY sequence"
    );
    let rows: Vec<Row> = sqlx::query_as(&sql)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(after)
        .bind(upto)
        .fetch_all(&mut *conn)
        .await?;
    opened(conn, rows).await
}
