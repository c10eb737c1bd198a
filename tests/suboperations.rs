//! C-STORE sub-operations against a real peer (dcmtk `storescp`): instances stored in
//! Glia are pushed with `client::associate` + `plan_contexts` + `store_instance`; what
//! storescp wrote is compared element by element with what Glia stored. A peer that
//! accepts only uncompressed syntaxes gets compressed objects decompressed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::gen::{encode_explicit_le, mr_dataset, Ids};
use common::scu::Scu;
use common::{
    assert_same_dataset, dcmtk, free_port, pydicom_test_files, require, wait_for_port, Backend,
    TestEnv,
};
use dicom_core::value::Value;
use dicom_dictionary_std::{tags, uids};
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use glia::app::RunningNode;
use glia::db::repo::StoredInstance;
use glia::dimse::client::{associate, ClientOptions};
use glia::dimse::suboperations::{plan_contexts, store_instance, SubOpOutcome};
use glia::store::BlobKey;

/// A storescp child process, killed on drop.
struct StoreScp {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for StoreScp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start storescp writing into `dir` with extra transfer-syntax options.
fn storescp(dir: &Path, ts_args: &[&str]) -> Option<StoreScp> {
    if !require(
        "dcmtk storescp (apt-get install dcmtk)",
        dcmtk("storescp").is_some(),
    ) {
        return None;
    }
    std::fs::create_dir_all(dir).unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.join("storescp.log")).unwrap();
    let child = Command::new(dcmtk("storescp").unwrap())
        .args(ts_args)
        .args(["-aet", "STORESCP", "-od"])
        .arg(dir)
        .arg(port.to_string())
        .arg("-d")
        .env("TCP_NODELAY", "1")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn storescp");
    wait_for_port(port, Duration::from_secs(10));
    Some(StoreScp {
        child,
        port,
        dir: dir.to_path_buf(),
    })
}

/// The file storescp wrote for `sop` (named `<modality>.<SOP Instance UID>`).
fn received(dir: &Path, sop: &str) -> DefaultDicomObject {
    let suffix = format!(".{sop}");
    let path = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().ends_with(&suffix))
        .unwrap_or_else(|| panic!("storescp wrote no file for {sop}"));
    OpenFileOptions::new().open_file(path).unwrap()
}

async fn stored_object(node: &RunningNode, inst: &StoredInstance) -> DefaultDicomObject {
    let blob = node
        .state
        .store
        .get(&BlobKey(inst.blob_key.clone()))
        .await
        .unwrap();
    OpenFileOptions::new().from_reader(&blob[128..]).unwrap()
}

async fn instance(node: &RunningNode, sop: &str) -> StoredInstance {
    node.state
        .repo
        .find_instance(sop)
        .await
        .unwrap()
        .expect("indexed")
}

fn sop_of(file: &Path) -> String {
    let obj = OpenFileOptions::new().open_file(file).unwrap();
    obj.meta()
        .media_storage_sop_instance_uid()
        .trim_end_matches('\0')
        .to_string()
}

/// Import pydicom corpus files into the node; their SOP Instance UIDs.
async fn import(node: &RunningNode, corpus: &Path, names: &[&str]) -> Vec<String> {
    let files: Vec<PathBuf> = names.iter().map(|n| corpus.join(n)).collect();
    let summary = glia::import::run(&node.state.ingestor, &files, 1, false).await;
    assert_eq!(summary.stored, files.len(), "{:?}", summary.rejected);
    files.iter().map(|f| sop_of(f)).collect()
}

/// Push `sops` to the peer on one association; returns each outcome.
async fn push(node: &RunningNode, port: u16, sops: &[String]) -> Vec<SubOpOutcome> {
    let mut insts = Vec::new();
    for sop in sops {
        insts.push(instance(node, sop).await);
    }
    let contexts = plan_contexts(&insts);
    let addr = ([127, 0, 0, 1], port).into();
    let mut assoc = associate(
        addr,
        "GLIA",
        "STORESCP",
        &contexts,
        &ClientOptions::default(),
    )
    .await
    .expect("association with storescp");
    let accepted = assoc.contexts.clone();
    let mut out = Vec::new();
    for (i, inst) in insts.iter().enumerate() {
        let report = store_instance(
            &mut assoc.conn,
            &accepted,
            &node.state.store,
            inst,
            i as u16 + 1,
            Some(("MOVESCU", 42)),
        )
        .await
        .expect("association stays usable");
        assert_eq!(report.cancel, None);
        out.push(report.outcome);
    }
    assoc.release().await.expect("release");
    out
}

fn pixel_bytes(obj: &DefaultDicomObject) -> Vec<u8> {
    obj.element(tags::PIXEL_DATA)
        .unwrap()
        .to_bytes()
        .unwrap()
        .to_vec()
}

fn ts_of(obj: &DefaultDicomObject) -> String {
    obj.meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string()
}

/// A peer accepting every syntax gets each instance exactly as stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_stored_to_storescp() {
    let Some(env) = TestEnv::new(Backend::Sqlite).await else {
        return;
    };
    let Some(scp) = storescp(&env.dir.path().join("received"), &["+xa"]) else {
        return;
    };
    let node = env.start().await;

    // Three synthetic MR instances over C-STORE (explicit VR LE).
    let mut sops = Vec::new();
    let mut scu = Scu::connect(node.dimse_addr).await.unwrap();
    let mut ids = Ids::new("SUBOP1");
    for n in 0..3 {
        let data = encode_explicit_le(&mr_dataset(&ids, n + 1, 32, 32));
        let (status, _) = scu.store(uids::MR_IMAGE_STORAGE, &ids.sop, &data).await;
        assert_eq!(status, 0);
        sops.push(ids.sop.clone());
        ids = ids.next_instance();
    }
    scu.release().await;
    // Compressed objects (RLE, JPEG 2000) imported as they are.
    if let Some(corpus) = pydicom_test_files() {
        sops.extend(
            import(
                &node,
                &corpus,
                &["MR_small_RLE.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm"],
            )
            .await,
        );
    } else {
        require("pydicom's test files (pip install pydicom)", false);
    }

    let outcomes = push(&node, scp.port, &sops).await;
    assert!(
        outcomes.iter().all(|o| *o == SubOpOutcome::Completed),
        "{outcomes:?}"
    );
    let log = std::fs::read_to_string(scp.dir.join("storescp.log")).unwrap();
    // Move Originator AE Title / Message ID reached the peer with each C-STORE-RQ.
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count("Move Originator AE Title      : MOVESCU"), sops.len());
    assert_eq!(count("Move Originator ID            : 42"), sops.len());
    for sop in &sops {
        let inst = instance(&node, sop).await;
        let stored = stored_object(&node, &inst).await;
        let got = received(&scp.dir, sop);
        assert_eq!(
            ts_of(&got),
            inst.transfer_syntax_uid,
            "{sop}: sent as stored"
        );
        assert_same_dataset(&stored, &got, sop);
    }
    node.stop().await;
}

/// A peer accepting only uncompressed syntaxes gets compressed objects decompressed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decompressed_for_uncompressed_only_peer() {
    let Some(env) = TestEnv::new(Backend::Sqlite).await else {
        return;
    };
    let Some(corpus) = pydicom_test_files() else {
        require("pydicom's test files (pip install pydicom)", false);
        return;
    };
    let native = OpenFileOptions::new()
        .open_file(corpus.join("MR_small.dcm"))
        .unwrap();
    let node = env.start().await;
    let sops = import(&node, &corpus, &["MR_small_RLE.dcm"]).await;
    let sop = &sops[0];
    let inst = instance(&node, sop).await;
    assert_eq!(inst.transfer_syntax_uid, "1.2.840.10008.1.2.5");
    let stored = stored_object(&node, &inst).await;

    // Default storescp: uncompressed only (explicit VR LE chosen); `+xi`: implicit only.
    for (args, ts) in [
        (&[][..], "1.2.840.10008.1.2.1"),
        (&["+xi"][..], "1.2.840.10008.1.2"),
    ] {
        let dir = env.dir.path().join(format!("received{}", args.len()));
        let Some(scp) = storescp(&dir, args) else {
            return;
        };
        let outcomes = push(&node, scp.port, &sops).await;
        assert_eq!(outcomes, [SubOpOutcome::Completed], "{args:?}");
        let got = received(&scp.dir, sop);
        assert_eq!(ts_of(&got), ts, "{args:?}");
        // RLE is lossless: the pixels are those of the uncompressed original.
        assert_eq!(pixel_bytes(&got), pixel_bytes(&native), "{args:?}");
        if ts == "1.2.840.10008.1.2.1" {
            // Every other element as stored; pixel data as in the native file.
            let mut expected = stored.clone();
            expected.put(native.element(tags::PIXEL_DATA).unwrap().clone());
            assert_same_dataset(&expected, &got, sop);
        } else {
            let tags_of = |o: &DefaultDicomObject| -> Vec<_> {
                o.iter()
                    .map(|e| e.header().tag)
                    // File meta and Data Set Trailing Padding (dcmtk drops it) aside.
                    .filter(|t| t.group() != 0x0002 && *t != dicom_core::Tag(0xFFFC, 0xFFFC))
                    .collect()
            };
            assert_eq!(tags_of(&stored), tags_of(&got));
            let name = |o: &DefaultDicomObject| match o.element(tags::PATIENT_NAME).unwrap().value()
            {
                Value::Primitive(p) => p.to_str().to_string(),
                _ => String::new(),
            };
            assert_eq!(name(&stored), name(&got));
        }
    }
    node.stop().await;
}
