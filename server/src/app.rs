//! The application: everything `bonsai serve` runs in one process (API, relay, projection consumers),
//! built from settings, bound before it runs (so tests can bind port 0 and read the port), and stopped
//! by one shared shutdown token. A node's role (`--role api|workers|all`) picks which of its tasks run:
//! API nodes answer HTTP and run the relay and projections, worker nodes run the consumers that do the
//! work (they meet the API nodes only through PostgreSQL and NATS); see docs/operations.md.

use crate::db;
use crate::settings::{NodeRole, Settings};
use anyhow::Context;
use bonsai_api::{AppState, RateLimitSettings, RateLimits, TokenSettings};
use bonsai_commands::{CommandBus, CommandMetadata};
use bonsai_domain::user::{user_id_for, UserCommand, UserError};
use bonsai_domain::values::{Email, Password, Username};
use bonsai_domain::Role;
use bonsai_infra::{Clamd, ClamdAddress, FileStore, LocalFileStore, LocalModels};
use bonsai_workers::{
    follow_key_erasures, follow_model_events, follow_user_events, node_name, AlertNotifier, AlertSettings, AlertWorker,
    AnswerCache, Engines, EventBus, ModelWorker, ProjectionConsumer, QaWorker, Relay, RelayWaker, TrainingWorker,
    ValidationWorker, WebhookSettings,
};
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub struct Application {
    /// Which of the tasks below this node runs.
    role: NodeRole,
    listener: TcpListener,
    /// HTTPS when set.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Timeouts and connections per client address (see `crate::http`).
    http_limits: crate::http::Limits,
    pub pool: PgPool,
    pub bus: EventBus,
    pub commands: CommandBus,
    /// Uploaded dataset files, under `<data_dir>/datasets`.
    pub files: Arc<dyn FileStore>,
    /// Installed base models (`<data_dir>/models` unless `BONSAI_MODELS_DIR` says otherwise).
    pub models: LocalModels,
    /// Where the platform keeps its files (training runs under `training/`).
    pub data_dir: std::path::PathBuf,
    /// Answers to repeated first questions (Redis, or memory).
    pub answer_cache: AnswerCache,
    /// The devices whose training tasks this node runs.
    training_devices: String,
    training_threads: usize,
    /// This node's name and the lease every node holds (see `bonsai_infra::nodes`).
    node: bonsai_api::NodeIdentity,
    alerts: AlertSettings,
    /// This node's checks of its own health (5xx, dependencies, panics).
    system_alerts: crate::system_alerts::SystemAlertSettings,
    /// The models this node has loaded (shared by its model and QA workers; counted in `/metrics`).
    engines: Engines,
    webhook: Option<WebhookSettings>,
    waker: RelayWaker,
    file_gc_interval: Duration,
    file_gc_grace: Duration,
    state: AppState,
}

impl Application {
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let tls = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
            (None, None) => None,
            (Some(_), None) => anyhow::bail!("BONSAI__TLS_CERT is set without BONSAI__TLS_KEY"),
            (None, Some(_)) => anyhow::bail!("BONSAI__TLS_KEY is set without BONSAI__TLS_CERT"),
        };
        settings.encryption.install()?;
        // A signed-out session's access tokens are refused for as long as nodes remember the sign-out.
        let memory = bonsai_projections::user_cache::ENDED_SESSION_MEMORY.as_secs() as i64;
        anyhow::ensure!(
            (1..=memory).contains(&settings.access_token_ttl_secs),
            "BONSAI__ACCESS_TOKEN_TTL_SECS must be between 1 and {memory} (a day): a signed-out session's access \
             tokens are refused for that long"
        );
        let pool = db::connect_and_migrate(&settings.database_url, settings.database_max_connections).await?;
        let nats = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(&settings.nats_url)
            .await
            .with_context(|| format!("cannot connect to NATS at {}", settings.nats_url))?;
        let bus = EventBus::new(nats.clone(), settings.nats_prefix.clone());
        let waker = RelayWaker::new();
        let commands = CommandBus::new(pool.clone()).on_append(waker.hook());
        bootstrap_admin(&commands, settings).await?;
        let secret = if settings.jwt_secret.is_empty() {
            tracing::warn!("BONSAI_JWT_SECRET is not set: using a random secret, tokens will not survive a restart");
            format!("{:032x}{:032x}", rand::random::<u128>(), rand::random::<u128>())
        } else {
            settings.jwt_secret.expose().to_owned()
        };
        let tokens = TokenSettings {
            secret,
            access_ttl: chrono::Duration::seconds(settings.access_token_ttl_secs),
            refresh_ttl: chrono::Duration::seconds(settings.refresh_token_ttl_secs),
        };
        let r = &settings.rate_limit;
        let limits = RateLimitSettings {
            login_slowdown_after: r.login_slowdown_after,
            login_lockout_after: r.login_lockout_after,
            login_lockout_after_per_address: r.login_lockout_after_per_address,
            login_lockout: Duration::from_secs(r.login_lockout_secs),
            login_window: Duration::from_secs(r.login_window_secs.max(1)),
            requests_per_second: r.requests_per_second,
            burst: r.burst,
            questions_per_minute: r.questions_per_minute,
            question_burst: r.question_burst,
        };
        let files = file_store(settings)?;
        let models = LocalModels::new(settings.models_dir());
        anyhow::ensure!(settings.serving_sessions >= 1, "BONSAI__SERVING_SESSIONS must be at least 1");
        let engines = Engines::new(settings.serving_threads, settings.serving_sessions, settings.serving_slots)
            .with_slot_tokens(settings.serving_slot_tokens);
        let loaded = engines.clone();
        let gauges: bonsai_api::NodeGauges = Arc::new(move || {
            let batch = loaded.batch_load();
            let mean_batch = if batch.steps == 0 { 0.0 } else { batch.rows as f64 / batch.steps as f64 };
            vec![
                (
                    "bonsai_serving_models_loaded",
                    "Models whose ONNX Runtime engine this node holds in memory.",
                    loaded.loaded() as f64,
                ),
                (
                    "bonsai_serving_batch_rows",
                    "Answers being decoded now in the loaded models' shared decode batches.",
                    batch.active as f64,
                ),
                (
                    "bonsai_serving_batch_waiting",
                    "Answers waiting for a row of a loaded model's decode batch.",
                    batch.waiting as f64,
                ),
                (
                    "bonsai_serving_mean_batch",
                    "Mean rows per decode step of the loaded models since they were loaded (1: no batching).",
                    mean_batch,
                ),
            ]
        });
        // One Redis connection for the node: the rate limits and the answer cache.
        let redis = bonsai_infra::redis::Redis::connect(&settings.redis_url).await;
        let limits = match redis.clone() {
            Some(redis) => RateLimits::shared(limits, redis, &settings.nats_prefix),
            None => RateLimits::new(limits),
        };
        anyhow::ensure!(
            settings.node_lease_secs >= 0.3 && settings.node_lease_secs.is_finite(),
            "BONSAI__NODE_LEASE_SECS must be at least 0.3"
        );
        let host = settings.alerts.node_name.clone().unwrap_or_else(node_name);
        let node = bonsai_api::NodeIdentity {
            name: bonsai_infra::nodes::instance_name(&host),
            lease: Duration::from_secs_f64(settings.node_lease_secs),
        };
        let proxies = settings.http.trusted_proxies()?;
        let state = AppState::new(pool.clone(), commands.clone(), nats, tokens, limits)
            .with_node(node.clone())
            .with_trusted_proxies(proxies)
            .with_datasets(files.clone(), settings.max_upload_bytes)
            .with_models(models.clone())
            .with_nats_prefix(settings.nats_prefix.clone())
            .with_data_dir(settings.data_dir.clone())
            .with_user_cache_ttl(Duration::from_millis(settings.auth_cache_ttl_ms))
            .with_node_gauges(gauges);
        let state = match settings.console_dir() {
            Some(dir) => {
                tracing::info!(dir = %dir.display(), "serving the web console at /");
                state.with_console_dir(dir)
            }
            None => state,
        };
        let state = match virus_scan(settings)? {
            Some(scan) => state.with_virus_scan(scan),
            None => state,
        };
        // Sessions signed out while this node was not listening: their access tokens are refused too.
        let ended = state.user_cache.load_ended_sessions(&pool).await.context("reading ended sessions")?;
        tracing::debug!(ended, "ended sessions remembered");
        let listener = TcpListener::bind(&settings.http_addr)
            .await
            .with_context(|| format!("cannot listen on {}", settings.http_addr))?;
        let file_gc_interval = Duration::from_secs(settings.file_gc_interval_secs);
        let file_gc_grace = Duration::from_secs(settings.file_gc_grace_secs);
        for device in settings.training_devices.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            anyhow::ensure!(
                bonsai_domain::training::DEVICES.contains(&device),
                "BONSAI__TRAINING_DEVICES: unknown device {device:?} (cpu, cuda)"
            );
        }
        let data_dir = settings.data_dir.clone();
        let ttl = Duration::from_secs(settings.answer_cache_ttl_secs);
        let answer_cache = AnswerCache::new(redis, &settings.nats_prefix, ttl);
        Ok(Self {
            role: settings.role,
            listener,
            tls,
            http_limits: settings.http.limits(),
            pool,
            bus,
            commands,
            files,
            models,
            data_dir,
            answer_cache,
            training_devices: settings.training_devices.clone(),
            training_threads: settings.training_threads,
            node,
            engines,
            system_alerts: crate::system_alerts::SystemAlertSettings {
                every: Duration::from_secs_f64(settings.alerts.check_every_secs.max(0.0)),
                server_errors: settings.alerts.server_errors,
                server_errors_window: Duration::from_secs_f64(settings.alerts.server_errors_window_secs.max(0.0)),
                dependency_down: Duration::from_secs_f64(settings.alerts.dependency_down_secs.max(0.0)),
                node: settings.alerts.node_name.clone().unwrap_or_else(node_name),
            },
            alerts: AlertSettings {
                accuracy_drop: settings.alerts.accuracy_drop,
                min_accuracy: settings.alerts.min_accuracy,
                disk_used_ratio: settings.alerts.disk_used_ratio,
                memory_used_ratio: settings.alerts.memory_used_ratio,
                check_every: Duration::from_secs_f64(settings.alerts.check_every_secs.max(0.0)),
                data_dir: settings.data_dir.clone(),
                node: settings.alerts.node_name.clone().unwrap_or_else(node_name),
            },
            webhook: settings.alerts.webhook_url.clone().filter(|url| !url.trim().is_empty()).map(|url| {
                WebhookSettings {
                    url,
                    secret: settings
                        .alerts
                        .webhook_secret
                        .as_ref()
                        .filter(|s| !s.is_empty())
                        .map(|s| s.expose().to_owned()),
                }
            }),
            waker,
            file_gc_interval,
            file_gc_grace,
            state,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Runs every task until `shutdown` fires or one of them fails; then stops the rest at a safe
    /// point and reports how each ended.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut tasks: JoinSet<(String, anyhow::Result<()>)> = JoinSet::new();
        let role = self.role;
        // Worker nodes answer only health checks and Prometheus's scrapes.
        let router = if role.runs_api() {
            bonsai_api::router(self.state.clone())
        } else {
            bonsai_api::ops_router(self.state.clone())
        };
        let stop = shutdown.clone();
        let addr = self.local_addr().to_string();
        let (listener, tls) = (self.listener, self.tls);
        let guard = crate::http::Guard::new(self.http_limits).with_trusted_proxies(self.state.trusted_proxies.clone());
        let limits = self.http_limits;
        tasks.spawn(async move {
            let stopped = async move { stop.cancelled().await };
            let served = match tls {
                Some(config) => match crate::tls::TlsListener::new(listener, config, guard) {
                    Ok(tls) => crate::http::serve(tls, router, limits, stopped).await,
                    Err(error) => Err(error),
                },
                None => {
                    crate::http::serve(crate::http::GuardedListener::new(listener, guard), router, limits, stopped)
                        .await
                }
            };
            ("http".to_owned(), served.context("http server"))
        });
        // Every node holds its lease, and finds the training runs of nodes whose lease lapsed.
        let (pool, commands, node, stop) =
            (self.pool.clone(), self.commands.clone(), self.node.clone(), shutdown.clone());
        tasks.spawn(async move { ("node-lease".to_owned(), hold_lease(pool, commands, node, role, addr, stop).await) });
        // Every node: sealed values it reads or writes, and the relay wake-ups after the events it appends.
        let (pool, stop) = (self.pool.clone(), shutdown.clone());
        tasks.spawn(async move { ("data-key-erasures".to_owned(), follow_key_erasures(pool, stop).await) });
        let (waker, bus, stop) = (self.waker, self.bus.clone(), shutdown.clone());
        tasks.spawn(async move { ("relay-waker".to_owned(), waker.run(bus, stop).await) });
        if role.runs_api() {
            let (cache, bus, stop) = (self.state.user_cache.clone(), self.bus.clone(), shutdown.clone());
            tasks.spawn(async move { ("user-cache".to_owned(), follow_user_events(bus, cache, stop).await) });
            let relay = Relay::new(self.pool.clone(), self.bus.clone());
            let stop = shutdown.clone();
            tasks.spawn(async move { ("relay".to_owned(), relay.run(stop).await) });
            for projection in bonsai_projections::all() {
                let name = format!("projection:{}", projection.name());
                let consumer = ProjectionConsumer::new(self.pool.clone(), self.bus.clone(), projection)
                    .with_alerts(self.commands.clone());
                let stop = shutdown.clone();
                tasks.spawn(async move { (name, consumer.run(stop).await) });
            }
        }
        if role.runs_workers() {
            let validation = ValidationWorker::new(
                self.bus.clone(),
                self.commands.clone(),
                self.files.clone(),
                Some(self.models.clone()),
            );
            let stop = shutdown.clone();
            tasks.spawn(async move { ("worker:dataset-validation".to_owned(), validation.run(stop).await) });
            for device in self.training_devices.split(',').map(str::trim).filter(|d| !d.is_empty()) {
                let trainer = TrainingWorker::new(
                    self.bus.clone(),
                    self.commands.clone(),
                    self.files.clone(),
                    self.models.clone(),
                    self.data_dir.clone(),
                    device,
                )
                .with_threads(self.training_threads)
                .with_node(&self.node.name)
                .with_lease(self.node.lease);
                let stop = shutdown.clone();
                let name = format!("worker:training:{device}");
                tasks.spawn(async move { (name, trainer.run(stop).await) });
            }
            let (engines, bus, stop) = (self.engines.clone(), self.bus.clone(), shutdown.clone());
            tasks.spawn(async move { ("model-events".to_owned(), follow_model_events(bus, engines, stop).await) });
            let engines = self.engines;
            let (bus, commands, data_dir) = (self.bus.clone(), self.commands.clone(), self.data_dir.clone());
            let model_worker = ModelWorker::new(bus, commands, self.models.clone(), data_dir, engines.clone());
            let stop = shutdown.clone();
            tasks.spawn(async move { ("worker:models".to_owned(), model_worker.run(stop).await) });
            let cache = self.answer_cache.clone();
            let qa_worker =
                QaWorker::new(self.bus.clone(), self.commands.clone(), self.data_dir.clone(), engines, cache);
            let stop = shutdown.clone();
            tasks.spawn(async move { ("worker:qa".to_owned(), qa_worker.run(stop).await) });
        }
        // Every node checks its own disk and memory (the alert worker's event consumer is shared: one
        // node handles each event).
        let alerts = AlertWorker::new(self.bus.clone(), self.commands.clone(), self.pool.clone(), self.alerts);
        let stop = shutdown.clone();
        tasks.spawn(async move { ("worker:alerts".to_owned(), alerts.run(stop).await) });
        crate::system_alerts::install_panic_hook();
        let (state, commands, stop) = (self.state.clone(), self.commands.clone(), shutdown.clone());
        let checks = self.system_alerts;
        let (panic_commands, panic_node) = (self.commands.clone(), checks.node.clone());
        tasks.spawn(async move {
            ("system-alerts".to_owned(), crate::system_alerts::run(state, commands, checks, stop).await)
        });
        if role.runs_api() {
            if let Some(webhook) = self.webhook {
                let notifier = AlertNotifier::new(self.bus.clone(), self.pool.clone(), webhook);
                let stop = shutdown.clone();
                tasks.spawn(async move { ("worker:alert-webhook".to_owned(), notifier.run(stop).await) });
            }
            if self.file_gc_interval > Duration::ZERO {
                let (pool, files, stop) = (self.pool.clone(), self.files.clone(), shutdown.clone());
                let (every, grace) = (self.file_gc_interval, self.file_gc_grace);
                tasks
                    .spawn(async move { ("file-gc".to_owned(), collect_files(pool, files, every, grace, stop).await) });
            }
        }
        let mut failed = None;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((name, Ok(()))) => tracing::info!(task = %name, "task stopped"),
                Ok((name, Err(error))) => {
                    tracing::error!(task = %name, error = format!("{error:#}"), "task failed; shutting down");
                    failed.get_or_insert(error.context(name));
                    shutdown.cancel();
                }
                Err(join_error) => {
                    tracing::error!(%join_error, "task panicked; shutting down");
                    // Recorded before the node stops (the periodic check stops with it).
                    if let Err(error) = crate::system_alerts::raise_panics(&panic_commands, &panic_node).await {
                        tracing::warn!(%error, "the panic alert could not be recorded");
                    }
                    failed.get_or_insert(anyhow::anyhow!("a task panicked: {join_error}"));
                    shutdown.cancel();
                }
            }
        }
        // Stopped: its lease ends now, not when it would lapse.
        if let Err(error) = bonsai_infra::nodes::leave(&self.pool, &self.node.name).await {
            tracing::warn!(%error, "could not end this node's lease");
        }
        failed.map_or(Ok(()), Err)
    }
}

/// Registers node `node`, renews its lease every third of it until `shutdown`, and after each renewal records
/// the training runs of nodes whose lease lapsed as interrupted. A renewal that fails is tried again at the
/// next tick (the lease lapses only if they all fail for a whole lease).
async fn hold_lease(
    pool: PgPool,
    commands: CommandBus,
    node: bonsai_api::NodeIdentity,
    role: NodeRole,
    addr: String,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use bonsai_infra::nodes;
    nodes::register(&pool, &node.name, role.as_str(), &addr).await.context("registering this node")?;
    tracing::info!(node = %node.name, lease_secs = node.lease.as_secs_f64(), "node registered");
    let mut tick = tokio::time::interval(node.lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        ticks += 1;
        match nodes::renew(&pool, &node.name).await {
            Ok(true) => {}
            Ok(false) => {
                if let Err(error) = nodes::register(&pool, &node.name, role.as_str(), &addr).await {
                    tracing::warn!(%error, "could not register this node again");
                }
            }
            Err(error) => tracing::warn!(%error, "could not renew this node's lease"),
        }
        if let Err(error) = bonsai_workers::interrupt_lost_runs(&commands, node.lease).await {
            tracing::warn!(%error, "could not look for the training runs of lost nodes");
        }
        // Once an hour or so: forget nodes gone for a day.
        if ticks.is_multiple_of(3 * 3600 / node.lease.as_secs().max(1)) {
            let _ = nodes::forget_gone(&pool, Duration::from_secs(24 * 3600)).await;
        }
    }
}

/// The store of uploaded dataset files: `<data_dir>/datasets`.
pub fn file_store(settings: &Settings) -> anyhow::Result<Arc<dyn FileStore>> {
    let dir = settings.data_dir.join("datasets");
    let store = LocalFileStore::new(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(Arc::new(store))
}

/// The upload scanner, when `BONSAI__VIRUS_SCAN__CLAMD` names one. A malformed address stops the start; an
/// unreachable daemon does not (it may still be loading its signatures) but is logged.
fn virus_scan(settings: &Settings) -> anyhow::Result<Option<bonsai_api::VirusScan>> {
    let Some(address) = settings.virus_scan.clamd.as_deref().map(str::trim).filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    let address: ClamdAddress =
        address.parse().map_err(|e: String| anyhow::anyhow!("BONSAI__VIRUS_SCAN__CLAMD: {e}"))?;
    let timeout = settings.virus_scan.timeout_secs;
    anyhow::ensure!(timeout > 0.0 && timeout.is_finite(), "BONSAI__VIRUS_SCAN__TIMEOUT_SECS must be above 0");
    let clamd = Clamd::new(address, Duration::from_secs_f64(timeout));
    let probe = clamd.clone();
    tokio::task::spawn_blocking(move || match probe.version() {
        Ok(version) => tracing::info!(scanner = %probe.address(), %version, "uploads are scanned for viruses"),
        Err(error) => tracing::warn!(%error, "the virus scanner does not answer yet"),
    });
    Ok(Some(bonsai_api::VirusScan { clamd, required: settings.virus_scan.required }))
}

/// Every `every`, removes stored files no event names that are older than `grace`. A failed sweep is
/// logged and tried again next time: it never stops the platform.
async fn collect_files(
    pool: PgPool,
    files: Arc<dyn FileStore>,
    every: Duration,
    grace: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(every) => {}
        }
        match bonsai_infra::sweep_unreferenced_files(&pool, files.as_ref(), grace, false).await {
            Ok(report) if report.removed.is_empty() && report.partials_removed == 0 => {}
            Ok(report) => tracing::info!(
                removed = report.removed.len(),
                bytes = report.removed_bytes,
                partials = report.partials_removed,
                "file store swept"
            ),
            Err(error) => tracing::warn!(%error, "file store sweep failed; trying again later"),
        }
    }
}

/// First start: with `BONSAI_ADMIN_PASSWORD` set and no user ever registered, registers the admin
/// through the normal command path.
async fn bootstrap_admin(commands: &CommandBus, settings: &Settings) -> anyhow::Result<()> {
    if settings.admin_password.is_empty() || commands.any_user_exists().await? {
        return Ok(());
    }
    let username = Username::parse(&settings.admin_username).context("BONSAI_ADMIN_USERNAME")?;
    let password = Password::parse(settings.admin_password.expose()).context("BONSAI_ADMIN_PASSWORD")?;
    let email = Email::parse(&format!("{}@bonsai.local", username.as_str())).context("admin e-mail")?;
    let id = user_id_for(&username);
    let command = UserCommand::Register { username, email, display_name: None, password, role: Role::Admin };
    match commands.execute(id, command, &CommandMetadata::system("bootstrap")).await {
        Ok(()) => tracing::info!(user = %settings.admin_username, "created the first admin"),
        Err(bonsai_commands::CommandError::User(UserError::AlreadyExists)) => {}
        Err(e) => return Err(e).context("creating the first admin"),
    }
    Ok(())
}
