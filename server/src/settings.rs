//! Configuration in layers: built-in defaults, then an optional TOML file (`BONSAI_CONFIG`, default
//! `bonsai.toml` if present), then `BONSAI__SECTION__KEY` environment overrides, then the well-known
//! variables (`DATABASE_URL`, `NATS_URL`, `BONSAI_HTTP_ADDR`, ...), then command-line flags.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// A secret: never printed, never logged.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "Secret(<unset>)" } else { "Secret([redacted])" })
    }
}

/// What a node runs (`--role`, `BONSAI_ROLE`); see docs/operations.md.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// The HTTP API, the relay (one leader among the nodes that run it) and the projections.
    Api,
    /// Dataset validation, training, model export and testing, answering questions; HTTP only for
    /// `/healthz`, `/readyz` and `/metrics`.
    Workers,
    /// Both (one machine).
    #[default]
    All,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Api => "api",
            NodeRole::Workers => "workers",
            NodeRole::All => "all",
        }
    }
    /// Answers the API and runs the relay and the projections.
    pub fn runs_api(self) -> bool {
        self != NodeRole::Workers
    }
    /// Runs the consumers that do the work: validation, training, models, questions.
    pub fn runs_workers(self) -> bool {
        self != NodeRole::Api
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// What this node runs.
    pub role: NodeRole,
    pub database_url: String,
    pub database_max_connections: u32,
    pub nats_url: String,
    /// Subject prefix and stream name root: `<prefix>.events.<aggregate_type>.<id>`.
    pub nats_prefix: String,
    /// Redis, for the answer cache shared by every node (empty: each node caches in its own memory).
    pub redis_url: String,
    /// How long a cached answer is kept (seconds).
    pub answer_cache_ttl_secs: u64,
    /// The devices whose training tasks this node runs, comma-separated (`cpu`, `cuda`; empty: none). A
    /// device listed on a node without it fails its tasks at once (`device_unavailable`); a device no node
    /// lists leaves its tasks queued.
    pub training_devices: String,
    /// Threads a CPU training run computes on (0: one per core). Fewer leave cores to serving and the API.
    pub training_threads: usize,
    /// Every node renews a lease in PostgreSQL every third of this (seconds); a node that has not renewed
    /// it for this long is gone: its training runs show as interrupted (JetStream gives them to another
    /// worker after four leases), and retries of the keyed requests it was answering are settled.
    pub node_lease_secs: f64,
    /// Intra-op threads of each ONNX Runtime session that answers questions (0: one per core).
    pub serving_threads: usize,
    /// Rows of each deployed model's shared decode batch on this node: how many answers it generates at once
    /// (continuous batching over one copy of the weights; each row holds its own KV cache). 0 turns batching
    /// off: every model is served like an export that cannot batch, by `serving_sessions` sessions.
    pub serving_slots: usize,
    /// Tokens (prompt and answer) each row of a decode batch holds (0: the model's context, at most 2048).
    /// The KV cache takes slots x slot tokens x the model's bytes per token (SmolLM2-135M: 90 KiB) at load.
    pub serving_slot_tokens: usize,
    /// Sessions per deployed model whose export cannot batch (no fused attention): how many answers it
    /// generates at once (each holds a copy of the weights).
    pub serving_sessions: usize,
    pub http_addr: String,
    /// Serve HTTPS with this PEM certificate chain (and `tls_key`); unset: plain HTTP (behind a TLS proxy).
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// HS256 secret. Unset: a random one per process (tokens do not survive a restart) and a warning.
    pub jwt_secret: Secret,
    pub access_token_ttl_secs: i64,
    pub refresh_token_ttl_secs: i64,
    pub data_dir: PathBuf,
    /// Installed base models, one Hugging Face folder each, named by model id. Default `<data_dir>/models`.
    pub models_dir: Option<PathBuf>,
    /// The built web console served at `/` (`BONSAI__CONSOLE_DIR`); unset: `web/dist` when it holds a build.
    pub console_dir: Option<PathBuf>,
    /// The longest (ms) a node uses a cached user row (role, active) without news of that user; news
    /// arrives on NATS with every role change or deactivation, so this only matters when NATS is down.
    pub auth_cache_ttl_ms: u64,
    /// How often `serve` removes stored files that no event names (seconds; 0 = never).
    pub file_gc_interval_secs: u64,
    /// How old an unreferenced file must be before it is removed (seconds).
    pub file_gc_grace_secs: u64,
    /// Largest dataset upload in bytes (`BONSAI__MAX_UPLOAD_BYTES`); larger ones are refused with 413.
    pub max_upload_bytes: u64,
    pub admin_username: String,
    pub admin_password: Secret,
    /// `text` or `json`.
    pub log_format: String,
    pub rate_limit: RateLimit,
    pub alerts: Alerts,
    pub virus_scan: VirusScan,
    pub encryption: Encryption,
    pub http: Http,
}

/// The HTTP server's limits on slow and greedy clients (`BONSAI__HTTP__<KEY>`; see `crate::http`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    /// The longest (seconds) a client may take to send a request's headers (and its first byte).
    pub header_read_timeout_secs: f64,
    /// A connection on which nothing moves either way this long (seconds) is closed.
    pub idle_timeout_secs: f64,
    /// Connections one client address may have open at once (0: no cap); trusted proxies are not capped.
    pub max_connections_per_address: usize,
    /// Reverse proxies (comma-separated addresses or CIDR blocks, e.g. `127.0.0.1,10.0.0.0/8`) whose
    /// `X-Forwarded-For` names the client: for per-address login lockout and sessions' addresses. Empty (the
    /// default): the header is ignored, since anyone could write it.
    pub trusted_proxies: String,
}

impl Default for Http {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: 15.0,
            idle_timeout_secs: 300.0,
            max_connections_per_address: 256,
            trusted_proxies: String::new(),
        }
    }
}

impl Http {
    /// The trusted proxies, parsed.
    pub fn trusted_proxies(&self) -> anyhow::Result<bonsai_api::TrustedProxies> {
        bonsai_api::TrustedProxies::parse(&self.trusted_proxies)
            .map_err(|e| anyhow::anyhow!("BONSAI__HTTP__TRUSTED_PROXIES: {e}"))
    }

    pub fn limits(&self) -> crate::http::Limits {
        let secs = |s: f64| std::time::Duration::from_secs_f64(s.max(0.001));
        crate::http::Limits {
            header_read_timeout: secs(self.header_read_timeout_secs),
            idle_timeout: secs(self.idle_timeout_secs),
            max_connections_per_address: self.max_connections_per_address,
        }
    }
}

/// Encryption at rest of sensitive fields (`BONSAI__ENCRYPTION__<KEY>`; see `bonsai_crypto::sealed`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encryption {
    /// `id:base64-of-32-random-bytes` entries, comma-separated; the first seals, all open (rotation: put a
    /// new key in front, keep the old ones). Unset: sensitive fields are stored plain.
    pub keys: Secret,
    /// The secret behind look-up digests of sealed values (finding an e-mail address); at least 16
    /// characters, required with `keys`, and kept across key rotations.
    pub index_key: Secret,
}

impl Encryption {
    /// The key ring these settings describe (none when no keys are set).
    pub fn key_ring(&self) -> anyhow::Result<Option<bonsai_crypto::KeyRing>> {
        if self.keys.expose().trim().is_empty() {
            return Ok(None);
        }
        anyhow::ensure!(
            !self.index_key.is_empty(),
            "BONSAI__ENCRYPTION__INDEX_KEY must be set with BONSAI__ENCRYPTION__KEYS"
        );
        let ring = bonsai_crypto::KeyRing::parse(self.keys.expose(), self.index_key.expose())
            .map_err(|e| anyhow::anyhow!("BONSAI__ENCRYPTION__KEYS / BONSAI__ENCRYPTION__INDEX_KEY: {e}"))?;
        Ok(Some(ring))
    }

    /// Installs the key ring for this process (before anything reads or writes events).
    pub fn install(&self) -> anyhow::Result<()> {
        bonsai_crypto::keyring::install(self.key_ring()?);
        Ok(())
    }
}

/// Virus scanning of uploads through a ClamAV daemon (`BONSAI__VIRUS_SCAN__<KEY>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirusScan {
    /// Where `clamd` listens: `tcp://host:3310` or `unix:///run/clamav/clamd.ctl` (unset: no scanning). Its
    /// `StreamMaxLength` must be at least `max_upload_bytes`.
    pub clamd: Option<String>,
    /// Refuse uploads (503 `virus_scan_unavailable`) while the scanner gives no verdict; `false` accepts
    /// them unscanned, with a warning.
    pub required: bool,
    /// The longest wait (seconds) to connect to the scanner and for each of its reads and writes.
    pub timeout_secs: f64,
}

impl Default for VirusScan {
    fn default() -> Self {
        Self { clamd: None, required: true, timeout_secs: 30.0 }
    }
}

/// The alert worker's thresholds (`BONSAI__ALERTS__<KEY>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alerts {
    /// A model test this much (absolute accuracy) below the model's previous test raises `accuracy_drop`.
    pub accuracy_drop: f64,
    /// A model test under this accuracy raises `accuracy_below_minimum` (unset: never).
    pub min_accuracy: Option<f64>,
    /// Share of the data folder's disk in use that raises `disk_space_low` (above 1: never).
    pub disk_used_ratio: f64,
    /// Share of the memory in use that raises `memory_high` (above 1: never).
    pub memory_used_ratio: f64,
    /// How often each node checks its disk and memory (seconds; 0: never).
    pub check_every_secs: f64,
    /// This node's name in resource alerts (default: the host name).
    pub node_name: Option<String>,
    /// 5xx answers of a node within `server_errors_window_secs` that raise `server_errors` (0: never).
    pub server_errors: u64,
    /// The sliding window (seconds) `server_errors` counts over; the alert resolves after a window without one.
    pub server_errors_window_secs: f64,
    /// How long (seconds) PostgreSQL, NATS or Redis may not answer a node before `dependency_unreachable`.
    pub dependency_down_secs: f64,
    /// Where each raised, acknowledged and resolved alert is POSTed as JSON (unset: nowhere).
    pub webhook_url: Option<String>,
    /// Signs webhook bodies (`Bonsai-Signature: sha256=<HMAC>`) when set.
    pub webhook_secret: Option<Secret>,
}

impl Default for Alerts {
    /// The alert worker's own defaults.
    fn default() -> Self {
        let worker = bonsai_workers::AlertSettings::default();
        Self {
            accuracy_drop: worker.accuracy_drop,
            min_accuracy: worker.min_accuracy,
            disk_used_ratio: worker.disk_used_ratio,
            memory_used_ratio: worker.memory_used_ratio,
            check_every_secs: worker.check_every.as_secs_f64(),
            node_name: None,
            server_errors: 10,
            server_errors_window_secs: 60.0,
            dependency_down_secs: 60.0,
            webhook_url: None,
            webhook_secret: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub requests_per_second: u32,
    pub burst: u32,
    pub login_slowdown_after: u32,
    pub login_lockout_after: u32,
    pub login_lockout_after_per_address: u32,
    pub login_lockout_secs: u64,
    /// How long failed logins count towards a lockout.
    pub login_window_secs: u64,
    pub questions_per_minute: u32,
    pub question_burst: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            role: NodeRole::All,
            database_url: "postgres://postgres@127.0.0.1:5432/bonsai".into(),
            database_max_connections: 20,
            nats_url: "nats://127.0.0.1:4222".into(),
            nats_prefix: "bonsai".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            answer_cache_ttl_secs: 24 * 3600,
            training_devices: "cpu,cuda".into(),
            training_threads: 0,
            node_lease_secs: 15.0,
            serving_threads: 0,
            serving_slots: 8,
            serving_slot_tokens: 0,
            serving_sessions: 2,
            http_addr: "127.0.0.1:8080".into(),
            tls_cert: None,
            tls_key: None,
            jwt_secret: Secret::default(),
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            data_dir: PathBuf::from("data"),
            models_dir: None,
            console_dir: None,
            auth_cache_ttl_ms: 2000,
            file_gc_interval_secs: 3600,
            file_gc_grace_secs: 24 * 3600,
            max_upload_bytes: 100 << 20,
            admin_username: "admin".into(),
            admin_password: Secret::default(),
            log_format: "text".into(),
            rate_limit: RateLimit {
                requests_per_second: 50,
                burst: 100,
                login_slowdown_after: 3,
                login_lockout_after: 8,
                login_lockout_after_per_address: 30,
                login_lockout_secs: 300,
                login_window_secs: 900,
                questions_per_minute: 60,
                question_burst: 20,
            },
            alerts: Alerts::default(),
            virus_scan: VirusScan::default(),
            encryption: Encryption::default(),
            http: Http::default(),
        }
    }
}

/// Well-known variables and the setting each one sets.
const WELL_KNOWN: &[(&str, &str)] = &[
    ("DATABASE_URL", "database_url"),
    ("NATS_URL", "nats_url"),
    ("BONSAI_NATS_PREFIX", "nats_prefix"),
    ("REDIS_URL", "redis_url"),
    ("BONSAI_HTTP_ADDR", "http_addr"),
    ("BONSAI_JWT_SECRET", "jwt_secret"),
    ("BONSAI_DATA_DIR", "data_dir"),
    ("BONSAI_MODELS_DIR", "models_dir"),
    ("BONSAI_ADMIN_USERNAME", "admin_username"),
    ("BONSAI_ADMIN_PASSWORD", "admin_password"),
    ("BONSAI_LOG_FORMAT", "log_format"),
    ("BONSAI_ROLE", "role"),
];

impl Settings {
    /// Where base models are installed.
    pub fn models_dir(&self) -> PathBuf {
        self.models_dir.clone().unwrap_or_else(|| self.data_dir.join("models"))
    }

    /// Where the built web console is, if anywhere.
    pub fn console_dir(&self) -> Option<PathBuf> {
        let dir = self.console_dir.clone().unwrap_or_else(|| PathBuf::from("web/dist"));
        dir.join("index.html").is_file().then_some(dir)
    }

    /// The settings from the defaults, `bonsai.toml` (or `BONSAI_CONFIG`) and the environment (boxed: a
    /// figment error is large and this is read once).
    pub fn load() -> Result<Self, Box<figment::Error>> {
        let file = std::env::var("BONSAI_CONFIG").unwrap_or_else(|_| "bonsai.toml".into());
        let mut figment = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file(file))
            .merge(Env::prefixed("BONSAI__").split("__").lowercase(true));
        for (var, key) in WELL_KNOWN {
            if let Ok(value) = std::env::var(var) {
                figment = figment.merge((*key, value));
            }
        }
        figment.extract().map_err(Box::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Settings { jwt_secret: Secret::new("hunter2"), ..Settings::default() };
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"));
        assert!(shown.contains("[redacted]"));
    }
}
