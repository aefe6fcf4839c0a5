/// Why an event could not be applied or a view read.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The event cannot be understood: retrying will not help (a poison message).
    #[error("undecodable event {event_type} v{version}: {reason}")]
    Undecodable { event_type: String, version: String, reason: String },
    /// A sealed field does not open with the installed keys (a key missing from `BONSAI__ENCRYPTION__KEYS`):
    /// not skipped, retried, as the fix is the configuration.
    #[error("a sealed field of a {event_type} event does not open: {reason}")]
    Sealed { event_type: String, reason: String },
}
