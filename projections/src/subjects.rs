//! The event stream's naming on NATS, owned here and nowhere else: every subject an event is published on,
//! every filter a consumer or subscriber takes, and the core-NATS subjects beside the stream (the relay's
//! wake-up, a question's token stream). Events are published on `<prefix>.events.<AggregateType>.<id>`; the
//! stream takes `<prefix>.events.>`.

use bonsai_domain::AggregateKind;
use std::fmt::Display;

/// The subjects of one instance (its configured prefix, `bonsai` by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    pub fn new(prefix: impl Into<String>) -> Self {
        Subjects { prefix: prefix.into() }
    }

    /// The configured prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Every event: the JetStream stream's subject filter.
    pub fn all_events(&self) -> String {
        format!("{}.events.>", self.prefix)
    }

    /// Every event of one aggregate type.
    pub fn events_of(&self, kind: AggregateKind) -> String {
        format!("{}.events.{kind}.>", self.prefix)
    }

    /// Every event of one aggregate type named as stored (the projections list theirs by name).
    pub fn events_of_type(&self, aggregate_type: &str) -> String {
        format!("{}.events.{aggregate_type}.>", self.prefix)
    }

    /// The events of one aggregate: where an event of it is published.
    pub fn events_of_one(&self, aggregate_type: impl Display, id: impl Display) -> String {
        format!("{}.events.{aggregate_type}.{id}", self.prefix)
    }

    /// Core NATS: where the relay leader is woken.
    pub fn relay_wake(&self) -> String {
        format!("{}.relay.wake", self.prefix)
    }

    /// Core NATS: the tokens of one question as they are generated (ephemeral, not in the stream).
    pub fn question_tokens(&self, question_id: impl Display) -> String {
        format!("{}.tokens.{question_id}", self.prefix)
    }

    /// Core NATS: where the node holding a question's client asks the answering node to stop (the client
    /// went away).
    pub fn question_cancel(&self, question_id: impl Display) -> String {
        format!("{}.cancel.{question_id}", self.prefix)
    }

    /// The JetStream stream that carries the instance's events.
    pub fn stream_name(&self) -> String {
        let clean: String =
            self.prefix.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
        format!("{clean}_EVENTS")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_s_subject_falls_under_its_type_s_filter_and_the_stream_s() {
        let s = Subjects::new("acme-1");
        let one = s.events_of_one(AggregateKind::Model, "42");
        assert_eq!(one, "acme-1.events.Model.42");
        assert_eq!(s.events_of(AggregateKind::Model), "acme-1.events.Model.>");
        assert_eq!(s.events_of_type("Model"), s.events_of(AggregateKind::Model));
        assert_eq!(s.all_events(), "acme-1.events.>");
        assert_eq!(s.stream_name(), "ACME_1_EVENTS");
        assert!(!s.relay_wake().starts_with("acme-1.events."), "core subjects stay out of the stream");
        assert!(!s.question_tokens("q").starts_with("acme-1.events."));
    }
}
