//! The API's security scheme: OAuth2 password flow (token URL `/api/auth/token`,
//! bearer access tokens), declared in the OpenAPI spec so Swagger UI's "Authorize"
//! and generated clients work.
//!
//! The HTTP authentication middleware authenticates every request and puts the
//! [`Principal`] into the request's extensions; [`BearerAuth`] takes it from there,
//! and only when it is absent (the API served without that middleware) authenticates
//! the bearer token itself. Plus the role helpers handlers use.

use std::net::IpAddr;

use poem::{Request, RequestBody};
use poem_openapi::registry::{MetaOAuthFlow, MetaOAuthFlows, MetaSecurityScheme, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions, OAuthScopes};

use super::error::ApiError;
use crate::app::AppState;
use crate::auth::{AuthError, Principal, Role};

/// OAuth2 scopes. OpenAPI requires a flow to list its scopes; Glia has a single one
/// (what a caller may do is decided by the user's role), and clients may omit it.
#[derive(OAuthScopes)]
#[oai(rename_all = "lowercase")]
pub enum GliaScopes {
    /// Use the API as the user's role allows.
    Api,
}

/// The name of the security scheme in the spec.
const SCHEME: &str = "oauth2";

/// An authenticated caller (bearer access token from `POST /api/auth/token`).
///
/// Written out rather than derived: the derived extractor insists on an
/// `Authorization` header even when the middleware has already authenticated the
/// request (by whatever means), and answers a missing one outside the JSON error shape.
pub struct BearerAuth(pub Principal);

/// The token of an `Authorization: Bearer ...` header.
pub fn bearer_token(req: &Request) -> Option<&str> {
    let value = req
        .headers()
        .get(poem::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl<'a> ApiExtractor<'a> for BearerAuth {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        registry.create_security_scheme(
            SCHEME,
            MetaSecurityScheme {
                ty: "oauth2",
                description: Some(
                    "OAuth2 password grant at /api/auth/token; send the access token as \
                     `Authorization: Bearer ...`.",
                ),
                name: None,
                key_in: None,
                scheme: None,
                bearer_format: None,
                flows: Some(MetaOAuthFlows {
                    implicit: None,
                    password: Some(MetaOAuthFlow {
                        authorization_url: None,
                        token_url: Some("/api/auth/token"),
                        refresh_url: Some("/api/auth/refresh"),
                        scopes: GliaScopes::meta(),
                    }),
                    client_credentials: None,
                    authorization_code: None,
                }),
                openid_connect_url: None,
            },
        );
    }

    fn security_schemes() -> Vec<&'static str> {
        vec![SCHEME]
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut RequestBody,
        _opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        // Authenticated already by the HTTP middleware.
        if let Some(p) = req.extensions().get::<Principal>() {
            return Ok(Self(p.clone()));
        }
        let token = bearer_token(req).ok_or_else(|| ApiError::from(AuthError::MissingToken))?;
        let state = req
            .data::<AppState>()
            .ok_or_else(|| ApiError::internal(&"no application state"))?;
        state
            .auth
            .authenticate_bearer(token)
            .await
            .map(Self)
            .map_err(|e| ApiError::from(e).into())
    }
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
