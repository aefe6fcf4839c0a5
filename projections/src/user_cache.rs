//! Rows of the users view kept in memory for authentication (every request reads its user's role and
//! whether the account is active), exactly as fresh as the view itself.
//!
//! What authentication reads is the user's role, whether the account is active, and the immutable
//! username and creation time; the cache answers for those only (profile fields of a cached row may be
//! older: never serve them as a profile).
//!
//! Freshness does not rest on a timer: whenever an event that changes what authentication reads is
//! seen on NATS (the relay publishes each event there as it commits, before any projection applies it),
//! [`UserCache::note_event`] raises the version a cached row of that user must have. A row older than
//! that is read again from the view, so a role change or a deactivation is enforced from the moment the
//! view shows it, as without a cache. The time limit only bounds the staleness of a node that missed a
//! notice (NATS down: the view itself stops moving then).

use crate::users::{self, UserRow};
use crate::ProjectionError;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Beyond this many users the cache starts over (a bound, not a policy: it holds the active users).
const CAPACITY: usize = 100_000;

#[derive(Default)]
struct Entry {
    row: Option<(UserRow, Instant)>,
    /// The newest event sequence seen for this user: a row with an older version is not used.
    min_version: i64,
}

pub struct UserCache {
    entries: Mutex<HashMap<Uuid, Entry>>,
    ttl: Duration,
}

impl UserCache {
    pub fn new(ttl: Duration) -> Self {
        Self { entries: Mutex::new(HashMap::new()), ttl }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Entry>> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether an event of this type changes what authentication reads.
    pub fn matters(event_type: &str) -> bool {
        matches!(event_type, "UserRegistered" | "RoleChanged" | "UserDeactivated" | "UserActivated")
    }

    /// Event `event_type` with `sequence` exists for user `id`: if it [`matters`](Self::matters), rows
    /// older than it are stale from now on.
    pub fn note_event(&self, id: Uuid, sequence: i64, event_type: &str) {
        if !Self::matters(event_type) {
            return;
        }
        let mut entries = self.entries();
        if entries.len() >= CAPACITY && !entries.contains_key(&id) {
            entries.clear();
        }
        let entry = entries.entry(id).or_default();
        entry.min_version = entry.min_version.max(sequence);
    }

    /// The user's row of the view, current in what authentication reads: from memory while it is,
    /// otherwise read (and kept).
    pub async fn find(&self, pool: &PgPool, id: Uuid) -> Result<Option<UserRow>, ProjectionError> {
        if let Some(entry) = self.entries().get(&id) {
            if let Some((row, fetched)) = &entry.row {
                if row.version >= entry.min_version && fetched.elapsed() < self.ttl {
                    return Ok(Some(row.clone()));
                }
            }
        }
        let row = users::find(pool, id).await?;
        if let Some(row) = &row {
            let mut entries = self.entries();
            if entries.len() >= CAPACITY && !entries.contains_key(&id) {
                entries.clear();
            }
            entries.entry(id).or_default().row = Some((row.clone(), Instant::now()));
        }
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_events_that_change_authentication_invalidate() {
        for kind in ["UserRegistered", "RoleChanged", "UserDeactivated", "UserActivated"] {
            assert!(UserCache::matters(kind), "{kind}");
        }
        for kind in ["ProfileUpdated", "SessionStarted", "SessionRefreshed", "SessionEnded", "PasswordChanged"] {
            assert!(!UserCache::matters(kind), "{kind}");
        }
        let cache = UserCache::new(Duration::from_secs(60));
        let id = Uuid::new_v4();
        cache.note_event(id, 7, "ProfileUpdated");
        assert!(cache.entries().get(&id).is_none(), "nothing recorded for a profile change");
        cache.note_event(id, 9, "RoleChanged");
        cache.note_event(id, 8, "UserDeactivated");
        assert_eq!(cache.entries().get(&id).map(|e| e.min_version), Some(9), "the newest wins");
    }
}
