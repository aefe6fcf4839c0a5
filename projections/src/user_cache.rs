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

/// How long an ended session is remembered: longer than any access token of it can live (tokens last
/// minutes; see `BONSAI_ACCESS_TOKEN_TTL_SECS`).
pub const ENDED_SESSION_MEMORY: Duration = Duration::from_secs(24 * 3600);

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
    /// Sessions signed out (logout, revoked, password changed, ...), and when this node heard of it: their
    /// access tokens are refused although they have not expired yet.
    /// With the reason it ended (`logout`, `deactivated`, ...).
    ended: Mutex<HashMap<Uuid, (Instant, String)>>,
}

impl UserCache {
    pub fn new(ttl: Duration) -> Self {
        Self { entries: Mutex::new(HashMap::new()), ttl, ended: Mutex::new(HashMap::new()) }
    }

    fn ended(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (Instant, String)>> {
        self.ended.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Session `id` was signed out for `reason`: its access tokens are refused from now on.
    pub fn note_session_ended(&self, id: Uuid, reason: &str) {
        let mut ended = self.ended();
        if ended.len() >= CAPACITY {
            ended.retain(|_, (at, _)| at.elapsed() < ENDED_SESSION_MEMORY);
        }
        ended.insert(id, (Instant::now(), reason.to_owned()));
    }

    /// Why session `id` was signed out, if it was.
    pub fn session_ended(&self, id: Uuid) -> Option<String> {
        self.ended().get(&id).map(|(_, reason)| reason.clone())
    }

    /// Remembers the sessions that ended in the last [`ENDED_SESSION_MEMORY`], from the event store (at
    /// start-up: what this node did not hear on NATS while it was down).
    pub async fn load_ended_sessions(&self, pool: &PgPool) -> Result<usize, ProjectionError> {
        let ended: Vec<(String, String)> = sqlx::query_as(
            "SELECT payload -> 'SessionEnded' ->> 'session_id', payload -> 'SessionEnded' ->> 'reason' FROM events \
             WHERE aggregate_type = 'User' AND event_type = 'SessionEnded' AND recorded_at > now() - make_interval(secs => $1)",
        )
        .bind(ENDED_SESSION_MEMORY.as_secs_f64())
        .fetch_all(pool)
        .await?;
        for (id, reason) in &ended {
            if let Ok(id) = id.parse() {
                self.note_session_ended(id, reason);
            }
        }
        Ok(ended.len())
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

    #[test]
    fn an_ended_session_is_remembered() {
        let cache = UserCache::new(Duration::from_secs(60));
        let (ended, live) = (Uuid::new_v4(), Uuid::new_v4());
        cache.note_session_ended(ended, "logout");
        assert_eq!(cache.session_ended(ended).as_deref(), Some("logout"));
        assert_eq!(cache.session_ended(live), None);
    }
}
