//! A Python client generated from the running node's `/api/openapi.json` by
//! `openapi-python-client` (PyPI) logs in, refreshes, lists users and centres, and
//! gets 401 (no token), 403 (technician listing users) and 404 (unknown user) —
//! the spec describes the API well enough for generated clients
//! (tests/peers/openapi_client_check.py).

mod common;

use std::path::Path;
use std::process::Command;

use common::auth::add_user;
use common::{require, which, Backend, TestEnv};
use glia::auth::Role;

/// The directory of the generated package (the one holding `client.py`).
fn find_package(dir: &Path) -> Option<std::path::PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .find(|e| e.file_name() == "client.py")
        .and_then(|e| e.path().parent().map(Path::to_path_buf))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_python_client() {
    let Some(tool) = which("openapi-python-client") else {
        require("openapi-python-client (PyPI)", false);
        return;
    };
    let Some(mut env) = TestEnv::new(Backend::Sqlite).await else {
        return;
    };
    env.config.auth.login_rate_per_minute = 0;
    let node = env.start().await;
    add_user(&node, "admin", "admin password 1", Role::Admin, None).await;
    add_user(&node, "tech", "tech password 1", Role::Technician, None).await;

    let spec = common::http::get(node.http_addr, "/api/openapi.json", &[])
        .await
        .unwrap();
    assert_eq!(spec.status, 200);
    let work = tempfile::tempdir().unwrap();
    let spec_path = work.path().join("openapi.json");
    std::fs::write(&spec_path, &spec.body).unwrap();
    let out_dir = work.path().join("client");
    let gen = Command::new(tool)
        .args(["generate", "--path"])
        .arg(&spec_path)
        .arg("--output-path")
        .arg(&out_dir)
        .args(["--meta", "none"])
        .output()
        .expect("run openapi-python-client");
    let gen_log = format!(
        "{}{}",
        String::from_utf8_lossy(&gen.stdout),
        String::from_utf8_lossy(&gen.stderr)
    );
    assert!(gen.status.success(), "generation failed:\n{gen_log}");
    assert!(
        !gen_log.contains("Unable to parse"),
        "parts of the spec were skipped:\n{gen_log}"
    );
    let package = find_package(&out_dir).expect("a generated package");
    let parent = package.parent().unwrap();
    let name = package.file_name().unwrap().to_string_lossy().to_string();

    let base = format!("http://{}/api", node.http_addr);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/openapi_client_check.py");
    let run = Command::new("python3")
        .arg(&script)
        .arg(parent)
        .arg(&name)
        .arg(&base)
        .args(["admin", "admin password 1", "tech", "tech password 1"])
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(
        run.status.success(),
        "client script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let expect = [
        "login 200 bearer",
        "refresh 200 True",
        "refresh_reused 401 invalid_refresh_token",
        "me 200 admin admin",
        "create_centre 200 Generated Client Centre",
        // admin, the technician and the harness's test-admin.
        "users 200 3",
        "centres 200 1",
        "anonymous_users 401 Bearer realm=\"glia\"",
        "technician_users 403 forbidden",
        "unknown_user 404 not_found",
    ];
    assert_eq!(lines, expect, "full output:\n{stdout}");
    node.stop().await;
}
