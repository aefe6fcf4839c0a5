//! Access tokens are HS256 JWTs (short-lived, stateless). Refresh tokens are opaque strings naming a
//! session and its generation, signed with an HMAC key derived from the same secret: the User
//! aggregate knows each session's current generation, so a rotated (older) token is recognised as
//! reuse without storing any token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt;
use uuid::Uuid;

/// Token lifetimes and the signing secret. The secret never prints.
#[derive(Clone)]
pub struct TokenSettings {
    pub secret: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
}

impl fmt::Debug for TokenSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSettings")
            .field("secret", &"[redacted]")
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .finish()
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: Uuid,
    pub sid: Uuid,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
}

/// A decoded refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshToken {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub generation: u32,
}

pub struct TokenService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    refresh_key: Vec<u8>,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
}

impl TokenService {
    pub fn new(settings: TokenSettings) -> Self {
        // Only HS256 is accepted: `alg: none` and every other algorithm fail validation.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let refresh_key = {
            let mut mac =
                Hmac::<Sha256>::new_from_slice(settings.secret.as_bytes()).expect("hmac takes any key length");
            mac.update(b"bonsai refresh token key");
            mac.finalize().into_bytes().to_vec()
        };
        Self {
            encoding: EncodingKey::from_secret(settings.secret.as_bytes()),
            decoding: DecodingKey::from_secret(settings.secret.as_bytes()),
            validation,
            refresh_key,
            access_ttl: settings.access_ttl,
            refresh_ttl: settings.refresh_ttl,
        }
    }

    pub fn issue_access(&self, user_id: Uuid, session_id: Uuid, now: DateTime<Utc>) -> String {
        let claims = AccessClaims {
            sub: user_id,
            sid: session_id,
            iat: now.timestamp(),
            exp: (now + self.access_ttl).timestamp(),
            jti: Uuid::new_v4(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).expect("HS256 encoding cannot fail")
    }

    /// Checks signature, algorithm and expiry, and that the token lives no longer than this service issues
    /// tokens for (an `exp` years ahead, or one further than `iat` + the lifetime, is refused).
    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, jsonwebtoken::errors::Error> {
        let claims = decode::<AccessClaims>(token, &self.decoding, &self.validation)?.claims;
        let longest = self.access_ttl.num_seconds() + self.validation.leeway as i64;
        if claims.exp - claims.iat > longest || claims.exp - Utc::now().timestamp() > longest {
            return Err(jsonwebtoken::errors::ErrorKind::InvalidToken.into());
        }
        Ok(claims)
    }

    fn mac(&self, body: &str) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.refresh_key).expect("hmac takes any key length");
        mac.update(body.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    pub fn issue_refresh(&self, token: RefreshToken) -> String {
        let body = format!("{}.{}.{}", token.user_id, token.session_id, token.generation);
        format!("{}.{}", URL_SAFE_NO_PAD.encode(&body), URL_SAFE_NO_PAD.encode(self.mac(&body)))
    }

    /// Checks the signature and shape; whether the session is still live is the aggregate's call.
    pub fn verify_refresh(&self, token: &str) -> Option<RefreshToken> {
        let (body, sig) = token.split_once('.')?;
        let body = String::from_utf8(URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.refresh_key).expect("hmac takes any key length");
        mac.update(body.as_bytes());
        mac.verify_slice(&sig).ok()?;
        let mut parts = body.split('.');
        let token = RefreshToken {
            user_id: parts.next()?.parse().ok()?,
            session_id: parts.next()?.parse().ok()?,
            generation: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(secret: &str) -> TokenService {
        TokenService::new(TokenSettings {
            secret: secret.into(),
            access_ttl: Duration::minutes(15),
            refresh_ttl: Duration::days(30),
        })
    }

    #[test]
    fn access_tokens_verify_only_with_the_same_secret() {
        let (a, b) = (service("one secret"), service("another secret"));
        let token = a.issue_access(Uuid::new_v4(), Uuid::new_v4(), Utc::now());
        assert!(a.verify_access(&token).is_ok());
        assert!(b.verify_access(&token).is_err());
    }

    #[test]
    fn expired_access_tokens_are_refused() {
        let s = service("secret");
        let token = s.issue_access(Uuid::new_v4(), Uuid::new_v4(), Utc::now() - Duration::hours(1));
        assert!(s.verify_access(&token).is_err());
    }

    #[test]
    fn access_tokens_living_longer_than_the_lifetime_are_refused() {
        let s = service("secret");
        let now = Utc::now().timestamp();
        let forge = |iat: i64, exp: i64| {
            let claims = AccessClaims { sub: Uuid::new_v4(), sid: Uuid::new_v4(), iat, exp, jti: Uuid::new_v4() };
            encode(&Header::new(Algorithm::HS256), &claims, &s.encoding).unwrap()
        };
        assert!(s.verify_access(&forge(now, now + 15 * 60)).is_ok(), "the configured lifetime");
        assert!(s.verify_access(&forge(now, now + 365 * 24 * 3600)).is_err(), "a year ahead");
        assert!(s.verify_access(&forge(now + 3600, now + 3600 + 60)).is_err(), "issued in the future");
        assert!(s.verify_access(&forge(now - 60, now + 15 * 60)).is_err(), "longer than iat + ttl");
    }

    #[test]
    fn refresh_tokens_round_trip_and_refuse_tampering() {
        let s = service("secret");
        let t = RefreshToken { user_id: Uuid::new_v4(), session_id: Uuid::new_v4(), generation: 3 };
        let encoded = s.issue_refresh(t);
        assert_eq!(s.verify_refresh(&encoded), Some(t));
        let forged = s.issue_refresh(RefreshToken { generation: 4, ..t });
        let (body, _) = forged.split_once('.').unwrap();
        let (_, sig) = encoded.split_once('.').unwrap();
        assert_eq!(s.verify_refresh(&format!("{body}.{sig}")), None);
        assert_eq!(service("other").verify_refresh(&encoded), None);
        assert_eq!(s.verify_refresh("garbage"), None);
    }
}
