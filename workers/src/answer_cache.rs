//! The answer cache: greedy answers to first questions, per model (a model's weights never change, so an
//! answer never goes stale; entries expire after a TTL to bound the memory). Kept in Redis so that every
//! node shares it and it survives restarts; in this process's memory when no Redis is configured or
//! reachable (a Redis error is logged and the memory cache answers instead: the cache never fails a question).

use bonsai_domain::qa::Answer;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// Most answers kept in memory (the memory cache is emptied when full).
const MEMORY_CAPACITY: usize = 4096;

#[derive(Clone)]
pub struct AnswerCache {
    redis: Option<ConnectionManager>,
    /// Key prefix: `<namespace>:answer:...` (the NATS prefix, so instances sharing a Redis stay apart).
    namespace: String,
    ttl: Duration,
    // A std mutex: nothing awaits while it is held.
    memory: Arc<Mutex<HashMap<String, Answer>>>,
}

impl AnswerCache {
    /// A cache in this process's memory only.
    pub fn in_memory(namespace: &str) -> Self {
        Self { redis: None, namespace: namespace.to_owned(), ttl: Duration::ZERO, memory: Arc::default() }
    }

    /// A cache in Redis at `url` (empty: in memory). An unreachable Redis is logged and memory is used.
    pub async fn connect(url: &str, namespace: &str, ttl: Duration) -> Self {
        let mut cache = Self::in_memory(namespace);
        cache.ttl = ttl;
        if url.is_empty() {
            return cache;
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(2))
            .set_number_of_retries(2);
        // The connection manager retries a refused first connection for minutes: bounded here.
        let connected = match redis::Client::open(url) {
            Ok(client) => {
                tokio::time::timeout(Duration::from_secs(3), client.get_connection_manager_with_config(config))
                    .await
                    .map_err(|_| "no answer within 3 s".to_owned())
                    .and_then(|r| r.map_err(|e| e.to_string()))
            }
            Err(e) => Err(e.to_string()),
        };
        match connected {
            Ok(manager) => cache.redis = Some(manager),
            Err(error) => tracing::warn!(%error, url, "Redis is unavailable: answers are cached in memory only"),
        }
        cache
    }

    pub fn uses_redis(&self) -> bool {
        self.redis.is_some()
    }

    /// The key of an answer of `model` to `question` with at most `max_new_tokens`.
    pub fn key(&self, model: Uuid, question: &str, max_new_tokens: u32) -> String {
        let digest = hex::encode(Sha256::digest(question.as_bytes()));
        format!("{}:answer:{model}:{max_new_tokens}:{digest}", self.namespace)
    }

    pub async fn get(&self, key: &str) -> Option<Answer> {
        if let Some(mut redis) = self.redis.clone() {
            match redis::cmd("GET").arg(key).query_async::<Option<String>>(&mut redis).await {
                Ok(found) => return found.and_then(|json| serde_json::from_str(&json).ok()),
                Err(error) => tracing::warn!(%error, "Redis GET failed; using the memory cache"),
            }
        }
        self.memory.lock().expect("cache lock").get(key).cloned()
    }

    pub async fn put(&self, key: &str, answer: &Answer) {
        if let Some(mut redis) = self.redis.clone() {
            let json = serde_json::to_string(answer).unwrap_or_default();
            let mut set = redis::cmd("SET");
            set.arg(key).arg(json).arg("EX").arg(self.ttl.as_secs().max(1));
            match set.query_async::<()>(&mut redis).await {
                Ok(()) => return,
                Err(error) => tracing::warn!(%error, "Redis SET failed; using the memory cache"),
            }
        }
        let mut memory = self.memory.lock().expect("cache lock");
        if memory.len() >= MEMORY_CAPACITY {
            memory.clear();
        }
        memory.insert(key.to_owned(), answer.clone());
    }
}
