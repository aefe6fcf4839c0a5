use crate::auth::{RateLimits, TokenService};
use bonsai_commands::{CommandBus, FileStore};
use sqlx::PgPool;
use std::sync::Arc;

/// The default upload limit: 100 MiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 100 << 20;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub commands: CommandBus,
    pub tokens: Arc<TokenService>,
    pub limits: Arc<RateLimits>,
    /// For `/readyz`.
    pub nats: async_nats::Client,
    /// Uploaded dataset files (see [`AppState::with_datasets`]).
    pub files: Arc<dyn FileStore>,
    /// Largest dataset upload, in bytes.
    pub max_upload_bytes: u64,
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
            files: Arc::new(crate::routes::NoFileStore),
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
        }
    }

    /// Where dataset uploads go and how large one may be. Without this, uploads answer 500.
    pub fn with_datasets(mut self, files: Arc<dyn FileStore>, max_upload_bytes: u64) -> Self {
        self.files = files;
        self.max_upload_bytes = max_upload_bytes;
        self
    }
}
