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

impl ProjectionError {
    /// Opens a sealed cell of a `view` row whose associated data is `context` (a plain cell opens as itself).
    pub(crate) fn open_cell(view: &str, context: &str, value: &str) -> Result<String, Self> {
        bonsai_crypto::sealed::open(value, context)
            .map_err(|e| Self::Sealed { event_type: view.to_owned(), reason: e.to_string() })
    }
}
