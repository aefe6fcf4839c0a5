//! The process's in-memory caches: `moka` caches bounded by entry count and age, each counting its hits and
//! misses under a name, so `/metrics` reports every cache of the process (`bonsai_cache_hits_total`,
//! `bonsai_cache_misses_total`, `bonsai_cache_entries`, by `cache`).

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// A bounded cache that counts its hits and misses.
pub struct Cache<K, V> {
    inner: moka::sync::Cache<K, V>,
    counts: Arc<Counts>,
}

impl<K, V> Clone for Cache<K, V> {
    fn clone(&self) -> Self {
        Cache { inner: self.inner.clone(), counts: Arc::clone(&self.counts) }
    }
}

impl<K, V> std::fmt::Debug for Cache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("name", &self.counts.name).finish_non_exhaustive()
    }
}

struct Counts {
    name: &'static str,
    hits: AtomicU64,
    misses: AtomicU64,
    entries: Box<dyn Fn() -> u64 + Send + Sync>,
}

/// Every live cache of the process, for the metrics (dropped caches fall out).
static REGISTRY: Mutex<Vec<Weak<Counts>>> = Mutex::new(Vec::new());

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache named `name` (the metrics' `cache` label) of at most `capacity` entries, each kept at most
    /// `ttl` after it was written (`None`: until evicted for room).
    pub fn new(name: &'static str, capacity: u64, ttl: Option<Duration>) -> Self {
        let mut builder = moka::sync::Cache::builder().max_capacity(capacity);
        if let Some(ttl) = ttl {
            builder = builder.time_to_live(ttl);
        }
        let inner: moka::sync::Cache<K, V> = builder.build();
        let weak = inner.clone();
        let counts = Arc::new(Counts {
            name,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            entries: Box::new(move || weak.entry_count()),
        });
        let mut registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
        registry.retain(|c| c.strong_count() > 0);
        registry.push(Arc::downgrade(&counts));
        Cache { inner, counts }
    }

    /// The value under `key`, counted as a hit or a miss.
    pub fn get(&self, key: &K) -> Option<V> {
        let found = self.inner.get(key);
        let counter = if found.is_some() { &self.counts.hits } else { &self.counts.misses };
        counter.fetch_add(1, Relaxed);
        found
    }

    /// The value under `key` if `fresh` accepts it (a hit), else a miss (and the stale value is dropped).
    pub fn get_if(&self, key: &K, fresh: impl FnOnce(&V) -> bool) -> Option<V> {
        match self.inner.get(key) {
            Some(value) if fresh(&value) => {
                self.counts.hits.fetch_add(1, Relaxed);
                Some(value)
            }
            Some(_) => {
                self.inner.invalidate(key);
                self.counts.misses.fetch_add(1, Relaxed);
                None
            }
            None => {
                self.counts.misses.fetch_add(1, Relaxed);
                None
            }
        }
    }

    /// The value under `key`, made by `init` on a miss (once: concurrent callers for the same key wait for
    /// the first one's result; a failed `init` caches nothing).
    pub fn try_get_with<E>(&self, key: K, init: impl FnOnce() -> Result<V, E>) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let counter = if self.inner.contains_key(&key) { &self.counts.hits } else { &self.counts.misses };
        counter.fetch_add(1, Relaxed);
        self.inner.try_get_with(key, init)
    }

    /// Whether `key` is cached (not counted).
    pub fn contains(&self, key: &K) -> bool {
        self.inner.contains_key(key)
    }

    /// The value under `key` without counting (for updates).
    pub fn peek(&self, key: &K) -> Option<V> {
        self.inner.get(key)
    }

    pub fn insert(&self, key: K, value: V) {
        self.inner.insert(key, value);
    }

    pub fn remove(&self, key: &K) -> Option<V> {
        self.inner.remove(key)
    }

    pub fn clear(&self) {
        self.inner.invalidate_all();
    }

    /// The cached entries (approximate until pending maintenance runs).
    pub fn len(&self) -> u64 {
        self.inner.run_pending_tasks();
        self.inner.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every cached `(key, value)` (for small caches: loaded engines).
    pub fn entries(&self) -> Vec<(Arc<K>, V)> {
        self.inner.iter().collect()
    }
}

/// One cache's figures as `/metrics` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheFigures {
    pub name: &'static str,
    pub hits: u64,
    pub misses: u64,
    pub entries: u64,
}

/// The figures of every live cache of the process, summed by name (tests run several instances in one
/// process), sorted by name.
pub fn figures() -> Vec<CacheFigures> {
    let live: Vec<Arc<Counts>> = {
        let mut registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
        registry.retain(|c| c.strong_count() > 0);
        registry.iter().filter_map(Weak::upgrade).collect()
    };
    let mut out: Vec<CacheFigures> = Vec::new();
    for counts in live {
        let (hits, misses, entries) = (counts.hits.load(Relaxed), counts.misses.load(Relaxed), (counts.entries)());
        match out.iter_mut().find(|f| f.name == counts.name) {
            Some(f) => {
                f.hits += hits;
                f.misses += misses;
                f.entries += entries;
            }
            None => out.push(CacheFigures { name: counts.name, hits, misses, entries }),
        }
    }
    out.sort_by_key(|f| f.name);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_and_misses_are_counted_and_reported_by_name() {
        let cache: Cache<u32, String> = Cache::new("test_counted", 10, None);
        assert_eq!(cache.get(&1), None);
        cache.insert(1, "one".into());
        assert_eq!(cache.get(&1).as_deref(), Some("one"));
        assert_eq!(cache.get_if(&1, |v| v == "two"), None, "a stale value is a miss");
        assert!(!cache.contains(&1), "and is dropped");
        let f = figures().into_iter().find(|f| f.name == "test_counted").unwrap();
        assert_eq!((f.hits, f.misses), (1, 2));
    }

    #[test]
    fn a_cache_is_bounded_by_its_capacity_and_its_age() {
        let cache: Cache<u32, u32> = Cache::new("test_bounded", 50, Some(Duration::from_millis(50)));
        for i in 0..500 {
            cache.insert(i, i);
        }
        assert!(cache.len() <= 50, "{} entries", cache.len());
        cache.insert(1000, 1);
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(cache.get(&1000), None, "expired");
    }
}
