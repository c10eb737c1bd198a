//! Crash safety: `kill -9` the node while several storescu processes are sending; after
//! a restart every instance that got a success response is present and readable, and
//! no indexed instance is half-written. Both backends.

mod common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::gen::{write_series, Ids};
use common::{assert_same_dataset, dcmtk, free_port, health, require, spawn_glia, TestEnv};
use dicom_object::OpenFileOptions;
use glia::store::BlobKey;

/// SOP Instance UIDs that storescu saw acknowledged with Success, from its `-v` log.
fn acknowledged(log: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in log.lines() {
        if let Some(path) = line.strip_prefix("I: Sending file: ") {
            current = PathBuf::from(path.trim())
                .file_stem()
                .map(|s| s.to_string_lossy().to_string());
        } else if line.starts_with("I: Received Store Response (Success)") {
            if let Some(sop) = current.take() {
                out.push(sop);
            }
        }
    }
    out
}

async fn kill_during_stores(env: TestEnv) {
    let Some(storescu) = dcmtk("storescu") else {
        require("dcmtk storescu", false);
        return;
    };
    let (dimse_port, http_port) = (free_port(), free_port());
    let mut node = spawn_glia(&env, dimse_port, http_port);
    let http: std::net::SocketAddr = ([127, 0, 0, 1], http_port).into();

    // Three senders, 150 instances each.
    let mut senders = Vec::new();
    let mut all = Vec::new();
    for k in 0..3 {
        let dir = env.dir.path().join(format!("src{k}"));
        all.extend(write_series(
            &dir,
            &Ids::new(&format!("CRASH{k}")),
            150,
            64,
            64,
        ));
        let log = env.dir.path().join(format!("storescu{k}.log"));
        let child = Command::new(&storescu)
            .args([
                "-v",
                "-aec",
                "GLIA",
                "+sd",
                "127.0.0.1",
                &dimse_port.to_string(),
            ])
            .arg(&dir)
            .env("TCP_NODELAY", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        senders.push((child, log));
    }
    // Kill the node mid-flight, once some instances are in.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = health(http).await["instances"].as_u64().unwrap_or(0);
        if n >= 60 {
            break;
        }
        assert!(Instant::now() < deadline, "stores did not progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.kill().unwrap(); // SIGKILL
    node.wait().unwrap();
    let mut acked = Vec::new();
    for (mut child, log) in senders {
        let _ = child.wait();
        acked.extend(acknowledged(&std::fs::read_to_string(log).unwrap()));
    }
    assert!(
        acked.len() >= 60,
        "acknowledged before the kill: {}",
        acked.len()
    );
    assert!(acked.len() < all.len(), "the kill interrupted the senders");

    // Restart (in-process, same database and blobs).
    let node = env.start().await;
    assert_eq!(env.spool_files(), 0, "spool leftovers cleaned at start-up");
    let indexed = health(node.http_addr).await["instances"].as_u64().unwrap();
    assert!(indexed as usize >= acked.len());
    let acked: HashSet<String> = acked.into_iter().collect();
    let sources: std::collections::HashMap<String, PathBuf> = all
        .iter()
        .enumerate()
        .map(|(i, ids)| {
            let k = i / 150;
            (
                ids.sop.clone(),
                env.dir
                    .path()
                    .join(format!("src{k}"))
                    .join(format!("{}.dcm", ids.sop)),
            )
        })
        .collect();
    let mut present = 0;
    for ids in &all {
        let row = node.state.repo.find_instance(&ids.sop).await.unwrap();
        if acked.contains(&ids.sop) {
            assert!(row.is_some(), "acknowledged instance lost");
        }
        // Everything visible in the index is complete and readable.
        if let Some(row) = row {
            present += 1;
            let blob = node
                .state
                .store
                .get(&BlobKey(row.blob_key))
                .await
                .expect("blob present");
            let stored = OpenFileOptions::new()
                .from_reader(&blob[128..])
                .expect("readable");
            let sent = OpenFileOptions::new()
                .open_file(&sources[&ids.sop])
                .unwrap();
            assert_same_dataset(&sent, &stored, &ids.sop);
        }
    }
    assert_eq!(present as u64, indexed);
    node.stop().await;
}
both_backends!(kill_during_stores, kill_during_stores);
