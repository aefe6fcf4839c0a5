use crate::auth::{RateLimits, TokenService};
use bonsai_commands::CommandBus;
use sqlx::PgPool;
use std::sync::Arc;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub commands: CommandBus,
    pub tokens: Arc<TokenService>,
    pub limits: Arc<RateLimits>,
    /// For `/readyz`.
    pub nats: async_nats::Client,
}

impl AppState {
    pub fn new(
        pool: PgPool,
        commands: CommandBus,
        nats: async_nats::Client,
        tokens: crate::TokenSettings,
        limits: crate::RateLimitSettings,
    ) -> Self {
        Self {
            pool,
            commands,
            tokens: Arc::new(TokenService::new(tokens)),
            limits: Arc::new(RateLimits::new(limits)),
            nats,
        }
    }
}
