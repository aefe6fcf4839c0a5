//! The read side's use of the `data_keys` table (erasable values, `bonsai_crypto::data_keys`): keys loaded
//! before events are opened, and erased when their question is deleted.

use crate::ProjectionError;
use bonsai_crypto::data_keys;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use std::collections::BTreeSet;
use uuid::Uuid;

/// The PostgreSQL channel on which each erased key's id is announced at commit (a trigger on `data_keys`).
pub const ERASURES_CHANNEL: &str = "bonsai_data_keys_erased";

/// The keys that opening `values` needs and this process has not loaded (or loaded too long ago).
fn missing<'v>(values: impl IntoIterator<Item = &'v Value>) -> Vec<Uuid> {
    let mut missing = BTreeSet::new();
    values.into_iter().for_each(|value| data_keys::to_load(value, &mut missing));
    missing.into_iter().collect()
}

async fn fetch(conn: &mut PgConnection, ids: Vec<Uuid>) -> Result<(), ProjectionError> {
    let rows: Vec<(Uuid, Option<String>)> =
        sqlx::query_as("SELECT id, key FROM data_keys WHERE id = ANY($1)").bind(&ids).fetch_all(conn).await?;
    data_keys::remember(rows)
        .map_err(|e| ProjectionError::Sealed { event_type: "data_keys".into(), reason: e.to_string() })
}

/// Loads the keys that opening `values` needs (no round trip when they are all loaded and fresh).
pub async fn load<'v>(
    conn: &mut PgConnection,
    values: impl IntoIterator<Item = &'v Value>,
) -> Result<(), ProjectionError> {
    let ids = missing(values);
    if ids.is_empty() {
        return Ok(());
    }
    fetch(conn, ids).await
}

/// As [`load`], taking a connection from `pool` only when a key is missing.
pub async fn load_from<'v>(pool: &PgPool, values: impl IntoIterator<Item = &'v Value>) -> Result<(), ProjectionError> {
    let ids = missing(values);
    if ids.is_empty() {
        return Ok(());
    }
    fetch(&mut *pool.acquire().await?, ids).await
}
