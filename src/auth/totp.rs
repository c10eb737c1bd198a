//! Time-based one-time passwords (RFC 6238 via totp-rs: SHA-1, 6 digits, 30 s steps,
//! one step of clock skew either way): secrets, `otpauth://` enrolment URLs, checks.

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use rand::RngCore;
use totp_rs::{Algorithm, Secret, TOTP};

/// The issuer shown by authenticator apps.
pub const ISSUER: &str = "Glia";
const DIGITS: usize = 6;
const STEP_SECS: u64 = 30;
const SKEW_STEPS: u8 = 1;

fn totp(secret_b32: &str) -> Option<TOTP> {
    let bytes = Secret::Encoded(secret_b32.to_string()).to_bytes().ok()?;
    TOTP::new(Algorithm::SHA1, DIGITS, SKEW_STEPS, STEP_SECS, bytes).ok()
}

/// A fresh secret (160 random bits), base32 without padding.
pub fn new_secret() -> String {
    let mut bytes = vec![0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    TOTP::new_unchecked(Algorithm::SHA1, DIGITS, SKEW_STEPS, STEP_SECS, bytes).get_secret_base32()
}

/// The `otpauth://totp/...` URL an authenticator app enrols from (usually as a QR code).
pub fn otpauth_url(secret_b32: &str, account: &str) -> String {
    let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    format!(
        "otpauth://totp/{}:{}?secret={secret_b32}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        enc(ISSUER),
        enc(account),
        enc(ISSUER)
    )
}

/// Is `code` valid now for this secret? A malformed secret or code never is.
pub fn check(secret_b32: &str, code: &str) -> bool {
    let code = code.trim();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    totp(secret_b32)
        .and_then(|t| t.check_current(code).ok())
        .unwrap_or(false)
}

/// The code valid now (for tests and tools).
pub fn current_code(secret_b32: &str) -> Option<String> {
    totp(secret_b32).and_then(|t| t.generate_current().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrol_and_check() {
        let s = new_secret();
        assert_eq!(s.len(), 32);
        let code = current_code(&s).unwrap();
        assert!(check(&s, &code));
        let wrong = format!(
            "{:06}",
            (code.parse::<u32>().unwrap() + 500_000) % 1_000_000
        );
        assert!(!check(&s, &wrong));
        assert!(!check(&s, "12345"));
        assert!(!check("!!not base32!!", &code));
        let url = otpauth_url(&s, "dr smith");
        assert!(
            url.starts_with("otpauth://totp/Glia:dr%20smith?secret="),
            "{url}"
        );
        assert!(url.contains(&s));
    }
}
