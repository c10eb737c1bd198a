//! Password hashing: argon2id (PHC strings, per-user random salt). A login for an
//! unknown user runs [`verify_dummy`], the same hashing work against a fixed hash,
//! so response timing cannot tell whether a username exists.

use std::sync::OnceLock;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};

/// Shortest password accepted when one is set or changed.
pub const MIN_PASSWORD_LEN: usize = 10;

/// Errors of password hashing.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
}

fn hasher() -> Argon2<'static> {
    // argon2id, version 0x13, the crate's default (OWASP) cost parameters.
    Argon2::default()
}

/// Hash a password as an argon2id PHC string.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Does `password` match the stored PHC `hash`? A malformed hash never matches.
pub fn verify(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// The same work as [`verify`] against a fixed hash made with the same parameters
/// (computed once per process); always false.
pub fn verify_dummy(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| {
        hash("glia-dummy-password-for-unknown-users").unwrap_or_else(|_| String::new())
    });
    let _ = verify(password, dummy);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("wrong horse battery", &h));
        assert!(!verify("correct horse battery", "not a phc string"));
        // Salted: the same password hashes differently.
        assert_ne!(h, hash("correct horse battery").unwrap());
    }
}
