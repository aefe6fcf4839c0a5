//! Commands of the Alert aggregate and the decisions they lead to.

use super::*;

#[derive(Debug, Clone)]
pub enum AlertCommand {
    /// Raises the alert unless it is active; a resolved one is raised again only when `recurring`.
    Raise {
        spec: AlertSpec,
        recurring: bool,
    },
    Acknowledge {
        by: Actor,
        note: Option<String>,
    },
    /// `by` is none when the worker resolves it (the condition cleared): then resolving a resolved (or
    /// never raised) alert is a no-op rather than an error.
    Resolve {
        by: Option<Actor>,
        note: Option<String>,
    },
}

impl Alert {
    pub(super) fn decide(&self, command: AlertCommand) -> Result<Vec<AlertEvent>, AlertError> {
        match command {
            AlertCommand::Raise { spec, recurring } => {
                let raise = match self.status {
                    AlertStatus::None => true,
                    AlertStatus::Resolved => recurring,
                    AlertStatus::Open | AlertStatus::Acknowledged => false,
                };
                Ok(if raise { vec![AlertEvent::AlertRaised { spec, recurring }] } else { vec![] })
            }
            AlertCommand::Acknowledge { by, note } => {
                let note = checked_note(note)?;
                match self.status {
                    AlertStatus::None => Err(AlertError::NotFound),
                    AlertStatus::Resolved => Err(AlertError::AlreadyResolved),
                    AlertStatus::Acknowledged => Ok(vec![]),
                    AlertStatus::Open => Ok(vec![AlertEvent::AlertAcknowledged { by: by.id, note }]),
                }
            }
            AlertCommand::Resolve { by, note } => {
                let note = checked_note(note)?;
                match (self.status, by) {
                    (AlertStatus::Open | AlertStatus::Acknowledged, by) => {
                        Ok(vec![AlertEvent::AlertResolved { by: by.map(|a| a.id), note }])
                    }
                    (_, None) => Ok(vec![]),
                    (AlertStatus::None, Some(_)) => Err(AlertError::NotFound),
                    (AlertStatus::Resolved, Some(_)) => Err(AlertError::AlreadyResolved),
                }
            }
        }
    }
}
