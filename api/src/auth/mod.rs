//! Authentication: JWT access tokens, rotating refresh tokens, API keys, the authenticated-user extractor
//! and login throttling.

pub mod api_keys;
mod extractor;
mod rate_limit;
mod sessions;
mod tokens;

pub use api_keys::ApiKeys;
pub use extractor::AuthUser;
pub use rate_limit::{RateLimitSettings, RateLimits};
pub(crate) use sessions::end_sessions;
pub use sessions::LiveSessions;
pub use tokens::{AccessClaims, RefreshToken, TokenService, TokenSettings};

use crate::{ApiError, AppState};
use rate_limit::LoginGate;

/// Refuses (429) or slows down a login attempt according to recent failures.
pub(crate) async fn rate_limit_gate(state: &AppState, username: &str, address: &str) -> Result<(), ApiError> {
    match state.limits.login_gate(username, address).await {
        LoginGate::Refuse { retry_after } => Err(ApiError::rate_limited(retry_after)),
        LoginGate::Proceed { delay } => {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok(())
        }
    }
}
