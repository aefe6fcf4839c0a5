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
use bonsai_domain::user::UserEvent;
use bonsai_infra::Cache;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long an ended session is remembered: longer than any access token of it can live (tokens last
/// minutes; see `BONSAI_ACCESS_TOKEN_TTL_SECS`).
pub const ENDED_SESSION_MEMORY: Duration = Duration::from_secs(24 * 3600);

/// Users whose rows are kept at most (a bound, not a policy: it holds the active users), and of ended
/// sessions remembered before the oldest are dropped.
const CAPACITY: usize = 100_000;

pub struct UserCache {
    /// Rows as read from the view, for at most the TTL.
    rows: Cache<Uuid, UserRow>,
    /// The newest event sequence that changed what authentication reads, by user: a row with an older
    /// version is not used. Kept apart from the rows so that a read racing a notice cannot lower it.
    min_versions: Cache<Uuid, i64>,
    /// Sessions signed out (logout, revoked, password changed, ...), and when this node heard of it: their
    /// access tokens are refused although they have not expired yet.
    /// With the reason it ended (`logout`, `deactivated`, ...).
    ended: Mutex<HashMap<Uuid, (Instant, String)>>,
}

impl UserCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            rows: Cache::new("user_rows", CAPACITY as u64, Some(ttl)),
            min_versions: Cache::new("user_min_versions", CAPACITY as u64, None),
            ended: Mutex::new(HashMap::new()),
        }
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

    /// Whether an event changes what authentication reads (API keys included: a key's owner state is cached
    /// by the API on the same versions).
    pub fn matters(event: &UserEvent) -> bool {
        matches!(
            event,
            UserEvent::UserRegistered { .. }
                | UserEvent::RoleChanged { .. }
                | UserEvent::UserDeactivated
                | UserEvent::UserActivated
                | UserEvent::ApiKeyCreated { .. }
                | UserEvent::ApiKeyRevoked { .. }
        )
    }

    /// The version a cached state of user `id` must have reached to be used (0: no news of the user): the
    /// same notices keep the API key owners' cache fresh (`bonsai_api::auth::ApiKeys`).
    pub fn min_version(&self, id: Uuid) -> i64 {
        self.min_versions.peek(&id).unwrap_or(0)
    }

    /// An event with `sequence` happened to user `id`; when it `matters` (see [`UserCache::matters`]), rows
    /// older than it are stale from now on.
    pub fn note_event(&self, id: Uuid, sequence: i64, matters: bool) {
        if !matters {
            return;
        }
        let newest = self.min_versions.peek(&id).map_or(sequence, |known| known.max(sequence));
        self.min_versions.insert(id, newest);
        if self.rows.peek(&id).is_some_and(|row| row.version < newest) {
            self.rows.remove(&id);
        }
    }

    /// The user's row of the view, current in what authentication reads: from memory while it is,
    /// otherwise read (and kept).
    pub async fn find(&self, pool: &PgPool, id: Uuid) -> Result<Option<UserRow>, ProjectionError> {
        let min_version = self.min_versions.peek(&id).unwrap_or(0);
        if let Some(row) = self.rows.get_if(&id, |row| row.version >= min_version) {
            return Ok(Some(row));
        }
        let row = users::find(pool, id).await?;
        if let Some(row) = &row {
            self.rows.insert(id, row.clone());
        }
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_events_that_change_authentication_invalidate() {
        use bonsai_domain::user::SessionEndReason;
        use bonsai_domain::Role;
        let revoked = UserEvent::ApiKeyRevoked { key_id: Uuid::nil(), by: Uuid::nil() };
        for event in
            [UserEvent::RoleChanged { role: Role::User }, UserEvent::UserDeactivated, UserEvent::UserActivated, revoked]
        {
            assert!(UserCache::matters(&event), "{event:?}");
        }
        let ended = UserEvent::SessionEnded { session_id: Uuid::nil(), reason: SessionEndReason::Logout };
        for event in [UserEvent::ProfileUpdated { email: None, display_name: None }, ended] {
            assert!(!UserCache::matters(&event), "{event:?}");
        }
        let cache = UserCache::new(Duration::from_secs(60));
        let id = Uuid::new_v4();
        cache.note_event(id, 7, false);
        assert_eq!(cache.min_versions.peek(&id), None, "nothing recorded for a profile change");
        cache.note_event(id, 9, true);
        cache.note_event(id, 8, true);
        assert_eq!(cache.min_versions.peek(&id), Some(9), "the newest wins");
        assert_eq!(cache.min_version(id), 9);
        assert_eq!(cache.min_version(Uuid::new_v4()), 0);
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
