//! `/api/auth/...`: the OAuth2 password grant (`POST /api/auth/token`, form-encoded),
//! refresh-token rotation, logout (revocation), the caller's own account (`/me`),
//! password change and TOTP two-factor enrolment. Every route here is rate limited
//! per client IP (`[auth] login_rate_per_minute`).

use poem::Request;
use poem_openapi::payload::{Form, Json};
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};

use super::error::{check_text, ApiError};
use super::security::{client_ip, BearerAuth};
use super::users::UserDto;
use crate::app::AppState;
use crate::auth::service::TokenPair;
use crate::auth::AuthError;

#[derive(Tags)]
enum AuthTags {
    /// Authentication: tokens, the caller's account, two-factor.
    Auth,
}

/// An OAuth2 password-grant token request (`application/x-www-form-urlencoded`).
#[derive(Debug, Object, serde::Deserialize)]
pub struct TokenRequest {
    /// Must be `password`.
    pub grant_type: String,
    pub username: String,
    pub password: String,
    /// The current TOTP code, for users with two-factor enabled.
    pub totp_code: Option<String>,
    /// Ignored (Glia has no OAuth2 scopes).
    pub scope: Option<String>,
    /// Ignored.
    pub client_id: Option<String>,
    /// Ignored.
    pub client_secret: Option<String>,
}

/// Issued tokens.
#[derive(Debug, Object)]
pub struct TokenResponse {
    /// The JWT access token; send it as `Authorization: Bearer ...`.
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Exchange it at `/api/auth/refresh` for a new pair (single use).
    pub refresh_token: String,
}

impl From<TokenPair> for TokenResponse {
    fn from(p: TokenPair) -> Self {
        TokenResponse {
            access_token: p.access_token,
            token_type: "bearer".into(),
            expires_in: p.expires_in,
            refresh_token: p.refresh_token,
        }
    }
}

/// A refresh token (refresh, logout).
#[derive(Debug, Object)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// A password change.
#[derive(Debug, Object)]
pub struct PasswordChange {
    pub current_password: String,
    /// At least 10 characters.
    pub new_password: String,
}

/// A started TOTP enrolment.
#[derive(Debug, Object)]
pub struct TotpEnrolmentDto {
    /// Base32 secret, for manual entry in an authenticator app.
    pub secret: String,
    /// `otpauth://totp/...` URL (QR code content).
    pub otpauth_url: String,
}

/// A TOTP code.
#[derive(Debug, Object)]
pub struct TotpCode {
    /// The 6-digit code shown by the authenticator app.
    pub code: String,
}

/// Nothing to return.
#[derive(Debug, ApiResponse)]
pub enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

/// Authentication resource.
pub struct AuthApi {
    pub state: AppState,
}

impl AuthApi {
    fn rate(&self, req: &Request) -> Result<(), ApiError> {
        self.state
            .auth
            .check_rate(client_ip(req))
            .map_err(ApiError::from)
    }
}

#[OpenApi(prefix_path = "/auth", tag = "AuthTags::Auth")]
impl AuthApi {
    /// OAuth2 password grant: username + password (+ `totp_code` when two-factor is
    /// enabled) for an access token and a refresh token.
    #[oai(path = "/token", method = "post", operation_id = "auth_token")]
    async fn token(
        &self,
        req: &Request,
        form: Form<TokenRequest>,
    ) -> Result<Json<TokenResponse>, ApiError> {
        self.rate(req)?;
        let f = form.0;
        if f.grant_type != "password" {
            return Err(ApiError::bad_request(
                "unsupported_grant_type",
                "grant_type must be \"password\"",
            ));
        }
        if check_text(&[
            ("username", Some(f.username.as_str())),
            ("password", Some(f.password.as_str())),
        ])
        .is_err()
        {
            return Err(AuthError::BadCredentials.into());
        }
        let pair = self
            .state
            .auth
            .login(
                &f.username,
                &f.password,
                f.totp_code.as_deref(),
                client_ip(req),
            )
            .await?;
        Ok(Json(pair.into()))
    }

    /// Exchange a refresh token for a new access token and refresh token; the old
    /// refresh token is revoked.
    #[oai(path = "/refresh", method = "post", operation_id = "auth_refresh")]
    async fn refresh(
        &self,
        req: &Request,
        body: Json<RefreshRequest>,
    ) -> Result<Json<TokenResponse>, ApiError> {
        self.rate(req)?;
        let pair = self
            .state
            .auth
            .refresh(&body.0.refresh_token, client_ip(req))
            .await?;
        Ok(Json(pair.into()))
    }

    /// Revoke a refresh token (logout). Unknown tokens are accepted silently.
    #[oai(path = "/logout", method = "post", operation_id = "auth_logout")]
    async fn logout(
        &self,
        req: &Request,
        body: Json<RefreshRequest>,
    ) -> Result<NoContent, ApiError> {
        self.rate(req)?;
        self.state
            .auth
            .logout(&body.0.refresh_token, client_ip(req))
            .await?;
        Ok(NoContent::Done)
    }

    /// The caller's own account.
    #[oai(path = "/me", method = "get", operation_id = "auth_me")]
    async fn me(&self, req: &Request, auth: BearerAuth) -> Result<Json<UserDto>, ApiError> {
        self.rate(req)?;
        let user = self
            .state
            .auth
            .repo()
            .user(auth.0.user_id)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        Ok(Json(user.into()))
    }

    /// Change the caller's password (at least 10 characters). Revokes every refresh
    /// token of the account.
    #[oai(
        path = "/password",
        method = "post",
        operation_id = "auth_change_password"
    )]
    async fn password(
        &self,
        req: &Request,
        auth: BearerAuth,
        body: Json<PasswordChange>,
    ) -> Result<NoContent, ApiError> {
        self.rate(req)?;
        let b = body.0;
        check_text(&[("new_password", Some(b.new_password.as_str()))])?;
        self.state
            .auth
            .change_password(
                &auth.0,
                &b.current_password,
                &b.new_password,
                client_ip(req),
            )
            .await?;
        Ok(NoContent::Done)
    }

    /// Start two-factor enrolment: a new TOTP secret, required at login once
    /// confirmed with `/api/auth/totp/verify`.
    #[oai(
        path = "/totp/enrol",
        method = "post",
        operation_id = "auth_totp_enrol"
    )]
    async fn totp_enrol(
        &self,
        req: &Request,
        auth: BearerAuth,
    ) -> Result<Json<TotpEnrolmentDto>, ApiError> {
        self.rate(req)?;
        let e = self.state.auth.totp_enrol(&auth.0).await?;
        Ok(Json(TotpEnrolmentDto {
            secret: e.secret,
            otpauth_url: e.otpauth_url,
        }))
    }

    /// Confirm two-factor enrolment with a current code; from then on login needs
    /// `totp_code`.
    #[oai(
        path = "/totp/verify",
        method = "post",
        operation_id = "auth_totp_verify"
    )]
    async fn totp_verify(
        &self,
        req: &Request,
        auth: BearerAuth,
        body: Json<TotpCode>,
    ) -> Result<NoContent, ApiError> {
        self.rate(req)?;
        match self
            .state
            .auth
            .totp_verify(&auth.0, &body.0.code, client_ip(req))
            .await
        {
            Ok(()) => Ok(NoContent::Done),
            Err(AuthError::InvalidTotp) => Err(ApiError::bad_request(
                "invalid_totp",
                "the two-factor code is wrong",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// A short-lived link token for URLs that cannot carry a header: WADO-URI links
    /// (`/wado?...&token=`) and the viewer (`/viewer?token=`, kept in an HttpOnly
    /// cookie). It carries the caller's identity only: the same role and study scope
    /// apply. Lifetime `[auth] link_token_ttl_secs`.
    #[oai(
        path = "/link-token",
        method = "post",
        operation_id = "auth_link_token"
    )]
    async fn link_token(
        &self,
        req: &Request,
        auth: BearerAuth,
    ) -> Result<Json<LinkTokenDto>, ApiError> {
        self.rate(req)?;
        let cfg = &self.state.config.auth;
        let token =
            crate::auth::link::issue(&cfg.jwt_secret, auth.0.user_id, cfg.link_token_ttl_secs);
        Ok(Json(LinkTokenDto {
            viewer_path: format!(
                "{}?{}={token}",
                crate::http::viewer::MOUNT,
                crate::auth::link::PARAM
            ),
            token,
            expires_in: cfg.link_token_ttl_secs,
        }))
    }
}

/// A link token.
#[derive(Debug, Object)]
pub struct LinkTokenDto {
    /// Append as `token=...` to a WADO-URI or viewer URL.
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// The viewer's path with the token (`/viewer?token=...`).
    pub viewer_path: String,
}
