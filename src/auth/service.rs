//! The authentication service every surface uses: bearer-token authentication (the
//! HTTP middleware calls [`AuthService::authenticate_bearer`] on every request),
//! login (OAuth2 password grant, with lockout, two-factor and auditing), refresh-token
//! rotation, logout, password changes, TOTP enrolment, and user creation (shared by
//! the admin API and `glia user add`).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::cache::PrincipalCache;
use super::password::{self, MIN_PASSWORD_LEN};
use super::throttle::{IpRateLimit, Lockout};
use super::tokens::{self, TokenError, TokenKeys};
use super::{totp, Principal, Role};
use crate::audit::{Audit, AuditEvent, Outcome, Surface};
use crate::config::AuthConfig;
use crate::db::identity::{self, IdentityRepo, NewUser, PatientLink, User, UserUpdate};
use crate::db::DbError;

/// Why authentication (or an account operation) failed. Messages never contain the
/// password, the token or patient data.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required: no bearer token")]
    MissingToken,
    #[error("the access token is invalid")]
    InvalidToken,
    #[error("the access token has expired")]
    ExpiredToken,
    #[error("the user account is deactivated")]
    InactiveUser,
    #[error("wrong username or password")]
    BadCredentials,
    #[error("the account is temporarily locked after repeated failed logins")]
    Locked,
    #[error("a two-factor code (totp_code) is required")]
    TotpRequired,
    #[error("the two-factor code is wrong")]
    InvalidTotp,
    #[error("too many requests; try again in a minute")]
    RateLimited,
    #[error("the refresh token is invalid, expired or revoked")]
    InvalidRefreshToken,
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("the password must have at least {MIN_PASSWORD_LEN} characters")]
    WeakPassword,
    #[error("two-factor authentication is already enabled")]
    TotpAlreadyEnabled,
    #[error("two-factor enrolment has not been started")]
    TotpNotEnrolled,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl AuthError {
    /// The stable, machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing_token",
            AuthError::InvalidToken => "invalid_token",
            AuthError::ExpiredToken => "expired_token",
            AuthError::InactiveUser => "inactive_user",
            AuthError::BadCredentials => "invalid_credentials",
            AuthError::Locked => "account_locked",
            AuthError::TotpRequired => "totp_required",
            AuthError::InvalidTotp => "invalid_totp",
            AuthError::RateLimited => "rate_limited",
            AuthError::InvalidRefreshToken => "invalid_refresh_token",
            AuthError::WrongPassword => "wrong_password",
            AuthError::WeakPassword => "weak_password",
            AuthError::TotpAlreadyEnabled => "totp_already_enabled",
            AuthError::TotpNotEnrolled => "totp_not_enrolled",
            AuthError::Conflict(_) => "conflict",
            AuthError::Invalid(_) => "invalid_request",
            AuthError::Db(_) | AuthError::Internal(_) => "internal_error",
        }
    }
}

/// What a successful login or refresh returns.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access_token: String,
    /// Seconds the access token is valid.
    pub expires_in: u64,
    pub refresh_token: String,
}

/// A TOTP enrolment in progress.
#[derive(Debug, Clone)]
pub struct TotpEnrolment {
    /// Base32 secret, for manual entry.
    pub secret: String,
    /// `otpauth://` URL (QR code content).
    pub otpauth_url: String,
}

/// A user to create, with a plain-text password (hashed here).
#[derive(Debug, Clone)]
pub struct UserSpec {
    pub username: String,
    pub password: String,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub role: Role,
    pub centre_id: Option<i64>,
    pub physician_name: Option<String>,
    pub patient_ids: Vec<PatientLink>,
}

/// Authentication and account operations; cheap to clone.
#[derive(Clone)]
pub struct AuthService {
    repo: IdentityRepo,
    keys: Arc<TokenKeys>,
    limiter: Arc<IpRateLimit>,
    lockout: Lockout,
    refresh_ttl: Duration,
    audit: Audit,
    principals: Arc<PrincipalCache>,
}

fn db_internal(e: DbError) -> AuthError {
    AuthError::Db(e)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AuthError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AuthError::Internal(e.to_string()))
}

/// The principal of a stored user.
pub fn principal_of(u: &User) -> Principal {
    Principal {
        user_id: u.id,
        username: u.username.clone(),
        role: u.role,
        centre_id: u.centre_id,
        patient_ids: u
            .patient_ids
            .iter()
            .map(|l| (l.patient_id.clone(), l.issuer.clone()))
            .collect(),
        physician_name: u.physician_name.clone(),
    }
}

impl AuthService {
    /// The service over the identity repository, configured by `[auth]`.
    pub fn new(repo: IdentityRepo, cfg: &AuthConfig, audit: Audit) -> Self {
        Self {
            repo,
            keys: Arc::new(TokenKeys::new(&cfg.jwt_secret, cfg.access_token_ttl_secs)),
            limiter: Arc::new(IpRateLimit::new(cfg.login_rate_per_minute)),
            lockout: Lockout {
                max_failed: cfg.max_failed_logins,
                duration: Duration::from_secs(cfg.lockout_secs),
            },
            refresh_ttl: Duration::from_secs(cfg.refresh_token_ttl_secs),
            audit,
            principals: Arc::new(PrincipalCache::new(Duration::from_secs(
                cfg.principal_cache_secs,
            ))),
        }
    }

    /// The identity repository (users, centres, grants).
    pub fn repo(&self) -> &IdentityRepo {
        &self.repo
    }

    /// The audit writer.
    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// Count one request to `/api/auth/*` from `ip`; `RateLimited` past the limit.
    pub fn check_rate(&self, ip: Option<IpAddr>) -> Result<(), AuthError> {
        if self.limiter.allow(ip) {
            Ok(())
        } else {
            Err(AuthError::RateLimited)
        }
    }

    /// Verify an access token (signature, expiry) and load its user, who must exist
    /// and be active.
    pub async fn authenticate_bearer(&self, token: &str) -> Result<Principal, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::MissingToken);
        }
        let claims = self.keys.verify(token).map_err(|e| match e {
            TokenError::Expired => AuthError::ExpiredToken,
            TokenError::Invalid => AuthError::InvalidToken,
        })?;
        let id: i64 = claims.sub.parse().map_err(|_| AuthError::InvalidToken)?;
        self.principal(id).await
    }

    /// The principal of an existing, active user (a verified token's subject),
    /// served from the short-lived principal cache when it is there.
    pub async fn principal(&self, user_id: i64) -> Result<Principal, AuthError> {
        if let Some(p) = self.principals.get(user_id) {
            return Ok(p);
        }
        let read_at = self.principals.generation();
        let user = self
            .repo
            .user_for_principal(user_id)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        if !user.active {
            return Err(AuthError::InactiveUser);
        }
        let p = principal_of(&user);
        self.principals.put(&p, read_at);
        Ok(p)
    }

    /// Change a user's account (role, centre, links, activity, ...); every change
    /// to a user goes through here so that this node's principal cache forgets them.
    pub async fn update_user(&self, id: i64, u: UserUpdate) -> Result<Option<User>, DbError> {
        let user = self.repo.update_user(id, u).await;
        // After the write: a lookup that read the old row meanwhile caches nothing.
        self.principals.forget(id);
        user
    }

    fn login_event(&self, ip: Option<IpAddr>, user: Option<&User>) -> AuditEvent {
        let e = AuditEvent::new(Surface::Api, "login").from_ip(ip);
        match user {
            Some(u) => e
                .user(u.id, &u.username, u.role.as_str())
                .centre(u.centre_id),
            None => e,
        }
    }

    async fn fail(&self, ev: AuditEvent, outcome: Outcome, err: AuthError) -> AuthError {
        self.audit
            .record(ev.outcome(outcome, Some(401)).detail(err.code()))
            .await;
        err
    }

    /// The OAuth2 password grant: check the password (and the TOTP code when the user
    /// enabled two-factor), apply the lockout policy, issue tokens. Every outcome is
    /// audited.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        totp_code: Option<&str>,
        ip: Option<IpAddr>,
    ) -> Result<TokenPair, AuthError> {
        let user = self.repo.user_by_username(username).await?;
        let pw = password.to_string();
        let Some(user) = user else {
            blocking(move || password::verify_dummy(&pw)).await?;
            let ev = self.login_event(ip, None).detail("unknown username");
            self.audit
                .record(ev.outcome(Outcome::Failure, Some(401)))
                .await;
            return Err(AuthError::BadCredentials);
        };
        let hash = user.password_hash.clone();
        let matches = blocking(move || password::verify(&pw, &hash)).await?;
        let ev = self.login_event(ip, Some(&user));
        let now = Utc::now();
        if Lockout::is_locked(user.locked_until, now) {
            return Err(self.fail(ev, Outcome::Denied, AuthError::Locked).await);
        }
        if !matches {
            let locked = self
                .repo
                .record_failed_login(user.id, self.lockout.max_failed, self.lockout.until(now))
                .await?;
            let err = self
                .fail(ev.clone(), Outcome::Failure, AuthError::BadCredentials)
                .await;
            if locked {
                tracing::warn!(
                    user_id = user.id,
                    "account locked after repeated failed logins"
                );
                self.audit
                    .record(
                        AuditEvent {
                            action: "lockout".into(),
                            ..ev
                        }
                        .outcome(Outcome::Denied, Some(401))
                        .detail(format!(
                            "{} failed logins; locked for {} s",
                            self.lockout.max_failed,
                            self.lockout.duration.as_secs()
                        )),
                    )
                    .await;
            }
            return Err(err);
        }
        if !user.active {
            return Err(self
                .fail(ev, Outcome::Denied, AuthError::InactiveUser)
                .await);
        }
        if user.totp_enabled {
            let secret = user.totp_secret.clone().unwrap_or_default();
            match totp_code.map(str::trim).filter(|c| !c.is_empty()) {
                None => {
                    return Err(self
                        .fail(ev, Outcome::Denied, AuthError::TotpRequired)
                        .await)
                }
                Some(code) if !totp::check(&secret, code) => {
                    self.repo
                        .record_failed_login(
                            user.id,
                            self.lockout.max_failed,
                            self.lockout.until(now),
                        )
                        .await?;
                    return Err(self
                        .fail(ev, Outcome::Failure, AuthError::InvalidTotp)
                        .await);
                }
                Some(_) => {}
            }
        }
        if user.failed_logins != 0 || user.locked_until.is_some() {
            self.repo.clear_failed_logins(user.id).await?;
        }
        let pair = self.issue(&user).await?;
        self.audit
            .record(ev.outcome(Outcome::Success, Some(200)))
            .await;
        Ok(pair)
    }

    async fn issue(&self, user: &User) -> Result<TokenPair, AuthError> {
        let access_token = self
            .keys
            .issue(user.id, user.role)
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        let refresh_token = tokens::new_refresh_token();
        let expires = Utc::now()
            + chrono::Duration::from_std(self.refresh_ttl).unwrap_or(chrono::Duration::days(14));
        self.repo
            .insert_refresh(
                user.id,
                &tokens::hash_refresh_token(&refresh_token),
                expires,
            )
            .await?;
        Ok(TokenPair {
            access_token,
            expires_in: self.keys.access_ttl_secs(),
            refresh_token,
        })
    }

    /// Exchange a live refresh token for a new pair; the old one is revoked (rotation).
    pub async fn refresh(
        &self,
        refresh_token: &str,
        ip: Option<IpAddr>,
    ) -> Result<TokenPair, AuthError> {
        let hash = tokens::hash_refresh_token(refresh_token.trim());
        let user_id = self
            .repo
            .revoke_refresh(&hash)
            .await?
            .ok_or(AuthError::InvalidRefreshToken)?;
        let user = self
            .repo
            .user(user_id)
            .await?
            .ok_or(AuthError::InvalidRefreshToken)?;
        let ev = AuditEvent::new(Surface::Api, "token.refresh")
            .from_ip(ip)
            .user(user.id, &user.username, user.role.as_str())
            .centre(user.centre_id);
        if !user.active {
            return Err(self
                .fail(ev, Outcome::Denied, AuthError::InactiveUser)
                .await);
        }
        let pair = self.issue(&user).await?;
        self.audit
            .record(ev.outcome(Outcome::Success, Some(200)))
            .await;
        Ok(pair)
    }

    /// Revoke a refresh token (logout). Unknown or already revoked tokens are ignored.
    pub async fn logout(&self, refresh_token: &str, ip: Option<IpAddr>) -> Result<(), AuthError> {
        let hash = tokens::hash_refresh_token(refresh_token.trim());
        if let Some(uid) = self.repo.revoke_refresh(&hash).await? {
            let mut ev = AuditEvent::new(Surface::Api, "logout").from_ip(ip);
            if let Some(u) = self.repo.user(uid).await? {
                ev = ev
                    .user(u.id, &u.username, u.role.as_str())
                    .centre(u.centre_id);
            }
            self.audit.record(ev).await;
        }
        Ok(())
    }

    /// Change the caller's password (the current one must match); revokes every
    /// refresh token of the user.
    pub async fn change_password(
        &self,
        who: &Principal,
        current: &str,
        new: &str,
        ip: Option<IpAddr>,
    ) -> Result<(), AuthError> {
        let user = self
            .repo
            .user(who.user_id)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        let ev = AuditEvent::new(Surface::Api, "password.change")
            .from_ip(ip)
            .user(user.id, &user.username, user.role.as_str())
            .centre(user.centre_id);
        let (cur, hash) = (current.to_string(), user.password_hash.clone());
        if !blocking(move || password::verify(&cur, &hash)).await? {
            self.audit
                .record(
                    ev.outcome(Outcome::Failure, Some(400))
                        .detail("wrong_password"),
                )
                .await;
            return Err(AuthError::WrongPassword);
        }
        let new_hash = hash_password(new).await?;
        self.repo.set_password_hash(user.id, &new_hash).await?;
        self.repo.revoke_all_refresh(user.id).await?;
        self.audit
            .record(ev.outcome(Outcome::Success, Some(204)))
            .await;
        Ok(())
    }

    /// Start (or restart) TOTP enrolment: a new secret, not yet required at login.
    pub async fn totp_enrol(&self, who: &Principal) -> Result<TotpEnrolment, AuthError> {
        let user = self
            .repo
            .user(who.user_id)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        if user.totp_enabled {
            return Err(AuthError::TotpAlreadyEnabled);
        }
        let secret = totp::new_secret();
        self.repo.set_totp(user.id, Some(&secret), false).await?;
        Ok(TotpEnrolment {
            otpauth_url: totp::otpauth_url(&secret, &user.username),
            secret,
        })
    }

    /// Confirm enrolment with a current code; from then on login needs a code.
    pub async fn totp_verify(
        &self,
        who: &Principal,
        code: &str,
        ip: Option<IpAddr>,
    ) -> Result<(), AuthError> {
        let user = self
            .repo
            .user(who.user_id)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        if user.totp_enabled {
            return Err(AuthError::TotpAlreadyEnabled);
        }
        let secret = user.totp_secret.clone().ok_or(AuthError::TotpNotEnrolled)?;
        if !totp::check(&secret, code) {
            return Err(AuthError::InvalidTotp);
        }
        self.repo.set_totp(user.id, Some(&secret), true).await?;
        self.audit
            .record(
                AuditEvent::new(Surface::Api, "totp.enable")
                    .from_ip(ip)
                    .user(user.id, &user.username, user.role.as_str())
                    .centre(user.centre_id),
            )
            .await;
        Ok(())
    }

    /// Create a user (password hashed here; at least [`MIN_PASSWORD_LEN`] characters).
    pub async fn create_user(&self, spec: UserSpec) -> Result<User, AuthError> {
        let username = spec.username.trim().to_string();
        if username.is_empty() || username.len() > 128 {
            return Err(AuthError::Invalid(
                "username must have 1-128 characters".into(),
            ));
        }
        let password_hash = hash_password(&spec.password).await?;
        self.repo
            .create_user(NewUser {
                username,
                email: spec.email,
                full_name: spec.full_name,
                role: spec.role,
                centre_id: spec.centre_id,
                password_hash,
                physician_name: spec.physician_name,
                patient_ids: spec.patient_ids,
            })
            .await
            .map_err(conflict_or_db)
    }

    /// Deactivate a user and revoke their refresh tokens; `None` when unknown.
    pub async fn deactivate_user(&self, id: i64) -> Result<Option<User>, AuthError> {
        let user = self
            .update_user(
                id,
                UserUpdate {
                    active: Some(false),
                    ..Default::default()
                },
            )
            .await?;
        if user.is_some() {
            self.repo.revoke_all_refresh(id).await?;
        }
        Ok(user)
    }
}

/// Map a unique/foreign-key violation to a client error, anything else to `Db`.
pub fn conflict_or_db(e: DbError) -> AuthError {
    if identity::is_unique_violation(&e) {
        AuthError::Conflict("a record with this name already exists".into())
    } else if identity::is_foreign_key_violation(&e) {
        AuthError::Invalid("unknown centre_id".into())
    } else {
        db_internal(e)
    }
}

/// Hash a new password (off the async threads) after checking its length.
pub async fn hash_password(password: &str) -> Result<String, AuthError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(AuthError::WeakPassword);
    }
    let pw = password.to_string();
    blocking(move || password::hash(&pw))
        .await?
        .map_err(|e| AuthError::Internal(e.to_string()))
}

/// `glia user add`: create a user and audit it as done by the command line.
pub async fn add_user_cli(auth: &AuthService, spec: UserSpec) -> Result<User, AuthError> {
    let user = auth.create_user(spec).await?;
    auth.audit
        .record(
            AuditEvent::new(Surface::Internal, "user.create")
                .system("cli")
                .detail(format!("user_id={} role={}", user.id, user.role)),
        )
        .await;
    auth.audit.flush().await;
    Ok(user)
}
