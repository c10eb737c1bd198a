//! `glia import`: files and folders through the one ingest path, with a summary of
//! stored / duplicate / rejected files and the reason for each rejection.

mod common;

use std::process::Command;

use common::gen::{as_file, mr_dataset, write_series, Ids};
use common::{Backend, TestEnv};
use dicom_dictionary_std::tags;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_reports_stored_duplicates_and_rejections() {
    let env = TestEnv::new(Backend::Sqlite).await.unwrap();
    let dir = env.dir.path().join("in");
    let good = write_series(&dir.join("series"), &Ids::new("IMP1"), 5, 16, 16);
    // A duplicate: the same object again under another name.
    std::fs::copy(
        dir.join("series").join(format!("{}.dcm", good[0].sop)),
        dir.join("copy.dcm"),
    )
    .unwrap();
    // Garbage, a truncated object, a path-traversal UID.
    std::fs::write(dir.join("garbage.dcm"), b"this is not DICOM at all").unwrap();
    let bytes = std::fs::read(dir.join("series").join(format!("{}.dcm", good[1].sop))).unwrap();
    std::fs::write(dir.join("truncated.dcm"), &bytes[..bytes.len() - 50]).unwrap();
    let mut evil = mr_dataset(&Ids::new("IMP2"), 1, 8, 8);
    evil.put_str(
        tags::SOP_INSTANCE_UID,
        dicom_core::VR::UI,
        "../../etc/passwd",
    );
    let _ = as_file(evil).write_to_file(dir.join("evil.dcm"));

    let out = Command::new(env!("CARGO_BIN_EXE_glia"))
        .args(env.cli_args(0, 0))
        .arg("import")
        .arg(&dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("stored: 5  duplicate: 1  rejected: 3"),
        "{stdout}"
    );
    assert!(
        stdout.contains("garbage.dcm: not a readable DICOM object"),
        "{stdout}"
    );
    assert!(
        stdout.contains("truncated.dcm: not a readable DICOM object"),
        "{stdout}"
    );
    assert!(stdout.contains("evil.dcm"), "{stdout}");
    assert!(
        !stdout.contains("IMP1"),
        "no patient data in the summary: {stdout}"
    );

    let node = env.start().await;
    for ids in &good {
        assert!(node
            .state
            .repo
            .find_instance(&ids.sop)
            .await
            .unwrap()
            .is_some());
    }
    assert_eq!(common::health(node.http_addr).await["instances"], 5);
    env.assert_spool_empty(&node).await;
    node.stop().await;
}
