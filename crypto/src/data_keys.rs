//! Erasable values (crypto-shredding). The text of a question and of its answer is sealed with a data key
//! of its own (one per question), wherever it is written: the `QuestionAsked` event, copies of it in the
//! context of later questions, the `QuestionAnswered` event, aggregate snapshots, the NATS stream. Events are
//! never rewritten (they are the audit trail), so deleting a question erases its data key instead: every copy
//! of its text becomes unreadable at once, in PostgreSQL, in JetStream's files and in backups of the events,
//! while the events themselves (who asked, when, which model, how long it took) stay. (A backup of the
//! `data_keys` table still holds the keys it was taken with: keep such backups for a short time only.)
//!
//! An erasable value is the string `sealed:e1:<data key id>:<base64(nonce | ciphertext | tag)>`, bound to
//! its record like every sealed value. The keys live in the `data_keys` table (sealed with the key ring when
//! encryption at rest is on, under `DataKey/<id>`); an erased key is a row whose key is gone. A value whose key
//! is erased opens as [`ERASED`].
//!
//! Opening is synchronous, loading keys is not: readers first find the keys a value needs that this process
//! has not loaded ([`to_load`]), read them from the database ([`remember`]), then open. Loaded keys are
//! trusted for [`FRESH_FOR`]; after that a reader reloads them. The node that erases a key forgets it at
//! once ([`forget`]); every other node hears of the erasure from PostgreSQL (a trigger on `data_keys`
//! notifies at commit) and forgets it too, and treats every loaded key as stale ([`expire_all`]) whenever it
//! may have missed such a notice, so [`FRESH_FOR`] only bounds what a lost notice can delay.

use crate::aead::SealError;
use ring::aead::{LessSafeKey, UnboundKey, AES_256_GCM};
use ring::rand::SystemRandom;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, RwLock};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// What an erasable value whose key was erased opens as.
pub const ERASED: &str = "[erased]";

pub(crate) const PREFIX: &str = "sealed:e1:";

/// How long a loaded key is used before it is read again.
pub const FRESH_FOR: Duration = Duration::from_secs(60);

/// Keys kept in memory at most; past that the cache starts again empty.
const MAX_CACHED: usize = 100_000;

enum Cached {
    /// A key and when it was loaded, in which [`GENERATION`].
    Live {
        key: Box<LessSafeKey>,
        loaded: Instant,
        generation: u64,
    },
    Erased,
}

static CACHE: LazyLock<RwLock<HashMap<Uuid, Cached>>> = LazyLock::new(|| RwLock::new(HashMap::new()));

/// Raised by [`expire_all`]: keys loaded in an earlier generation are stale.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The associated data of a data key sealed with the key ring.
pub fn context(id: Uuid) -> String {
    format!("DataKey/{id}")
}

/// The id of the data key that sealed `value`; none for any other value.
pub fn key_id(value: &str) -> Option<Uuid> {
    value.strip_prefix(PREFIX)?.split_once(':')?.0.parse().ok()
}

/// Whether `value` is erasable.
pub fn is_erasable(value: &str) -> bool {
    value.starts_with(PREFIX)
}

/// A new data key for `id`, as the `data_keys` table stores it: sealed with the installed key ring, or
/// plain base64 without one.
pub fn new_key(id: Uuid) -> String {
    crate::keyring::seal(&crate::keyring::KeyRing::generate_key(), &context(id))
}

fn decode(id: Uuid, stored: &str) -> Result<LessSafeKey, SealError> {
    use base64::Engine;
    let encoded = crate::keyring::open(stored, &context(id))?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| SealError::Tampered)?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| SealError::Tampered)?;
    Ok(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &bytes).expect("32 bytes make an AES-256 key")))
}

/// Keys read from the `data_keys` table: `(id, Some(stored key))` for a live one, `(id, None)` for an erased one.
pub fn remember(rows: impl IntoIterator<Item = (Uuid, Option<String>)>) -> Result<(), SealError> {
    let mut decoded = Vec::new();
    for (id, stored) in rows {
        let entry = match stored {
            Some(stored) => Cached::Live {
                key: Box::new(decode(id, &stored)?),
                loaded: Instant::now(),
                generation: GENERATION.load(Ordering::Acquire),
            },
            None => Cached::Erased,
        };
        decoded.push((id, entry));
    }
    let mut cache = CACHE.write().expect("data key cache lock");
    if cache.len() + decoded.len() > MAX_CACHED {
        cache.clear();
    }
    for (id, entry) in decoded {
        // An erased key never lives again: a read that began before the erasure and ends after the notice of it
        // must not bring the key back.
        if !matches!(cache.get(&id), Some(Cached::Erased)) {
            cache.insert(id, entry);
        }
    }
    Ok(())
}

/// Marks keys erased in this process (the node that erased them does not wait for [`FRESH_FOR`]).
pub fn forget(ids: &[Uuid]) {
    let mut cache = CACHE.write().expect("data key cache lock");
    for id in ids {
        cache.insert(*id, Cached::Erased);
    }
}

/// Makes every loaded key stale: readers load each again before they next open with it (values still open
/// meanwhile). For when this process may have missed the notice of an erasure.
pub fn expire_all() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// Adds to `out` the keys that opening the erasable values in `value` needs and that are not loaded (or
/// loaded longer than [`FRESH_FOR`] ago, or before the last [`expire_all`]).
pub fn to_load(value: &Value, out: &mut BTreeSet<Uuid>) {
    let current = GENERATION.load(Ordering::Acquire);
    let cache = CACHE.read().expect("data key cache lock");
    collect(value, &mut |id| match cache.get(&id) {
        Some(Cached::Erased) => {}
        Some(Cached::Live { loaded, generation, .. }) if *generation == current && loaded.elapsed() < FRESH_FOR => {}
        _ => {
            out.insert(id);
        }
    });
}

fn collect(value: &Value, found: &mut impl FnMut(Uuid)) {
    match value {
        Value::String(s) => {
            if let Some(id) = key_id(s) {
                found(id)
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, found)),
        Value::Object(map) => map.values().for_each(|v| collect(v, found)),
        _ => {}
    }
}

/// Whether key `id` is loaded (live or erased), whatever its age: sealing with a key needs no fresher one.
pub fn is_loaded(id: Uuid) -> bool {
    CACHE.read().expect("data key cache lock").contains_key(&id)
}

/// `plain` sealed for `context` with data key `id` (which must be loaded), or [`ERASED`] when that key is
/// erased. Opened by `sealed::open`.
pub fn seal(id: Uuid, plain: &str, context: &str) -> Result<String, SealError> {
    let cache = CACHE.read().expect("data key cache lock");
    match cache.get(&id) {
        Some(Cached::Live { key, .. }) => {
            Ok(format!("{PREFIX}{id}:{}", crate::aead::seal_with(key, &SystemRandom::new(), plain, context)))
        }
        Some(Cached::Erased) => Ok(ERASED.to_owned()),
        None => Err(SealError::DataKeyNotLoaded(id)),
    }
}

/// Opens an erasable value sealed for `context`: [`ERASED`] when its key is erased.
pub(crate) fn open(value: &str, context: &str) -> Result<String, SealError> {
    let rest = value.strip_prefix(PREFIX).ok_or(SealError::Tampered)?;
    let (id, encoded) = rest.split_once(':').ok_or(SealError::Tampered)?;
    let id: Uuid = id.parse().map_err(|_| SealError::Tampered)?;
    let cache = CACHE.read().expect("data key cache lock");
    match cache.get(&id) {
        Some(Cached::Live { key, .. }) => crate::aead::open_with(key, encoded, context),
        Some(Cached::Erased) => Ok(ERASED.to_owned()),
        None => Err(SealError::DataKeyNotLoaded(id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_erasable_value_opens_while_its_key_lives_and_reads_erased_after() {
        let _ring = crate::RING_IN_USE.lock().unwrap_or_else(|e| e.into_inner());
        let id = Uuid::new_v4();
        assert_eq!(seal(id, "x", "QaSession/1"), Err(SealError::DataKeyNotLoaded(id)), "no key loaded: no sealing");
        let stored = new_key(id);
        remember([(id, Some(stored.clone()))]).unwrap();
        let sealed = seal(id, "what is our margin?", "QaSession/1").unwrap();
        assert!(is_erasable(&sealed) && !sealed.contains("margin"), "{sealed}");
        assert_eq!(key_id(&sealed), Some(id));
        assert_eq!(open(&sealed, "QaSession/1").unwrap(), "what is our margin?");
        assert_eq!(open(&sealed, "QaSession/2"), Err(SealError::Tampered), "moved to another record");
        let mut missing = BTreeSet::new();
        to_load(&serde_json::json!({"a": [sealed.clone()]}), &mut missing);
        assert!(missing.is_empty(), "a fresh key is not loaded again");
        expire_all();
        to_load(&serde_json::json!([sealed.clone()]), &mut missing);
        assert_eq!(missing, [id].into(), "an expired key is loaded again");
        assert_eq!(open(&sealed, "QaSession/1").unwrap(), "what is our margin?", "and opens meanwhile");
        remember([(id, Some(stored))]).unwrap();
        missing.clear();
        to_load(&serde_json::json!([sealed.clone()]), &mut missing);
        assert!(missing.is_empty(), "loaded again, it is fresh");

        forget(&[id]);
        assert_eq!(open(&sealed, "QaSession/1").unwrap(), ERASED);
        assert_eq!(seal(id, "again", "QaSession/1").unwrap(), ERASED, "an erased key seals nothing");

        let other = Uuid::new_v4();
        let unknown = sealed.replace(&id.to_string(), &other.to_string());
        assert_eq!(open(&unknown, "QaSession/1"), Err(SealError::DataKeyNotLoaded(other)));
        to_load(&serde_json::json!({"a": [unknown]}), &mut missing);
        assert_eq!(missing, [other].into());
        remember([(other, None)]).unwrap();
        assert!(is_loaded(other));
        remember([(id, Some(new_key(id)))]).unwrap();
        assert_eq!(open(&sealed, "QaSession/1").unwrap(), ERASED, "a key read before its erasure stays erased");
    }
}
