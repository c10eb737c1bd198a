//! `schemathesis` (PyPI) against the running node's own `/api/openapi.json`, with an
//! admin bearer token: generated requests to every operation must never get a server
//! error, and every response must match the schema the spec declares for it.
//! Bounded (`--max-examples`); no operation is excluded.

mod common;

use std::process::Command;

use common::auth::{add_user, token};
use common::{require, which, Backend, TestEnv};
use glia::auth::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_conforms_to_its_spec() {
    let Some(tool) = which("schemathesis") else {
        require("schemathesis (PyPI)", false);
        return;
    };
    let Some(mut env) = TestEnv::new(Backend::Sqlite).await else {
        return;
    };
    // Generated requests hit /api/auth/* far more often than a person would.
    env.config.auth.login_rate_per_minute = 0;
    let node = env.start().await;
    // Generated ids favour small numbers: let those be other users, so the admin
    // whose token drives the run is not the first one deactivated or demoted.
    for i in 0..8 {
        add_user(
            &node,
            &format!("user{i}"),
            "user password 1",
            Role::Technician,
            None,
        )
        .await;
    }
    add_user(&node, "admin", "admin password 1", Role::Admin, None).await;
    let access = token(node.http_addr, "admin", "admin password 1").await;

    let work = tempfile::tempdir().unwrap();
    let out = Command::new(tool)
        .current_dir(work.path())
        .arg("run")
        .arg(format!("http://{}/api/openapi.json", node.http_addr))
        .args(["--url", &format!("http://{}/api", node.http_addr)])
        .args(["--checks", "not_a_server_error,response_schema_conformance"])
        .args(["--max-examples", "20", "--workers", "1", "--seed", "1"])
        .args(["--header", &format!("Authorization: Bearer {access}")])
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    // Whatever it caches (`.schemathesis*`, `.hypothesis`) stays in the temporary
    // working directory and is removed with it.
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("passed") || stdout.contains("PASSED"),
        "{stdout}"
    );
    node.stop().await;
}
