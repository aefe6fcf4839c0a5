//! What the User aggregate needs from outside: password hashing, which is slow on purpose and so
//! runs off the async runtime in the real implementation (crate `commands`).

use super::UserError;
use crate::values::Password;

#[async_trait::async_trait]
pub trait UserServices: Send + Sync {
    /// A salted, slow hash (the real one is argon2id in PHC string format).
    async fn hash_password(&self, password: &Password) -> Result<String, UserError>;
    /// Whether `password` matches `hash`. A malformed hash is "no match".
    async fn verify_password(&self, password: &Password, hash: &str) -> bool;
}
