//! Upcasters: old event payloads turned into the current shape on read, so that stored events are never
//! rewritten and no reader (aggregate, relay, projection, audit) handles more than one version.

use serde_json::Value;

/// One step: `event_type` at `from` becomes `to` through `f`.
pub struct Upcaster {
    pub aggregate_type: &'static str,
    pub event_type: &'static str,
    pub from: &'static str,
    pub to: &'static str,
    pub f: fn(Value) -> Value,
}

/// Every upcaster of the platform, applied in chains until none matches.
pub const UPCASTERS: &[Upcaster] = &[
    Upcaster {
        // Version 0 of UserRegistered (written before display names existed) had no `display_name`.
        aggregate_type: "User",
        event_type: "UserRegistered",
        from: "0",
        to: "1",
        f: |payload| with_default(payload, "UserRegistered", "display_name", Value::String(String::new())),
    },
    Upcaster {
        // Version 1 of DatasetValidationRequested predates token counts: no tokenizer was asked for.
        aggregate_type: "Dataset",
        event_type: "DatasetValidationRequested",
        from: "1",
        to: "2",
        f: |payload| with_default(payload, "DatasetValidationRequested", "tokenizer_model_id", Value::Null),
    },
];

/// `payload` (`{"<Variant>": {...}}`) with `field` set to `value` where it is missing.
fn with_default(mut payload: Value, variant: &str, field: &str, value: Value) -> Value {
    if let Some(body) = payload.get_mut(variant).and_then(Value::as_object_mut) {
        body.entry(field).or_insert(value);
    }
    payload
}

/// Whether any upcaster applies to this event.
pub fn needs_upcast(aggregate_type: &str, event_type: &str, version: &str) -> bool {
    UPCASTERS.iter().any(|u| u.aggregate_type == aggregate_type && u.event_type == event_type && u.from == version)
}

/// Brings `payload` to the current version of its event; returns the new version and payload.
pub fn upcast(aggregate_type: &str, event_type: &str, version: &str, mut payload: Value) -> (String, Value) {
    let mut version = version.to_owned();
    while let Some(step) =
        UPCASTERS.iter().find(|u| u.aggregate_type == aggregate_type && u.event_type == event_type && u.from == version)
    {
        payload = (step.f)(payload);
        version = step.to.to_owned();
    }
    (version, payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::UserEvent;
    use serde_json::json;

    #[test]
    fn a_version_0_registration_reads_as_the_current_event() {
        let old = json!({"UserRegistered": {"user_id": "6b0a5a1e-0000-4b0b-9a1d-b0a5a1b0a5a1", "username": "ann",
            "email": "ann@example.com", "role": "user", "password_hash": "h"}});
        assert!(serde_json::from_value::<UserEvent>(old.clone()).is_err(), "v0 does not parse as v1");
        let (version, payload) = upcast("User", "UserRegistered", "0", old);
        assert_eq!(version, "1");
        let event: UserEvent = serde_json::from_value(payload).unwrap();
        assert!(matches!(event, UserEvent::UserRegistered { display_name, .. } if display_name.is_empty()));
    }

    #[test]
    fn a_version_1_validation_request_reads_as_one_without_a_tokenizer() {
        let old = json!({"DatasetValidationRequested": {"version": 3, "sha256": "ab"}});
        let (version, payload) = upcast("Dataset", "DatasetValidationRequested", "1", old);
        assert_eq!(version, "2");
        let event: crate::dataset::DatasetEvent = serde_json::from_value(payload).unwrap();
        assert_eq!(
            event,
            crate::dataset::DatasetEvent::DatasetValidationRequested {
                version: 3,
                sha256: "ab".into(),
                tokenizer_model_id: None
            }
        );
    }

    #[test]
    fn current_versions_pass_through_untouched() {
        let payload = json!({"RoleChanged": {"role": "admin"}});
        assert_eq!(upcast("User", "RoleChanged", "1", payload.clone()), ("1".to_owned(), payload));
        assert!(!needs_upcast("User", "UserRegistered", "1"));
    }
}
