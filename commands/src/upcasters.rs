//! The domain's upcasters plugged into cqrs-es, so aggregates load old payloads as current events.

use cqrs_es::persist::{EventUpcaster, SerializedEvent};

struct DomainUpcasters;

impl EventUpcaster for DomainUpcasters {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        bonsai_domain::upcast::UPCASTERS.iter().any(|u| u.event_type == event_type && u.from == event_version)
    }

    fn upcast(&self, mut event: SerializedEvent) -> SerializedEvent {
        let (version, payload) = bonsai_domain::upcast::upcast(
            &event.aggregate_type,
            &event.event_type,
            &event.event_version,
            std::mem::take(&mut event.payload),
        );
        event.event_version = version;
        event.payload = payload;
        event
    }
}

pub(crate) fn all() -> Vec<Box<dyn EventUpcaster>> {
    vec![Box::new(DomainUpcasters)]
}
