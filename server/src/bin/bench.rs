//! `bonsai-bench`: drives a running Bonsai over HTTP and prints
//! 1. commands/s sustained (profile updates, many users, closed loop),
//! 2. query latency p50/p99 of `GET /api/users/profile` at a fixed request rate (open loop),
//! 3. projection lag p50/p99 (command answered -> change visible in the users view) at a fixed command rate.
//!
//! Usage: `bonsai-bench --url http://127.0.0.1:8080 --admin-password ... --database-url ...`
//! (`scripts/bench-platform.sh` starts a release server with the rate limit off and runs this).

use anyhow::Context;
use clap::Parser;
use reqwest::Client;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, default_value = "admin")]
    admin: String,
    #[arg(long, env = "BONSAI_ADMIN_PASSWORD")]
    admin_password: String,
    /// The server's database, read directly to time projection lag.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Each user has one client updating their own profile (the realistic case: no write contention).
    #[arg(long, default_value_t = 64)]
    users: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 1000)]
    query_rate: u64,
    #[arg(long, default_value_t = 500)]
    lag_rate: u64,
}

struct BenchUser {
    id: String,
    token: String,
}

/// The benchmark's command: one profile update; whether it was answered 200.
async fn rename(client: &Client, url: &str, token: &str, display_name: String) -> bool {
    let sent = client
        .put(format!("{url}/api/users/profile"))
        .bearer_auth(token)
        .json(&json!({ "display_name": display_name }))
        .send()
        .await;
    matches!(sent, Ok(r) if r.status() == 200)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn login(client: &Client, url: &str, username: &str, password: &str) -> anyhow::Result<String> {
    let r: Value = client
        .post(format!("{url}/api/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(r["access_token"].as_str().context("no access token")?.to_owned())
}

async fn setup(args: &Args, client: &Client) -> anyhow::Result<Vec<BenchUser>> {
    let admin = login(client, &args.url, &args.admin, &args.admin_password).await?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut users = Vec::new();
    for i in 0..args.users {
        let name = format!("bench{}u{i}", &run[..8]);
        let password = "bench-password";
        let r: Value = client
            .post(format!("{}/api/users", args.url))
            .bearer_auth(&admin)
            .json(&json!({"username": name, "email": format!("{name}@bench.local"), "password": password, "role": "user"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let token = login(client, &args.url, &name, password).await?;
        users.push(BenchUser { id: r["id"].as_str().unwrap().to_owned(), token });
    }
    // Wait until the view knows them all.
    for u in &users {
        while client.get(format!("{}/api/users/profile", args.url)).bearer_auth(&u.token).send().await?.status() != 200
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(users)
}

async fn commands_per_second(args: &Args, client: &Client, users: &Arc<Vec<BenchUser>>) -> (f64, u64, u64) {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut workers = Vec::new();
    for w in 0..users.len() {
        let (client, users, ok, failed, url) =
            (client.clone(), users.clone(), ok.clone(), failed.clone(), args.url.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let u = &users[w];
                n += 1;
                let counter = if rename(&client, &url, &u.token, format!("w{w}n{n}")).await { &ok } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    for w in workers {
        let _ = w.await;
    }
    let ok = ok.load(Ordering::Relaxed);
    (ok as f64 / started.elapsed().as_secs_f64(), ok, failed.load(Ordering::Relaxed))
}

async fn query_latency(args: &Args, client: &Client, users: &Arc<Vec<BenchUser>>) -> (Vec<f64>, u64) {
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.query_rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    for i in 0..(args.query_rate * args.seconds) {
        tick.tick().await;
        let (client, users, latencies, errors, url) =
            (client.clone(), users.clone(), latencies.clone(), errors.clone(), args.url.clone());
        tasks.push(tokio::spawn(async move {
            let u = &users[i as usize % users.len()];
            let t = Instant::now();
            match client.get(format!("{url}/api/users/profile")).bearer_auth(&u.token).send().await {
                Ok(r) if r.status() == 200 => {
                    let _ = r.bytes().await;
                    latencies.lock().await.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                _ => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut v = latencies.lock().await.clone();
    v.sort_by(|a, b| a.total_cmp(b));
    (v, errors.load(Ordering::Relaxed))
}

async fn projection_lag(
    args: &Args,
    client: &Client,
    users: &Arc<Vec<BenchUser>>,
    pool: &sqlx::PgPool,
) -> anyhow::Result<Vec<f64>> {
    // answered[user][n] = when the command writing marker "lag{n}" was answered.
    let answered: Arc<Mutex<HashMap<String, HashMap<u64, Instant>>>> = Arc::default();
    let ids: Vec<uuid::Uuid> = users.iter().map(|u| u.id.parse().unwrap()).collect();
    let total = args.lag_rate * args.seconds;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.lag_rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let senders = {
        let (client, users, answered, url) = (client.clone(), users.clone(), answered.clone(), args.url.clone());
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            for i in 0..total {
                tick.tick().await;
                let (client, all, answered, url) = (client.clone(), users.clone(), answered.clone(), url.clone());
                tasks.push(tokio::spawn(async move {
                    let u = &all[i as usize % all.len()];
                    let n = i / all.len() as u64;
                    if rename(&client, &url, &u.token, format!("lag{n}")).await {
                        answered.lock().await.entry(u.id.clone()).or_default().insert(n, Instant::now());
                    }
                }));
                // Keep one user's commands in order: the next one for a user is sent after the previous answered.
                if tasks.len() >= users.len() {
                    for t in tasks.drain(..) {
                        let _ = t.await;
                    }
                }
            }
            for t in tasks {
                let _ = t.await;
            }
        })
    };
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut lags = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(args.seconds + 30);
    while Instant::now() < deadline {
        let rows: Vec<(uuid::Uuid, String)> =
            sqlx::query_as("SELECT id, display_name FROM users_view WHERE id = ANY($1)")
                .bind(&ids)
                .fetch_all(pool)
                .await?;
        let now = Instant::now();
        let answered = answered.lock().await;
        for (id, name) in rows {
            // Sealed when encryption at rest is on.
            let context = bonsai_domain::sealed::context("User", &id.to_string());
            let name = bonsai_domain::sealed::open(&name, &context).unwrap_or(name);
            let Some(n) = name.strip_prefix("lag").and_then(|n| n.parse::<u64>().ok()) else { continue };
            let id = id.to_string();
            let from = seen.get(&id).map_or(0, |s| s + 1);
            for k in from..=n {
                if let Some(t) = answered.get(&id).and_then(|m| m.get(&k)) {
                    lags.push(now.saturating_duration_since(*t).as_secs_f64() * 1000.0);
                }
            }
            if from <= n {
                seen.insert(id, n);
            }
        }
        if senders.is_finished() && lags.len() as u64 >= total {
            break;
        }
        drop(answered);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let _ = senders.await;
    lags.sort_by(|a, b| a.total_cmp(b));
    Ok(lags)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = Client::builder().pool_max_idle_per_host(256).build()?;
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&args.database_url).await?;
    eprintln!("setting up {} users ...", args.users);
    let users = Arc::new(setup(&args, &client).await?);

    eprintln!("commands/s for {} s, {} clients ...", args.seconds, args.users);
    let (cps, ok, failed) = commands_per_second(&args, &client, &users).await;
    eprintln!("query latency at {} req/s for {} s ...", args.query_rate, args.seconds);
    let (lat, qerr) = query_latency(&args, &client, &users).await;
    eprintln!("projection lag at {} commands/s for {} s ...", args.lag_rate, args.seconds);
    let lags = projection_lag(&args, &client, &users, &pool).await?;

    println!("| measure | value | target |");
    println!("|---|---|---|");
    println!("| commands/s sustained (profile updates, {} users, one client each) | {cps:.0} ({ok} ok, {failed} failed) | >= 1500 |", args.users);
    println!(
        "| query p50 / p99 at {} req/s (ms) | {:.2} / {:.2} ({} ok, {qerr} failed) | p99 <= 5 |",
        args.query_rate,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.len()
    );
    println!(
        "| projection lag p50 / p99 at {} commands/s (ms) | {:.1} / {:.1} ({} samples) | p99 <= 100 |",
        args.lag_rate,
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        lags.len()
    );
    Ok(())
}
