//! Sensitive fields encrypted at rest (design 4.2): people's e-mail addresses, display names, the client
//! and address of their sessions, and the text of their questions and answers are stored sealed (AES-256-GCM)
//! wherever the platform writes them to PostgreSQL: event payloads, aggregate snapshots and read models.
//! Everything that reads them back (aggregates, the event log reader, view queries) opens them, so handlers,
//! workers and NATS subscribers see plain values.
//!
//! A sealed value is the string `sealed:v1:<key id>:<base64(nonce | ciphertext | tag)>`, bound to its
//! aggregate (`User/<id>`, `QaSession/<id>`) as associated data: a sealed cell copied to another record does
//! not open. Keys come in a [`KeyRing`]: the first seals, every one opens, so a key is rotated by putting a
//! new one in front and keeping the old ones for what they sealed. Values stored before encryption was turned
//! on stay readable (a plain string opens as itself) and are sealed when next written.
//!
//! The ring is process-wide, like the upcasters: [`crate::keyring::install`] it once at start, before anything reads events.
//! Without one, values are stored plain.
//!
//! The text of questions and answers is erasable instead: sealed with a data key per question
//! (`sealed:e1:...`, see [`crate::data_keys`]) whether or not a ring is installed, so deleting a question
//! makes every stored copy of it unreadable.

use crate::aead::SealError;
use crate::data_keys;
use crate::keyring::{self, ring};
use serde_json::Value;

/// Sensitive string fields of a payload: `fields` (JSON pointers relative to `at`) in each object that `at`
/// points to (`*` walks every element of an array). With `erasable_by`, the object's field of that name holds
/// the id of the data key that seals them (see [`crate::data_keys`]); without it, or when that field is
/// missing, the key ring seals them.
struct Sensitive {
    at: &'static str,
    fields: &'static [&'static str],
    erasable_by: Option<&'static str>,
}

const fn plain_keyed(at: &'static str, fields: &'static [&'static str]) -> Sensitive {
    Sensitive { at, fields, erasable_by: None }
}

const fn per_question(at: &'static str, fields: &'static [&'static str]) -> Sensitive {
    Sensitive { at, fields, erasable_by: Some("question_id") }
}

/// The sealed fields of each event.
fn sensitive_fields(aggregate_type: &str, event_type: &str) -> &'static [Sensitive] {
    const REGISTERED: &[Sensitive] = &[plain_keyed("/UserRegistered", &["email", "display_name"])];
    const PROFILE: &[Sensitive] = &[plain_keyed("/ProfileUpdated", &["email", "display_name"])];
    const SESSION: &[Sensitive] = &[plain_keyed("/SessionStarted", &["user_agent", "address"])];
    const ASKED: &[Sensitive] = &[
        per_question("/QuestionAsked", &["question", "system"]),
        per_question("/QuestionAsked/context/*", &["question", "answer"]),
    ];
    const ANSWERED: &[Sensitive] = &[per_question("/QuestionAnswered", &["answer/answer"])];
    match (aggregate_type, event_type) {
        ("User", "UserRegistered") => REGISTERED,
        ("User", "ProfileUpdated") => PROFILE,
        ("User", "SessionStarted") => SESSION,
        ("QaSession", "QuestionAsked") => ASKED,
        ("QaSession", "QuestionAnswered") => ANSWERED,
        _ => &[],
    }
}

/// The erasable fields of each aggregate's state (its snapshot).
fn sensitive_state(aggregate_type: &str) -> &'static [Sensitive] {
    const QA: &[Sensitive] =
        &[per_question("/pending/*", &["question"]), per_question("/recent/*", &["question", "answer"])];
    match aggregate_type {
        "QaSession" => QA,
        _ => &[],
    }
}

/// Whether snapshots of this aggregate type hold sensitive fields (its state keeps some of the above).
pub fn seals_snapshots(aggregate_type: &str) -> bool {
    matches!(aggregate_type, "User" | "QaSession")
}

/// The associated data of a value of aggregate `aggregate_type` / `aggregate_id`.
pub fn context(aggregate_type: &str, aggregate_id: &str) -> String {
    format!("{aggregate_type}/{aggregate_id}")
}

/// Whether `value` is sealed (with the key ring or with a data key).
pub fn is_sealed(value: &str) -> bool {
    keyring::is_ring_sealed(value) || data_keys::is_erasable(value)
}

/// Opens a value sealed for `context` with the installed ring (a plain value opens as itself).
/// An erasable value opens with its data key (see [`crate::data_keys`]), which must be loaded.
pub fn open(value: &str, context: &str) -> Result<String, SealError> {
    if data_keys::is_erasable(value) {
        return data_keys::open(value, context);
    }
    keyring::open(value, context)
}

fn pointer_targets<'v>(value: &'v mut Value, path: &[&str], out: &mut Vec<&'v mut Value>) {
    let Some((first, rest)) = path.split_first() else {
        out.push(value);
        return;
    };
    match (value, *first) {
        (Value::Array(items), "*") => {
            for item in items {
                pointer_targets(item, rest, out);
            }
        }
        (Value::Object(map), key) => {
            if let Some(child) = map.get_mut(key) {
                pointer_targets(child, rest, out);
            }
        }
        _ => {}
    }
}

/// The objects `at` points to in `value`.
fn objects_at<'v>(value: &'v mut Value, at: &str) -> Vec<&'v mut Value> {
    let path: Vec<&str> = at.trim_start_matches('/').split('/').filter(|p| !p.is_empty()).collect();
    let mut targets = Vec::new();
    pointer_targets(value, &path, &mut targets);
    targets
}

/// The data key that seals the fields of `object` under `spec`, if any.
fn erasable_key(spec: &Sensitive, object: &Value) -> Option<uuid::Uuid> {
    object.get(spec.erasable_by?)?.as_str()?.parse().ok()
}

/// Calls `f` with each sensitive string field of `value` under `specs` and the data key that seals it, if any.
fn each_field(
    specs: &[Sensitive],
    value: &mut Value,
    mut f: impl FnMut(Option<uuid::Uuid>, &mut String) -> Result<(), SealError>,
) -> Result<(), SealError> {
    for spec in specs {
        for object in objects_at(value, spec.at) {
            let key = erasable_key(spec, object);
            for field in spec.fields {
                if let Some(Value::String(text)) = object.pointer_mut(&format!("/{field}")) {
                    f(key, text)?;
                }
            }
        }
    }
    Ok(())
}

/// Seals the sensitive fields of `value` under `specs` in place: an erasable field with its data key (which
/// must be loaded), any other with the installed ring (left plain without one).
fn seal_fields(specs: &[Sensitive], value: &mut Value, context: &str) -> Result<(), SealError> {
    let ring = ring();
    each_field(specs, value, |key, plain| {
        if is_sealed(plain) || plain == data_keys::ERASED {
            return Ok(());
        }
        match (key, &ring) {
            (Some(id), _) => *plain = data_keys::seal(id, plain, context)?,
            (None, Some(ring)) => *plain = ring.seal(plain, context),
            (None, None) => {}
        }
        Ok(())
    })
}

/// Seals with their data keys (which must be loaded) the erasable fields of an event stored before question
/// text was erasable (plain, or sealed with the key ring); how many it changed.
pub fn make_erasable(
    aggregate_type: &str,
    aggregate_id: &str,
    event_type: &str,
    payload: &mut Value,
) -> Result<usize, SealError> {
    let context = context(aggregate_type, aggregate_id);
    let mut changed = 0;
    each_field(sensitive_fields(aggregate_type, event_type), payload, |key, text| {
        let Some(id) = key else { return Ok(()) };
        if data_keys::is_erasable(text) || text == data_keys::ERASED {
            return Ok(());
        }
        *text = data_keys::seal(id, &open(text, &context)?, &context)?;
        changed += 1;
        Ok(())
    })?;
    Ok(changed)
}

/// How many fields [`make_erasable`] would change in an event (no keys needed).
pub fn not_erasable(aggregate_type: &str, event_type: &str, payload: &Value) -> usize {
    let mut count = 0;
    let _ = each_field(sensitive_fields(aggregate_type, event_type), &mut payload.clone(), |key, text| {
        if key.is_some() && !data_keys::is_erasable(text) && text != data_keys::ERASED {
            count += 1;
        }
        Ok(())
    });
    count
}

/// The data keys that sealing `value` under `specs` takes.
fn data_keys_of(specs: &[Sensitive], value: &Value) -> Vec<uuid::Uuid> {
    if specs.iter().all(|spec| spec.erasable_by.is_none()) {
        return Vec::new(); // most events: no copy of the payload on the append path
    }
    let mut value = value.clone();
    let mut ids = Vec::new();
    for spec in specs {
        for object in objects_at(&mut value, spec.at) {
            ids.extend(erasable_key(spec, object));
        }
    }
    ids.sort();
    ids.dedup();
    ids
}

/// The data keys that sealing an event takes (those of the questions whose text it holds): the writer
/// creates or loads them before [`seal_event`].
pub fn event_data_keys(aggregate_type: &str, event_type: &str, payload: &Value) -> Vec<uuid::Uuid> {
    data_keys_of(sensitive_fields(aggregate_type, event_type), payload)
}

/// The data keys that sealing a snapshot of this aggregate type takes.
pub fn snapshot_data_keys(aggregate_type: &str, state: &Value) -> Vec<uuid::Uuid> {
    data_keys_of(sensitive_state(aggregate_type), state)
}

/// Seals the sensitive string fields of an event payload in place. Erasable fields need their data keys
/// loaded ([`event_data_keys`]); other fields are sealed with the installed ring, or left plain without one.
pub fn seal_event(
    aggregate_type: &str,
    aggregate_id: &str,
    event_type: &str,
    payload: &mut Value,
) -> Result<(), SealError> {
    seal_fields(sensitive_fields(aggregate_type, event_type), payload, &context(aggregate_type, aggregate_id))
}

/// Opens every sealed string in `value` (an event payload, whatever its version) in place.
pub fn open_all(value: &mut Value, context: &str) -> Result<(), SealError> {
    match value {
        Value::String(s) if is_sealed(s) => *s = open(s, context)?,
        Value::Array(items) => items.iter_mut().try_for_each(|v| open_all(v, context))?,
        Value::Object(map) => map.values_mut().try_for_each(|v| open_all(v, context))?,
        _ => {}
    }
    Ok(())
}

/// A snapshot (an aggregate's whole state) as stored: its erasable fields sealed with their data keys (which
/// must be loaded, [`snapshot_data_keys`]), then, for the aggregate types that keep sensitive fields and with
/// a ring, the whole sealed as one string.
pub fn seal_snapshot(aggregate_type: &str, aggregate_id: &str, mut state: Value) -> Result<Value, SealError> {
    let context = context(aggregate_type, aggregate_id);
    seal_fields(sensitive_state(aggregate_type), &mut state, &context)?;
    Ok(match ring() {
        Some(ring) if seals_snapshots(aggregate_type) => Value::String(ring.seal(&state.to_string(), &context)),
        _ => state,
    })
}

/// The state in a snapshot written by [`seal_snapshot`], with its erasable fields still sealed: load their
/// keys, then [`open_all`].
pub fn unwrap_snapshot(aggregate_type: &str, aggregate_id: &str, stored: Value) -> Result<Value, SealError> {
    match stored {
        Value::String(s) if keyring::is_ring_sealed(&s) => {
            let plain = open(&s, &context(aggregate_type, aggregate_id))?;
            serde_json::from_str(&plain).map_err(|_| SealError::Tampered)
        }
        other => Ok(other),
    }
}

/// The state in a snapshot written by [`seal_snapshot`] (its data keys loaded).
pub fn open_snapshot(aggregate_type: &str, aggregate_id: &str, stored: Value) -> Result<Value, SealError> {
    let mut state = unwrap_snapshot(aggregate_type, aggregate_id, stored)?;
    open_all(&mut state, &context(aggregate_type, aggregate_id))?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::{count_keys, install, key_id, KeyRing};
    use crate::RING_IN_USE;
    use serde_json::json;

    fn ring_of(keys: &[(&str, u8)]) -> KeyRing {
        use base64::Engine;
        let keys: Vec<String> = keys
            .iter()
            .map(|(id, byte)| format!("{id}:{}", base64::engine::general_purpose::STANDARD.encode([*byte; 32])))
            .collect();
        KeyRing::parse(&keys.join(","), "an index key of some length").unwrap()
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_for_its_record() {
        let ring = ring_of(&[("a", 1)]);
        let sealed = ring.seal("ada@example.com", "User/1");
        assert!(is_sealed(&sealed) && !sealed.contains("ada"), "{sealed}");
        assert_ne!(sealed, ring.seal("ada@example.com", "User/1"), "a fresh nonce every time");
        assert_eq!(ring.open(&sealed, "User/1").unwrap(), "ada@example.com");
        assert_eq!(ring.open(&sealed, "User/2"), Err(SealError::Tampered), "moved to another record");
        let mut altered = sealed.clone();
        // Another character than the one there (a random nonce makes the sealed text differ every run).
        let at = altered.len() - 6;
        let other = if &altered[at..=at] == "A" { "B" } else { "A" };
        altered.replace_range(at..=at, other);
        assert!(ring.open(&altered, "User/1").is_err());
        assert_eq!(ring_of(&[("b", 2)]).open(&sealed, "User/1"), Err(SealError::UnknownKey("a".into())));
        assert_eq!(ring.open("plain text", "User/1").unwrap(), "plain text", "values from before stay readable");
    }

    #[test]
    fn resealing_moves_every_value_of_older_keys_to_the_sealing_key() {
        let old = ring_of(&[("a", 1)]);
        let rotated = ring_of(&[("b", 2), ("a", 1)]);
        let mut payload = json!({"QuestionAsked": {"question": old.seal("q?", "QaSession/1"),
            "context": [{"question": old.seal("earlier", "QaSession/1"), "answer": rotated.seal("yes", "QaSession/1")}],
            "model_id": "m", "max_new_tokens": 4}});
        let mut counts = std::collections::BTreeMap::new();
        count_keys(&payload, &mut counts);
        assert_eq!(counts, [("a".to_owned(), 2), ("b".to_owned(), 1)].into());
        assert_eq!(rotated.reseal_all(&mut payload, "QaSession/1").unwrap(), 2);
        let mut counts = std::collections::BTreeMap::new();
        count_keys(&payload, &mut counts);
        assert_eq!(counts, [("b".to_owned(), 3)].into());
        let only_new = ring_of(&[("b", 2)]);
        assert_eq!(only_new.open(payload["QuestionAsked"]["question"].as_str().unwrap(), "QaSession/1").unwrap(), "q?");
        assert_eq!(payload["QuestionAsked"]["model_id"], "m");
        assert_eq!(rotated.reseal_all(&mut payload, "QaSession/1").unwrap(), 0, "nothing left to do");
        // A value that does not open for its record stops the rekeying: nothing is sealed over it.
        let mut moved = json!(old.seal("x", "QaSession/2"));
        assert_eq!(rotated.reseal_all(&mut moved, "QaSession/1"), Err(SealError::Tampered));
        assert_eq!(key_id("plain"), None);
    }

    #[test]
    fn a_rotated_ring_seals_with_the_new_key_and_opens_with_every_key() {
        let old = ring_of(&[("2026a", 1)]);
        let rotated = ring_of(&[("2026b", 2), ("2026a", 1)]);
        let before = old.seal("question", "QaSession/9");
        assert_eq!(rotated.open(&before, "QaSession/9").unwrap(), "question");
        let after = rotated.seal("question", "QaSession/9");
        assert!(after.starts_with("sealed:v1:2026b:"), "{after}");
        assert!(old.open(&after, "QaSession/9").is_err(), "the old ring alone cannot read the new key's values");
        assert_eq!(old.digest("x"), rotated.digest("x"), "digests do not depend on the keys");
    }

    #[test]
    fn keys_are_checked() {
        for (keys, index) in [
            ("", "an index key of some length"),
            ("a", "an index key of some length"),
            ("a:bm90IDMyIGJ5dGVz", "an index key of some length"),
            (
                "a:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,a:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                "an index key of some length",
            ),
            ("a b:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "an index key of some length"),
            ("a:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "short"),
        ] {
            assert!(KeyRing::parse(keys, index).is_err(), "{keys} / {index}");
        }
        let generated = KeyRing::generate_key();
        assert!(KeyRing::parse(&format!("k:{generated}"), "an index key of some length").is_ok());
    }

    #[test]
    fn event_fields_are_sealed_by_path_and_opened_wherever_they_are() {
        // Only this test installs a ring in this test binary; the tests that seal with the installed ring wait.
        let _ring = RING_IN_USE.lock().unwrap_or_else(|e| e.into_inner());
        install(Some(ring_of(&[("a", 1)])));
        let mut payload = json!({"QuestionAsked": {
            "question": "what is our margin?", "question_id": "q1",
            "context": [{"question": "earlier", "answer": "reply", "question_id": "q0"}],
            "params": {"max_new_tokens": 5}
        }});
        seal_event("QaSession", "s1", "QuestionAsked", &mut payload).unwrap();
        let text = payload.to_string();
        for secret in ["margin", "earlier", "reply"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert_eq!(payload["QuestionAsked"]["question_id"], "q1", "other fields stay plain");
        assert_eq!(payload["QuestionAsked"]["context"][0]["question_id"], "q0");
        open_all(&mut payload, "QaSession/s1").unwrap();
        assert_eq!(payload["QuestionAsked"]["question"], "what is our margin?");
        assert_eq!(payload["QuestionAsked"]["context"][0]["answer"], "reply");

        let state = json!({"email": "ada@example.com"});
        let stored = seal_snapshot("User", "u1", state.clone()).unwrap();
        assert!(!stored.to_string().contains("ada"));
        assert_eq!(open_snapshot("User", "u1", stored).unwrap(), state);
        assert_eq!(seal_snapshot("Dataset", "d1", state.clone()).unwrap(), state, "no sensitive fields: left as it is");
        install(None);
    }

    #[test]
    fn question_text_is_sealed_with_the_data_key_of_its_question_everywhere_it_is_copied() {
        let _ring = RING_IN_USE.lock().unwrap_or_else(|e| e.into_inner());
        let (asked, earlier) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let mut payload = json!({"QuestionAsked": {
            "question": "what is our margin?", "question_id": asked.to_string(),
            "context": [{"question": "earlier", "answer": "reply", "question_id": earlier.to_string()}],
        }});
        assert_eq!(event_data_keys("QaSession", "QuestionAsked", &payload), {
            let mut ids = vec![asked, earlier];
            ids.sort();
            ids
        });
        assert_eq!(
            seal_event("QaSession", "s1", "QuestionAsked", &mut payload.clone()),
            Err(SealError::DataKeyNotLoaded(asked)),
            "no sealing before the keys are loaded"
        );
        data_keys::remember([(asked, Some(data_keys::new_key(asked))), (earlier, Some(data_keys::new_key(earlier)))])
            .unwrap();
        seal_event("QaSession", "s1", "QuestionAsked", &mut payload).unwrap();
        let question = payload["QuestionAsked"]["question"].as_str().unwrap().to_owned();
        assert_eq!(data_keys::key_id(&question), Some(asked));
        assert_eq!(
            data_keys::key_id(payload["QuestionAsked"]["context"][0]["answer"].as_str().unwrap()),
            Some(earlier)
        );
        assert_eq!(key_id(&question), None, "not a key ring value: rekeying leaves it alone");

        // The earlier question is deleted: its copies read as erased, the new question still opens.
        data_keys::forget(&[earlier]);
        let mut read = payload.clone();
        open_all(&mut read, "QaSession/s1").unwrap();
        assert_eq!(read["QuestionAsked"]["question"], "what is our margin?");
        assert_eq!(read["QuestionAsked"]["context"][0]["question"], data_keys::ERASED);
        assert_eq!(read["QuestionAsked"]["context"][0]["answer"], data_keys::ERASED);

        // A snapshot keeps the pending question sealed with its key, whatever the ring.
        let state =
            json!({"pending": [{"question_id": asked.to_string(), "question": "what is our margin?"}], "recent": []});
        assert_eq!(snapshot_data_keys("QaSession", &state), vec![asked]);
        let stored = seal_snapshot("QaSession", "s1", state.clone()).unwrap();
        assert!(!stored.to_string().contains("margin"));
        assert_eq!(open_snapshot("QaSession", "s1", stored.clone()).unwrap(), state);
        data_keys::forget(&[asked]);
        assert_eq!(open_snapshot("QaSession", "s1", stored).unwrap()["pending"][0]["question"], data_keys::ERASED);

        // An event from before: its text made erasable, that of an erased question replaced.
        let later = uuid::Uuid::new_v4();
        data_keys::remember([(later, Some(data_keys::new_key(later)))]).unwrap();
        let mut old = json!({"QuestionAsked": {"question": "older", "question_id": later.to_string(),
            "context": [{"question": "gone", "answer": "gone too", "question_id": asked.to_string()}, {"question": "kept", "answer": "as is"}]}});
        assert_eq!(not_erasable("QaSession", "QuestionAsked", &old), 3);
        assert_eq!(make_erasable("QaSession", "s1", "QuestionAsked", &mut old).unwrap(), 3);
        assert_eq!(not_erasable("QaSession", "QuestionAsked", &old), 0);
        assert_eq!(data_keys::key_id(old["QuestionAsked"]["question"].as_str().unwrap()), Some(later));
        assert_eq!(
            old["QuestionAsked"]["context"][0],
            json!({"question": data_keys::ERASED, "answer": data_keys::ERASED, "question_id": asked.to_string()})
        );
        assert_eq!(old["QuestionAsked"]["context"][1]["question"], "kept", "no question id: nothing to erase it by");
        assert_eq!(make_erasable("QaSession", "s1", "QuestionAsked", &mut old).unwrap(), 0, "done once");
    }
}
