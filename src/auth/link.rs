//! Link tokens: signed, short-lived tokens that may travel in a URL (`?token=`) for
//! WADO-URI links and the web viewer, where a client cannot send a bearer header.
//!
//! They are signed with a key derived from the JWT signing key, so an access token is
//! never accepted as a link token nor a link token as an access token. A link token
//! carries only the user id: the user's role and study scope apply unchanged (it
//! widens nothing), and a deactivated user's links stop working.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Name of the cookie the viewer's token is kept in (HttpOnly, SameSite=Strict).
pub const COOKIE: &str = "glia_link";
/// The query parameter carrying a link token.
pub const PARAM: &str = "token";

const KIND: &str = "link";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    kind: String,
    iat: i64,
    exp: i64,
}

/// Why a link token was refused (never echoes the token).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("the link token has expired")]
    Expired,
    #[error("the link token is not valid")]
    Invalid,
}

fn key(secret: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"glia link token v1\0");
    h.update(secret.as_bytes());
    h.finalize().to_vec()
}

/// A link token for `user_id`, valid `ttl_secs`.
pub fn issue(secret: &str, user_id: i64, ttl_secs: u64) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub: user_id.to_string(),
        kind: KIND.into(),
        iat: now,
        exp: now + ttl_secs as i64,
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&key(secret)),
    )
    .expect("HS256 signing cannot fail")
}

/// The user id of a valid link token.
pub fn verify(secret: &str, token: &str) -> Result<i64, LinkError> {
    let mut v = Validation::new(Algorithm::HS256);
    v.leeway = 0;
    let data = decode::<Claims>(token, &DecodingKey::from_secret(&key(secret)), &v).map_err(
        |e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => LinkError::Expired,
            _ => LinkError::Invalid,
        },
    )?;
    if data.claims.kind != KIND {
        return Err(LinkError::Invalid);
    }
    data.claims.sub.parse().map_err(|_| LinkError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let t = issue("s3cret", 42, 60);
        assert_eq!(verify("s3cret", &t), Ok(42));
        assert_eq!(verify("other", &t), Err(LinkError::Invalid));
        let mut bad = t.clone();
        bad.pop();
        bad.push(if t.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(verify("s3cret", &bad), Err(LinkError::Invalid));
        // A token signed with the plain secret (as access tokens are) is no link token.
        let plain = encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "42".into(),
                kind: KIND.into(),
                iat: 0,
                exp: chrono::Utc::now().timestamp() + 60,
            },
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        assert_eq!(verify("s3cret", &plain), Err(LinkError::Invalid));
        let expired = encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "42".into(),
                kind: KIND.into(),
                iat: 0,
                exp: chrono::Utc::now().timestamp() - 5,
            },
            &EncodingKey::from_secret(&key("s3cret")),
        )
        .unwrap();
        assert_eq!(verify("s3cret", &expired), Err(LinkError::Expired));
    }
}
