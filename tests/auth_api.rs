//! Authentication over HTTP: the OAuth2 password grant, refresh-token rotation,
//! logout (revocation), `/me`, password change, TOTP two-factor, lockout with its
//! audit rows, per-IP rate limit, refused tokens (deactivated user, expired,
//! tampered), the production-mode check of the JWT key, the request-size limit and
//! the timing of logins for unknown users.

mod common;

use std::time::{Duration, Instant};

use common::auth::{add_user, api, assert_error, audit_rows, login, token};
use common::{Backend, TestEnv};
use glia::auth::Role;
use serde_json::json;

const PW: &str = "correct horse battery staple";

async fn sessions(env: TestEnv) {
    let node = env.start().await;
    let addr = node.http_addr;
    add_user(&node, "alice", PW, Role::Technician, None).await;

    let ok = login(addr, "alice", PW, None).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let t = ok.json();
    assert_eq!(t["token_type"], "bearer");
    assert_eq!(
        t["expires_in"],
        node.state.config.auth.access_token_ttl_secs
    );
    let access = t["access_token"].as_str().unwrap().to_string();
    let refresh1 = t["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(access.split('.').count(), 3, "a JWT");

    // Wrong password and unknown user: the same answer.
    let wrong = login(addr, "alice", "not the password", None).await;
    let unknown = login(addr, "nobody", "not the password", None).await;
    assert_error(&wrong, 401, "invalid_credentials");
    assert_error(&unknown, 401, "invalid_credentials");
    assert_eq!(wrong.json(), unknown.json());

    // /me with and without a token.
    let me = api(addr, "GET", "/api/auth/me", Some(&access), None).await;
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(me.json()["username"], "alice");
    assert_eq!(me.json()["role"], "technician");
    assert_error(
        &api(addr, "GET", "/api/auth/me", None, None).await,
        401,
        "missing_token",
    );

    // Refresh rotates: the old refresh token is then refused.
    let r = api(
        addr,
        "POST",
        "/api/auth/refresh",
        None,
        Some(json!({"refresh_token": refresh1})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let refresh2 = r.json()["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(refresh1, refresh2);
    let me2 = api(
        addr,
        "GET",
        "/api/auth/me",
        r.json()["access_token"].as_str(),
        None,
    )
    .await;
    assert_eq!(me2.status, 200);
    let again = api(
        addr,
        "POST",
        "/api/auth/refresh",
        None,
        Some(json!({"refresh_token": refresh1})),
    )
    .await;
    assert_error(&again, 401, "invalid_refresh_token");

    // Logout revokes.
    let out = api(
        addr,
        "POST",
        "/api/auth/logout",
        None,
        Some(json!({"refresh_token": refresh2})),
    )
    .await;
    assert_eq!(out.status, 204, "{}", out.text());
    let after = api(
        addr,
        "POST",
        "/api/auth/refresh",
        None,
        Some(json!({"refresh_token": refresh2})),
    )
    .await;
    assert_error(&after, 401, "invalid_refresh_token");

    // Nothing stores the refresh token itself.
    let rows = audit_rows(&node).await;
    assert!(rows
        .iter()
        .any(|r| r.action == "login" && r.outcome == "success"));
    for r in &rows {
        let d = r.detail.clone().unwrap_or_default();
        assert!(
            !d.contains(PW) && !d.contains(&refresh1),
            "audit detail leaks: {d}"
        );
    }
    node.stop().await;
}

both_backends!(sessions_rotate_and_revoke, sessions);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_password() {
    let Some(env) = TestEnv::new(Backend::Sqlite).await else {
        return;
    };
    let node = env.start().await;
    let addr = node.http_addr;
    add_user(&node, "bob", PW, Role::Radiologist, None).await;
    let t = login(addr, "bob", PW, None).await.json();
    let access = t["access_token"].as_str().unwrap();
    let change = |cur: &str, new: &str| json!({"current_password": cur, "new_password": new});

    let r = api(
        addr,
        "POST",
        "/api/auth/password",
        Some(access),
        Some(change("wrong one!!", "a new long password")),
    )
    .await;
    assert_error(&r, 400, "wrong_password");
    let r = api(
        addr,
        "POST",
        "/api/auth/password",
        Some(access),
        Some(change(PW, "short")),
    )
    .await;
    assert_error(&r, 400, "weak_password");
    let r = api(
        addr,
        "POST",
        "/api/auth/password",
        Some(access),
        Some(change(PW, "a new long password")),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());

    assert_error(
        &login(addr, "bob", PW, None).await,
        401,
        "invalid_credentials",
    );
    assert_eq!(
        login(addr, "bob", "a new long password", None).await.status,
        200
    );
    // The refresh tokens issued before the change are revoked.
    let old = api(
        addr,
        "POST",
        "/api/auth/refresh",
        None,
        Some(json!({"refresh_token": t["refresh_token"]})),
    )
    .await;
    assert_error(&old, 401, "invalid_refresh_token");
    node.stop().await;
}

fn totp_now(secret: &str) -> String {
    let bytes = totp_rs::Secret::Encoded(secret.to_string())
        .to_bytes()
        .unwrap();
    totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes)
        .unwrap()
        .generate_current()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_two_factor() {
    let Some(env) = TestEnv::new(Backend::Sqlite).await else {
        return;
    };
    let node = env.start().await;
    let addr = node.http_addr;
    add_user(&node, "carol", PW, Role::Admin, None).await;
    let access = token(addr, "carol", PW).await;

    let e = api(addr, "POST", "/api/auth/totp/enrol", Some(&access), None).await;
    assert_eq!(e.status, 200, "{}", e.text());
    let secret = e.json()["secret"].as_str().unwrap().to_string();
    let url = e.json()["otpauth_url"].as_str().unwrap().to_string();
    assert!(
        url.starts_with("otpauth://totp/") && url.contains(&secret),
        "{url}"
    );
    // Not required until verified.
    assert_eq!(login(addr, "carol", PW, None).await.status, 200);

    let code = totp_now(&secret);
    let bad = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    let r = api(
        addr,
        "POST",
        "/api/auth/totp/verify",
        Some(&access),
        Some(json!({"code": bad})),
    )
    .await;
    assert_error(&r, 400, "invalid_totp");
    let r = api(
        addr,
        "POST",
        "/api/auth/totp/verify",
        Some(&access),
        Some(json!({"code": code})),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let me = api(addr, "GET", "/api/auth/me", Some(&access), None).await;
    assert_eq!(me.json()["totp_enabled"], true);

    assert_error(&login(addr, "carol", PW, None).await, 401, "totp_required");
    assert_error(
        &login(addr, "carol", PW, Some(&bad)).await,
        401,
        "invalid_totp",
    );
    let ok = login(addr, "carol", PW, Some(&totp_now(&secret))).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_is_enforced_and_audited() {
    let Some(mut env) = TestEnv::new(Backend::Sqlite).await else {
        return;
    };
    env.config.auth.max_failed_logins = 3;
    env.config.auth.lockout_secs = 600;
    let node = env.start().await;
    let addr = node.http_addr;
    add_user(&node, "dave", PW, Role::Technician, None).await;

    for _ in 0..3 {
        assert_error(
            &login(addr, "dave", "wrong password!", None).await,
            401,
            "invalid_credentials",
        );
    }
    // Locked: even the right password is refused.
    assert_error(&login(addr, "dave", PW, None).await, 401, "account_locked");

    let rows = audit_rows(&node).await;
    let failures = rows
        .iter()
        .filter(|r| {
            r.action == "login" && r.outcome == "failure" && r.actor.as_deref() == Some("dave")
        })
        .count();
    assert_eq!(failures, 3, "one audit row per failed login");
    let lockouts: Vec<_> = rows.iter().filter(|r| r.action == "lockout").collect();
    assert_eq!(lockouts.len(), 1, "one lockout row");
    assert_eq!(lockouts[0].outcome, "denied");
    assert_eq!(lockouts[0].actor.as_deref(), Some("dave"));
    assert!(rows.iter().any(|r| r.action == "login"
        && r.outcome == "denied"
        && r.detail.as_deref() == Some("account_locked")));
    assert!(rows.iter().all(|r| !r
        .detail
        .clone()
        .unwrap_or_default()
        .contains("wrong password")));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_per_ip() {
    let Some(mut env) = TestEnv::new(Backend::Sqlite).await else {
        return;
    };
    env.config.auth.login_rate_per_minute = 3;
    let node = env.start().await;
    let addr = node.http_addr;
    for _ in 0..3 {
        assert_eq!(login(addr, "nobody", "whatever pw", None).await.status, 401);
    }
    assert_error(
        &login(addr, "nobody", "whatever pw", None).await,
        429,
        "rate_limited",
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tokens() {
    let Some(env) = TestEnv::new(Backend::Sqlite).await else {
        return;
    };
    let node = env.start().await;
    let addr = node.http_addr;
    let id = add_user(&node, "erin", PW, Role::Technician, None).await;
    add_user(&node, "frank", PW, Role::Technician, None).await;

    // Tampered: a changed signature, a changed payload, another key.
    let good = token(addr, "frank", PW).await;
    let mut sig = good.clone();
    let last = sig.pop().unwrap();
    sig.push(if last == 'A' { 'B' } else { 'A' });
    assert_error(
        &api(addr, "GET", "/api/auth/me", Some(&sig), None).await,
        401,
        "invalid_token",
    );
    let parts: Vec<&str> = good.split('.').collect();
    let forged_payload = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
            r#"{{"sub":"{id}","role":"admin","exp":9999999999,"iat":0,"jti":"x"}}"#
        ))
    };
    let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert_error(
        &api(addr, "GET", "/api/auth/me", Some(&forged), None).await,
        401,
        "invalid_token",
    );
    let other_key = glia::auth::tokens::TokenKeys::new("some other key", 60)
        .issue(id, Role::Admin)
        .unwrap();
    assert_error(
        &api(addr, "GET", "/api/auth/me", Some(&other_key), None).await,
        401,
        "invalid_token",
    );
    assert_error(
        &api(addr, "GET", "/api/auth/me", Some("garbage"), None).await,
        401,
        "invalid_token",
    );

    // Deactivated: the access token and the refresh token stop working.
    let t = login(addr, "erin", PW, None).await.json();
    let access = t["access_token"].as_str().unwrap();
    assert_eq!(
        api(addr, "GET", "/api/auth/me", Some(access), None)
            .await
            .status,
        200
    );
    node.state.auth.deactivate_user(id).await.unwrap().unwrap();
    assert_error(
        &api(addr, "GET", "/api/auth/me", Some(access), None).await,
        401,
        "inactive_user",
    );
    let r = api(
        addr,
        "POST",
        "/api/auth/refresh",
        None,
        Some(json!({"refresh_token": t["refresh_token"]})),
    )
    .await;
    assert_error(&r, 401, "invalid_refresh_token");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token() {
    let Some(mut env) = TestEnv::new(Backend::Sqlite).await else {
        return;
    };
    env.config.auth.access_token_ttl_secs = 1;
    let node = env.start().await;
    let addr = node.http_addr;
    add_user(&node, "heidi", PW, Role::Technician, None).await;
    let t = token(addr, "heidi", PW).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_error(
        &api(addr, "GET", "/api/auth/me", Some(&t), None).await,
        401,
        "expired_token",
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_mode_refuses_the_dev_key() {
    let Some(mut env) = TestEnv::new(Backend::Sqlite).await else {
        return;
    };
    env.config.node.mode = glia::config::NodeMode::Production;
    match glia::app::start(env.config.clone()).await {
        Err(glia::app::StartError::DevJwtSecret) => {}
        Err(e) => panic!("wrong start error: {e}"),
        Ok(_) => panic!("a production node started with the development JWT key"),
    }
    env.config.auth.jwt_secret = "a site-specific secret of sufficient length".into();
    let node = env.start().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_size_limit() {
    let Some(mut env) = TestEnv::new(Backend::Sqlite).await else {
        return;
    };
    env.config.http.max_request_bytes = 1000;
    let node = env.start().await;
    let body = vec![b'x'; 5000];
    let r = common::http::request(
        node.http_addr,
        "POST",
        "/api/auth/refresh",
        &[("Content-Type", "application/json")],
        &body,
    )
    .await
    .unwrap();
    assert_error(&r, 413, "payload_too_large");
    let small = api(
        node.http_addr,
        "POST",
        "/api/auth/refresh",
        None,
        Some(json!({"refresh_token": "x"})),
    )
    .await;
    assert_error(&small, 401, "invalid_refresh_token");
    node.stop().await;
}

async fn mean_login_secs(addr: std::net::SocketAddr, user: &str, n: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        assert_eq!(
            login(addr, user, "a wrong password", None).await.status,
            401
        );
    }
    start.elapsed().as_secs_f64() / n as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_timing_matches_wrong_password() {
    let Some(mut env) = TestEnv::new(Backend::Sqlite).await else {
        return;
    };
    env.config.auth.max_failed_logins = 0;
    env.config.auth.login_rate_per_minute = 0;
    let node = env.start().await;
    let addr = node.http_addr;
    add_user(&node, "grace", PW, Role::Technician, None).await;
    // Warm up both paths (the dummy hash is computed on first use).
    mean_login_secs(addr, "nobody", 1).await;
    mean_login_secs(addr, "grace", 1).await;
    let unknown = mean_login_secs(addr, "nobody", 5).await;
    let known = mean_login_secs(addr, "grace", 5).await;
    let ratio = unknown.max(known) / unknown.min(known);
    eprintln!(
        "mean login: unknown user {unknown:.4} s, wrong password {known:.4} s, ratio {ratio:.2}"
    );
    assert!(
        ratio < 3.0,
        "timing tells unknown users apart: {unknown} s vs {known} s"
    );
    node.stop().await;
}
