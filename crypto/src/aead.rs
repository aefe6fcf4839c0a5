//! Authenticated encryption of one string (AES-256-GCM through `ring`): the primitive every sealed value
//! is made with. A sealed string is base64 of nonce | ciphertext | tag, bound to a context (the record it
//! belongs to) as associated data, so a sealed cell copied to another record does not open.

use ring::aead::{Aad, LessSafeKey, Nonce, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the encryption key `{0}` is not in the key ring")]
    UnknownKey(String),
    #[error("a sealed value does not open (wrong key, altered, or moved from another record)")]
    Tampered,
    #[error("a sealed value is found but no encryption keys are set up (BONSAI__ENCRYPTION__KEYS)")]
    NoKeys,
    #[error("invalid encryption keys: {0}")]
    InvalidKeys(String),
    /// An erasable value's data key has not been read from the database (see [`crate::data_keys`]).
    #[error("the data key {0} is not loaded")]
    DataKeyNotLoaded(uuid::Uuid),
}

/// base64 of nonce | ciphertext | tag: `plain` sealed with `key` (AES-256-GCM), `context` as associated data.
pub fn seal_with(key: &LessSafeKey, random: &SystemRandom, plain: &str, context: &str) -> String {
    use base64::Engine;
    let mut nonce = [0u8; NONCE_LEN];
    random.fill(&mut nonce).expect("the system's random source works");
    let mut buffer = plain.as_bytes().to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context.as_bytes()), &mut buffer)
        .expect("AES-GCM seals any length the platform stores");
    let mut sealed = nonce.to_vec();
    sealed.extend(buffer);
    base64::engine::general_purpose::STANDARD.encode(sealed)
}

/// The text that [`seal_with`] sealed into `encoded`.
pub fn open_with(key: &LessSafeKey, encoded: &str, context: &str) -> Result<String, SealError> {
    use base64::Engine;
    let mut bytes = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| SealError::Tampered)?;
    if bytes.len() < NONCE_LEN {
        return Err(SealError::Tampered);
    }
    let nonce = Nonce::try_assume_unique_for_key(&bytes[..NONCE_LEN]).map_err(|_| SealError::Tampered)?;
    let mut cipher = bytes.split_off(NONCE_LEN);
    let plain =
        key.open_in_place(nonce, Aad::from(context.as_bytes()), &mut cipher).map_err(|_| SealError::Tampered)?;
    String::from_utf8(plain.to_vec()).map_err(|_| SealError::Tampered)
}
