//! Events of the Alert aggregate (JSON documented in docs/events.md).

use super::AlertSpec;
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AlertEvent {
    /// Raised (again, for a recurring condition that came back after it was resolved).
    AlertRaised {
        spec: AlertSpec,
        recurring: bool,
    },
    AlertAcknowledged {
        by: Uuid,
        note: Option<String>,
    },
    /// `by` is none when the condition cleared (the alert worker resolved it).
    AlertResolved {
        by: Option<Uuid>,
        note: Option<String>,
    },
}

impl DomainEvent for AlertEvent {
    fn event_type(&self) -> String {
        match self {
            AlertEvent::AlertRaised { .. } => "AlertRaised",
            AlertEvent::AlertAcknowledged { .. } => "AlertAcknowledged",
            AlertEvent::AlertResolved { .. } => "AlertResolved",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
