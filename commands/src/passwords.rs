use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use bonsai_domain::user::{UserError, UserServices};
use bonsai_domain::values::Password;

/// argon2id with the crate's defaults (19 MiB, 2 passes). Hashing is deliberately slow, so it runs on
/// tokio's blocking pool, never on the runtime's worker threads.
#[derive(Debug, Default, Clone)]
pub struct Argon2Passwords;

#[async_trait::async_trait]
impl UserServices for Argon2Passwords {
    async fn hash_password(&self, password: &Password) -> Result<String, UserError> {
        let secret = password.expose().to_owned();
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(secret.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| UserError::Hashing(e.to_string()))
        })
        .await
        .map_err(|e| UserError::Hashing(e.to_string()))?
    }

    async fn verify_password(&self, password: &Password, hash: &str) -> bool {
        let secret = password.expose().to_owned();
        let hash = hash.to_owned();
        tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|parsed| Argon2::default().verify_password(secret.as_bytes(), &parsed).is_ok())
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_nothing_else() {
        let p = Password::parse("correct horse").unwrap();
        let hash = Argon2Passwords.hash_password(&p).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(Argon2Passwords.verify_password(&p, &hash).await);
        assert!(!Argon2Passwords.verify_password(&Password::parse("wrong horse").unwrap(), &hash).await);
        assert!(!Argon2Passwords.verify_password(&p, "not a hash").await);
    }
}
