//! The platform's one typed event vocabulary: every aggregate type by name ([`AggregateKind`]) and every event
//! of every aggregate as one enum ([`Event`]), decoded from a stored payload by its aggregate type. Workers,
//! projections and subscribers match on these variants, never on event type names as strings.

use crate::alert::AlertEvent;
use crate::dataset::DatasetEvent;
use crate::model::ModelEvent;
use crate::qa::QaEvent;
use crate::training::TrainingTaskEvent;
use crate::user::UserEvent;
use cqrs_es::DomainEvent;
use serde_json::Value;

/// The six aggregate types, as the event store and the NATS subjects name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggregateKind {
    Dataset,
    TrainingTask,
    Model,
    QaSession,
    User,
    Alert,
}

impl AggregateKind {
    pub const ALL: [AggregateKind; 6] = [
        AggregateKind::Dataset,
        AggregateKind::TrainingTask,
        AggregateKind::Model,
        AggregateKind::QaSession,
        AggregateKind::User,
        AggregateKind::Alert,
    ];

    /// The stored name (each aggregate's `Aggregate::TYPE`).
    pub fn as_str(self) -> &'static str {
        use cqrs_es::Aggregate;
        match self {
            AggregateKind::Dataset => crate::dataset::Dataset::TYPE,
            AggregateKind::TrainingTask => crate::training::TrainingTask::TYPE,
            AggregateKind::Model => crate::model::Model::TYPE,
            AggregateKind::QaSession => crate::qa::QaSession::TYPE,
            AggregateKind::User => crate::user::User::TYPE,
            AggregateKind::Alert => crate::alert::Alert::TYPE,
        }
    }

    /// The kind a stored name stands for.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl std::fmt::Display for AggregateKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Any event of the platform.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Dataset(DatasetEvent),
    TrainingTask(TrainingTaskEvent),
    Model(ModelEvent),
    QaSession(QaEvent),
    User(UserEvent),
    Alert(AlertEvent),
}

/// Why a stored payload is not an event of its aggregate type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown aggregate type `{0}`")]
    UnknownAggregate(String),
    #[error("not a {kind} event: {reason}")]
    Payload { kind: AggregateKind, reason: String },
}

impl Event {
    /// The event a payload of aggregate type `aggregate_type` holds (the payload as stored, upcast to the
    /// current version).
    pub fn decode(aggregate_type: &str, payload: &Value) -> Result<Event, DecodeError> {
        let kind = AggregateKind::parse(aggregate_type)
            .ok_or_else(|| DecodeError::UnknownAggregate(aggregate_type.to_owned()))?;
        Self::decode_as(kind, payload)
    }

    /// The event a payload of aggregate kind `kind` holds.
    pub fn decode_as(kind: AggregateKind, payload: &Value) -> Result<Event, DecodeError> {
        fn read<E: serde::de::DeserializeOwned>(kind: AggregateKind, payload: &Value) -> Result<E, DecodeError> {
            E::deserialize(payload).map_err(|e| DecodeError::Payload { kind, reason: e.to_string() })
        }
        Ok(match kind {
            AggregateKind::Dataset => Event::Dataset(read(kind, payload)?),
            AggregateKind::TrainingTask => Event::TrainingTask(read(kind, payload)?),
            AggregateKind::Model => Event::Model(read(kind, payload)?),
            AggregateKind::QaSession => Event::QaSession(read(kind, payload)?),
            AggregateKind::User => Event::User(read(kind, payload)?),
            AggregateKind::Alert => Event::Alert(read(kind, payload)?),
        })
    }

    /// The aggregate kind the event belongs to.
    pub fn kind(&self) -> AggregateKind {
        match self {
            Event::Dataset(_) => AggregateKind::Dataset,
            Event::TrainingTask(_) => AggregateKind::TrainingTask,
            Event::Model(_) => AggregateKind::Model,
            Event::QaSession(_) => AggregateKind::QaSession,
            Event::User(_) => AggregateKind::User,
            Event::Alert(_) => AggregateKind::Alert,
        }
    }

    /// The event type's stored name (`QuestionAnswered`, ...).
    pub fn event_type(&self) -> String {
        match self {
            Event::Dataset(e) => e.event_type(),
            Event::TrainingTask(e) => e.event_type(),
            Event::Model(e) => e.event_type(),
            Event::QaSession(e) => e.event_type(),
            Event::User(e) => e.event_type(),
            Event::Alert(e) => e.event_type(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_round_trip_through_their_stored_names() {
        for kind in AggregateKind::ALL {
            assert_eq!(AggregateKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(AggregateKind::parse("Nothing"), None);
    }

    #[test]
    fn a_payload_decodes_as_its_aggregate_s_event_and_nothing_else() {
        let payload = json!({"TrainingStartRequested": {"attempt": 2}});
        let event = Event::decode("TrainingTask", &payload).unwrap();
        assert_eq!(event, Event::TrainingTask(TrainingTaskEvent::TrainingStartRequested { attempt: 2 }));
        assert_eq!(
            (event.kind(), event.event_type().as_str()),
            (AggregateKind::TrainingTask, "TrainingStartRequested")
        );
        assert!(matches!(Event::decode("Dataset", &payload), Err(DecodeError::Payload { .. })));
        assert_eq!(Event::decode("Nope", &payload), Err(DecodeError::UnknownAggregate("Nope".into())));
    }
}
