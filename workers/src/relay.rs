//! The relay: publishes committed events to JetStream in commit order, exactly as ARCHITECTURE.md
//! describes. One leader per database (advisory lock); cursor `(tx_id, global_position)` read below the
//! snapshot's xmin; `Nats-Msg-Id = <type>/<id>/<sequence>`; every publish ack awaited before the
//! checkpoint advances. After NATS or the relay itself was down, it simply continues from the checkpoint.
//!
//! Waking: a command that appended events makes the binary publish an (empty) core NATS message on
//! `<prefix>.relay.wake` ([`EventBus::wake_relay`]), from whichever node ran it; the leader reads
//! whatever has committed when one arrives, and polls as a safety net. (A PostgreSQL NOTIFY from the
//! events table was used before: NOTIFY takes a database-wide lock from before commit until after the
//! WAL flush, which serialises every appending transaction and capped the store's commit rate.)

use crate::EventBus;
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::HeaderMap;
use bonsai_projections::{log::read_stored_after, Cursor, ProjectionError};
use futures::{FutureExt, StreamExt};
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The advisory-lock key of the relay leader ("bonsai relay").
const LEADER_LOCK: i64 = 0x626f_6e73_6169_0001;
const BATCH: i64 = 512;
/// How often the leader makes sure its lock's connection is still there.
const LEADER_CHECK: Duration = Duration::from_secs(1);
/// Polling is the safety net under the wake-up messages (and what picks up events appended by a
/// process that does not send them).
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event log: {0}")]
    Log(#[from] ProjectionError),
    #[error("publish to NATS: {0}")]
    Publish(String),
}

/// Tells the relay leader that this process appended events: any number of signals arriving while a
/// wake-up is being sent become one more message, so the cost does not grow with the command rate.
#[derive(Clone, Default)]
pub struct RelayWaker {
    appended: Arc<Notify>,
}

impl RelayWaker {
    pub fn new() -> Self {
        Self::default()
    }

    /// The signal to give after appending (cheap, never blocks): for `CommandBus::on_append`.
    pub fn hook(&self) -> Arc<dyn Fn() + Send + Sync> {
        let appended = Arc::clone(&self.appended);
        Arc::new(move || appended.notify_one())
    }

    /// Sends the wake-ups until `shutdown`.
    pub async fn run(self, bus: EventBus, shutdown: CancellationToken) -> anyhow::Result<()> {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = self.appended.notified() => {
                    if let Err(error) = bus.wake_relay().await {
                        tracing::debug!(%error, "could not wake the relay; it will poll");
                    }
                }
            }
        }
    }
}

pub struct Relay {
    pool: PgPool,
    bus: EventBus,
}

impl Relay {
    pub fn new(pool: PgPool, bus: EventBus) -> Self {
        Self { pool, bus }
    }

    fn checkpoint_name(&self) -> String {
        self.bus.stream_name()
    }

    /// Runs until `shutdown`: waits for leadership, then publishes whatever commits. Errors (NATS or
    /// the database down) are logged and retried with back-off; nothing is skipped. Leadership is the
    /// advisory lock's session: when that connection is lost, the relay steps down and competes again.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        while let Some(mut leader) = self.become_leader(&shutdown).await {
            tracing::info!(stream = %self.bus.stream_name(), "relay is the leader");
            self.lead(&mut leader, &shutdown).await;
            // Leadership ends with the connection; say so explicitly for a clean hand-over.
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)").bind(LEADER_LOCK).execute(&mut *leader).await;
        }
        Ok(())
    }

    /// Waits until this relay holds the leader lock (on the returned connection); `None` on shutdown.
    async fn become_leader(&self, shutdown: &CancellationToken) -> Option<PoolConnection<Postgres>> {
        while !shutdown.is_cancelled() {
            let attempt = async {
                let mut conn = self.pool.acquire().await?;
                let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(LEADER_LOCK)
                    .fetch_one(&mut *conn)
                    .await?;
                Ok::<_, sqlx::Error>(got.then_some(conn))
            };
            match attempt.await {
                Ok(Some(conn)) => return Some(conn),
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "cannot compete for relay leadership; retrying"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        None
    }

    /// Publishes until `shutdown` or until the leader connection is gone (checked every second).
    async fn lead(&self, leader: &mut PoolConnection<Postgres>, shutdown: &CancellationToken) {
        let mut wake = match self.bus.js.client().subscribe(self.bus.wake_subject()).await {
            Ok(wake) => Some(wake),
            Err(error) => {
                tracing::warn!(%error, "no wake-up subscription; the relay polls");
                None
            }
        };
        let mut cursor = None;
        let mut backoff = Duration::from_millis(100);
        let mut checked = Instant::now();
        while !shutdown.is_cancelled() {
            if checked.elapsed() >= LEADER_CHECK {
                if let Err(error) = sqlx::query("SELECT 1").execute(&mut **leader).await {
                    tracing::warn!(%error, "the relay lock's connection is gone; stepping down");
                    return;
                }
                checked = Instant::now();
            }
            match self.publish_batch(&mut cursor).await {
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    let woken = async {
                        match wake.as_mut() {
                            Some(wake) => {
                                wake.next().await;
                                // Many commands, one read: take every wake-up that is already here.
                                while let Some(Some(_)) = wake.next().now_or_never() {}
                            }
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = woken => {}
                        _ = tokio::time::sleep(POLL) => {}
                    }
                }
                Err(error) => {
                    cursor = None; // read it again from the database
                    tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "relay batch failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// The stored checkpoint (created at the start if missing).
    async fn load_checkpoint(&self) -> Result<Cursor, RelayError> {
        let name = self.checkpoint_name();
        sqlx::query("INSERT INTO relay_checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
            .bind(&name)
            .execute(&self.pool)
            .await?;
        let (tx_id, position): (i64, i64) =
            sqlx::query_as("SELECT tx_id::text::bigint, position FROM relay_checkpoints WHERE name = $1")
                .bind(&name)
                .fetch_one(&self.pool)
                .await?;
        Ok(Cursor { tx_id, position })
    }

    /// Publishes the next batch of committed events and advances the checkpoint once NATS acked them
    /// all. Returns how many were published. `cursor` is the leader's copy of the checkpoint (read
    /// from the database when `None`); only the leader writes the checkpoint, so the copy stays true.
    #[tracing::instrument(skip_all, err)]
    pub async fn publish_batch(&self, cursor: &mut Option<Cursor>) -> Result<usize, RelayError> {
        let name = self.checkpoint_name();
        let from = match *cursor {
            Some(from) => from,
            None => *cursor.insert(self.load_checkpoint().await?),
        };
        let events = read_stored_after(&self.pool, from, BATCH).await?;
        let Some(last) = events.last().map(|e| e.cursor()) else {
            return Ok(0);
        };
        let mut acks: Vec<PublishAckFuture> = Vec::with_capacity(events.len());
        for event in &events {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", event.message_id().as_str());
            headers.insert("Bonsai-Position", event.position.to_string().as_str());
            headers.insert("Bonsai-Event-Type", event.event_type.as_str());
            let subject = event.subject(&self.bus.subjects);
            let body = serde_json::to_vec(&event.clone().for_bus()).map_err(|e| RelayError::Publish(e.to_string()))?;
            let ack = self
                .bus
                .js
                .publish_with_headers(subject, headers, body.into())
                .await
                .map_err(|e| RelayError::Publish(e.to_string()))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.map_err(|e| RelayError::Publish(e.to_string()))?;
        }
        // Only forwards: a relay that lost its lock without noticing yet cannot move the checkpoint back.
        let moved = sqlx::query(
            "UPDATE relay_checkpoints SET tx_id = $2::text::xid8, position = $3, updated_at = now() \
             WHERE name = $1 AND (tx_id, position) < ($2::text::xid8, $3)",
        )
        .bind(&name)
        .bind(last.tx_id.to_string())
        .bind(last.position)
        .execute(&self.pool)
        .await?;
        if moved.rows_affected() == 1 {
            *cursor = Some(last);
        } else {
            tracing::warn!("the relay checkpoint was already past this batch (another relay?); reading it again");
            *cursor = None;
        }
        tracing::debug!(published = events.len(), "relay batch");
        Ok(events.len())
    }
}
