//! The Alert aggregate (design 6.3): something an operator should know of, raised by the alert worker
//! from the platform's events (a training run failed, a model export failed, a model's accuracy dropped)
//! or from its resource checks (disk, memory), then acknowledged and resolved by people, or resolved by
//! the worker when the condition clears.
//!
//! An alert's id is derived from what raised it (see [`alert_id`]), so a redelivered event or a repeated
//! check raises nothing twice: raising an alert that is open is a no-op, and raising a resolved one opens
//! it again only for a `recurring` condition (a resource check), never for a one-off fact (an event).

mod command;
mod event;
#[cfg(test)]
mod tests;

pub use command::AlertCommand;
pub use event::AlertEvent;

use crate::Actor;
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Longest note on an acknowledgement or resolution, in characters.
pub const MAX_NOTE_CHARS: usize = 1000;

/// The namespace of alert ids (UUID v5).
const ALERT_NAMESPACE: Uuid = Uuid::from_u128(0x6b1d_2f7e_51a4_4c1e_9a0b_b0a5_a1e7_0001);

/// The id of the alert raised for `key` (such as `training_failed/<task>/<attempt>`): the same key gives
/// the same alert, on every node and after every redelivery.
pub fn alert_id(key: &str) -> Uuid {
    Uuid::new_v5(&ALERT_NAMESPACE, key.as_bytes())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    #[error("no such alert")]
    NotFound,
    #[error("the alert is resolved")]
    AlreadyResolved,
    #[error("a note must be at most {MAX_NOTE_CHARS} characters")]
    NoteTooLong,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// Never raised: the alert does not exist.
    #[default]
    None,
    Open,
    Acknowledged,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::None => "none",
            AlertStatus::Open => "open",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Resolved => "resolved",
        }
    }

    /// Raised and not resolved.
    pub fn is_active(self) -> bool {
        matches!(self, AlertStatus::Open | AlertStatus::Acknowledged)
    }
}

/// What an alert says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertSpec {
    /// Machine-readable: `training_failed`, `model_export_failed`, `accuracy_drop`, `accuracy_below_minimum`,
    /// `disk_space_low`, `memory_high`, `infected_upload`, `projection_held`.
    pub kind: String,
    pub severity: Severity,
    /// What it is about: `TrainingTask/<id>`, `Model/<id>`, `node/<host>/disk`, ...
    pub subject: String,
    pub message: String,
    /// The facts behind it (ids, figures, thresholds).
    pub details: Value,
    /// The user whose task or model it concerns (who sees it besides admins); none for the platform's own.
    pub owner_id: Option<Uuid>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Alert {
    pub id: Option<Uuid>,
    pub status: AlertStatus,
    pub kind: String,
    pub owner_id: Option<Uuid>,
    /// How many times it was raised (a recurring condition that came back).
    pub raised: u32,
}

fn checked_note(note: Option<String>) -> Result<Option<String>, AlertError> {
    let note = note.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    match note {
        Some(n) if n.chars().count() > MAX_NOTE_CHARS => Err(AlertError::NoteTooLong),
        other => Ok(other),
    }
}

impl Alert {
    /// Whether `actor` may see and act on this alert (the ownership rule, [`Actor::may_see`]: admins see every
    /// alert, others those about their own tasks and models); a never raised one is nobody's.
    pub fn visible_to(&self, actor: &Actor) -> bool {
        self.status != AlertStatus::None && actor.may_see(crate::Owned::Alert, self.owner_id)
    }
}

impl Aggregate for Alert {
    const TYPE: &'static str = "Alert";
    type Command = AlertCommand;
    type Event = AlertEvent;
    type Error = AlertError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &(), sink: &EventSink<Self>) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            AlertEvent::AlertRaised { spec, .. } => {
                self.status = AlertStatus::Open;
                self.kind = spec.kind;
                self.owner_id = spec.owner_id;
                self.raised += 1;
            }
            AlertEvent::AlertAcknowledged { .. } => self.status = AlertStatus::Acknowledged,
            AlertEvent::AlertResolved { .. } => self.status = AlertStatus::Resolved,
        }
    }
}
