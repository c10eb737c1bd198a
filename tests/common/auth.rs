//! Helpers of the identity and API tests: users created straight through the
//! `AuthService`, the OAuth2 password grant over HTTP, JSON API calls with a bearer
//! token, and the audit rows of a node.

use std::net::SocketAddr;

use glia::app::RunningNode;
use glia::auth::service::UserSpec;
use glia::auth::Role;
use glia::db::audit::{AuditFilter, AuditRow};

use super::http::{request, HttpResponse};

/// Create a user directly (no API); returns its id.
pub async fn add_user(
    node: &RunningNode,
    username: &str,
    password: &str,
    role: Role,
    centre_id: Option<i64>,
) -> i64 {
    node.state
        .auth
        .create_user(UserSpec {
            username: username.into(),
            password: password.into(),
            email: None,
            full_name: None,
            role,
            centre_id,
            physician_name: None,
            patient_ids: Vec::new(),
        })
        .await
        .expect("create user")
        .id
}

/// URL-encode form fields.
pub fn form(fields: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.finish()
}

/// `POST /api/auth/token` (password grant), optionally with a TOTP code.
pub async fn login(
    addr: SocketAddr,
    username: &str,
    password: &str,
    totp: Option<&str>,
) -> HttpResponse {
    let mut fields = vec![
        ("grant_type", "password"),
        ("username", username),
        ("password", password),
    ];
    if let Some(code) = totp {
        fields.push(("totp_code", code));
    }
    request(
        addr,
        "POST",
        "/api/auth/token",
        &[
            super::http::ANONYMOUS,
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        form(&fields).as_bytes(),
    )
    .await
    .expect("token request")
}

/// Log in and return the access token (panics unless 200).
pub async fn token(addr: SocketAddr, username: &str, password: &str) -> String {
    let r = login(addr, username, password, None).await;
    assert_eq!(r.status, 200, "login of {username}: {}", r.text());
    r.json()["access_token"].as_str().unwrap().to_string()
}

/// A JSON API call, with a bearer token when given.
pub async fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<serde_json::Value>,
) -> HttpResponse {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = Vec::new();
    match &auth {
        Some(a) => headers.push(("Authorization", a.as_str())),
        None => headers.push(super::http::ANONYMOUS),
    }
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    if !payload.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    request(addr, method, path, &headers, payload.as_bytes())
        .await
        .expect("API request")
}

/// Assert an error response: status, stable code, the one JSON shape.
pub fn assert_error(r: &HttpResponse, status: u16, code: &str) {
    assert_eq!(r.status, status, "expected {status} {code}: {}", r.text());
    let j = r.json();
    assert_eq!(j["code"], code, "{}", r.text());
    assert!(j["message"].as_str().is_some_and(|m| !m.is_empty()), "{j}");
    assert_eq!(j["message"], j["detail"], "{j}");
    if status == 401 {
        let h = r.header("www-authenticate").unwrap_or_default();
        assert!(h.starts_with("Bearer"), "WWW-Authenticate: {h:?}");
    }
}

/// Every audit row of the node (after flushing the writer).
pub async fn audit_rows(node: &RunningNode) -> Vec<AuditRow> {
    node.state.audit.flush().await;
    glia::db::audit::list(
        node.state.repo.connection(),
        &AuditFilter {
            limit: 100_000,
            ..Default::default()
        },
    )
    .await
    .expect("audit rows")
}
