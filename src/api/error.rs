//! The one JSON shape of every API error — `{"code", "message", "detail"}`, `code`
//! stable snake_case, `detail` the same text as `message` (for older clients) — as
//! the [`ApiError`] response enum every resource returns, the mapping of
//! [`AuthError`] onto it, and [`json_errors`], the middleware that renders every
//! other error under `/api` (parse errors, 401 without a token, 404, 405) the same way.

use std::sync::Arc;

use poem::{Endpoint, IntoResponse, Request, Response};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

use crate::auth::AuthError;
use crate::db::DbError;

/// An API error.
#[derive(Debug, Clone, Object)]
pub struct ErrorBody {
    /// Stable, machine-readable code (snake_case), e.g. `invalid_credentials`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// The same text as `message` (kept for compatibility).
    pub detail: String,
}

/// `WWW-Authenticate` of a 401 answer.
pub const WWW_AUTHENTICATE: &str = "Bearer realm=\"glia\"";

/// Every error status an API operation may answer.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request is malformed or invalid.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Authentication is missing or failed.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// Authenticated, but not allowed.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No such resource.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// Conflicts with the current state (duplicate name ...).
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// Rate limit exceeded.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>),
    /// Server error.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
}

fn body(code: &str, message: impl Into<String>) -> Json<ErrorBody> {
    let message = message.into();
    Json(ErrorBody {
        code: code.to_string(),
        detail: message.clone(),
        message,
    })
}

impl ApiError {
    /// 400 with `code`.
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        ApiError::BadRequest(body(code, message))
    }

    /// 401 with `code` and `WWW-Authenticate: Bearer`.
    pub fn unauthorized(code: &str, message: impl Into<String>) -> Self {
        ApiError::Unauthorized(body(code, message), WWW_AUTHENTICATE.to_string())
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::Forbidden(body("forbidden", message))
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::NotFound(body("not_found", message))
    }

    /// 409 with `code`.
    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        ApiError::Conflict(body(code, message))
    }

    /// 500 `internal_error`; the cause is logged, not returned.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "API request failed");
        ApiError::Internal(body("internal_error", "internal server error"))
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized(..) => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::Conflict(_) => 409,
            ApiError::TooManyRequests(_) => 429,
            ApiError::Internal(_) => 500,
        }
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        ApiError::internal(&e)
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let code = e.code();
        let msg = e.to_string();
        match e {
            AuthError::MissingToken
            | AuthError::InvalidToken
            | AuthError::ExpiredToken
            | AuthError::InactiveUser
            | AuthError::BadCredentials
            | AuthError::Locked
            | AuthError::TotpRequired
            | AuthError::InvalidTotp
            | AuthError::InvalidRefreshToken => ApiError::unauthorized(code, msg),
            AuthError::RateLimited => ApiError::TooManyRequests(body(code, msg)),
            AuthError::WrongPassword
            | AuthError::WeakPassword
            | AuthError::TotpNotEnrolled
            | AuthError::Invalid(_) => ApiError::bad_request(code, msg),
            AuthError::TotpAlreadyEnabled | AuthError::Conflict(_) => ApiError::conflict(code, msg),
            AuthError::Db(e) => ApiError::internal(&e),
            AuthError::Internal(m) => ApiError::internal(&m),
        }
    }
}

/// Reject text containing NUL characters (no database stores them) with 400.
pub fn check_text(fields: &[(&str, Option<&str>)]) -> Result<(), ApiError> {
    for (name, value) in fields {
        if value.is_some_and(|v| v.contains('\0')) {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("{name} must not contain NUL characters"),
            ));
        }
    }
    Ok(())
}

/// The code of an error poem raised itself, by status.
fn code_of(status: u16) -> &'static str {
    match status {
        400 => "bad_request",
        401 => "missing_token",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        406 => "not_acceptable",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        429 => "rate_limited",
        s if s >= 500 => "internal_error",
        _ => "error",
    }
}

/// Render an error as the JSON error shape (responses that already are, pass).
pub fn render(e: poem::Error) -> Response {
    if e.is_from_response() {
        return e.into_response();
    }
    let status = e.status();
    let code = code_of(status.as_u16());
    let message = if status.is_server_error() {
        tracing::error!(error = %e, "API request failed");
        "internal server error".to_string()
    } else if status.as_u16() == 401 {
        "authentication required: send Authorization: Bearer <access token>".to_string()
    } else {
        e.to_string()
    };
    let mut resp = Json(ErrorBody {
        code: code.to_string(),
        detail: message.clone(),
        message,
    })
    .into_response();
    resp.set_status(status);
    if status.as_u16() == 401 {
        resp.headers_mut().insert(
            poem::http::header::WWW_AUTHENTICATE,
            poem::http::HeaderValue::from_static(WWW_AUTHENTICATE),
        );
    }
    resp
}

/// Middleware (for `.around`): every error of the wrapped endpoint becomes a JSON
/// error response.
pub async fn json_errors<E: Endpoint>(ep: Arc<E>, req: Request) -> poem::Result<Response> {
    match ep.call(req).await {
        Ok(r) => {
            let r = r.into_response();
            // poem answers some failures (404 of an unknown route) without an error.
            if r.status().as_u16() == 404 && r.content_type().is_none() {
                return Ok(render(poem::Error::from_status(r.status())));
            }
            Ok(r)
        }
        Err(e) => Ok(render(e)),
    }
}
