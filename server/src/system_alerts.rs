//! Alerts on the platform's own health (design 6.3), raised by every node about itself, through the same
//! Alert aggregate as the alert worker's (so they reach the console, the audit log, the webhook):
//!
//! - `server_errors` (critical): at least `server_errors` 5xx answers within the last `server_errors_window`
//!   (a sliding window over the checks' readings, so errors that straddle two checks still count together);
//!   resolved once a whole window has passed without one.
//! - `dependency_unreachable` (critical): NATS, Redis (when configured) or PostgreSQL has not answered this node
//!   for `dependency_down_secs`; resolved once it answers. An alert is an event in PostgreSQL, so PostgreSQL's
//!   own outage is recorded when it is back (raised and resolved at once, with how long it lasted); Prometheus's
//!   `BonsaiPostgresUnreachable` is the live signal for that one.
//! - `panic` (critical): a panic anywhere in the process (a worker, a request handler), with its message and
//!   place, recorded by a panic hook; one alert per place and message, raised again if it comes back after
//!   being resolved.
//!
//! Checks run every `BONSAI__ALERTS__CHECK_EVERY_SECS` (0: never), like the disk and memory checks. These
//! kinds join those the alert worker raises (`AlertSpec::kind`).

use bonsai_api::AppState;
use bonsai_commands::{CommandBus, CommandError, CommandMetadata};
use bonsai_domain::alert::{alert_id, AlertCommand, AlertSpec, Severity};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct SystemAlertSettings {
    pub every: Duration,
    /// 5xx answers within `server_errors_window` that raise `server_errors` (0: never).
    pub server_errors: u64,
    /// The sliding window `server_errors` counts over.
    pub server_errors_window: Duration,
    /// How long a dependency may not answer before `dependency_unreachable` is raised.
    pub dependency_down: Duration,
    /// This node's name in the alerts.
    pub node: String,
}

/// Panics not yet raised as alerts: (message, place). Bounded: a panic storm keeps the first ones.
static PANICS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
const MAX_PENDING_PANICS: usize = 32;

/// Records every panic of the process for [`run`] (then lets the previous hook print it, as before).
pub fn install_panic_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            let place = info.location().map_or_else(|| "unknown".into(), |l| format!("{}:{}", l.file(), l.line()));
            if let Ok(mut pending) = PANICS.lock() {
                if pending.len() < MAX_PENDING_PANICS {
                    pending.push((message, place));
                }
            }
            previous(info);
        }));
    });
}

/// The 5xx counter's readings over the last window: how many errors it holds, whatever the check cadence.
#[derive(Debug)]
pub struct ErrorWindow {
    window: Duration,
    /// (when, the counter then), oldest first; the first one is at or before the window's start once the
    /// window is full, so it is the baseline.
    readings: std::collections::VecDeque<(Instant, u64)>,
}

impl ErrorWindow {
    pub fn new(window: Duration, now: Instant, counter: u64) -> Self {
        Self { window, readings: [(now, counter)].into() }
    }

    /// Records the counter at `now` and answers the errors counted within the window that ends then.
    pub fn observe(&mut self, now: Instant, counter: u64) -> u64 {
        self.readings.push_back((now, counter));
        let start = now.checked_sub(self.window).unwrap_or(now);
        // Keep exactly one reading at or before the window's start (the baseline).
        while self.readings.len() > 1 && self.readings[1].0 <= start {
            self.readings.pop_front();
        }
        let baseline = self.readings.front().map_or(counter, |(_, c)| *c);
        counter.saturating_sub(baseline)
    }
}

/// When a dependency stopped answering, and whether its alert is raised.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Outage {
    since: Option<Instant>,
    raised: bool,
}

/// What a reading of a dependency calls for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OutageStep {
    Nothing,
    /// Down for longer than allowed: raise (until it is recorded).
    Raise(Duration),
    /// Answering again after a raised outage of this length: resolve.
    Resolve(Duration),
    /// Answering again after an outage of this length that could not be recorded (PostgreSQL's own): raise
    /// and resolve at once, for the record.
    Record(Duration),
}

impl Outage {
    /// Takes a reading (`up` at `now`) and says what to do; `recorded` reports whether the raise was stored.
    pub fn observe(&mut self, up: bool, now: Instant, allowed: Duration) -> OutageStep {
        match (up, self.since) {
            (false, None) => {
                self.since = Some(now);
                OutageStep::Nothing
            }
            (false, Some(since)) if !self.raised && now - since >= allowed => OutageStep::Raise(now - since),
            (false, Some(_)) => OutageStep::Nothing,
            (true, Some(since)) => {
                let lasted = now - since;
                let raised = self.raised;
                *self = Outage::default();
                if raised {
                    OutageStep::Resolve(lasted)
                } else if lasted >= allowed {
                    OutageStep::Record(lasted)
                } else {
                    OutageStep::Nothing
                }
            }
            (true, None) => OutageStep::Nothing,
        }
    }

    pub fn recorded(&mut self) {
        self.raised = true;
    }
}

/// Raises an alert for each panic recorded since the last call (the ones not stored are kept for the next).
pub async fn raise_panics(commands: &CommandBus, node: &str) -> Result<(), CommandError> {
    let pending: Vec<(String, String)> = PANICS.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default();
    for (i, (message, place)) in pending.iter().enumerate() {
        let key = format!("panic/{node}/{place}/{message}");
        let spec = AlertSpec {
            kind: "panic".into(),
            severity: Severity::Critical,
            subject: format!("node/{node}/panic"),
            message: format!("a panic on {node} at {place}: {message}"),
            details: json!({"node": node, "place": place, "message": message}),
            owner_id: None,
        };
        let meta = CommandMetadata::system(format!("system-check/panic/{node}"));
        let raised =
            commands.execute_and_get(alert_id(&key), AlertCommand::Raise { spec, recurring: true }, &meta).await;
        if let Err(error) = raised {
            if let Ok(mut back) = PANICS.lock() {
                back.extend(pending[i..].iter().cloned());
            }
            return Err(error);
        }
    }
    Ok(())
}

struct Checker {
    state: AppState,
    commands: CommandBus,
    settings: SystemAlertSettings,
    errors: ErrorWindow,
    errors_raised: bool,
    outages: BTreeMap<&'static str, Outage>,
}

/// Checks every `settings.every` until `shutdown` (a failed check is logged and tried again).
pub async fn run(
    state: AppState,
    commands: CommandBus,
    settings: SystemAlertSettings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if settings.every.is_zero() {
        return Ok(());
    }
    let errors = ErrorWindow::new(settings.server_errors_window, Instant::now(), state.http_metrics.server_errors());
    let mut checker = Checker { state, commands, settings, errors, errors_raised: false, outages: BTreeMap::new() };
    let mut ticker = tokio::time::interval(checker.settings.every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = ticker.tick() => {}
        }
        checker.check().await;
    }
}

impl Checker {
    async fn check(&mut self) {
        let node = self.settings.node.clone();
        if let Err(error) = raise_panics(&self.commands, &node).await {
            tracing::warn!(%error, "panic alert not recorded; trying again");
        }

        let new = self.errors.observe(Instant::now(), self.state.http_metrics.server_errors());
        let threshold = self.settings.server_errors;
        let key = format!("server_errors/node/{node}/http");
        if threshold > 0 && new >= threshold && !self.errors_raised {
            let window = self.settings.server_errors_window.as_secs_f64();
            let spec = AlertSpec {
                kind: "server_errors".into(),
                severity: Severity::Critical,
                subject: format!("node/{node}/http"),
                message: format!("{node} answered {new} requests with a server error (5xx) within {window:.0} s"),
                details: json!({"node": node, "server_errors": new, "seconds": window, "threshold": threshold}),
                owner_id: None,
            };
            match self.raise(&key, spec).await {
                Ok(()) => self.errors_raised = true,
                Err(error) => tracing::warn!(%error, "server error alert not recorded"),
            }
        } else if new == 0 && self.errors_raised {
            let note = format!("no server errors for {:.0} s", self.settings.server_errors_window.as_secs_f64());
            match self.resolve(&key, note).await {
                Ok(()) => self.errors_raised = false,
                Err(error) => tracing::warn!(%error, "server error alert not resolved"),
            }
        }

        let database = sqlx::query("SELECT 1").execute(&self.state.pool).await.is_ok();
        let nats = self.state.nats.connection_state() == async_nats::connection::State::Connected;
        let redis = bonsai_api::metrics::redis_up(&self.state).await;
        let readings = [("postgresql", Some(database)), ("nats", Some(nats)), ("redis", redis)];
        for (dependency, up) in readings {
            let Some(up) = up else { continue };
            let allowed = self.settings.dependency_down;
            let step = self.outages.entry(dependency).or_default().observe(up, Instant::now(), allowed);
            let key = format!("dependency_unreachable/node/{node}/{dependency}");
            let spec = |lasted: Duration| AlertSpec {
                kind: "dependency_unreachable".into(),
                severity: Severity::Critical,
                subject: format!("node/{node}/{dependency}"),
                message: format!("{node} could not reach {dependency} for {:.0} s", lasted.as_secs_f64()),
                details: json!({"node": node, "dependency": dependency, "seconds": lasted.as_secs_f64()}),
                owner_id: None,
            };
            match step {
                OutageStep::Nothing => {}
                OutageStep::Raise(lasted) => match self.raise(&key, spec(lasted)).await {
                    Ok(()) => self.outages.entry(dependency).or_default().recorded(),
                    Err(error) => tracing::warn!(%error, dependency, "dependency alert not recorded yet"),
                },
                OutageStep::Resolve(lasted) | OutageStep::Record(lasted) => {
                    let note = format!("{dependency} answers again after {:.0} s", lasted.as_secs_f64());
                    let done = match step {
                        OutageStep::Record(_) => match self.raise(&key, spec(lasted)).await {
                            Ok(()) => self.resolve(&key, note).await,
                            Err(error) => Err(error),
                        },
                        _ => self.resolve(&key, note).await,
                    };
                    if let Err(error) = done {
                        tracing::warn!(%error, dependency, "dependency alert not resolved");
                    }
                }
            }
        }
    }

    async fn raise(&self, key: &str, spec: AlertSpec) -> Result<(), CommandError> {
        let meta = CommandMetadata::system(format!("system-check/{key}"));
        self.commands
            .execute_and_get(alert_id(key), AlertCommand::Raise { spec, recurring: true }, &meta)
            .await
            .map(drop)
    }

    async fn resolve(&self, key: &str, note: String) -> Result<(), CommandError> {
        let meta = CommandMetadata::system(format!("system-check/{key}"));
        let command = AlertCommand::Resolve { by: None, note: Some(note) };
        self.commands.execute_and_get(alert_id(key), command, &meta).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_are_counted_over_a_sliding_window_whatever_the_check_cadence() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut window = ErrorWindow::new(Duration::from_secs(2), start, 5);
        // Three errors straddling checks every 200 ms all count together.
        assert_eq!(window.observe(at(200), 6), 1);
        assert_eq!(window.observe(at(400), 7), 2);
        assert_eq!(window.observe(at(600), 8), 3);
        assert_eq!(window.observe(at(1_900), 8), 3);
        // They leave the window as it slides past them, one reading at a time.
        assert_eq!(window.observe(at(2_300), 8), 2);
        assert_eq!(window.observe(at(2_700), 8), 0);
        assert_eq!(window.observe(at(9_000), 9), 1);
        assert_eq!(window.observe(at(12_000), 9), 0);
    }

    #[test]
    fn an_outage_is_raised_only_after_the_allowed_time_and_resolved_when_it_ends() {
        let allowed = Duration::from_secs(60);
        let start = Instant::now();
        let mut outage = Outage::default();
        assert_eq!(outage.observe(true, start, allowed), OutageStep::Nothing);
        assert_eq!(outage.observe(false, start, allowed), OutageStep::Nothing);
        assert_eq!(outage.observe(false, start + Duration::from_secs(30), allowed), OutageStep::Nothing);
        let late = start + Duration::from_secs(61);
        assert_eq!(outage.observe(false, late, allowed), OutageStep::Raise(Duration::from_secs(61)));
        // Not stored (the database was down): asked again next time.
        assert_eq!(outage.observe(false, late, allowed), OutageStep::Raise(Duration::from_secs(61)));
        outage.recorded();
        assert_eq!(outage.observe(false, start + Duration::from_secs(90), allowed), OutageStep::Nothing);
        let back = start + Duration::from_secs(100);
        assert_eq!(outage.observe(true, back, allowed), OutageStep::Resolve(Duration::from_secs(100)));
        assert_eq!(outage.observe(true, back, allowed), OutageStep::Nothing);
        // An outage that could not be raised while it lasted is recorded when it ends; a short blip is not.
        assert_eq!(outage.observe(false, back, allowed), OutageStep::Nothing);
        let later = back + Duration::from_secs(70);
        assert_eq!(outage.observe(true, later, allowed), OutageStep::Record(Duration::from_secs(70)));
        assert_eq!(outage.observe(false, later, allowed), OutageStep::Nothing);
        assert_eq!(outage.observe(true, later + Duration::from_secs(5), allowed), OutageStep::Nothing);
    }
}
