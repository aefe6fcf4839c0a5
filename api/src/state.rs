use crate::auth::{ApiKeys, LiveSessions, RateLimits, TokenService};
use bonsai_commands::CommandBus;
use bonsai_infra::{FileStore, LocalModels};
use bonsai_projections::user_cache::UserCache;
use sqlx::PgPool;
use std::sync::Arc;

/// The default upload limit: 100 MiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 100 << 20;

/// The longest a cached users view row is used without news of its user (see [`UserCache`]).
pub(crate) const DEFAULT_USER_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(2);

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub commands: CommandBus,
    pub tokens: Arc<TokenService>,
    pub limits: Arc<RateLimits>,
    /// The users view rows that authentication reads, kept as fresh as the view (feed it with
    /// `bonsai_workers::follow_user_events`; unfed, rows are re-read after its time limit).
    pub user_cache: Arc<UserCache>,
    /// The sessions this node has seen exist (an access token must name one).
    pub sessions: Arc<LiveSessions>,
    /// API keys' owners as their User aggregates have them, kept fresh by `user_cache`'s notices.
    pub api_keys: Arc<ApiKeys>,
    /// For `/readyz`.
    pub nats: async_nats::Client,
    /// Uploaded dataset files (see [`AppState::with_datasets`]).
    pub files: Arc<dyn FileStore>,
    /// Largest dataset upload, in bytes.
    pub max_upload_bytes: u64,
    /// Installed base models, for `tokenizer_model_id` (see [`AppState::with_models`]).
    pub models: Option<LocalModels>,
    /// The platform's data folder (training runs are under `training/<task id>/`).
    pub data_dir: Option<std::path::PathBuf>,
    /// Request counts and latencies for `/metrics`.
    pub http_metrics: Arc<crate::metrics::HttpMetrics>,
    /// The NATS subject prefix of this instance (answers to questions are awaited on its event subjects).
    pub subjects: bonsai_projections::Subjects,
    /// Figures of this node that only the binary can read (such as the models it holds in memory), for
    /// `/metrics`: `(name, help, value)` gauges.
    pub node_gauges: Option<NodeGauges>,
    /// Virus scanning of uploads (see [`AppState::with_virus_scan`]); none: uploads are not scanned.
    pub virus_scan: Option<Arc<VirusScan>>,
    /// Upload scans by result, for `/metrics`.
    pub scan_metrics: Arc<crate::metrics::ScanMetrics>,
    /// The built web console, served at `/` (see [`crate::console`]); none: `/` is a JSON 404.
    pub console_dir: Option<std::path::PathBuf>,
    /// This node's name in the `nodes` table and the lease every node holds (see [`bonsai_infra::nodes`]).
    pub node: NodeIdentity,
    /// Proxies whose `X-Forwarded-For` names the client (see [`crate::TrustedProxies`]).
    pub trusted_proxies: crate::TrustedProxies,
}

/// How uploads are scanned.
pub struct VirusScan {
    pub clamd: bonsai_infra::Clamd,
    /// Whether an upload is refused (503 `virus_scan_unavailable`) when the scanner cannot give a verdict;
    /// otherwise it is accepted unscanned, with a warning in the log and a `failed` scan in `/metrics`.
    pub required: bool,
}

/// Who this node is among the deployment's nodes.
#[derive(Clone)]
pub struct NodeIdentity {
    pub name: String,
    pub lease: std::time::Duration,
}

impl Default for NodeIdentity {
    fn default() -> Self {
        Self { name: bonsai_infra::nodes::instance_name("bonsai"), lease: std::time::Duration::from_secs(15) }
    }
}

/// See [`AppState::node_gauges`].
pub type NodeGauges = Arc<dyn Fn() -> Vec<(&'static str, &'static str, f64)> + Send + Sync>;

impl AppState {
    pub fn new(
        pool: PgPool,
        commands: CommandBus,
        nats: async_nats::Client,
        tokens: crate::TokenSettings,
        limits: RateLimits,
    ) -> Self {
        Self {
            pool,
            commands,
            tokens: Arc::new(TokenService::new(tokens)),
            limits: Arc::new(limits),
            user_cache: Arc::new(UserCache::new(DEFAULT_USER_CACHE_TTL)),
            sessions: Arc::default(),
            api_keys: Arc::new(ApiKeys::new(DEFAULT_USER_CACHE_TTL)),
            nats,
            files: Arc::new(crate::routes::NoFileStore),
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            models: None,
            subjects: bonsai_projections::Subjects::new("bonsai"),
            http_metrics: Arc::default(),
            data_dir: None,
            node_gauges: None,
            virus_scan: None,
            scan_metrics: Arc::default(),
            console_dir: None,
            node: NodeIdentity::default(),
            trusted_proxies: crate::TrustedProxies::default(),
        }
    }

    /// Believes `X-Forwarded-For` from these proxies.
    pub fn with_trusted_proxies(mut self, proxies: crate::TrustedProxies) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// This node's name among the deployment's nodes, and their lease.
    pub fn with_node(mut self, node: NodeIdentity) -> Self {
        self.node = node;
        self
    }

    /// Gauges of this node for `/metrics`.
    pub fn with_node_gauges(mut self, gauges: NodeGauges) -> Self {
        self.node_gauges = Some(gauges);
        self
    }

    /// Where dataset uploads go and how large one may be. Without this, uploads answer 500.
    pub fn with_datasets(mut self, files: Arc<dyn FileStore>, max_upload_bytes: u64) -> Self {
        self.files = files;
        self.max_upload_bytes = max_upload_bytes;
        self
    }

    /// Scans every upload with `clamd` before anything else reads it; an infected file is refused (422
    /// `file_infected`), never stored, and raises a critical `infected_upload` alert.
    pub fn with_virus_scan(mut self, scan: VirusScan) -> Self {
        self.virus_scan = Some(Arc::new(scan));
        self
    }

    /// Where base models are installed. Without this, every `tokenizer_model_id` is unknown.
    pub fn with_models(mut self, models: LocalModels) -> Self {
        self.models = Some(models);
        self
    }

    /// Serves the web console built into `dir` (Vite's `dist/`) at `/`.
    pub fn with_console_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.console_dir = Some(dir.into());
        self
    }

    /// The data folder, where trained adapters are read from for download.
    pub fn with_data_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// The NATS subject prefix events are published under.
    pub fn with_nats_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.subjects = bonsai_projections::Subjects::new(prefix);
        self
    }

    /// How long a cached users view row (or API key owner) may be used without news of its user.
    pub fn with_user_cache_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.user_cache = Arc::new(UserCache::new(ttl));
        self.api_keys = Arc::new(ApiKeys::new(ttl));
        self
    }
}
