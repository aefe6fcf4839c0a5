//! Login brute-force protection and the per-user request limit (design 4.2).
//!
//! In-process state: with several API nodes each node limits on its own, which still bounds an
//! attacker to nodes x limit; a shared store (Redis) is the next step when nodes multiply.
//! This is a std mutex, not a tokio one: nothing awaits while it is held.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
        }
    }
}

#[derive(Debug)]
struct Failures {
    count: u32,
    since: Instant,
    locked_until: Option<Instant>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct RateLimits {
    settings: RateLimitSettings,
    failures: Mutex<HashMap<String, Failures>>,
    buckets: Mutex<HashMap<uuid::Uuid, Bucket>>,
}

/// What a login attempt must do before it is tried.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginGate {
    Proceed { delay: Duration },
    Refuse { retry_after: Duration },
}

impl RateLimits {
    pub fn new(settings: RateLimitSettings) -> Self {
        Self { settings, failures: Mutex::default(), buckets: Mutex::default() }
    }

    fn keys(username: &str, address: &str) -> [String; 2] {
        [format!("user:{}", username.to_ascii_lowercase()), format!("addr:{address}")]
    }

    /// Checks a login attempt for `username` from `address`.
    pub fn login_gate(&self, username: &str, address: &str) -> LoginGate {
        let now = Instant::now();
        let mut failures = self.failures.lock().expect("rate-limit lock poisoned");
        let mut delay = Duration::ZERO;
        for key in Self::keys(username, address) {
            let Some(f) = failures.get_mut(&key) else { continue };
            if now.duration_since(f.since) > self.settings.login_window && f.locked_until.is_none_or(|t| t <= now) {
                failures.remove(&key);
                continue;
            }
            if let Some(until) = f.locked_until.filter(|t| *t > now) {
                return LoginGate::Refuse { retry_after: until - now };
            }
            if key.starts_with("user:") && f.count >= self.settings.login_slowdown_after {
                let extra = f.count - self.settings.login_slowdown_after + 1;
                delay = Duration::from_millis(250 * u64::from(extra)).min(Duration::from_secs(2));
            }
        }
        LoginGate::Proceed { delay }
    }

    pub fn login_failed(&self, username: &str, address: &str) {
        let now = Instant::now();
        let mut failures = self.failures.lock().expect("rate-limit lock poisoned");
        for key in Self::keys(username, address) {
            let limit = if key.starts_with("user:") {
                self.settings.login_lockout_after
            } else {
                self.settings.login_lockout_after_per_address
            };
            let f = failures.entry(key).or_insert(Failures { count: 0, since: now, locked_until: None });
            f.count += 1;
            if f.count >= limit {
                f.locked_until = Some(now + self.settings.login_lockout);
            }
        }
    }

    /// A successful login clears the username's failures (not the address's: one good account must
    /// not launder an address that is guessing others).
    pub fn login_succeeded(&self, username: &str) {
        let key = format!("user:{}", username.to_ascii_lowercase());
        self.failures.lock().expect("rate-limit lock poisoned").remove(&key);
    }

    /// Takes one request from `user`'s bucket; `Err(retry_after)` when it is empty.
    pub fn request(&self, user: uuid::Uuid) -> Result<(), Duration> {
        let rate = f64::from(self.settings.requests_per_second);
        if rate == 0.0 {
            return Ok(());
        }
        let burst = f64::from(self.settings.burst.max(1));
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("rate-limit lock poisoned");
        let bucket = buckets.entry(user).or_insert(Bucket { tokens: burst, at: now });
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RateLimits {
        RateLimits::new(RateLimitSettings { requests_per_second: 2, burst: 2, ..Default::default() })
    }

    #[test]
    fn failures_slow_down_then_lock_out_a_username() {
        let l = limits();
        assert_eq!(l.login_gate("ann", "1.2.3.4"), LoginGate::Proceed { delay: Duration::ZERO });
        for _ in 0..3 {
            l.login_failed("ann", "1.2.3.4");
        }
        assert!(matches!(l.login_gate("ann", "5.6.7.8"), LoginGate::Proceed { delay } if delay > Duration::ZERO));
        for _ in 0..5 {
            l.login_failed("ann", "1.2.3.4");
        }
        assert!(matches!(l.login_gate("ANN", "9.9.9.9"), LoginGate::Refuse { .. }));
        assert_eq!(l.login_gate("bob", "9.9.9.9"), LoginGate::Proceed { delay: Duration::ZERO });
    }

    #[test]
    fn success_clears_the_username_but_not_the_address() {
        let l = limits();
        for _ in 0..3 {
            l.login_failed("ann", "1.2.3.4");
        }
        l.login_succeeded("ann");
        assert_eq!(l.login_gate("ann", "5.6.7.8"), LoginGate::Proceed { delay: Duration::ZERO });
    }

    #[test]
    fn the_request_bucket_refuses_past_the_burst() {
        let l = limits();
        let user = uuid::Uuid::new_v4();
        assert!(l.request(user).is_ok());
        assert!(l.request(user).is_ok());
        assert!(l.request(user).is_err());
        assert!(l.request(uuid::Uuid::new_v4()).is_ok());
    }
}
