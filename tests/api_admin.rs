//! The administration API: users and centres CRUD as admin (with audit rows), a
//! centre manager limited to their own centre's non-admin users, other roles refused,
//! and bootstrapping the first admin with `glia user add` through the binary.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::auth::{add_user, api, assert_error, audit_rows, login, token};
use common::{Backend, TestEnv};
use glia::auth::Role;
use serde_json::json;

const PW: &str = "administrator password";

async fn admin_crud(env: TestEnv) {
    let node = env.start().await;
    let addr = node.http_addr;
    add_user(&node, "root", PW, Role::Admin, None).await;
    let t = token(addr, "root", PW).await;
    let t = Some(t.as_str());

    // Centres.
    let a = api(
        addr,
        "POST",
        "/api/centres",
        t,
        Some(json!({"name": "Centre A", "contact_email": "a@example.org"})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let a_id = a.json()["id"].as_i64().unwrap();
    assert_eq!(a.json()["active"], true);
    let b = api(
        addr,
        "POST",
        "/api/centres",
        t,
        Some(json!({"name": "Centre B"})),
    )
    .await;
    let b_id = b.json()["id"].as_i64().unwrap();
    assert_error(
        &api(
            addr,
            "POST",
            "/api/centres",
            t,
            Some(json!({"name": "Centre A"})),
        )
        .await,
        409,
        "conflict",
    );
    let list = api(addr, "GET", "/api/centres", t, None).await;
    assert_eq!(list.json().as_array().unwrap().len(), 2);
    let p = api(
        addr,
        "PATCH",
        &format!("/api/centres/{a_id}"),
        t,
        Some(json!({"address": "1 Main St", "contact_email": null})),
    )
    .await;
    assert_eq!(p.status, 200, "{}", p.text());
    assert_eq!(p.json()["address"], "1 Main St");
    assert!(p.json()["contact_email"].is_null());
    let g = api(addr, "GET", &format!("/api/centres/{a_id}"), t, None).await;
    assert_eq!(g.json()["name"], "Centre A");
    assert_error(
        &api(addr, "GET", "/api/centres/999999", t, None).await,
        404,
        "not_found",
    );
    let d = api(
        addr,
        "POST",
        &format!("/api/centres/{b_id}/deactivate"),
        t,
        None,
    )
    .await;
    assert_eq!(d.json()["active"], false);
    let active = api(addr, "GET", "/api/centres?active=true", t, None).await;
    assert_eq!(active.json().as_array().unwrap().len(), 1);

    // Users.
    let tech = api(
        addr,
        "POST",
        "/api/users",
        t,
        Some(json!({
            "username": "tech1", "password": "technician password", "role": "technician",
            "centre_id": a_id, "full_name": "Tech One"
        })),
    )
    .await;
    assert_eq!(tech.status, 200, "{}", tech.text());
    let tech_id = tech.json()["id"].as_i64().unwrap();
    assert_eq!(tech.json()["centre_id"], a_id);
    let pat = api(
        addr,
        "POST",
        "/api/users",
        t,
        Some(json!({
            "username": "pat1", "password": "patient password", "role": "patient",
            "patient_ids": [{"patient_id": "P-1", "issuer": "HOSP"}, {"patient_id": "P-2"}]
        })),
    )
    .await;
    assert_eq!(pat.status, 200, "{}", pat.text());
    assert_eq!(
        pat.json()["patient_ids"],
        json!([{"patient_id": "P-1", "issuer": "HOSP"}, {"patient_id": "P-2", "issuer": ""}])
    );
    let pat_id = pat.json()["id"].as_i64().unwrap();
    assert_error(
        &api(
            addr,
            "POST",
            "/api/users",
            t,
            Some(
                json!({"username": "tech1", "password": "another password", "role": "technician"}),
            ),
        )
        .await,
        409,
        "conflict",
    );
    assert_error(
        &api(
            addr,
            "POST",
            "/api/users",
            t,
            Some(json!({"username": "x", "password": "short", "role": "technician"})),
        )
        .await,
        400,
        "weak_password",
    );
    assert_error(&api(addr, "POST", "/api/users", t, Some(json!({"username": "y", "password": "long enough pw", "role": "technician", "centre_id": 424242}))).await, 400, "invalid_request");

    let techs = api(addr, "GET", "/api/users?role=technician", t, None).await;
    let names: Vec<_> = techs
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].clone())
        .collect();
    assert_eq!(names, vec![json!("tech1")]);
    let in_a = api(
        addr,
        "GET",
        &format!("/api/users?centre_id={a_id}"),
        t,
        None,
    )
    .await;
    assert_eq!(in_a.json().as_array().unwrap().len(), 1);
    // Users by id: the harness's test-admin, root, tech1, ...
    let page = api(addr, "GET", "/api/users?skip=2&limit=1", t, None).await;
    assert_eq!(page.json().as_array().unwrap().len(), 1);
    assert_eq!(page.json()[0]["username"], "tech1");

    let u = api(
        addr,
        "PATCH",
        &format!("/api/users/{pat_id}"),
        t,
        Some(json!({
            "full_name": "Pat Ient", "patient_ids": [{"patient_id": "P-3"}]
        })),
    )
    .await;
    assert_eq!(u.status, 200, "{}", u.text());
    assert_eq!(u.json()["full_name"], "Pat Ient");
    assert_eq!(
        u.json()["patient_ids"],
        json!([{"patient_id": "P-3", "issuer": ""}])
    );
    let ref_doc = api(
        addr,
        "PATCH",
        &format!("/api/users/{tech_id}"),
        t,
        Some(json!({"physician_name": "Smith^John", "role": "referring_physician"})),
    )
    .await;
    assert_eq!(ref_doc.json()["physician_name"], "Smith^John");
    assert_eq!(ref_doc.json()["role"], "referring_physician");
    assert_error(
        &api(addr, "GET", "/api/users/999999", t, None).await,
        404,
        "not_found",
    );
    assert_error(
        &api(
            addr,
            "PATCH",
            "/api/users/999999",
            t,
            Some(json!({"active": true})),
        )
        .await,
        404,
        "not_found",
    );

    // Deactivation: the user's token stops working, their refresh token too.
    let tt = login(addr, "tech1", "technician password", None)
        .await
        .json();
    let d = api(
        addr,
        "POST",
        &format!("/api/users/{tech_id}/deactivate"),
        t,
        None,
    )
    .await;
    assert_eq!(d.status, 200, "{}", d.text());
    assert_eq!(d.json()["active"], false);
    assert_error(
        &api(
            addr,
            "GET",
            "/api/auth/me",
            tt["access_token"].as_str(),
            None,
        )
        .await,
        401,
        "inactive_user",
    );
    let r = api(
        addr,
        "POST",
        "/api/auth/refresh",
        None,
        Some(json!({"refresh_token": tt["refresh_token"]})),
    )
    .await;
    assert_error(&r, 401, "invalid_refresh_token");
    let inactive = api(addr, "GET", "/api/users?active=false", t, None).await;
    assert_eq!(inactive.json().as_array().unwrap().len(), 1);

    let rows = audit_rows(&node).await;
    for action in [
        "centre.create",
        "centre.update",
        "centre.deactivate",
        "user.create",
        "user.update",
        "user.deactivate",
    ] {
        assert!(
            rows.iter()
                .any(|r| r.action == action && r.actor.as_deref() == Some("root")),
            "no audit row for {action}"
        );
    }
    assert!(rows
        .iter()
        .all(|r| !r.detail.clone().unwrap_or_default().contains("password")));
    node.stop().await;
}

both_backends!(users_and_centres_crud, admin_crud);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn centre_manager_is_limited_to_their_centre() {
    let Some(env) = TestEnv::new(Backend::Sqlite).await else {
        return;
    };
    let node = env.start().await;
    let addr = node.http_addr;
    let repo = node.state.auth.repo();
    let a = repo
        .create_centre(glia::db::identity::NewCentre {
            name: "A".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .id;
    let b = repo
        .create_centre(glia::db::identity::NewCentre {
            name: "B".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .id;
    add_user(&node, "root", PW, Role::Admin, Some(a)).await;
    add_user(&node, "boss", PW, Role::CentreManager, Some(a)).await;
    let tech_a = add_user(&node, "tech_a", PW, Role::Technician, Some(a)).await;
    let tech_b = add_user(&node, "tech_b", PW, Role::Technician, Some(b)).await;
    let t = token(addr, "boss", PW).await;
    let t = Some(t.as_str());

    let list = api(addr, "GET", "/api/users", t, None).await;
    assert_eq!(list.status, 200, "{}", list.text());
    let mut names: Vec<String> = list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    // Their centre only, admins left out (root is an admin of centre A).
    assert_eq!(names, ["boss", "tech_a"]);
    assert_error(
        &api(addr, "GET", &format!("/api/users?centre_id={b}"), t, None).await,
        403,
        "forbidden",
    );

    let created = api(
        addr,
        "POST",
        "/api/users",
        t,
        Some(json!({"username": "new_tech", "password": "a good password", "role": "technician"})),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.text());
    assert_eq!(
        created.json()["centre_id"],
        a,
        "placed in the manager's centre"
    );
    assert_error(
        &api(
            addr,
            "POST",
            "/api/users",
            t,
            Some(json!({"username": "evil", "password": "a good password", "role": "admin"})),
        )
        .await,
        403,
        "forbidden",
    );
    assert_error(&api(addr, "POST", "/api/users", t, Some(json!({"username": "elsewhere", "password": "a good password", "role": "technician", "centre_id": b}))).await, 403, "forbidden");

    assert_eq!(
        api(addr, "GET", &format!("/api/users/{tech_a}"), t, None)
            .await
            .status,
        200
    );
    assert_error(
        &api(addr, "GET", &format!("/api/users/{tech_b}"), t, None).await,
        403,
        "forbidden",
    );
    let up = api(
        addr,
        "PATCH",
        &format!("/api/users/{tech_a}"),
        t,
        Some(json!({"full_name": "Tech A"})),
    )
    .await;
    assert_eq!(up.status, 200, "{}", up.text());
    assert_error(
        &api(
            addr,
            "PATCH",
            &format!("/api/users/{tech_a}"),
            t,
            Some(json!({"role": "admin"})),
        )
        .await,
        403,
        "forbidden",
    );
    assert_error(
        &api(
            addr,
            "PATCH",
            &format!("/api/users/{tech_a}"),
            t,
            Some(json!({"centre_id": b})),
        )
        .await,
        403,
        "forbidden",
    );
    assert_error(
        &api(
            addr,
            "POST",
            &format!("/api/users/{tech_b}/deactivate"),
            t,
            None,
        )
        .await,
        403,
        "forbidden",
    );
    let root_id = repo.user_by_username("root").await.unwrap().unwrap().id;
    assert_error(
        &api(
            addr,
            "POST",
            &format!("/api/users/{root_id}/deactivate"),
            t,
            None,
        )
        .await,
        403,
        "forbidden",
    );
    assert_eq!(
        api(
            addr,
            "POST",
            &format!("/api/users/{tech_a}/deactivate"),
            t,
            None
        )
        .await
        .status,
        200
    );
    assert_error(
        &api(addr, "GET", "/api/centres", t, None).await,
        403,
        "forbidden",
    );
    assert_error(
        &api(addr, "POST", "/api/centres", t, Some(json!({"name": "C"}))).await,
        403,
        "forbidden",
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_roles_are_refused() {
    let Some(env) = TestEnv::new(Backend::Sqlite).await else {
        return;
    };
    let node = env.start().await;
    let addr = node.http_addr;
    let admin = add_user(&node, "root", PW, Role::Admin, None).await;
    for (name, role) in [
        ("tech", Role::Technician),
        ("rad", Role::Radiologist),
        ("doc", Role::ReferringPhysician),
        ("pat", Role::Patient),
    ] {
        add_user(&node, name, PW, role, None).await;
        let t = token(addr, name, PW).await;
        let t = Some(t.as_str());
        assert_error(
            &api(addr, "GET", "/api/users", t, None).await,
            403,
            "forbidden",
        );
        assert_error(
            &api(addr, "GET", &format!("/api/users/{admin}"), t, None).await,
            403,
            "forbidden",
        );
        assert_error(
            &api(
                addr,
                "POST",
                "/api/users",
                t,
                Some(json!({"username": "z", "password": "a good password", "role": "admin"})),
            )
            .await,
            403,
            "forbidden",
        );
        assert_error(
            &api(addr, "GET", "/api/centres", t, None).await,
            403,
            "forbidden",
        );
        assert_error(
            &api(addr, "POST", "/api/centres", t, Some(json!({"name": "C"}))).await,
            403,
            "forbidden",
        );
    }
    assert_error(
        &api(addr, "GET", "/api/users", None, None).await,
        401,
        "missing_token",
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_user_add_bootstraps_an_admin() {
    let Some(env) = TestEnv::new(Backend::Sqlite).await else {
        return;
    };
    let run = |args: &[&str], stdin: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_glia"))
            .args(env.cli_args(0, 0))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn glia");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let add = [
        "user",
        "add",
        "--role",
        "admin",
        "--username",
        "first",
        "--email",
        "it@example.org",
        "--full-name",
        "First Admin",
    ];

    let no_flag = run(&add, "whatever password\n");
    assert!(
        !no_flag.status.success(),
        "refused without --password-stdin"
    );
    let mut with_flag = add.to_vec();
    with_flag.push("--password-stdin");
    let out = run(&with_flag, "the first admin password\n");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "glia user add failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("created user first (admin)"), "{stdout}");
    assert!(!stdout.contains("the first admin password"));
    let dup = run(&with_flag, "the first admin password\n");
    assert!(
        !dup.status.success(),
        "a second user with the same name is refused"
    );
    let weak = run(
        &[
            "user",
            "add",
            "--role",
            "admin",
            "--username",
            "w",
            "--password-stdin",
        ],
        "short\n",
    );
    assert!(!weak.status.success(), "a short password is refused");

    let node = env.start().await;
    let r = login(node.http_addr, "first", "the first admin password", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let me = api(
        node.http_addr,
        "GET",
        "/api/auth/me",
        r.json()["access_token"].as_str(),
        None,
    )
    .await;
    assert_eq!(me.json()["role"], "admin");
    assert_eq!(me.json()["email"], "it@example.org");
    assert_eq!(me.json()["full_name"], "First Admin");
    node.stop().await;
}
