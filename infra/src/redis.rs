//! A node's one link to Redis, shared by everything that uses it (the rate limits, the answer cache).
//!
//! Redis speeds the platform up and joins its nodes; it is never needed for a request to succeed. So
//! every call is bounded ([`CALL_TIMEOUT`]) and answers `None` when Redis fails, and after a failure the
//! link pauses ([`PAUSE`]): for a few seconds every caller uses its fallback at once instead of each
//! waiting out a timeout on a dead Redis. A Redis that does not answer at start does not hold the start up:
//! the link tries again every [`PAUSE`] in the background, and the node uses it from when it answers.

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// The longest one call waits for Redis.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// How long the link stays paused after a failure.
pub const PAUSE: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Redis {
    inner: Arc<Link>,
}

#[derive(Default)]
struct Link {
    // std locks: nothing awaits while one is held.
    /// None until Redis first answers.
    manager: RwLock<Option<ConnectionManager>>,
    paused_until: Mutex<Option<Instant>>,
    errors: AtomicU64,
}

impl Redis {
    /// The link to Redis at `url` (empty: no Redis; an invalid URL is logged, and no Redis). A Redis that does
    /// not answer is logged and tried again in the background; until it answers, calls answer `None`.
    pub async fn connect(url: &str) -> Option<Self> {
        if url.is_empty() {
            return None;
        }
        let client = match ::redis::Client::open(url) {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(%error, url, "invalid Redis URL: this node caches and rate-limits on its own");
                return None;
            }
        };
        let redis = Self { inner: Arc::default() };
        match manager(&client).await {
            Ok(manager) => *redis.inner.manager.write().expect("redis link lock") = Some(manager),
            Err(error) => {
                tracing::warn!(%error, url, "Redis is unavailable: this node caches and rate-limits on its own until it answers");
                let link = Arc::downgrade(&redis.inner);
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(PAUSE).await;
                        // Every handle dropped (the node stopped): nothing to connect for.
                        let Some(link) = link.upgrade() else { return };
                        if let Ok(manager) = manager(&client).await {
                            *link.manager.write().expect("redis link lock") = Some(manager);
                            tracing::info!("Redis answers: limits and the answer cache are shared from now on");
                            return;
                        }
                    }
                });
            }
        }
        Some(redis)
    }

    /// Runs `command`; `None` when Redis fails, is slow or is paused after a failure (logged once a pause).
    pub async fn query<T: ::redis::FromRedisValue>(&self, command: &::redis::Cmd) -> Option<T> {
        let mut manager = self.manager()?;
        self.call(command.query_async::<T>(&mut manager)).await
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
        let mut manager = self.manager()?;
        self.call(invocation.invoke_async::<T>(&mut manager)).await
    }

    /// The connection, once Redis has answered.
    fn manager(&self) -> Option<ConnectionManager> {
        self.inner.manager.read().expect("redis link lock").clone()
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

/// A connection manager for `client`, or why Redis does not answer. One plain connection first: the manager
/// retries a refused connection with back-off (seconds), a plain one fails at once.
async fn manager(client: &::redis::Client) -> Result<ConnectionManager, String> {
    let bounded = |what: &'static str| move |_| format!("no answer within {what}");
    tokio::time::timeout(Duration::from_secs(1), client.get_multiplexed_async_connection())
        .await
        .map_err(bounded("1 s"))?
        .map_err(|e| e.to_string())?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(2))
        .set_response_timeout(CALL_TIMEOUT)
        .set_number_of_retries(2);
    tokio::time::timeout(Duration::from_secs(3), client.get_connection_manager_with_config(config))
        .await
        .map_err(bounded("3 s"))?
        .map_err(|e| e.to_string())
}
