//! The key ring (encryption at rest, design 4.2): named AES-256 keys, the first seals and every one opens,
//! so a key is rotated by putting a new one in front and keeping the old ones for what they sealed. A value
//! sealed with the ring is `sealed:v1:<key id>:<base64(nonce | ciphertext | tag)>`.
//!
//! The ring is process-wide, like the upcasters: [`install`] it once at start, before anything reads events.
//! Without one, values are stored plain.

use crate::aead::{open_with, seal_with, SealError};
use ring::aead::{LessSafeKey, UnboundKey, AES_256_GCM};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::Value;
use std::sync::{Arc, RwLock};

pub(crate) const PREFIX: &str = "sealed:v1:";

/// Encryption keys: the first seals, all open.
pub struct KeyRing {
    keys: Vec<(String, LessSafeKey)>,
    index: hmac::Key,
    random: SystemRandom,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("KeyRing").field("key_ids", &ids).finish_non_exhaustive()
    }
}

fn decode_key(id: &str, encoded: &str) -> Result<[u8; 32], SealError> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| SealError::InvalidKeys(format!("key `{id}` is not base64")))?;
    bytes.try_into().map_err(|_| SealError::InvalidKeys(format!("key `{id}` is not 32 bytes (AES-256)")))
}

impl KeyRing {
    /// `id:base64-of-32-bytes` entries, comma-separated, the sealing key first (`2026b:..., 2026a:...`).
    /// `index_key` (any secret text) keys the look-up digests of sealed values ([`KeyRing::digest`]); it must
    /// outlive key rotations, so it is separate from the keys.
    pub fn parse(keys: &str, index_key: &str) -> Result<Self, SealError> {
        let mut ring = Vec::new();
        for entry in keys.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (id, encoded) =
                entry.split_once(':').ok_or_else(|| SealError::InvalidKeys("each key is `id:base64`".into()))?;
            let id = id.trim();
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(SealError::InvalidKeys(format!("key id `{id}`: letters, digits, - and _ only")));
            }
            if ring.iter().any(|(other, _)| other == id) {
                return Err(SealError::InvalidKeys(format!("key id `{id}` appears twice")));
            }
            let key = UnboundKey::new(&AES_256_GCM, &decode_key(id, encoded)?).expect("32 bytes make an AES-256 key");
            ring.push((id.to_owned(), LessSafeKey::new(key)));
        }
        if ring.is_empty() {
            return Err(SealError::InvalidKeys("no key".into()));
        }
        if index_key.len() < 16 {
            return Err(SealError::InvalidKeys("the index key must be at least 16 characters".into()));
        }
        Ok(Self {
            keys: ring,
            index: hmac::Key::new(hmac::HMAC_SHA256, index_key.as_bytes()),
            random: SystemRandom::new(),
        })
    }

    /// A new random key, as `parse` takes it (base64 of 32 bytes).
    pub fn generate_key() -> String {
        use base64::Engine;
        let mut key = [0u8; 32];
        SystemRandom::new().fill(&mut key).expect("the system's random source works");
        base64::engine::general_purpose::STANDARD.encode(key)
    }

    /// Seals `plain` for `context`.
    pub fn seal(&self, plain: &str, context: &str) -> String {
        let (id, key) = &self.keys[0];
        format!("{PREFIX}{id}:{}", seal_with(key, &self.random, plain, context))
    }

    /// Opens a value sealed for `context`; a plain value is returned as it is.
    pub fn open(&self, value: &str, context: &str) -> Result<String, SealError> {
        let Some(rest) = value.strip_prefix(PREFIX) else { return Ok(value.to_owned()) };
        let (id, encoded) = rest.split_once(':').ok_or(SealError::Tampered)?;
        let key = self.keys.iter().find(|(k, _)| k == id).map(|(_, key)| key);
        open_with(key.ok_or_else(|| SealError::UnknownKey(id.to_owned()))?, encoded, context)
    }

    /// The id of the key that seals.
    pub fn sealing_key(&self) -> &str {
        &self.keys[0].0
    }

    /// `value` sealed again with the sealing key when another key sealed it; `None` when it is plain or
    /// already sealed with the sealing key.
    pub fn reseal(&self, value: &str, context: &str) -> Result<Option<String>, SealError> {
        match key_id(value) {
            Some(id) if id != self.sealing_key() => Ok(Some(self.seal(&self.open(value, context)?, context))),
            _ => Ok(None),
        }
    }

    /// Seals again with the sealing key every sealed string in `value` (a payload or a snapshot) that another
    /// key sealed; how many it changed.
    pub fn reseal_all(&self, value: &mut Value, context: &str) -> Result<usize, SealError> {
        Ok(match value {
            Value::String(s) => match self.reseal(s, context)? {
                Some(resealed) => {
                    *s = resealed;
                    1
                }
                None => 0,
            },
            Value::Array(items) => items.iter_mut().map(|v| self.reseal_all(v, context)).sum::<Result<_, _>>()?,
            Value::Object(map) => map.values_mut().map(|v| self.reseal_all(v, context)).sum::<Result<_, _>>()?,
            _ => 0,
        })
    }

    /// A keyed digest of `value` (hex HMAC-SHA256), for finding sealed values by equality (an e-mail address
    /// taken by another user) without storing them plain.
    pub fn digest(&self, value: &str) -> String {
        let tag = hmac::sign(&self.index, value.as_bytes());
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The id of the key that sealed `value`; none for a plain value.
pub fn key_id(value: &str) -> Option<&str> {
    value.strip_prefix(PREFIX)?.split_once(':').map(|(id, _)| id)
}

/// Every sealed string in `value` by the id of the key that sealed it, counted into `counts`.
pub fn count_keys(value: &Value, counts: &mut std::collections::BTreeMap<String, u64>) {
    match value {
        Value::String(s) => {
            if let Some(id) = key_id(s) {
                *counts.entry(id.to_owned()).or_default() += 1;
            }
        }
        Value::Array(items) => items.iter().for_each(|v| count_keys(v, counts)),
        Value::Object(map) => map.values().for_each(|v| count_keys(v, counts)),
        _ => {}
    }
}

/// Whether `value` was sealed with a key ring.
pub fn is_ring_sealed(value: &str) -> bool {
    value.starts_with(PREFIX)
}

static RING: RwLock<Option<Arc<KeyRing>>> = RwLock::new(None);

/// Sets (or with `None` removes) the process's key ring.
pub fn install(ring: Option<KeyRing>) {
    *RING.write().expect("key ring lock") = ring.map(Arc::new);
}

/// The process's key ring, if one is installed.
pub fn ring() -> Option<Arc<KeyRing>> {
    RING.read().expect("key ring lock").clone()
}

/// Seals `plain` for `context` with the installed ring; plain without one.
pub fn seal(plain: &str, context: &str) -> String {
    match ring() {
        Some(ring) => ring.seal(plain, context),
        None => plain.to_owned(),
    }
}

/// Opens a value the ring sealed for `context` (a plain value opens as itself).
pub fn open(value: &str, context: &str) -> Result<String, SealError> {
    if !is_ring_sealed(value) {
        return Ok(value.to_owned());
    }
    ring().ok_or(SealError::NoKeys)?.open(value, context)
}

/// The installed ring's digest of `value`, or none without a ring.
pub fn digest(value: &str) -> Option<String> {
    ring().map(|ring| ring.digest(value))
}
