use chrono::{DateTime, Utc};
use std::collections::HashMap;
use uuid::Uuid;

/// Recorded with every event a command produces: who, in answer to which request, when.
#[derive(Debug, Clone)]
pub struct CommandMetadata {
    /// The authenticated user, or `None` for the system itself (bootstrap, workers).
    pub actor: Option<Uuid>,
    /// The request id (`x-request-id`) or the id of the event that caused this command.
    pub correlation_id: String,
    pub time: DateTime<Utc>,
}

impl CommandMetadata {
    pub fn new(actor: Option<Uuid>, correlation_id: impl Into<String>) -> Self {
        Self { actor, correlation_id: correlation_id.into(), time: Utc::now() }
    }

    /// Metadata of a command the platform issues on its own.
    pub fn system(correlation_id: impl Into<String>) -> Self {
        Self::new(None, correlation_id)
    }

    pub(crate) fn to_map(&self) -> HashMap<String, String> {
        HashMap::from([
            ("actor".to_owned(), self.actor.map_or_else(|| "system".to_owned(), |a| a.to_string())),
            ("correlation_id".to_owned(), self.correlation_id.clone()),
            ("time".to_owned(), self.time.to_rfc3339()),
        ])
    }
}
