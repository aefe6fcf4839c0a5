//! The write side's use of the `data_keys` table (erasable values, `bonsai_domain::data_keys`): the keys an
//! append seals with are created (or read) before it, and the keys a load opens with are read before it.

use bonsai_domain::data_keys;
use cqrs_es::persist::PersistenceError;
use serde_json::Value;
use sqlx::PgPool;
use std::collections::BTreeSet;
use uuid::Uuid;

/// Creates the missing keys of `ids` (for record `owner`) and loads them all, erased ones as erased: one
/// round trip. A key that exists is never replaced, so concurrent writers agree on it.
const CREATE: &str = "WITH created AS ( \
       INSERT INTO data_keys (id, owner, key) SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[]) \
       ON CONFLICT (id) DO NOTHING RETURNING id, key) \
     SELECT id, key FROM created \
     UNION ALL SELECT id, key FROM data_keys WHERE id = ANY($1) AND id NOT IN (SELECT id FROM created)";

const LOAD: &str = "SELECT id, key FROM data_keys WHERE id = ANY($1)";

fn error(e: impl std::error::Error + Send + Sync + 'static) -> PersistenceError {
    PersistenceError::UnknownError(Box::new(e))
}

fn remember(rows: Vec<(Uuid, Option<String>)>) -> Result<(), PersistenceError> {
    data_keys::remember(rows).map_err(error)
}

/// Makes sure the keys `ids` exist and are loaded before values are sealed with them.
pub async fn prepare(pool: &PgPool, owner: &str, ids: impl IntoIterator<Item = Uuid>) -> Result<(), PersistenceError> {
    let ids: Vec<Uuid> =
        ids.into_iter().filter(|id| !data_keys::is_loaded(*id)).collect::<BTreeSet<_>>().into_iter().collect();
    if ids.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = ids.iter().map(|id| data_keys::new_key(*id)).collect();
    let owners = vec![owner.to_owned(); ids.len()];
    let rows = sqlx::query_as(CREATE).bind(&ids).bind(owners).bind(keys).fetch_all(pool).await.map_err(error)?;
    remember(rows)
}

/// Loads the keys that opening `values` needs.
pub async fn load<'v>(pool: &PgPool, values: impl IntoIterator<Item = &'v Value>) -> Result<(), PersistenceError> {
    let mut missing = BTreeSet::new();
    values.into_iter().for_each(|value| data_keys::to_load(value, &mut missing));
    if missing.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = missing.into_iter().collect();
    let rows = sqlx::query_as(LOAD).bind(&ids).fetch_all(pool).await.map_err(error)?;
    remember(rows)
}
