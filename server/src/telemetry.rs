use tracing_subscriber::EnvFilter;

/// Logs to stderr: human-readable, or one JSON object per line with `BONSAI_LOG_FORMAT=json`. The level
/// comes from `RUST_LOG` (default `info`). Every line of a request carries its span's `request_id`. Colours
/// only on a terminal: a log file or a collector gets plain text.
pub fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let result = if format == "json" {
        builder.json().with_current_span(true).with_span_list(true).try_init()
    } else {
        builder.try_init()
    };
    // A second init (tests spawn many apps in one process) keeps the first subscriber.
    drop(result);
}
