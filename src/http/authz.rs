//! Authentication and authorisation of every HTTP request, in one place.
//!
//! For each request: look up its rule in `crate::auth::policy::RULES` (no rule: 404
//! for everybody), authenticate the caller (bearer header; on routes that allow it, a
//! link token in `?token=` or the viewer's cookie), check the rule's roles (401
//! without valid credentials, 403 without the role), bind the caller and its study
//! scope to the request (`crate::auth::context`) so that queries and retrieves only
//! see what the caller may see (an invisible study answers 404, like an unknown one),
//! run the handler, and audit accesses to patient data with their outcome.

use std::net::IpAddr;

use poem::http::{header, HeaderValue, Method, StatusCode};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};

use crate::app::AppState;
use crate::audit::{AuditEvent, Outcome, Surface};
use crate::auth::context::{self, Caller};
use crate::auth::policy::{self, Allow, Rule};
use crate::auth::{link, Principal};

/// The middleware (see the module documentation).
pub struct Authz;

impl<E: Endpoint> Middleware<E> for Authz {
    type Output = AuthzEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        AuthzEndpoint { inner: ep }
    }
}

/// [`Authz`] around an endpoint.
pub struct AuthzEndpoint<E> {
    inner: E,
}

/// A refusal in the API's one error shape.
pub fn refusal(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "code": code, "message": message, "detail": message });
    let mut resp = Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body.to_string());
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(crate::api::error::WWW_AUTHENTICATE),
        );
    }
    resp
}

/// Where the credentials of a request came from.
enum Credentials {
    None,
    Bearer(String),
    /// A link token, and whether it came in the URL (then the viewer gets a cookie).
    Link(String, bool),
}

fn credentials(req: &Request, rule: &Rule) -> Credentials {
    if let Some(v) = req.headers().get(header::AUTHORIZATION) {
        let v = v.to_str().unwrap_or("");
        return match v.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                Credentials::Bearer(token.trim().to_string())
            }
            _ => Credentials::Bearer(String::new()),
        };
    }
    if !link_allowed(req, rule) {
        return Credentials::None;
    }
    let from_query = req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == link::PARAM)
            .map(|(_, v)| v.into_owned())
    });
    if let Some(t) = from_query {
        return Credentials::Link(t, true);
    }
    let cookie = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == link::COOKIE)
        .map(|(_, v)| v.to_string());
    match cookie {
        Some(t) => Credentials::Link(t, false),
        None => Credentials::None,
    }
}

/// Remove the link token from the request's query string, so handlers never see it
/// (QIDO-RS would refuse it as an unknown parameter) and nothing logs it.
fn strip_link_token(req: &mut Request) {
    let Some(query) = req.uri().query() else {
        return;
    };
    let prefix = format!("{}=", link::PARAM);
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| !kv.starts_with(&prefix) && *kv != link::PARAM)
        .collect();
    let path_and_query = if kept.is_empty() {
        req.uri().path().to_string()
    } else {
        format!("{}?{}", req.uri().path(), kept.join("&"))
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = path_and_query.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = poem::http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}

/// Whether a request may authenticate with a link token (GET/HEAD on a link route).
fn link_allowed(req: &Request, rule: &Rule) -> bool {
    rule.link && (req.method() == Method::GET || req.method() == Method::HEAD)
}

/// The principal of a valid link token whose user is active.
async fn link_principal(state: &AppState, token: &str) -> Option<Principal> {
    let id = link::verify(&state.config.auth.jwt_secret, token).ok()?;
    state.auth.principal(id).await.ok()
}

/// The study, series and instance UIDs a request addresses (path or WADO-URI
/// parameters), for the audit trail.
fn addressed(req: &Request) -> [Option<String>; 3] {
    let path = req.uri().path();
    if path == "/wado" {
        let params: Vec<(String, String)> = req
            .uri()
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        return [get("studyUID"), get("seriesUID"), get("objectUID")];
    }
    let segs: Vec<&str> = path.split('/').collect();
    let after = |name: &str| {
        segs.iter()
            .position(|s| *s == name)
            .and_then(|i| segs.get(i + 1))
            .filter(|s| !s.is_empty())
            .map(|s| s.to_string())
    };
    [after("studies"), after("series"), after("instances")]
}

/// The audit action of a DICOMweb request, from its path.
fn dicomweb_action(method: &Method, path: &str) -> &'static str {
    if method == Method::POST {
        return "stow";
    }
    let last = path.rsplit('/').next().unwrap_or("");
    if path.contains("/frames/") && !last.contains("rendered") && last != "thumbnail" {
        return "frames";
    }
    match last {
        "studies" | "series" | "instances" => "qido",
        "metadata" => "metadata",
        "rendered" => "rendered",
        "thumbnail" => "thumbnail",
        _ if path.contains("/bulkdata/") => "bulkdata",
        _ => "wado",
    }
}

fn outcome_of(status: StatusCode) -> Outcome {
    match status.as_u16() {
        200..=399 => Outcome::Success,
        401 | 403 => Outcome::Denied,
        _ => Outcome::Failure,
    }
}

impl<E: Endpoint> Endpoint for AuthzEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let Some(state) = req.data::<AppState>().cloned() else {
            return Ok(refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "server state missing",
            ));
        };
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let Some(rule) = policy::rule_for(method.as_str(), &path) else {
            return Ok(refusal(StatusCode::NOT_FOUND, "not_found", "no such route"));
        };
        let ip: Option<IpAddr> = req.remote_addr().as_socket_addr().map(|a| a.ip());
        let audit_action = rule.audit.map(|a| {
            if a == "dicomweb" || a == "stow" {
                dicomweb_action(&method, &path)
            } else {
                a
            }
        });
        let [study, series, sop] = addressed(&req);
        let surface = if path.starts_with("/api/") {
            Surface::Api
        } else {
            Surface::DicomWeb
        };
        let event = |who: Option<&Principal>, status: StatusCode, detail: Option<&str>| {
            let mut e = AuditEvent::new(surface, audit_action.unwrap_or("access")).from_ip(ip);
            if let Some(p) = who {
                e = e
                    .user(p.user_id, &p.username, p.role.as_str())
                    .centre(p.centre_id);
            }
            e = e
                .study(study.as_deref())
                .series(series.as_deref())
                .instance(sop.as_deref())
                .outcome(outcome_of(status), Some(status.as_u16() as i32));
            if let Some(d) = detail {
                e = e.detail(d);
            }
            e
        };

        let mut set_cookie = None;
        let principal = if rule.allow == Allow::Public && !rule.link {
            None
        } else {
            match credentials(&req, rule) {
                Credentials::None => None,
                Credentials::Bearer(t) => match state.auth.authenticate_bearer(&t).await {
                    Ok(p) => Some(p),
                    Err(e) => {
                        // Viewers that take `?token=` from the page URL (OHIF does) send
                        // it back as a bearer header: on link routes a link token is
                        // accepted there too (never an access token in a URL).
                        let via_link = if link_allowed(&req, rule) {
                            link_principal(&state, &t).await
                        } else {
                            None
                        };
                        match via_link {
                            Some(p) => Some(p),
                            None if rule.allow == Allow::Public => None,
                            None => {
                                if audit_action.is_some() {
                                    let ev =
                                        event(None, StatusCode::UNAUTHORIZED, Some("bad token"));
                                    state.audit.record(ev).await;
                                }
                                return Ok(refusal(
                                    StatusCode::UNAUTHORIZED,
                                    e.code(),
                                    &e.to_string(),
                                ));
                            }
                        }
                    }
                },
                Credentials::Link(t, in_url) => match link_principal(&state, &t).await {
                    Some(p) => {
                        if in_url && path.starts_with(crate::http::viewer::MOUNT) {
                            set_cookie = Some(t);
                        }
                        Some(p)
                    }
                    None if rule.allow == Allow::Public => None,
                    None => {
                        if audit_action.is_some() {
                            let ev = event(None, StatusCode::UNAUTHORIZED, Some("bad link token"));
                            state.audit.record(ev).await;
                        }
                        return Ok(refusal(
                            StatusCode::UNAUTHORIZED,
                            "invalid_token",
                            "the link token is not valid or has expired",
                        ));
                    }
                },
            }
        };
        if rule.allow != Allow::Public {
            let Some(p) = &principal else {
                if audit_action.is_some() {
                    let ev = event(None, StatusCode::UNAUTHORIZED, Some("no credentials"));
                    state.audit.record(ev).await;
                }
                return Ok(refusal(
                    StatusCode::UNAUTHORIZED,
                    "missing_token",
                    "authentication required (Authorization: Bearer <token>)",
                ));
            };
            if !policy::allows(rule, p) {
                if audit_action.is_some() {
                    let ev = event(Some(p), StatusCode::FORBIDDEN, Some("role not allowed"));
                    state.audit.record(ev).await;
                }
                return Ok(refusal(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "your role may not use this route",
                ));
            }
        }
        let scope = match &principal {
            Some(p) => policy::scope_for(p, state.config.auth.radiologist_scope),
            None => Caller::nobody().scope,
        };
        if let Some(p) = &principal {
            req.extensions_mut().insert(p.clone());
        }
        if rule.link {
            strip_link_token(&mut req);
        }
        let pending = audit_action.map(|_| event(principal.as_ref(), StatusCode::OK, None));
        let caller = Caller {
            principal: principal.clone(),
            scope,
        };
        let resp = context::run_as(caller, self.inner.call(req)).await;
        let mut resp = match resp {
            Ok(r) => r.into_response(),
            Err(e) => e.into_response(),
        };
        if let Some(mut ev) = pending {
            let status = resp.status();
            ev = ev.outcome(outcome_of(status), Some(status.as_u16() as i32));
            state.audit.record(ev).await;
        }
        if let Some(t) = set_cookie {
            let ttl = state.config.auth.link_token_ttl_secs;
            let cookie = format!(
                "{}={t}; Path=/; Max-Age={ttl}; HttpOnly; SameSite=Strict",
                link::COOKIE
            );
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dicomweb_actions() {
        let g = Method::GET;
        assert_eq!(dicomweb_action(&g, "/dicom-web/studies"), "qido");
        assert_eq!(dicomweb_action(&g, "/dicom-web/studies/1.2/series"), "qido");
        assert_eq!(dicomweb_action(&g, "/dicom-web/studies/1.2"), "wado");
        assert_eq!(
            dicomweb_action(&g, "/dicom-web/studies/1.2/metadata"),
            "metadata"
        );
        assert_eq!(
            dicomweb_action(&g, "/dicom-web/studies/1/series/2/instances/3/frames/1"),
            "frames"
        );
        assert_eq!(
            dicomweb_action(
                &g,
                "/dicom-web/studies/1/series/2/instances/3/frames/1/rendered"
            ),
            "rendered"
        );
        assert_eq!(dicomweb_action(&Method::POST, "/dicom-web/studies"), "stow");
    }
}
