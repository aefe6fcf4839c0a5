//! Encryption at rest and crypto-shredding, split by idea: [`aead`] seals one string (AES-256-GCM),
//! [`keyring`] holds the process's rotating key ring, [`data_keys`] the erasable per-question keys, and
//! [`sealed`] knows which fields of which events and snapshots are sensitive and seals and opens them.
//! Dependencies run one way: `aead` <- `keyring` <- `data_keys` <- `sealed`.
//!
//! This is the one crate with process-wide mutable state for encryption (the installed ring and the loaded
//! data keys), kept out of `bonsai-domain`, which stays pure.

pub mod aead;
pub mod data_keys;
pub mod keyring;
pub mod sealed;

pub use aead::SealError;
pub use keyring::KeyRing;

/// Held by the tests that install a ring and by those whose results depend on the installed ring.
#[cfg(test)]
pub(crate) static RING_IN_USE: std::sync::Mutex<()> = std::sync::Mutex::new(());
