//! Login brute-force protection and the per-user request limit (design 4.2).
//!
//! The counters live in Redis when one is configured, so every API node behind the load balancer
//! enforces one limit (a lockout earned on one node holds on all of them; a user's request budget is
//! shared). Each decision is one atomic Lua script on Redis's clock. When Redis fails or answers
//! slowly, the node decides alone from its own counters (which it keeps up to date all the time), and
//! the node's Redis link pauses for a few seconds ([`bonsai_infra::redis`]): a dead Redis never fails
//! or slows a request, and still bounds an attacker to nodes x limit.
//! The node's state is behind std mutexes, not tokio ones: nothing awaits while they are held.

use bonsai_infra::redis::Redis;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Login failure records kept by a node before the expired ones are dropped.
const LOCAL_PRUNE_AT: usize = 10_000;

#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    /// Failed logins (per username) after which each attempt is slowed down.
    pub login_slowdown_after: u32,
    /// Failed logins per username within `login_window` after which logins are refused (429).
    pub login_lockout_after: u32,
    /// Failed logins per client address within `login_window` after which logins are refused.
    pub login_lockout_after_per_address: u32,
    pub login_window: Duration,
    pub login_lockout: Duration,
    /// Sustained requests per second per authenticated user; 0 turns the limit off.
    pub requests_per_second: u32,
    /// Bucket size of the per-user limit.
    pub burst: u32,
    /// Sustained questions (`POST /api/qa/ask`, which costs a generation) per minute per user; 0 turns the
    /// limit off.
    pub questions_per_minute: u32,
    /// Questions a user may ask at once before the per-minute rate applies.
    pub question_burst: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            login_slowdown_after: 3,
            login_lockout_after: 8,
            login_lockout_after_per_address: 30,
            login_window: Duration::from_secs(15 * 60),
            login_lockout: Duration::from_secs(5 * 60),
            requests_per_second: 50,
            burst: 100,
            questions_per_minute: 60,
            question_burst: 20,
        }
    }
}

/// What a login attempt must do before it is tried.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginGate {
    Proceed { delay: Duration },
    Refuse { retry_after: Duration },
}

impl RateLimitSettings {
    /// The wait imposed on a login for a username with `failures` recent failures.
    fn slowdown(&self, failures: u32) -> Duration {
        if failures < self.login_slowdown_after {
            return Duration::ZERO;
        }
        let extra = failures - self.login_slowdown_after + 1;
        Duration::from_millis(250 * u64::from(extra)).min(Duration::from_secs(2))
    }
}

/// The login keys of a username and a client address (names are case-insensitive). A username is
/// whatever the client sent, so it is hashed: a key's length does not depend on the input.
fn login_keys(username: &str, address: &str) -> [String; 2] {
    use sha2::{Digest, Sha256};
    let name = hex::encode(&Sha256::digest(username.to_lowercase().as_bytes())[..16]);
    [format!("user:{name}"), format!("addr:{address}")]
}

pub struct RateLimits {
    settings: RateLimitSettings,
    local: Local,
    shared: Option<Shared>,
    refused_logins: AtomicU64,
    refused_requests: AtomicU64,
    refused_questions: AtomicU64,
}

impl RateLimits {
    /// Limits kept by this node alone.
    pub fn new(settings: RateLimitSettings) -> Self {
        Self {
            settings,
            local: Local::default(),
            shared: None,
            refused_logins: AtomicU64::new(0),
            refused_requests: AtomicU64::new(0),
            refused_questions: AtomicU64::new(0),
        }
    }

    /// Limits shared through Redis by every node with the same `namespace` (keys `<namespace>:limit:...`).
    pub fn shared(settings: RateLimitSettings, redis: Redis, namespace: &str) -> Self {
        let shared = Shared { redis, namespace: namespace.to_owned() };
        Self { shared: Some(shared), ..Self::new(settings) }
    }

    /// The Redis link the limits are shared through, if they are (whether or not Redis answers now).
    pub fn redis(&self) -> Option<&Redis> {
        self.shared.as_ref().map(|shared| &shared.redis)
    }

    /// Checks a login attempt for `username` from `address`.
    pub async fn login_gate(&self, username: &str, address: &str) -> LoginGate {
        let keys = login_keys(username, address);
        let local = self.local.login_gate(&self.settings, &keys);
        let gate = match &self.shared {
            Some(shared) => match shared.login_gate(&keys).await {
                Some((locked_ms, _)) if locked_ms > 0 => {
                    LoginGate::Refuse { retry_after: Duration::from_millis(locked_ms as u64) }
                }
                Some((_, failures_seen)) => LoginGate::Proceed { delay: self.settings.slowdown(failures_seen) },
                None => local,
            },
            None => local,
        };
        if matches!(gate, LoginGate::Refuse { .. }) {
            self.refused_logins.fetch_add(1, Relaxed);
        }
        gate
    }

    /// Records a failed login.
    pub async fn login_failed(&self, username: &str, address: &str) {
        let keys = login_keys(username, address);
        self.local.login_failed(&self.settings, &keys);
        if let Some(shared) = &self.shared {
            shared.login_failed(&self.settings, &keys).await;
        }
    }

    /// A successful login clears the username's failures (not the address's: one good account must
    /// not launder an address that is guessing others).
    pub async fn login_succeeded(&self, username: &str) {
        let [user, _] = login_keys(username, "");
        self.local.forget(&user);
        if let Some(shared) = &self.shared {
            shared.forget(&user).await;
        }
    }

    /// Takes one request from `user`'s budget; `Err(retry_after)` when it is spent.
    pub async fn request(&self, user: uuid::Uuid) -> Result<(), Duration> {
        self.take(Budget::Request, user).await
    }

    /// Takes one question from `user`'s budget of questions; `Err(retry_after)` when it is spent.
    pub async fn question(&self, user: uuid::Uuid) -> Result<(), Duration> {
        self.take(Budget::Question, user).await
    }

    /// Takes one unit of `user`'s `budget` (refilled at its rate a second up to its burst; rate 0: no limit).
    async fn take(&self, budget: Budget, user: uuid::Uuid) -> Result<(), Duration> {
        let s = &self.settings;
        let (rate, burst, refused) = match budget {
            Budget::Request => (f64::from(s.requests_per_second), s.burst, &self.refused_requests),
            Budget::Question => (f64::from(s.questions_per_minute) / 60.0, s.question_burst, &self.refused_questions),
        };
        if rate == 0.0 {
            return Ok(());
        }
        let burst = f64::from(burst.max(1));
        let local = self.local.take(budget, user, rate, burst);
        let decided = match &self.shared {
            Some(shared) => shared.take(budget, user, rate, burst).await.unwrap_or(local),
            None => local,
        };
        if decided.is_err() {
            refused.fetch_add(1, Relaxed);
        }
        decided
    }

    /// The limiter's counters, for `/metrics`.
    pub(crate) fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        out.push_str("# HELP bonsai_rate_limited_total Requests refused by the rate limits, by limit.\n");
        out.push_str("# TYPE bonsai_rate_limited_total counter\n");
        let _ = writeln!(out, "bonsai_rate_limited_total{{limit=\"login\"}} {}", self.refused_logins.load(Relaxed));
        let _ = writeln!(out, "bonsai_rate_limited_total{{limit=\"request\"}} {}", self.refused_requests.load(Relaxed));
        let _ =
            writeln!(out, "bonsai_rate_limited_total{{limit=\"question\"}} {}", self.refused_questions.load(Relaxed));
        if let Some(shared) = &self.shared {
            out.push_str("# HELP bonsai_redis_errors_total Calls to Redis that failed or timed out (the node then used its own limits and caches).\n");
            out.push_str("# TYPE bonsai_redis_errors_total counter\n");
            let _ = writeln!(out, "bonsai_redis_errors_total {}", shared.redis.errors());
        }
    }
}

/// A per-user budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Budget {
    /// Every authenticated request.
    Request,
    /// Questions to the deployed models.
    Question,
}

impl Budget {
    fn name(self) -> &'static str {
        match self {
            Budget::Request => "request",
            Budget::Question => "question",
        }
    }
}

/// The limits as this node alone sees them.
#[derive(Default)]
struct Local {
    failures: Mutex<HashMap<String, Failures>>,
    buckets: Mutex<HashMap<(Budget, uuid::Uuid), Bucket>>,
}

#[derive(Debug)]
struct Failures {
    count: u32,
    since: Instant,
    locked_until: Option<Instant>,
}

impl Failures {
    fn expired(&self, settings: &RateLimitSettings, now: Instant) -> bool {
        now.duration_since(self.since) > settings.login_window && self.locked_until.is_none_or(|t| t <= now)
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Local {
    fn login_gate(&self, settings: &RateLimitSettings, keys: &[String; 2]) -> LoginGate {
        let now = Instant::now();
        let mut failures = self.failures.lock().expect("rate-limit lock poisoned");
        let mut delay = Duration::ZERO;
        for key in keys {
            let Some(f) = failures.get(key) else { continue };
            if f.expired(settings, now) {
                failures.remove(key);
                continue;
            }
            if let Some(until) = f.locked_until.filter(|t| *t > now) {
                return LoginGate::Refuse { retry_after: until - now };
            }
            if key.starts_with("user:") {
                delay = settings.slowdown(f.count);
            }
        }
        LoginGate::Proceed { delay }
    }

    fn login_failed(&self, settings: &RateLimitSettings, keys: &[String; 2]) {
        let now = Instant::now();
        let mut failures = self.failures.lock().expect("rate-limit lock poisoned");
        if failures.len() >= LOCAL_PRUNE_AT {
            failures.retain(|_, f| !f.expired(settings, now));
        }
        for key in keys {
            let limit = if key.starts_with("user:") {
                settings.login_lockout_after
            } else {
                settings.login_lockout_after_per_address
            };
            let f = failures.entry(key.clone()).or_insert(Failures { count: 0, since: now, locked_until: None });
            f.count += 1;
            if f.count >= limit {
                f.locked_until = Some(now + settings.login_lockout);
            }
        }
    }

    fn forget(&self, key: &str) {
        self.failures.lock().expect("rate-limit lock poisoned").remove(key);
    }

    fn take(&self, budget: Budget, user: uuid::Uuid, rate: f64, burst: f64) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("rate-limit lock poisoned");
        if buckets.len() >= LOCAL_PRUNE_AT {
            // A bucket idle long enough to be full again is the same as no bucket.
            buckets.retain(|(kind, _), b| *kind != budget || now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry((budget, user)).or_insert(Bucket { tokens: burst, at: now });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

/// The limits kept in Redis for every node.
struct Shared {
    redis: Redis,
    namespace: String,
}

/// `KEYS`: the username's failure count, the username's lock, the address's lock.
/// Returns the longer lock's remaining milliseconds (0 when neither is locked) and the username's failures.
const GATE_SCRIPT: &str = r"
local locked = math.max(redis.call('PTTL', KEYS[2]), redis.call('PTTL', KEYS[3]), 0)
return {locked, tonumber(redis.call('GET', KEYS[1]) or '0')}
";

/// `KEYS`: the username's count and lock, the address's count and lock; `ARGV`: the window (ms), the
/// username's and the address's lockout thresholds, the lockout (ms). A count lives for the window from
/// its first failure; reaching its threshold locks its key for the lockout.
const FAILED_SCRIPT: &str = r"
for i = 0, 1 do
  local count = redis.call('INCR', KEYS[2 * i + 1])
  if count == 1 then redis.call('PEXPIRE', KEYS[2 * i + 1], ARGV[1]) end
  if count >= tonumber(ARGV[2 + i]) then redis.call('SET', KEYS[2 * i + 2], '1', 'PX', ARGV[4]) end
end
return 0
";

/// The generic cell rate algorithm (a token bucket held as one timestamp) on Redis's clock. `KEYS[1]`: the
/// user's theoretical arrival time (ms); `ARGV`: milliseconds per request, the burst in milliseconds.
/// Returns 0 when the request may go, else the milliseconds until it may.
const REQUEST_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local next_tat = tat + interval
local allowed_at = next_tat - tolerance
if allowed_at > now then return math.max(1, math.ceil(allowed_at - now)) end
redis.call('SET', KEYS[1], string.format('%.3f', next_tat), 'PX', math.max(1, math.ceil(next_tat - now)))
return 0
";

impl Shared {
    fn key(&self, name: &str) -> String {
        format!("{}:limit:{name}", self.namespace)
    }

    async fn login_gate(&self, keys: &[String; 2]) -> Option<(i64, u32)> {
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(GATE_SCRIPT));
        let [user, address] = keys;
        let keys = [
            self.key(&format!("login:{user}")),
            self.key(&format!("lock:{user}")),
            self.key(&format!("lock:{address}")),
        ];
        let (locked, failures): (i64, i64) = self.redis.script(&SCRIPT, &keys, &[]).await?;
        Some((locked, u32::try_from(failures).unwrap_or(u32::MAX)))
    }

    async fn login_failed(&self, settings: &RateLimitSettings, keys: &[String; 2]) {
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(FAILED_SCRIPT));
        let [user, address] = keys;
        let keys = [
            self.key(&format!("login:{user}")),
            self.key(&format!("lock:{user}")),
            self.key(&format!("login:{address}")),
            self.key(&format!("lock:{address}")),
        ];
        let args = [
            settings.login_window.as_millis().max(1).to_string(),
            settings.login_lockout_after.to_string(),
            settings.login_lockout_after_per_address.to_string(),
            settings.login_lockout.as_millis().max(1).to_string(),
        ];
        let _: Option<i64> = self.redis.script(&SCRIPT, &keys, &args).await;
    }

    async fn forget(&self, user: &str) {
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new("return redis.call('DEL', KEYS[1])"));
        let _: Option<i64> = self.redis.script(&SCRIPT, &[self.key(&format!("login:{user}"))], &[]).await;
    }

    async fn take(&self, budget: Budget, user: uuid::Uuid, rate: f64, burst: f64) -> Option<Result<(), Duration>> {
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(REQUEST_SCRIPT));
        let interval = 1000.0 / rate;
        let args = [format!("{interval:.3}"), format!("{:.3}", interval * burst)];
        let key = self.key(&format!("{}:{user}", budget.name()));
        let wait: i64 = self.redis.script(&SCRIPT, &[key], &args).await?;
        Some(if wait > 0 { Err(Duration::from_millis(wait as u64)) } else { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RateLimits {
        RateLimits::new(RateLimitSettings { requests_per_second: 2, burst: 2, ..Default::default() })
    }

    #[tokio::test]
    async fn failures_slow_down_then_lock_out_a_username() {
        let l = limits();
        assert_eq!(l.login_gate("ann", "1.2.3.4").await, LoginGate::Proceed { delay: Duration::ZERO });
        for _ in 0..3 {
            l.login_failed("ann", "1.2.3.4").await;
        }
        assert!(matches!(l.login_gate("ann", "5.6.7.8").await, LoginGate::Proceed { delay } if delay > Duration::ZERO));
        for _ in 0..5 {
            l.login_failed("ann", "1.2.3.4").await;
        }
        assert!(matches!(l.login_gate("ANN", "9.9.9.9").await, LoginGate::Refuse { .. }));
        assert_eq!(l.login_gate("bob", "9.9.9.9").await, LoginGate::Proceed { delay: Duration::ZERO });
    }

    #[tokio::test]
    async fn success_clears_the_username_but_not_the_address() {
        let l = limits();
        for _ in 0..3 {
            l.login_failed("ann", "1.2.3.4").await;
        }
        l.login_succeeded("ann").await;
        assert_eq!(l.login_gate("ann", "5.6.7.8").await, LoginGate::Proceed { delay: Duration::ZERO });
    }

    #[tokio::test]
    async fn the_request_bucket_refuses_past_the_burst() {
        let l = limits();
        let user = uuid::Uuid::new_v4();
        assert!(l.request(user).await.is_ok());
        assert!(l.request(user).await.is_ok());
        assert!(l.request(user).await.is_err());
        assert!(l.request(uuid::Uuid::new_v4()).await.is_ok());
    }
}
