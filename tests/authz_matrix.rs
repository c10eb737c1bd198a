//! The role matrix: every route × every role (plus anonymous, expired, tampered,
//! deactivated and revoked credentials) against the one rule table
//! (`glia::auth::policy::RULES`). The routes come from the served OpenAPI spec and
//! the DICOMweb route list below, so a new route without a rule fails here; the
//! expectations come from the rule table, so the middleware must implement it.
//! Then the study scopes: technicians see their centre's studies only, patients
//! their own, referring physicians those they referred; an invisible study answers
//! 404 on every retrieve; and every access to patient data left one audit row.

mod common;

use common::http::{self, HttpResponse};
use common::world::{call, login, world, World};
use common::{Backend, TestEnv};
use glia::auth::policy::{self, Allow};

/// DICOMweb and the other non-OpenAPI routes Glia serves (method, path template).
const WEB_ROUTES: &[(&str, &str)] = &[
    ("GET", "/dicom-web/studies"),
    ("POST", "/dicom-web/studies"),
    ("GET", "/dicom-web/series"),
    ("GET", "/dicom-web/instances"),
    ("GET", "/dicom-web/studies/{study}"),
    ("POST", "/dicom-web/studies/{study}"),
    ("GET", "/dicom-web/studies/{study}/metadata"),
    ("GET", "/dicom-web/studies/{study}/series"),
    ("GET", "/dicom-web/studies/{study}/instances"),
    ("GET", "/dicom-web/studies/{study}/series/{series}"),
    ("GET", "/dicom-web/studies/{study}/series/{series}/metadata"),
    ("GET", "/dicom-web/studies/{study}/series/{series}/instances"),
    ("GET", "/dicom-web/studies/{study}/series/{series}/instances/{sop}"),
    (
        "GET",
        "/dicom-web/studies/{study}/series/{series}/instances/{sop}/metadata",
    ),
    (
        "GET",
        "/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/1",
    ),
    (
        "GET",
        "/dicom-web/studies/{study}/series/{series}/instances/{sop}/rendered",
    ),
    (
        "GET",
        "/dicom-web/studies/{study}/series/{series}/instances/{sop}/thumbnail",
    ),
    ("GET", "/dicom-web/studies/{study}/thumbnail"),
    (
        "GET",
        "/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={sop}&contentType=application/dicom",
    ),
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("GET", "/api/openapi.json"),
];

/// A route template with its parameters filled in (unknown ids for the API, study B
/// for DICOMweb, so that scoped roles also meet an invisible study).
fn concrete(template: &str, w: &World) -> String {
    template
        .replace("{study}", &w.b.0)
        .replace("{series}", &w.b.1)
        .replace("{sop}", &w.b.2)
        .split('/')
        .map(|seg| {
            if seg.starts_with('{') && seg.ends_with('}') {
                "999999".to_string()
            } else {
                seg.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether a response is the middleware's refusal (not a handler's answer).
fn refused(r: &HttpResponse) -> bool {
    let code = serde_json::from_slice::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_string))
        .unwrap_or_default();
    matches!(
        (r.status, code.as_str()),
        (
            401,
            "missing_token" | "invalid_token" | "expired_token" | "inactive_user"
        ) | (403, "forbidden")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_every_role() {
    let Some(env) = TestEnv::new(Backend::Sqlite).await else {
        return;
    };
    let node = env.start().await;
    let w = world(&node).await;

    // The served routes: the OpenAPI spec's operations and the web routes.
    let spec = call(w.addr, "GET", "/api/openapi.json", "").await.json();
    let mut routes: Vec<(String, String)> = Vec::new();
    for (path, ops) in spec["paths"].as_object().expect("spec paths") {
        for method in ops.as_object().unwrap().keys() {
            routes.push((method.to_uppercase(), format!("/api{path}")));
        }
    }
    assert!(routes.len() >= 20, "the spec lists the API: {routes:?}");
    routes.extend(
        WEB_ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string())),
    );

    let mut checked = 0;
    let mut failures = Vec::new();
    let mut audited_requests = 0usize;
    for (method, template) in &routes {
        let path_only = template.split('?').next().unwrap();
        let rule = policy::rule_for(method, &concrete(path_only, &w))
            .unwrap_or_else(|| panic!("{method} {template} has no rule in auth::policy::RULES"));
        for actor in &w.actors {
            let path = concrete(template, &w);
            let r = call(w.addr, method, &path, &actor.token).await;
            checked += 1;
            if rule.audit.is_some() {
                audited_requests += 1;
            }
            let want_refusal = match (rule.allow, actor.role) {
                (Allow::Public, _) => false,
                (_, None) => true,
                (Allow::AnyUser, Some(_)) => false,
                (Allow::Roles(roles), Some(role)) => !roles.contains(&role),
            };
            // Denied: the middleware's refusal. Allowed: no 401/403 from anyone (the
            // table is the whole truth about who may call what).
            let ok = if want_refusal {
                refused(&r)
            } else {
                r.status != 401 && r.status != 403
            };
            if !ok {
                failures.push(format!(
                    "{method} {template} as {}: {} {}",
                    actor.name,
                    r.status,
                    String::from_utf8_lossy(&r.body)
                        .chars()
                        .take(120)
                        .collect::<String>()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked}:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 200, "{checked}");

    // Bad credentials on a protected route: expired, tampered, deactivated, garbage.
    let secret = node.state.config.auth.jwt_secret.clone();
    let claims = glia::auth::tokens::Claims {
        sub: "1".into(),
        role: "admin".into(),
        exp: (chrono::Utc::now().timestamp() - 120) as u64,
        iat: (chrono::Utc::now().timestamp() - 1000) as u64,
        jti: "x".into(),
    };
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let mut tampered = w.token("admin").to_string();
    let mid = tampered.find('.').unwrap() + 3;
    let c = tampered.as_bytes()[mid];
    tampered.replace_range(mid..mid + 1, if c == b'A' { "B" } else { "A" });
    for (what, token) in [
        ("expired", expired.as_str()),
        ("tampered", tampered.as_str()),
        ("garbage", "not-a-token"),
    ] {
        for path in ["/api/auth/me", "/dicom-web/studies", "/api/users"] {
            let r = call(w.addr, "GET", path, token).await;
            assert_eq!(r.status, 401, "{what} token on {path}: {}", r.text());
            assert!(
                r.header("www-authenticate").is_some(),
                "{what}: WWW-Authenticate"
            );
        }
    }
    // A link token works on link routes only: in `?token=` or as a bearer header
    // (viewers send it so), never on the API.
    let link = common::admin_link_token(&node).await;
    let r = call(w.addr, "GET", "/dicom-web/studies", &link).await;
    assert!(
        r.status == 200 || r.status == 204,
        "link token as bearer: {}",
        r.text()
    );
    let r = call(
        w.addr,
        "GET",
        &format!("/dicom-web/studies?token={link}"),
        "",
    )
    .await;
    assert!(
        r.status == 200 || r.status == 204,
        "link token in the URL: {}",
        r.text()
    );
    assert_eq!(call(w.addr, "GET", "/api/auth/me", &link).await.status, 401);
    let r = call(w.addr, "GET", &format!("/api/auth/me?token={link}"), "").await;
    assert_eq!(r.status, 401, "no link tokens on the API");
    // An access token is no link token.
    let r = call(
        w.addr,
        "GET",
        &format!("/dicom-web/studies?token={}", w.token("admin")),
        "",
    )
    .await;
    assert_eq!(r.status, 401, "access token in a URL");
    // A deactivated user's access token stops working at once.
    let victim = login(w.addr, "referrer", "referrer-password").await;
    let vt = victim["access_token"].as_str().unwrap().to_string();
    assert_eq!(call(w.addr, "GET", "/api/auth/me", &vt).await.status, 200);
    let me = call(w.addr, "GET", "/api/auth/me", &vt).await.json();
    let id = me["id"].as_i64().expect("me has an id");
    let r = call(
        w.addr,
        "POST",
        &format!("/api/users/{id}/deactivate"),
        w.token("admin"),
    )
    .await;
    assert!(r.status < 300, "deactivate: {}", r.text());
    assert_eq!(call(w.addr, "GET", "/api/auth/me", &vt).await.status, 401);
    assert_eq!(
        call(w.addr, "GET", "/dicom-web/studies", &vt).await.status,
        401
    );
    // A revoked refresh token cannot be used.
    let s = login(w.addr, "tech-a", "tech-a-password").await;
    let refresh = s["refresh_token"].as_str().unwrap();
    let body = serde_json::json!({ "refresh_token": refresh }).to_string();
    let json = [http::ANONYMOUS, ("Content-Type", "application/json")];
    let r = http::request(w.addr, "POST", "/api/auth/logout", &json, body.as_bytes())
        .await
        .unwrap();
    assert!(r.status < 300, "logout: {}", r.text());
    let r = http::request(w.addr, "POST", "/api/auth/refresh", &json, body.as_bytes())
        .await
        .unwrap();
    assert_eq!(r.status, 401, "revoked refresh token: {}", r.text());

    // One audit row per access to patient data through an audited route.
    node.state.audit.flush().await;
    let rows = glia::db::audit::list(
        node.state.repo.connection(),
        &glia::db::audit::AuditFilter {
            limit: 1_000_000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let web_actions = [
        "qido",
        "wado",
        "metadata",
        "frames",
        "rendered",
        "thumbnail",
        "bulkdata",
        "stow",
        "ai",
    ];
    let web_rows = rows
        .iter()
        .filter(|r| web_actions.contains(&r.action.as_str()))
        .count();
    // The matrix's audited requests, the 2 setup STOWs, the 3 bad tokens', the 3
    // link-token QIDOs and the deactivated user's refused QIDO.
    assert_eq!(
        web_rows,
        audited_requests + 2 + 3 + 3 + 1,
        "audit rows of web accesses"
    );
    let denied = rows.iter().filter(|r| r.outcome == "denied").count();
    assert!(denied > 10, "denied accesses are audited: {denied}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn study_scopes_filter_search_and_hide_retrieves() {
    let Some(env) = TestEnv::new(Backend::Sqlite).await else {
        return;
    };
    let node = env.start().await;
    let w = world(&node).await;
    let studies_of = |body: &serde_json::Value| -> Vec<String> {
        body.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["0020000D"]["Value"][0].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let both = sorted(vec![w.a.0.clone(), w.b.0.clone()]);
    for (who, want) in [
        ("admin", both.clone()),
        ("radiologist", both.clone()),
        ("tech-a", vec![w.a.0.clone()]),
        ("tech-b", vec![w.b.0.clone()]),
        ("manager-a", vec![w.a.0.clone()]),
        ("referrer", vec![w.a.0.clone()]),
        ("patient-a", vec![w.a.0.clone()]),
    ] {
        let r = call(w.addr, "GET", "/dicom-web/studies", w.token(who)).await;
        let got = if r.status == 204 {
            Vec::new()
        } else {
            assert_eq!(r.status, 200, "{who}: {}", r.text());
            sorted(studies_of(&r.json()))
        };
        assert_eq!(got, sorted(want.clone()), "QIDO studies as {who}");
        // Instance-level search is filtered too.
        let r = call(w.addr, "GET", "/dicom-web/instances", w.token(who)).await;
        let n = if r.status == 204 {
            0
        } else {
            r.json().as_array().unwrap().len()
        };
        assert_eq!(n, want.len(), "QIDO instances as {who}");
    }
    // Centre B's study does not exist for centre A's technician, on every retrieve.
    let (st, se, so) = &w.b;
    for path in [
        format!("/dicom-web/studies/{st}"),
        format!("/dicom-web/studies/{st}/metadata"),
        format!("/dicom-web/studies/{st}/series"),
        format!("/dicom-web/studies/{st}/series/{se}/instances/{so}/metadata"),
        format!("/dicom-web/studies/{st}/series/{se}/instances/{so}/frames/1"),
        format!("/dicom-web/studies/{st}/series/{se}/instances/{so}/rendered"),
        format!(
            "/wado?requestType=WADO&studyUID={st}&seriesUID={se}&objectUID={so}&contentType=application/dicom"
        ),
    ] {
        let r = call(w.addr, "GET", &path, w.token("tech-a")).await;
        assert_eq!(r.status, 404, "tech-a {path}: {}", r.text());
        let r = call(w.addr, "GET", &path, w.token("tech-b")).await;
        assert!(r.status == 200, "tech-b {path}: {} {}", r.status, r.text());
    }
    // The patient gets their own study, not the other one.
    let (ast, ..) = &w.a;
    let r = call(
        w.addr,
        "GET",
        &format!("/dicom-web/studies/{ast}/metadata"),
        w.token("patient-a"),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = call(
        w.addr,
        "GET",
        &format!("/dicom-web/studies/{st}/metadata"),
        w.token("patient-a"),
    )
    .await;
    assert_eq!(r.status, 404);
    // STOW-RS needs technician or above.
    for who in ["patient-a", "referrer"] {
        let r = call(w.addr, "POST", "/dicom-web/studies", w.token(who)).await;
        assert_eq!(r.status, 403, "STOW as {who}");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assigned_radiologists_and_granted_referrers() {
    let Some(mut env) = TestEnv::new(Backend::Sqlite).await else {
        return;
    };
    env.config.auth.radiologist_scope = glia::auth::policy::RadiologistScope::Assigned;
    let node = env.start().await;
    let w = world(&node).await;
    let repo = node.state.auth.repo();
    let id_of =
        |name: &'static str| async move { repo.user_by_username(name).await.unwrap().unwrap().id };
    let qido = |who: &'static str| {
        let token = w.token(who).to_string();
        async move {
            let r = call(w.addr, "GET", "/dicom-web/studies", &token).await;
            if r.status == 204 {
                return Vec::new();
            }
            assert_eq!(r.status, 200, "{who}: {}", r.text());
            let mut v: Vec<String> = r
                .json()
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["0020000D"]["Value"][0].as_str().unwrap().to_string())
                .collect();
            v.sort();
            v
        }
    };
    // Nothing assigned yet: an assigned-only radiologist sees nothing.
    assert!(qido("radiologist").await.is_empty());
    repo.grant_study(id_of("radiologist").await, &w.b.0)
        .await
        .unwrap();
    assert_eq!(qido("radiologist").await, vec![w.b.0.clone()]);
    let (st, se, so) = &w.a;
    let r = call(
        w.addr,
        "GET",
        &format!("/dicom-web/studies/{st}/series/{se}/instances/{so}/metadata"),
        w.token("radiologist"),
    )
    .await;
    assert_eq!(r.status, 404, "an unassigned study is hidden");
    // A referring physician sees referred studies plus explicit grants.
    repo.grant_study(id_of("referrer").await, &w.b.0)
        .await
        .unwrap();
    let mut both = vec![w.a.0.clone(), w.b.0.clone()];
    both.sort();
    assert_eq!(qido("referrer").await, both);
    node.stop().await;
}
