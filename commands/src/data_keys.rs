//! The write side's use of the `data_keys` table (erasable values, `bonsai_crypto::data_keys`): the keys an
//! append seals with are created (or read) before it, the keys a load opens with are read before it, and the
//! keys an append erases (a deleted question's, a cleared conversation's) are erased in the append's own
//! transaction: an erasure the user asked for is done when the command answers, whatever the consumers do.

use bonsai_crypto::data_keys;
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

/// What one appended event erases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Erasure {
    /// These questions' keys.
    Questions(Vec<Uuid>),
    /// The keys of every question asked in conversation `session` before its event `before`.
    Conversation { session: String, before: i64 },
}

impl Erasure {
    /// What an event erases, if anything (typed: a deleted question, a cleared conversation).
    pub fn of(aggregate_type: &str, aggregate_id: &str, sequence: i64, payload: &Value) -> Option<Erasure> {
        use bonsai_domain::qa::QaEvent;
        use bonsai_domain::{AggregateKind, Event};
        if aggregate_type != AggregateKind::QaSession.as_str() {
            return None; // most appends: no decoding
        }
        match Event::decode_as(AggregateKind::QaSession, payload).ok()? {
            Event::QaSession(QaEvent::QuestionDeleted { question_id }) => Some(Erasure::Questions(vec![question_id])),
            Event::QaSession(QaEvent::HistoryCleared {}) => {
                Some(Erasure::Conversation { session: aggregate_id.to_owned(), before: sequence })
            }
            _ => None,
        }
    }

    /// Erases the keys in `tx` (the append's transaction); the ids erased.
    pub async fn apply(&self, tx: &mut sqlx::PgConnection) -> Result<Vec<Uuid>, sqlx::Error> {
        match self {
            Erasure::Questions(ids) => {
                sqlx::query_scalar(
                    "UPDATE data_keys SET key = NULL, erased_at = now() WHERE id = ANY($1) AND key IS NOT NULL                      RETURNING id",
                )
                .bind(ids)
                .fetch_all(tx)
                .await
            }
            Erasure::Conversation { session, before } => {
                sqlx::query_scalar(
                    "UPDATE data_keys SET key = NULL, erased_at = now() WHERE key IS NOT NULL AND id IN (                        SELECT (payload -> 'QuestionAsked' ->> 'question_id')::uuid FROM events                        WHERE aggregate_type = 'QaSession' AND aggregate_id = $1 AND event_type = 'QuestionAsked'                        AND sequence < $2) RETURNING id",
                )
                .bind(session)
                .bind(before)
                .fetch_all(tx)
                .await
            }
        }
    }
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
