/// Why an event could not be applied or a view read.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The event cannot be understood: retrying will not help (a poison message).
    #[error("undecodable event {event_type} v{version}: {reason}")]
    Undecodable { event_type: String, version: String, reason: String },
}
