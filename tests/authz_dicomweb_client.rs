//! Study scopes through an independent DICOMweb client: `dicomweb-client` (PyPI) with
//! a bearer token (tests/peers/dicomweb_scope_check.py). A technician of centre A
//! does not see centre B's study in QIDO-RS, and gets 404 for its retrieve, metadata
//! and series search; a patient sees only their own study.

mod common;

use std::path::Path;

use common::world::world;
use common::{Backend, TestEnv};

async fn seen_by(url: &str, token: &str, studies: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/dicomweb_scope_check.py");
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(&script).args(["--url", url, "--token", token]);
    for s in studies {
        cmd.args(["--study", s]);
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), cmd.output())
        .await
        .expect("dicomweb_scope_check.py finishes")
        .unwrap();
    assert!(
        out.status.success(),
        "dicomweb_scope_check.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dicomweb_client_sees_only_its_scope() {
    let have = std::process::Command::new("python3")
        .args(["-c", "import dicomweb_client"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !common::require(
        "python3 with dicomweb-client (pip install dicomweb-client)",
        have,
    ) {
        return;
    }
    let Some(env) = TestEnv::new(Backend::Sqlite).await else {
        return;
    };
    let node = env.start().await;
    let w = world(&node).await;
    let url = format!("http://127.0.0.1:{}/dicom-web", w.addr.port());
    let (a, b) = (w.a.0.as_str(), w.b.0.as_str());

    let tech = seen_by(&url, w.token("tech-a"), &[a, b]).await;
    assert_eq!(tech["qido"], serde_json::json!([a]), "{tech}");
    for what in ["retrieve", "metadata"] {
        assert_eq!(
            tech["studies"][a][what], 200,
            "{what} of own centre's study: {tech}"
        );
        assert_eq!(
            tech["studies"][b][what], 404,
            "{what} of centre B's study: {tech}"
        );
    }
    assert_eq!(tech["studies"][b]["series"], 404, "{tech}");

    let patient = seen_by(&url, w.token("patient-a"), &[a, b]).await;
    assert_eq!(patient["qido"], serde_json::json!([a]), "{patient}");
    assert_eq!(patient["studies"][b]["metadata"], 404, "{patient}");
    assert_eq!(patient["studies"][a]["metadata"], 200, "{patient}");

    let mut both = vec![a, b];
    both.sort();
    let admin = seen_by(&url, w.token("admin"), &[]).await;
    assert_eq!(admin["qido"], serde_json::json!(both), "{admin}");

    // Each of those accesses is in the audit trail, attributed to its user.
    node.state.audit.flush().await;
    let rows = glia::db::audit::list(
        node.state.repo.connection(),
        &glia::db::audit::AuditFilter {
            actor: Some("tech-a".into()),
            limit: 10_000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let qido = rows.iter().filter(|r| r.action == "qido").count();
    assert!(qido >= 2, "tech-a's searches are audited: {qido}");
    let hidden = rows
        .iter()
        .filter(|r| r.study_uid.as_deref() == Some(b) && r.status == Some(404))
        .count();
    assert_eq!(
        hidden, 3,
        "tech-a's three requests for study B, answered 404"
    );
    node.stop().await;
}
