//! API keys: long-lived secrets a user makes for programs (the OpenAI clients, scripts), accepted as
//! `Authorization: Bearer bsk_...` on `/v1/*` and `/api/qa/*` only. A key acts with its owner's current role.
//!
//! A secret is `bsk_<32 random base62>_<owner id, 32 hex>`: the owner is read from the secret itself, and
//! whether it is accepted is decided on the owner's User aggregate (the SHA-256 of each live key, the role,
//! whether the account is active), never on a view. Only hashes are stored; the secret is shown once.
//!
//! Cost and freshness: each node caches owners' states, keyed by user, with the sequence of the last event
//! folded. A cached state is used only while no newer event that matters (a key created or revoked, a role
//! change, a deactivation) has been heard of on NATS: the same minimum versions as the users-row cache
//! ([`UserCache::min_version`](bonsai_projections::user_cache::UserCache::min_version), fed by
//! `bonsai_workers::follow_user_events`). So a key revoked through any node is refused by every node as soon
//! as it hears of it, and by the node that revoked it before that node answers ([`ApiKeys::refresh`]). A
//! secret that the cached state does not hold is looked up again in the aggregate (a key just created on
//! another node). The time limit bounds only the staleness of a node that missed a notice.
//!
//! When each key was last used is not an event (one per request would swamp the store): it is kept in
//! `api_key_usage`, written at most once a minute per key.

use super::AuthUser;
use crate::{ApiError, AppState};
use bonsai_commands::CommandError;
use bonsai_domain::user::User;
use bonsai_domain::Role;
use bonsai_infra::Cache;
use chrono::{DateTime, Utc};
use rand::distributions::{Alphanumeric, DistString};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// How every API key begins (access tokens are JWTs, which begin with `eyJ`).
pub const SECRET_PREFIX: &str = "bsk_";

/// Random characters of a secret: 32 base62 characters, about 190 bits.
const RANDOM_CHARS: usize = 32;

/// Characters of a secret shown in lists to tell keys apart (`bsk_` and 8 random characters).
pub const DISPLAY_PREFIX_CHARS: usize = 12;

/// How often a key's `last_used_at` is written, at most.
const USAGE_EVERY: Duration = Duration::from_secs(60);

/// Owners (and keys, for their use times) remembered at most: a bound, not a policy.
const CAPACITY: u64 = 100_000;

/// A secret just made: shown once to its creator; only `hash` is kept.
pub struct NewSecret {
    pub secret: String,
    /// The first [`DISPLAY_PREFIX_CHARS`] characters.
    pub prefix: String,
    /// Hex SHA-256 of the secret.
    pub hash: String,
}

/// A new secret for a key of `owner`.
pub fn new_secret(owner: Uuid) -> NewSecret {
    let random = Alphanumeric.sample_string(&mut rand::rngs::OsRng, RANDOM_CHARS);
    let secret = format!("{SECRET_PREFIX}{random}_{}", owner.simple());
    NewSecret { prefix: secret[..DISPLAY_PREFIX_CHARS].to_owned(), hash: hex::encode(digest(&secret)), secret }
}

/// Whether a bearer token is an API key (rather than an access token).
pub fn is_api_key(token: &str) -> bool {
    token.starts_with(SECRET_PREFIX)
}

/// Where API keys are accepted: the OpenAI-compatible surface and the question endpoints.
pub fn accepted_on(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/") || path.starts_with("/api/qa/")
}

/// The owner a secret names, when it has the shape of one.
fn owner_of(secret: &str) -> Option<Uuid> {
    let (random, owner) = secret.strip_prefix(SECRET_PREFIX)?.split_once('_')?;
    let random_ok = random.len() == RANDOM_CHARS && random.bytes().all(|b| b.is_ascii_alphanumeric());
    let owner_ok = owner.len() == 32 && owner.bytes().all(|b| b.is_ascii_hexdigit());
    (random_ok && owner_ok).then(|| owner.parse().ok()).flatten()
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Equality that takes the same time wherever the first difference is.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What authentication reads of a key's owner, as of the event with sequence `version`.
struct Owner {
    version: i64,
    active: bool,
    role: Option<Role>,
    username: String,
    /// `(key id, SHA-256 of its secret, created)` of each live key.
    keys: Vec<(Uuid, [u8; 32], DateTime<Utc>)>,
}

impl Owner {
    fn of(user: User, version: i64) -> Self {
        let keys = user
            .api_keys
            .iter()
            .filter_map(|(id, key)| {
                let hash: [u8; 32] = hex::decode(&key.secret_hash).ok()?.try_into().ok()?;
                Some((*id, hash, key.created_at))
            })
            .collect();
        let username = user.username.map(String::from).unwrap_or_default();
        Owner { version, active: user.active, role: user.role, username, keys }
    }

    /// The key whose secret hashes to `hash`; every key is compared, in constant time.
    fn key(&self, hash: &[u8; 32]) -> Option<(Uuid, DateTime<Utc>)> {
        let mut found = None;
        for (id, stored, created_at) in &self.keys {
            if same(stored, hash) {
                found = Some((*id, *created_at));
            }
        }
        found
    }
}

/// The API keys' owners this node has read, and when each key's use was last written.
pub struct ApiKeys {
    owners: Cache<Uuid, Arc<Owner>>,
    /// Keys whose `last_used_at` this node wrote in the last [`USAGE_EVERY`].
    used: Cache<Uuid, ()>,
}

impl ApiKeys {
    /// `ttl`: the longest a cached owner is used without news of them (as for the users-row cache).
    pub fn new(ttl: Duration) -> Self {
        ApiKeys {
            owners: Cache::new("api_key_owners", CAPACITY, Some(ttl)),
            used: Cache::new("api_key_uses", CAPACITY, Some(USAGE_EVERY)),
        }
    }

    async fn load(&self, state: &AppState, user: Uuid) -> Result<Arc<Owner>, CommandError> {
        let (account, version) = state.commands.load_versioned::<User>(user).await?;
        let exists = account.id.is_some();
        let owner = Arc::new(Owner::of(account, version));
        // Ids of no user (a made-up secret) are not kept: they would only crowd out real owners.
        if exists {
            self.owners.insert(user, owner.clone());
        }
        Ok(owner)
    }

    /// After a command on this node changed `user`'s keys, role or activation: reads the aggregate again and
    /// makes this node use nothing older, so the change holds here before the caller answers (other nodes
    /// follow when they hear of the event on NATS).
    pub(crate) async fn refresh(&self, state: &AppState, user: Uuid) -> Result<(), CommandError> {
        let owner = self.load(state, user).await?;
        state.user_cache.note_event(user, owner.version, true);
        Ok(())
    }

    /// The caller a request with the API key `secret` on `path` acts as.
    pub(crate) async fn authenticate(&self, state: &AppState, path: &str, secret: &str) -> Result<AuthUser, ApiError> {
        if !accepted_on(path) {
            return Err(ApiError::unauthenticated(
                "api_key_not_allowed",
                "API keys are accepted on /v1/* and /api/qa/* only; sign in for the rest",
            ));
        }
        let invalid = || ApiError::unauthenticated("invalid_api_key", "the API key is unknown or revoked");
        let user = owner_of(secret).ok_or_else(invalid)?;
        let hash = digest(secret);
        let min_version = state.user_cache.min_version(user);
        let cached = self.owners.get_if(&user, |owner| owner.version >= min_version);
        let (owner, key) = match cached.map(|owner| (owner.key(&hash), owner)) {
            Some((Some(key), owner)) => (owner, key),
            // Not cached, stale, or a key the cached state does not hold yet: the aggregate decides.
            _ => {
                let owner = self.load(state, user).await?;
                let key = owner.key(&hash).ok_or_else(invalid)?;
                (owner, key)
            }
        };
        if !owner.active {
            return Err(ApiError::unauthenticated("account_disabled", "this account is deactivated"));
        }
        let role = owner.role.ok_or_else(invalid)?;
        let (key_id, created_at) = key;
        state.limits.request(user).await.map_err(ApiError::rate_limited)?;
        self.note_use(&state.pool, key_id, user).await;
        Ok(AuthUser {
            id: user,
            username: owner.username.clone(),
            role,
            session_id: Uuid::nil(),
            created_at,
            api_key: Some(key_id),
        })
    }

    /// Writes that `key` was used now, unless this node did in the last minute (or another node did: the
    /// row is not rewritten within a minute of its last time). A failure is logged, not the caller's.
    async fn note_use(&self, pool: &PgPool, key: Uuid, user: Uuid) {
        if self.used.contains(&key) {
            return;
        }
        self.used.insert(key, ());
        let written = sqlx::query(
            "INSERT INTO api_key_usage (key_id, user_id, last_used_at) VALUES ($1, $2, now()) \
             ON CONFLICT (key_id) DO UPDATE SET last_used_at = EXCLUDED.last_used_at \
             WHERE api_key_usage.last_used_at < EXCLUDED.last_used_at - make_interval(secs => $3)",
        )
        .bind(key)
        .bind(user)
        .bind(USAGE_EVERY.as_secs_f64())
        .execute(pool)
        .await;
        if let Err(error) = written {
            tracing::warn!(%error, %key, "the API key's last use was not recorded");
        }
    }
}

/// When each of `user`'s keys was last used (keys never used are absent).
pub(crate) async fn last_used(pool: &PgPool, user: Uuid) -> Result<HashMap<Uuid, DateTime<Utc>>, sqlx::Error> {
    let rows: Vec<(Uuid, DateTime<Utc>)> =
        sqlx::query_as("SELECT key_id, last_used_at FROM api_key_usage WHERE user_id = $1")
            .bind(user)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_names_its_owner_and_its_prefix_tells_keys_apart() {
        let owner = Uuid::new_v4();
        let (a, b) = (new_secret(owner), new_secret(owner));
        assert_eq!(owner_of(&a.secret), Some(owner));
        assert!(is_api_key(&a.secret));
        assert_eq!(a.secret.len(), SECRET_PREFIX.len() + RANDOM_CHARS + 1 + 32);
        assert!(a.secret.starts_with(&a.prefix) && a.prefix.len() == DISPLAY_PREFIX_CHARS);
        assert_ne!(a.prefix, b.prefix, "8 random characters apart");
        assert_eq!(a.hash, hex::encode(Sha256::digest(a.secret.as_bytes())));
        assert!(!a.hash.contains(&a.secret[4..36]));
    }

    #[test]
    fn malformed_secrets_name_no_owner() {
        let good = new_secret(Uuid::new_v4()).secret;
        for bad in [
            "bsk_".to_owned(),
            good.replacen("bsk_", "bsk-", 1),
            format!("{good}0"),
            good.replacen('_', "", 2),
            good[..good.len() - 1].to_owned() + "g",
            "eyJhbGciOiJIUzI1NiJ9.e30.x".to_owned(),
        ] {
            assert_eq!(owner_of(&bad), None, "{bad}");
        }
    }

    #[test]
    fn keys_are_accepted_on_the_question_and_openai_paths_only() {
        for path in ["/v1/chat/completions", "/v1/models", "/api/qa/history", "/api/qa/ask"] {
            assert!(accepted_on(path), "{path}");
        }
        for path in ["/api/data/datasets", "/api/users/profile/api-keys", "/v10/x", "/api/qaa", "/"] {
            assert!(!accepted_on(path), "{path}");
        }
    }

    #[test]
    fn only_the_hash_of_a_live_key_matches() {
        let (a, b) = (new_secret(Uuid::new_v4()), new_secret(Uuid::new_v4()));
        let mut user = User { active: true, ..User::default() };
        let id = Uuid::from_u128(1);
        let key = bonsai_domain::user::ApiKey {
            name: "k".into(),
            prefix: a.prefix.clone(),
            secret_hash: a.hash.clone(),
            created_at: Utc::now(),
        };
        user.api_keys.insert(id, key);
        let owner = Owner::of(user, 3);
        assert_eq!(owner.key(&digest(&a.secret)).map(|(id, _)| id), Some(id));
        assert_eq!(owner.key(&digest(&b.secret)), None);
        assert!(same(&digest("x"), &digest("x")) && !same(&digest("x"), &digest("y")));
    }
}
