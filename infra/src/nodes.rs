//! The nodes of a deployment, and whether each is alive. Every `bonsai serve` holds a lease in PostgreSQL
//! (`nodes`): it registers when it starts, renews every third of the lease, and leaves when it stops. A node
//! that has not renewed within the lease is gone: killed, crashed, or cut off from the database (which is
//! the same as gone: nothing it does can commit). Work a node held is given up on when its node is gone,
//! not after a fixed wait: its training runs show as interrupted, and a retry of a keyed request it was
//! answering is settled at once.
//!
//! PostgreSQL, not Redis or NATS, because the work a lease guards (events, idempotency keys) commits
//! there: a node that cannot reach PostgreSQL cannot renew, and cannot commit either.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use std::time::Duration;

/// This process's node name: the host, the process id and a random suffix (a restarted process that gets
/// the same id is another node): `host/1234-9f3a1c`.
pub fn instance_name(host: &str) -> String {
    format!("{host}/{}-{:06x}", std::process::id(), rand::random::<u32>() & 0xff_ffff)
}

/// A node as the `nodes` table knows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct NodeRow {
    pub name: String,
    pub role: String,
    pub version: String,
    pub http_addr: String,
    pub started_at: DateTime<Utc>,
    pub renewed_at: DateTime<Utc>,
    /// Whether it renewed its lease within the lease.
    pub alive: bool,
}

/// Registers node `name` (or renews it, if it is registered).
pub async fn register(pool: &PgPool, name: &str, role: &str, http_addr: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO nodes (name, role, version, http_addr) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (name) DO UPDATE SET renewed_at = now(), role = EXCLUDED.role, http_addr = EXCLUDED.http_addr",
    )
    .bind(name)
    .bind(role)
    .bind(env!("CARGO_PKG_VERSION"))
    .bind(http_addr)
    .execute(pool)
    .await?;
    Ok(())
}

/// Renews node `name`'s lease; `false` when its row is gone (removed by [`forget_gone`]: register again).
pub async fn renew(pool: &PgPool, name: &str) -> Result<bool, sqlx::Error> {
    let renewed = sqlx::query("UPDATE nodes SET renewed_at = now() WHERE name = $1").bind(name).execute(pool).await?;
    Ok(renewed.rows_affected() == 1)
}

/// Node `name` stops: its lease ends now.
pub async fn leave(pool: &PgPool, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM nodes WHERE name = $1").bind(name).execute(pool).await?;
    Ok(())
}

/// Removes nodes gone for more than `after` (their rows only tell an operator that they were there).
pub async fn forget_gone(pool: &PgPool, after: Duration) -> Result<u64, sqlx::Error> {
    let gone = sqlx::query("DELETE FROM nodes WHERE renewed_at < now() - make_interval(secs => $1)")
        .bind(after.as_secs_f64())
        .execute(pool)
        .await?;
    Ok(gone.rows_affected())
}

/// Every registered node, alive ones first, with whether it renewed within `lease`.
pub async fn list(pool: &PgPool, lease: Duration) -> Result<Vec<NodeRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT name, role, version, http_addr, started_at, renewed_at, \
                renewed_at > now() - make_interval(secs => $1) AS alive \
         FROM nodes ORDER BY alive DESC, started_at, name",
    )
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await
}

/// Whether node `name` holds a live lease.
pub async fn is_alive(pool: &PgPool, name: &str, lease: Duration) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM nodes WHERE name = $1 AND renewed_at > now() - make_interval(secs => $2))",
    )
    .bind(name)
    .bind(lease.as_secs_f64())
    .fetch_one(pool)
    .await
}
