//! The API's security scheme: OAuth2 password flow (token URL `/api/auth/token`,
//! bearer access tokens), declared in the OpenAPI spec so Swagger UI's "Authorize"
//! and generated clients work.
//!
//! The HTTP authentication middleware authenticates every request and puts the
//! [`Principal`] into the request's extensions; [`BearerAuth`]'s checker takes it
//! from there, and only when it is absent (the API served without that middleware)
//! authenticates the bearer token itself. Plus the role helpers handlers use.

use std::net::IpAddr;

use poem::Request;
use poem_openapi::auth::Bearer;
use poem_openapi::{OAuthScopes, SecurityScheme};

use super::error::ApiError;
use crate::app::AppState;
use crate::auth::{Principal, Role};

/// OAuth2 scopes. OpenAPI requires a flow to list its scopes; Glia has a single one
/// (what a caller may do is decided by the user's role), and clients may omit it.
#[derive(OAuthScopes)]
#[oai(rename_all = "lowercase")]
pub enum GliaScopes {
    /// Use the API as the user's role allows.
    Api,
}

/// An authenticated caller (bearer access token from `POST /api/auth/token`).
#[derive(SecurityScheme)]
#[oai(
    rename = "oauth2",
    ty = "oauth2",
    flows(password(
        token_url = "/api/auth/token",
        refresh_url = "/api/auth/refresh",
        scopes = "GliaScopes"
    )),
    checker = "principal_of_request"
)]
pub struct BearerAuth(pub Principal);

async fn principal_of_request(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    if let Some(p) = req.extensions().get::<Principal>() {
        return Ok(p.clone());
    }
    let state = req
        .data::<AppState>()
        .ok_or_else(|| poem::Error::from(ApiError::internal(&"no application state")))?;
    state
        .auth
        .authenticate_bearer(&bearer.token)
        .await
        .map_err(|e| poem::Error::from(ApiError::from(e)))
}

/// The client's IP address, if known.
pub fn client_ip(req: &Request) -> Option<IpAddr> {
    req.remote_addr().as_socket_addr().map(|a| a.ip())
}

/// 403 unless the caller has one of `roles`.
pub fn require_role(p: &Principal, roles: &[Role]) -> Result<(), ApiError> {
    if roles.contains(&p.role) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "the {} role may not use this operation",
            p.role
        )))
    }
}
