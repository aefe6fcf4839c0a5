//! `bonsai`: the platform in one binary.

use anyhow::Context;
use bonsai_server::{db, replay, telemetry, Application, Settings};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "bonsai", version, about = "Train, version and serve your own small language models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the platform: API, relay, projections and workers.
    Serve {
        /// Listen address (overrides BONSAI_HTTP_ADDR).
        #[arg(long)]
        addr: Option<String>,
        /// What this node runs: `api` (HTTP, relay, projections), `workers` (validation, training, models,
        /// questions) or `all` (overrides BONSAI_ROLE; default all).
        #[arg(long, value_enum)]
        role: Option<bonsai_server::settings::NodeRole>,
    },
    /// Create the database if needed and apply migrations.
    Migrate,
    /// Rebuild read models from the event store.
    Replay {
        /// One projection, e.g. `users`.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        projection: Option<String>,
        /// Every projection.
        #[arg(long)]
        all: bool,
    },
    /// After a key rotation (a new key first in BONSAI__ENCRYPTION__KEYS on every node), seal every stored
    /// value again with the new key, so that the old keys can be removed.
    Rekey {
        /// Count what is sealed with which key and what would be re-sealed; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Make question text stored before it was erasable erasable (sealed with a key per question), and erase
    /// the text of questions deleted before; for conversations older than erasable history.
    MakeErasable {
        /// Count what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove stored dataset files that no event names (left by refused or interrupted uploads).
    GcFiles {
        /// Only files unreferenced for longer than this many hours (uploads in flight are younger).
        #[arg(long, default_value_t = 24.0)]
        grace_hours: f64,
        /// Report what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Follow a training task of a running platform with a progress bar until its run ends.
    WatchTask {
        /// The task id.
        id: String,
        /// The platform's address.
        #[arg(long, env = "BONSAI_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// An access token (from `POST /api/auth/login`).
        #[arg(long, env = "BONSAI_TOKEN", hide_env_values = true)]
        token: String,
    },
    #[command(flatten)]
    Ml(Box<bonsai_ml::cli::MlCommand>),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut settings = Settings::load().context("loading settings")?;
    telemetry::init(&settings.log_format);
    settings.encryption.install()?;
    let runtime = || tokio::runtime::Runtime::new().context("starting the async runtime");
    match cli.command {
        Command::Serve { addr, role } => {
            if let Some(addr) = addr {
                settings.http_addr = addr;
            }
            if let Some(role) = role {
                settings.role = role;
            }
            runtime()?.block_on(serve(settings))
        }
        Command::Migrate => runtime()?.block_on(async {
            db::connect_and_migrate(&settings.database_url, 2).await?;
            tracing::info!("migrations applied");
            Ok(())
        }),
        Command::Replay { projection, all: _ } => runtime()?.block_on(async {
            let pool = db::connect_and_migrate(&settings.database_url, 4).await?;
            for (name, n) in replay::replay(&pool, projection.as_deref()).await? {
                println!("rebuilt {name}: {n} events replayed");
            }
            Ok(())
        }),
        Command::Rekey { dry_run } => runtime()?.block_on(async {
            let pool = db::connect_and_migrate(&settings.database_url, 2).await?;
            let reports = bonsai_server::rekey::rekey(&pool, dry_run).await?;
            for report in &reports {
                println!("{report}");
            }
            let ring = bonsai_crypto::keyring::ring().context("the key ring")?;
            let current = ring.sealing_key();
            let older: u64 =
                reports.iter().flat_map(|r| r.found.iter()).filter(|(k, _)| *k != current).map(|(_, n)| n).sum();
            let resealed: u64 = reports.iter().map(|r| r.resealed).sum();
            let skipped: u64 = reports.iter().map(|r| r.skipped).sum();
            if dry_run {
                println!("would re-seal {older} values with key {current}");
            } else if skipped > 0 {
                println!(
                    "re-sealed {resealed} values with key {current}; {skipped} rows changed meanwhile: run it again"
                );
            } else {
                println!(
                    "re-sealed {resealed} values with key {current}: nothing stored is sealed with another key now \
                     (the NATS stream's older messages still are)"
                );
            }
            Ok(())
        }),
        Command::MakeErasable { dry_run } => runtime()?.block_on(async {
            let pool = db::connect_and_migrate(&settings.database_url, 2).await?;
            let report = bonsai_server::erasable::make_erasable(&pool, dry_run).await?;
            println!("{}{report}", if dry_run { "would change: " } else { "" });
            Ok(())
        }),
        Command::GcFiles { grace_hours, dry_run } => runtime()?.block_on(async {
            anyhow::ensure!(grace_hours.is_finite() && grace_hours >= 0.0, "--grace-hours must be 0 or more");
            let pool = db::connect_and_migrate(&settings.database_url, 2).await?;
            let files = bonsai_server::app::file_store(&settings)?;
            let grace = std::time::Duration::from_secs_f64(grace_hours * 3600.0);
            let report = bonsai_infra::sweep_unreferenced_files(&pool, files.as_ref(), grace, dry_run).await?;
            let verb = if dry_run { "would remove" } else { "removed" };
            for sha256 in &report.removed {
                println!("{verb} {sha256}");
            }
            println!(
                "{verb} {} unreferenced files ({} bytes) and {} unfinished uploads; kept {} referenced, {} recent",
                report.removed.len(),
                report.removed_bytes,
                report.partials_removed,
                report.referenced,
                report.young
            );
            Ok(())
        }),
        Command::WatchTask { id, url, token } => runtime()?.block_on(async {
            match bonsai_server::watch::watch(&url, &token, &id, false).await? {
                bonsai_server::watch::Ended::Completed(result) => {
                    println!("completed: {result}");
                    for warning in result["warnings"].as_array().into_iter().flatten() {
                        eprintln!(
                            "warning ({}): {}",
                            warning["code"].as_str().unwrap_or_default(),
                            warning["message"].as_str().unwrap_or_default()
                        );
                    }
                    Ok(())
                }
                bonsai_server::watch::Ended::Stopped { step } => {
                    println!("stopped at step {step} (start it again to resume)");
                    Ok(())
                }
                bonsai_server::watch::Ended::Failed { code, message } => anyhow::bail!("failed ({code}): {message}"),
            }
        }),
        // CPU-bound ML commands run on the main thread, outside any async runtime.
        Command::Ml(command) => bonsai_ml::cli::run(*command),
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(&settings).await?;
    tracing::info!(addr = %app.local_addr(), role = settings.role.as_str(), "bonsai is listening");
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        signal.cancel();
    });
    app.run_until_stopped(shutdown).await
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
