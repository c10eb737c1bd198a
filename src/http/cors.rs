//! CORS for browser clients on other origins (`[http] cors_origins`), applied to
//! DICOMweb (`/dicom-web`), WADO-URI (`/wado`) and the API (`/api`) only.
//!
//! poem's `Cors` allows every origin when given none, so an empty `cors_origins`
//! installs no CORS at all (browsers then refuse cross-origin reads; same-origin pages
//! such as `/viewer` need nothing). `"*"` anywhere in the list allows any origin.

use std::sync::Arc;

use poem::http::{header, Method};
use poem::middleware::{Cors, CorsEndpoint};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};

/// Path prefixes that get CORS.
pub const PREFIXES: &[&str] = &["/dicom-web", "/wado", "/api"];

/// The CORS policy for `origins`, or `None` when no cross-origin access is allowed.
pub fn policy(origins: &[String]) -> Option<Cors> {
    if origins.is_empty() {
        return None;
    }
    let cors = Cors::new()
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::ACCEPT, header::CONTENT_TYPE, header::AUTHORIZATION])
        .expose_headers([
            header::WARNING,
            header::CONTENT_TYPE,
            header::CONTENT_LENGTH,
        ])
        .max_age(3600);
    if origins.iter().any(|o| o.trim() == "*") {
        Some(cors)
    } else {
        Some(cors.allow_origins(origins.iter().map(|o| o.trim().trim_end_matches('/'))))
    }
}

/// Does `path` belong to a CORS-enabled service?
fn scoped(path: &str) -> bool {
    PREFIXES.iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Middleware: CORS on [`PREFIXES`], nothing elsewhere.
pub struct ScopedCors(pub Option<Cors>);

impl<E: Endpoint + 'static> Middleware<E> for ScopedCors {
    type Output = ScopedCorsEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        let ep = Arc::new(ep);
        ScopedCorsEndpoint {
            cors: self.0.as_ref().map(|c| c.transform(ep.clone())),
            plain: ep,
        }
    }
}

pub struct ScopedCorsEndpoint<E> {
    cors: Option<CorsEndpoint<Arc<E>>>,
    plain: Arc<E>,
}

impl<E: Endpoint> Endpoint for ScopedCorsEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        match &self.cors {
            Some(cors) if scoped(req.uri().path()) => cors.call(req).await,
            _ => self.plain.call(req).await.map(IntoResponse::into_response),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope() {
        assert!(scoped("/dicom-web/studies"));
        assert!(scoped("/wado"));
        assert!(scoped("/api/openapi.json"));
        assert!(!scoped("/viewer/index.html"));
        assert!(!scoped("/wadox"));
        assert!(!scoped("/health"));
    }

    #[test]
    fn empty_list_is_no_cors() {
        assert!(policy(&[]).is_none());
        assert!(policy(&["*".into()]).is_some());
    }
}
