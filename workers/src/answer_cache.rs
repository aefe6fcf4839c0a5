//! The answer cache: greedy answers to first questions, per model (a model's weights never change, so an
//! answer never goes stale; entries expire after a TTL to bound the memory). Kept in Redis so that every
//! node shares it and it survives restarts; in this process's memory when no Redis is configured or
//! reachable (on a Redis error the memory cache answers instead: the cache never fails a question).
//! Questions and answers are what encryption at rest protects: with a key ring installed a key holds a keyed
//! digest of the question (not a plain hash, which a dictionary would reverse), and the value is sealed for
//! its key with the data key of the question that produced it (`bonsai_crypto::data_keys`), so Redis's memory,
//! dumps and replicas hold neither in the clear, and deleting that question erases the cached copy too (the
//! next asker gets a fresh answer).

use bonsai_crypto::{data_keys, sealed};
use bonsai_domain::qa::Answer;
use bonsai_infra::redis::Redis;
use bonsai_infra::Cache;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

/// Most answers kept in memory.
const MEMORY_CAPACITY: u64 = 4096;

/// How long an answer is kept in memory when the TTL is not set (the memory cache of tests and of nodes
/// without Redis).
const MEMORY_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone)]
pub struct AnswerCache {
    redis: Option<Redis>,
    /// Key prefix: `<namespace>:answer:...` (the NATS prefix, so instances sharing a Redis stay apart).
    namespace: String,
    ttl: Duration,
    /// Sealed as in Redis.
    memory: Cache<String, String>,
}

/// The memory cache of answers (the fallback when Redis is not there).
fn memory(ttl: Duration) -> Cache<String, String> {
    Cache::new("answers_memory", MEMORY_CAPACITY, Some(ttl))
}

impl AnswerCache {
    /// A cache in this process's memory only.
    pub fn in_memory(namespace: &str) -> Self {
        Self { redis: None, namespace: namespace.to_owned(), ttl: Duration::ZERO, memory: memory(MEMORY_TTL) }
    }

    /// A cache in `redis` (none: in memory), whose entries live for `ttl`.
    pub fn new(redis: Option<Redis>, namespace: &str, ttl: Duration) -> Self {
        let memory = memory(if ttl.is_zero() { MEMORY_TTL } else { ttl });
        Self { redis, namespace: namespace.to_owned(), ttl, memory }
    }

    pub fn uses_redis(&self) -> bool {
        self.redis.is_some()
    }

    /// The key of an answer of `model` to `question` with at most `max_new_tokens`.
    pub fn key(&self, model: Uuid, question: &str, max_new_tokens: u32) -> String {
        let digest = bonsai_crypto::keyring::digest(&format!("answer-cache\0{question}"))
            .unwrap_or_else(|| hex::encode(Sha256::digest(question.as_bytes())));
        format!("{}:answer:{model}:{max_new_tokens}:{digest}", self.namespace)
    }

    /// The answer cached under `key`, unless the question that produced it was deleted since (its data key is
    /// read from `db` when this process has not loaded it).
    pub async fn get(&self, db: &PgPool, key: &str) -> Option<Answer> {
        let stored = self.stored(key).await?;
        bonsai_projections::data_keys::load_from(db, [&Value::String(stored.clone())]).await.ok()?;
        let json = sealed::open(&stored, &sealed::context("AnswerCache", key)).ok()?;
        serde_json::from_str(&json).ok() // an erased one reads `[erased]`: no answer
    }

    async fn stored(&self, key: &str) -> Option<String> {
        if let Some(redis) = &self.redis {
            if let Some(found) = redis.query::<Option<String>>(redis::cmd("GET").arg(key)).await {
                return found;
            }
        }
        self.memory.get(&key.to_owned())
    }

    /// Caches `answer` under `key`, sealed with the data key of `question`, the question it answered (loaded:
    /// the question was just read); nothing when that question is deleted already.
    pub async fn put(&self, key: &str, answer: &Answer, question: Uuid) {
        let json = serde_json::to_string(answer).unwrap_or_default();
        let Ok(value) = data_keys::seal(question, &json, &sealed::context("AnswerCache", key)) else { return };
        if value == data_keys::ERASED {
            return;
        }
        if let Some(redis) = &self.redis {
            let mut set = redis::cmd("SET");
            set.arg(key).arg(&value).arg("EX").arg(self.ttl.as_secs().max(1));
            if redis.query::<()>(&set).await.is_some() {
                return;
            }
        }
        self.memory.insert(key.to_owned(), value);
    }
}
