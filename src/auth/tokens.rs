//! Tokens: short-lived HS256 JWT access tokens (claims `sub` = user id, `role`,
//! `exp`, `iat`, `jti`) and opaque refresh tokens (32 random bytes, base64url) that
//! are stored only as their SHA-256 hex digest.

use base64::Engine;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Role;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id, as a decimal string.
    pub sub: String,
    /// The role when the token was issued (informational; the database decides).
    pub role: String,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Unique token id.
    pub jti: String,
}

/// Why an access token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is invalid")]
    Invalid,
}

/// Signs and verifies access tokens.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    access_ttl_secs: u64,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenKeys {
    /// Keys from the shared secret; access tokens live `access_ttl_secs`.
    pub fn new(secret: &str, access_ttl_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is exact: no grace period.
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            access_ttl_secs,
        }
    }

    /// Lifetime of the access tokens issued (seconds).
    pub fn access_ttl_secs(&self) -> u64 {
        self.access_ttl_secs
    }

    /// Issue an access token for a user.
    pub fn issue(&self, user_id: i64, role: Role) -> Result<String, TokenError> {
        let iat = now_secs();
        let claims = Claims {
            sub: user_id.to_string(),
            role: role.as_str().to_string(),
            exp: iat + self.access_ttl_secs,
            iat,
            jti: uuid::Uuid::new_v4().simple().to_string(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|_| TokenError::Invalid)
    }

    /// Check signature, algorithm and expiry; return the claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

/// A fresh refresh token: 32 random bytes, base64url without padding.
pub fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of a refresh token: its SHA-256, hex.
pub fn hash_refresh_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_verify_and_tamper() {
        let keys = TokenKeys::new("k1", 60);
        let t = keys.issue(42, Role::Technician).unwrap();
        let c = keys.verify(&t).unwrap();
        assert_eq!(c.sub, "42");
        assert_eq!(c.role, "technician");
        assert_eq!(c.exp, c.iat + 60);
        // Another key refuses it.
        assert_eq!(
            TokenKeys::new("k2", 60).verify(&t),
            Err(TokenError::Invalid)
        );
        // A changed payload breaks the signature.
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"1","role":"admin","exp":9999999999,"iat":0,"jti":"x"}"#);
        assert_eq!(keys.verify(&parts.join(".")), Err(TokenError::Invalid));
    }

    #[test]
    fn expired_is_expired() {
        let keys = TokenKeys::new("k", 0);
        let t = keys.issue(1, Role::Admin).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(keys.verify(&t), Err(TokenError::Expired));
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let a = new_refresh_token();
        let b = new_refresh_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        let h = hash_refresh_token(&a);
        assert_eq!(h.len(), 64);
        assert!(!h.contains(&a));
        assert_eq!(h, hash_refresh_token(&a));
    }
}
