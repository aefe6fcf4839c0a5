//! A node's one link to Redis, shared by everything that uses it (the rate limits, the answer cache).
//!
//! Redis speeds the platform up and joins its nodes; it is never needed for a request to succeed. So
//! every call is bounded ([`CALL_TIMEOUT`]) and answers `None` when Redis fails, and after a failure the
//! link pauses ([`PAUSE`]): for a few seconds every caller uses its fallback at once instead of each
//! waiting out a timeout on a dead Redis.

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest one call waits for Redis.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// How long the link stays paused after a failure.
pub const PAUSE: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Redis {
    manager: ConnectionManager,
    inner: Arc<Health>,
}

#[derive(Default)]
struct Health {
    // A std mutex: nothing awaits while it is held.
    paused_until: Mutex<Option<Instant>>,
    errors: AtomicU64,
}

impl Redis {
    /// Connects to Redis at `url` (empty: no Redis). An unreachable Redis is logged and answered with
    /// `None`: the node runs without it.
    pub async fn connect(url: &str) -> Option<Self> {
        if url.is_empty() {
            return None;
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(CALL_TIMEOUT)
            .set_number_of_retries(2);
        // The connection manager retries a refused first connection for minutes: bounded here.
        let connected = match ::redis::Client::open(url) {
            Ok(client) => {
                tokio::time::timeout(Duration::from_secs(3), client.get_connection_manager_with_config(config))
                    .await
                    .map_err(|_| "no answer within 3 s".to_owned())
                    .and_then(|r| r.map_err(|e| e.to_string()))
            }
            Err(e) => Err(e.to_string()),
        };
        match connected {
            Ok(manager) => Some(Self { manager, inner: Arc::default() }),
            Err(error) => {
                tracing::warn!(%error, url, "Redis is unavailable: this node caches and rate-limits on its own");
                None
            }
        }
    }

    /// Runs `command`; `None` when Redis fails, is slow or is paused after a failure (logged once a pause).
    pub async fn query<T: ::redis::FromRedisValue>(&self, command: &::redis::Cmd) -> Option<T> {
        self.call(command.query_async::<T>(&mut self.manager.clone())).await
    }

    /// Runs `script` with `keys` and `args` (EVALSHA, loading it on first use); `None` as for [`Redis::query`].
    pub async fn script<T: ::redis::FromRedisValue>(
        &self,
        script: &::redis::Script,
        keys: &[String],
        args: &[String],
    ) -> Option<T> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        let mut manager = self.manager.clone();
        self.call(invocation.invoke_async::<T>(&mut manager)).await
    }

    /// Calls to Redis that failed or timed out since start.
    pub fn errors(&self) -> u64 {
        self.inner.errors.load(Relaxed)
    }

    async fn call<T>(&self, call: impl std::future::Future<Output = ::redis::RedisResult<T>>) -> Option<T> {
        if self.inner.paused_until.lock().expect("redis health lock").is_some_and(|until| until > Instant::now()) {
            return None;
        }
        let error = match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(value)) => return Some(value),
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {CALL_TIMEOUT:?}"),
        };
        self.inner.errors.fetch_add(1, Relaxed);
        let mut paused = self.inner.paused_until.lock().expect("redis health lock");
        if paused.is_none_or(|until| until <= Instant::now()) {
            tracing::warn!(%error, pause = ?PAUSE, "Redis failed: this node caches and rate-limits on its own for now");
            *paused = Some(Instant::now() + PAUSE);
        }
        None
    }
}
