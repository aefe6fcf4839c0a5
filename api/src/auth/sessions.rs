//! Which sessions an access token may name: a session that exists (was started by a login and has not
//! ended). A correctly signed token is not enough on its own: a token naming a session that never existed
//! (a leaked secret, a token minted by hand) is refused, and a signed-out session is refused by the node
//! that signed it out before that node answers.
//!
//! Cost: a session is looked up in its User aggregate (one snapshot row) the first time this node sees it,
//! then remembered as live; ended sessions are remembered apart ([`UserCache::note_session_ended`], fed by
//! every node's `SessionEnded` notices and by [`end_sessions`] on this node) and win over the live memory,
//! so remembering a live session never outlasts its sign-out.

use crate::AppState;
use bonsai_commands::{CommandError, CommandMetadata};
use bonsai_domain::user::{SessionEndReason, UserCommand};
use bonsai_infra::Cache;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Sessions remembered at most (a bound, not a policy: past it the least used are looked up again).
const CAPACITY: u64 = 100_000;

/// Sessions this node has seen exist, by id: `(user, when it was looked up)`.
pub struct LiveSessions {
    live: Cache<Uuid, (Uuid, Instant)>,
}

impl Default for LiveSessions {
    fn default() -> Self {
        LiveSessions { live: Cache::new("live_sessions", CAPACITY, None) }
    }
}

impl LiveSessions {
    /// Whether `session` is a session of `user` that was started and, as far as the event store says, not
    /// ended. Remembered for `remember` (an access token's lifetime: no token of it outlives that).
    pub async fn exists(
        &self,
        state: &AppState,
        user: Uuid,
        session: Uuid,
        remember: Duration,
    ) -> Result<bool, CommandError> {
        if let Some((owner, _)) = self.live.get_if(&session, |(_, at)| at.elapsed() < remember) {
            return Ok(owner == user);
        }
        let account = state.commands.load::<bonsai_domain::user::User>(user).await?;
        let exists = account.sessions.contains_key(&session);
        if exists {
            self.live.insert(session, (user, Instant::now()));
        }
        Ok(exists)
    }

    fn forget(&self, sessions: &[Uuid]) {
        for id in sessions {
            self.live.remove(id);
        }
    }
}

/// The reason string a `SessionEnded` event carries (as the notices relay it).
fn reason_name(reason: SessionEndReason) -> String {
    serde_json::to_value(reason).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Executes a user `command` that may end sessions (sign-out, revocation, password change, deactivation),
/// and makes this node refuse the access tokens of every session it ended before the caller answers: the
/// other nodes refuse them once the relayed `SessionEnded` reaches them (see `bonsai_workers::notices`).
pub(crate) async fn end_sessions(
    state: &AppState,
    user: Uuid,
    command: UserCommand,
    meta: &CommandMetadata,
) -> Result<(), CommandError> {
    let (known, reason): (Option<Vec<Uuid>>, SessionEndReason) = match &command {
        UserCommand::EndSession { session_id, reason } => (Some(vec![*session_id]), *reason),
        UserCommand::EndAllSessions { reason, .. } => (None, *reason),
        UserCommand::ChangePassword { .. } => (None, SessionEndReason::PasswordChanged),
        UserCommand::SetActive { active: false, .. } => (None, SessionEndReason::Deactivated),
        _ => {
            state.commands.execute(user, command, meta).await?;
            return Ok(());
        }
    };
    let ended = match known {
        Some(ids) => {
            state.commands.execute(user, command, meta).await?;
            ids
        }
        None => {
            // The sessions the command removed from the user: those it ended.
            let before: HashSet<Uuid> =
                state.commands.load::<bonsai_domain::user::User>(user).await?.sessions.into_keys().collect();
            let after = state.commands.execute_and_get(user, command, meta).await?;
            before.into_iter().filter(|id| !after.sessions.contains_key(id)).collect()
        }
    };
    let reason = reason_name(reason);
    for id in &ended {
        state.user_cache.note_session_ended(*id, &reason);
    }
    state.sessions.forget(&ended);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_named_as_the_events_name_them() {
        assert_eq!(reason_name(SessionEndReason::Logout), "logout");
        assert_eq!(reason_name(SessionEndReason::Deactivated), "deactivated");
        assert_eq!(reason_name(SessionEndReason::RevokedByAdmin), "revoked_by_admin");
    }
}
