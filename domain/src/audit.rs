//! What the outside world may see of an event payload. Password hashes (and API key hashes) are in the events (they are the
//! source of truth for logins) but never leave the store: the relay and the audit API both pass every
//! payload through [`redact`].

use serde_json::Value;

/// Fields whose values are replaced before a payload leaves the event store.
pub const SECRET_FIELDS: &[&str] = &["password_hash", "secret_hash"];

/// Replaces secret fields, at any depth, with `"[redacted]"`.
pub fn redact(payload: &mut Value) {
    match payload {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if SECRET_FIELDS.contains(&key.as_str()) {
                    *value = Value::String("[redacted]".into());
                } else {
                    redact(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn password_hashes_are_redacted_at_any_depth() {
        let mut payload = json!({"UserRegistered": {"username": "ann", "password_hash": "$argon2id$..."}, "x": [{"password_hash": "h"}]});
        redact(&mut payload);
        assert_eq!(payload["UserRegistered"]["password_hash"], "[redacted]");
        assert_eq!(payload["UserRegistered"]["username"], "ann");
        assert_eq!(payload["x"][0]["password_hash"], "[redacted]");
        assert!(!payload.to_string().contains("argon2"));
    }
}
