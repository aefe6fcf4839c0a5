//! `GET /metrics`: Prometheus text exposition of the API's request counts and latencies (per method,
//! route template and status), the process's memory and CPU, and the platform's business figures
//! (training outcomes, models and their accuracy, questions and answer times, projection lag), and what
//! operators alert on (deploy/prometheus/rules.yml): the relay's backlog, the host's CPU, and whether
//! PostgreSQL, NATS and Redis answer this node.

use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// Request counters and latency histograms since start. A std mutex: nothing awaits while it is held.
#[derive(Default)]
pub struct HttpMetrics {
    series: Mutex<BTreeMap<(String, String, u16), Series>>,
}

impl HttpMetrics {
    /// Requests answered with a server error (5xx) since start.
    pub fn server_errors(&self) -> u64 {
        let series = self.series.lock().expect("metrics lock");
        series.iter().filter(|((_, _, status), _)| *status >= 500).map(|(_, s)| s.count).sum()
    }

    fn observe(&self, method: &str, route: &str, status: u16, secs: f64) {
        let mut series = self.series.lock().expect("metrics lock");
        let s = series.entry((method.to_owned(), route.to_owned(), status)).or_default();
        s.count += 1;
        s.sum += secs;
        for (bucket, bound) in s.buckets.iter_mut().zip(BUCKETS) {
            if secs <= bound {
                *bucket += 1;
            }
        }
    }

    fn render(&self, out: &mut String) {
        let series = self.series.lock().expect("metrics lock");
        out.push_str("# HELP bonsai_http_requests_total HTTP requests by method, route and status.\n");
        out.push_str("# TYPE bonsai_http_requests_total counter\n");
        for ((method, route, status), s) in series.iter() {
            let _ = writeln!(
                out,
                "bonsai_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {}",
                s.count
            );
        }
        out.push_str("# HELP bonsai_http_request_duration_seconds HTTP request latency.\n");
        out.push_str("# TYPE bonsai_http_request_duration_seconds histogram\n");
        let mut by_route: BTreeMap<(&str, &str), Series> = BTreeMap::new();
        for ((method, route, _), s) in series.iter() {
            let total = by_route.entry((method, route)).or_default();
            total.count += s.count;
            total.sum += s.sum;
            for (t, b) in total.buckets.iter_mut().zip(s.buckets) {
                *t += b;
            }
        }
        for ((method, route), s) in by_route {
            let labels = format!("method=\"{method}\",route=\"{route}\"");
            for (bound, n) in BUCKETS.iter().zip(s.buckets) {
                let _ = writeln!(out, "bonsai_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(out, "bonsai_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", s.count);
            let _ = writeln!(out, "bonsai_http_request_duration_seconds_sum{{{labels}}} {}", s.sum);
            let _ = writeln!(out, "bonsai_http_request_duration_seconds_count{{{labels}}} {}", s.count);
        }
    }
}

/// Upload virus scans since start, by result.
#[derive(Default)]
pub struct ScanMetrics {
    pub clean: std::sync::atomic::AtomicU64,
    pub infected: std::sync::atomic::AtomicU64,
    /// No verdict (scanner unreachable or refusing).
    pub failed: std::sync::atomic::AtomicU64,
}

impl ScanMetrics {
    fn render(&self, out: &mut String) {
        use std::sync::atomic::Ordering::Relaxed;
        out.push_str("# HELP bonsai_upload_scans_total Virus scans of uploads by result.\n");
        out.push_str("# TYPE bonsai_upload_scans_total counter\n");
        for (result, n) in [("clean", &self.clean), ("infected", &self.infected), ("failed", &self.failed)] {
            let _ = writeln!(out, "bonsai_upload_scans_total{{result=\"{result}\"}} {}", n.load(Relaxed));
        }
    }
}

/// Middleware (as a route layer, so the route template is known) that times every request.
pub(crate) async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    state.http_metrics.observe(&method, &route, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

/// Resident memory (bytes) and CPU time (seconds) of this process, from /proc (Linux; none elsewhere).
fn process() -> Option<(u64, f64)> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Page size 4 KiB and 100 clock ticks per second: the Linux defaults on the platforms we run on.
    Some((pages * 4096, ticks as f64 / 100.0))
}

/// Host CPU time (seconds) spent busy and idle since boot, over all cores, from the first line of
/// /proc/stat (Linux; none elsewhere). Idle counts I/O wait.
fn host_cpu() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line.split_whitespace().take(8).map(|t| t.parse().unwrap_or(0)).collect();
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    let busy = ticks.iter().sum::<u64>() - idle;
    Some((busy as f64 / 100.0, idle as f64 / 100.0))
}

/// Whether each dependency answers this node (1) or not (0): PostgreSQL (from the scrape's own queries),
/// NATS (the client's connection), Redis (a PING, when the node is configured with one).
async fn dependencies(state: &AppState, database_up: bool, out: &mut String) {
    gauge(out, "bonsai_dependency_up", "1 when this node reaches the dependency, 0 when not.");
    let nats = state.nats.connection_state() == async_nats::connection::State::Connected;
    let _ = writeln!(out, "bonsai_dependency_up{{dependency=\"postgresql\"}} {}", u8::from(database_up));
    let _ = writeln!(out, "bonsai_dependency_up{{dependency=\"nats\"}} {}", u8::from(nats));
    if let Some(up) = redis_up(state).await {
        let _ = writeln!(out, "bonsai_dependency_up{{dependency=\"redis\"}} {}", u8::from(up));
    }
}

/// Whether Redis answers a PING now; none when the node runs without Redis.
pub async fn redis_up(state: &AppState) -> Option<bool> {
    let redis = state.limits.redis()?;
    Some(redis.query::<String>(&redis::cmd("PING")).await.is_some())
}

/// Events the relay has yet to publish to NATS, and answered questions by whether the cache answered them.
async fn pipeline(state: &AppState, out: &mut String) -> Result<(), sqlx::Error> {
    let relay_lag: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE global_position > \
         coalesce((SELECT position FROM relay_checkpoints WHERE name = $1), 0)",
    )
    .bind(state.subjects.stream_name())
    .fetch_one(&state.pool)
    .await?;
    let answers: Vec<(bool, i64)> = sqlx::query_as(
        "SELECT coalesce(cached, false), count(*) FROM qa_history_view WHERE status = 'answered' GROUP BY 1",
    )
    .fetch_all(&state.pool)
    .await?;
    gauge(out, "bonsai_relay_lag_events", "Committed events the relay has yet to publish to NATS.");
    let _ = writeln!(out, "bonsai_relay_lag_events {relay_lag}");
    gauge(out, "bonsai_qa_answers", "Answered questions by whether the answer cache answered them.");
    for cached in [false, true] {
        let n = answers.iter().find(|(c, _)| *c == cached).map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "bonsai_qa_answers{{cached=\"{cached}\"}} {n}");
    }
    Ok(())
}

/// The process's in-memory caches (`bonsai_infra::cache`): hits, misses and entries by cache.
fn caches(out: &mut String) {
    let figures = bonsai_infra::cache::figures();
    let _ = writeln!(out, "# HELP bonsai_cache_hits_total Look-ups answered from an in-memory cache, by cache.\n# TYPE bonsai_cache_hits_total counter");
    for f in &figures {
        let _ = writeln!(out, "bonsai_cache_hits_total{{cache=\"{}\"}} {}", f.name, f.hits);
    }
    let _ = writeln!(out, "# HELP bonsai_cache_misses_total Look-ups an in-memory cache could not answer, by cache.\n# TYPE bonsai_cache_misses_total counter");
    for f in &figures {
        let _ = writeln!(out, "bonsai_cache_misses_total{{cache=\"{}\"}} {}", f.name, f.misses);
    }
    gauge(out, "bonsai_cache_entries", "Entries held by an in-memory cache, by cache.");
    for f in &figures {
        let _ = writeln!(out, "bonsai_cache_entries{{cache=\"{}\"}} {}", f.name, f.entries);
    }
}

fn gauge(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The metrics, for a Prometheus scraper (no token needed, like the health endpoints).
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let mut out = String::new();
    state.http_metrics.render(&mut out);
    state.limits.render_metrics(&mut out);
    if state.virus_scan.is_some() {
        state.scan_metrics.render(&mut out);
    }
    if let Some((rss, cpu)) = process() {
        gauge(&mut out, "bonsai_process_resident_memory_bytes", "Resident memory of the API process.");
        let _ = writeln!(out, "bonsai_process_resident_memory_bytes {rss}");
        let _ = writeln!(out, "# HELP bonsai_process_cpu_seconds_total CPU time of the API process.\n# TYPE bonsai_process_cpu_seconds_total counter");
        let _ = writeln!(out, "bonsai_process_cpu_seconds_total {cpu}");
    }
    if let Some((busy, idle)) = host_cpu() {
        let _ = writeln!(out, "# HELP bonsai_host_cpu_seconds_total CPU time of this machine, all cores, by mode.\n# TYPE bonsai_host_cpu_seconds_total counter");
        let _ = writeln!(out, "bonsai_host_cpu_seconds_total{{mode=\"busy\"}} {busy}");
        let _ = writeln!(out, "bonsai_host_cpu_seconds_total{{mode=\"idle\"}} {idle}");
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    gauge(&mut out, "bonsai_host_cpus", "Cores this process may run on.");
    let _ = writeln!(out, "bonsai_host_cpus {cpus}");
    if let Some(disk) = state.data_dir.as_deref().and_then(|dir| bonsai_infra::host::disk_usage(dir).ok()) {
        gauge(&mut out, "bonsai_data_disk_used_ratio", "Share of the data folder's disk in use (as df counts it).");
        let _ = writeln!(out, "bonsai_data_disk_used_ratio {}", disk.used_ratio());
        gauge(&mut out, "bonsai_data_disk_available_bytes", "Space left to the platform on the data folder's disk.");
        let _ = writeln!(out, "bonsai_data_disk_available_bytes {}", disk.available);
    }
    for (name, help, value) in state.node_gauges.as_ref().map(|read| read()).unwrap_or_default() {
        gauge(&mut out, name, help);
        let _ = writeln!(out, "{name} {value}");
    }
    if let Ok(memory) = bonsai_infra::host::memory_usage() {
        gauge(&mut out, "bonsai_host_memory_used_ratio", "Share of this machine's memory in use.");
        let _ = writeln!(out, "bonsai_host_memory_used_ratio {}", memory.used_ratio());
    }
    let stats = bonsai_projections::stats::read(&state.pool).await;
    let backlog = match &stats {
        Ok(_) => pipeline(&state, &mut out).await,
        Err(_) => Ok(()),
    };
    if let Err(error) = backlog {
        tracing::warn!(%error, "metrics: the relay backlog could not be read");
    }
    dependencies(&state, stats.is_ok(), &mut out).await;
    caches(&mut out);
    match stats {
        Ok(stats) => {
            gauge(&mut out, "bonsai_training_tasks", "Training tasks by status.");
            for (status, n) in &stats.tasks {
                let _ = writeln!(out, "bonsai_training_tasks{{status=\"{status}\"}} {n}");
            }
            let count = |status: &str| stats.tasks.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
            let (completed, failed) = (count("completed"), count("failed"));
            // Described even without a value, so dashboards and rules find the name on a fresh platform.
            gauge(&mut out, "bonsai_training_success_ratio", "Completed over completed and failed training tasks.");
            if completed + failed > 0 {
                let _ =
                    writeln!(out, "bonsai_training_success_ratio {}", completed as f64 / (completed + failed) as f64);
            }
            gauge(&mut out, "bonsai_models", "Models by export status and deployment.");
            for (status, deployed, n) in &stats.models {
                let _ = writeln!(out, "bonsai_models{{status=\"{status}\",deployed=\"{deployed}\"}} {n}");
            }
            gauge(&mut out, "bonsai_model_accuracy", "Last test accuracy of each deployed model.");
            for (id, name, version, accuracy) in &stats.accuracy {
                let name = escape(name);
                let _ = writeln!(
                    out,
                    "bonsai_model_accuracy{{model_id=\"{id}\",name=\"{name}\",version=\"{version}\"}} {accuracy}"
                );
            }
            gauge(&mut out, "bonsai_qa_questions", "Questions by status.");
            for (status, n) in &stats.questions {
                let _ = writeln!(out, "bonsai_qa_questions{{status=\"{status}\"}} {n}");
            }
            gauge(&mut out, "bonsai_qa_mean_response_seconds", "Mean time to answer an uncached question.");
            if let Some(ms) = stats.mean_response_ms {
                let _ = writeln!(out, "bonsai_qa_mean_response_seconds {}", ms / 1000.0);
            }
            gauge(&mut out, "bonsai_events", "Events in the event store (newest global position).");
            let _ = writeln!(out, "bonsai_events {}", stats.events);
            gauge(
                &mut out,
                "bonsai_projection_lag_events",
                "Events a projection has yet to apply (held ones included).",
            );
            for (name, lag, _) in &stats.projection_lag {
                let _ = writeln!(out, "bonsai_projection_lag_events{{projection=\"{name}\"}} {lag}");
            }
            gauge(
                &mut out,
                "bonsai_projection_held_aggregates",
                "Aggregates a projection is held at (an event it cannot apply).",
            );
            for (name, _, held) in &stats.projection_lag {
                let _ = writeln!(out, "bonsai_projection_held_aggregates{{projection=\"{name}\"}} {held}");
            }
            gauge(&mut out, "bonsai_alerts_active", "Open or acknowledged alerts by kind and severity.");
            for (kind, severity, n) in &stats.active_alerts {
                let _ = writeln!(out, "bonsai_alerts_active{{kind=\"{kind}\",severity=\"{severity}\"}} {n}");
            }
            gauge(&mut out, "bonsai_up", "1 when the database answered this scrape.");
            out.push_str("bonsai_up 1\n");
        }
        Err(error) => {
            tracing::warn!(%error, "metrics: the views could not be read");
            gauge(&mut out, "bonsai_up", "1 when the database answered this scrape.");
            out.push_str("bonsai_up 0\n");
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
