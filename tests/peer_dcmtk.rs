//! Real-peer tests with dcmtk (echoscu, storescu) on both backends: a multi-series MR
//! study, and files in many transfer syntaxes (the pydicom wheel's test corpus), each
//! stored blob compared element by element with what was sent.

mod common;

use std::path::{Path, PathBuf};

use common::gen::{write_series, Ids};
use common::{assert_same_dataset, dcmtk, health, pydicom_test_files, require, TestEnv};
use dicom_object::OpenFileOptions;
use glia::store::BlobKey;

async fn run_dcmtk(tool: &Path, args: &[String]) -> (bool, String) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    common::run_tool(tool, &args).await
}

fn tools() -> Option<(PathBuf, PathBuf)> {
    let ok = require(
        "dcmtk (apt-get install dcmtk)",
        dcmtk("echoscu").is_some() && dcmtk("storescu").is_some(),
    );
    ok.then(|| (dcmtk("echoscu").unwrap(), dcmtk("storescu").unwrap()))
}

async fn echoscu_and_storescu_study(env: TestEnv) {
    let Some((echoscu, storescu)) = tools() else {
        return;
    };
    let node = env.start().await;
    let port = node.dimse_addr.port().to_string();
    let (ok, out) = run_dcmtk(
        &echoscu,
        &[
            "-aec".into(),
            "GLIA".into(),
            "127.0.0.1".into(),
            port.clone(),
        ],
    )
    .await;
    assert!(ok, "echoscu: {out}");

    // A multi-series MR study: 4 series × 12 slices, one association.
    let dir = env.dir.path().join("study");
    let first = Ids::new("DCMTK1");
    let mut all = Vec::new();
    let mut series = first.clone();
    for s in 0..4 {
        all.extend(write_series(
            &dir.join(format!("s{s}")),
            &series,
            12,
            64,
            64,
        ));
        series = series.next_series();
    }
    let args: Vec<String> = [
        "-aec",
        "GLIA",
        "-aet",
        "MRSCANNER",
        "+sd",
        "+r",
        "127.0.0.1",
        &port,
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([dir.display().to_string()])
    .collect();
    let (ok, out) = run_dcmtk(&storescu, &args).await;
    assert!(ok, "storescu: {out}");

    let h = health(node.http_addr).await;
    assert_eq!(
        (h["patients"].as_u64(), h["studies"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        (h["series"].as_u64(), h["instances"].as_u64()),
        (Some(4), Some(48))
    );
    for ids in &all {
        let row = node
            .state
            .repo
            .find_instance(&ids.sop)
            .await
            .unwrap()
            .expect("indexed");
        let blob = node.state.store.get(&BlobKey(row.blob_key)).await.unwrap();
        let stored = OpenFileOptions::new().from_reader(&blob[128..]).unwrap();
        let src = find_file(&dir, &ids.sop);
        let sent = OpenFileOptions::new().open_file(&src).unwrap();
        assert_same_dataset(&sent, &stored, &ids.sop);
        assert_eq!(
            stored
                .meta()
                .source_application_entity_title()
                .map(|s| s.trim()),
            Some("MRSCANNER")
        );
    }
    env.assert_spool_empty(&node).await;
    node.stop().await;
}
both_backends!(echoscu_and_storescu_study, echoscu_and_storescu_study);

fn find_file(dir: &Path, sop: &str) -> PathBuf {
    walk(dir)
        .into_iter()
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(sop))
        .expect("source file")
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// storescu option that makes it propose a file's own transfer syntax first.
fn propose_flag(ts: &str) -> Option<&'static str> {
    Some(match ts {
        "1.2.840.10008.1.2" => "-xi",
        "1.2.840.10008.1.2.1" => "-xe",
        "1.2.840.10008.1.2.2" => "-xb",
        "1.2.840.10008.1.2.1.99" => "-xd",
        "1.2.840.10008.1.2.4.50" => "-xy",
        "1.2.840.10008.1.2.4.51" => "-xx",
        "1.2.840.10008.1.2.4.70" => "-xs",
        "1.2.840.10008.1.2.4.80" => "-xt",
        "1.2.840.10008.1.2.4.81" => "-xu",
        "1.2.840.10008.1.2.4.90" => "-xv",
        "1.2.840.10008.1.2.4.91" => "-xw",
        "1.2.840.10008.1.2.5" => "-xr",
        _ => return None,
    })
}

/// Files of the pydicom wheel's corpus, one per transfer syntax.
const CORPUS: &[&str] = &[
    "MR_small_implicit.dcm",
    "CT_small.dcm",
    "MR_small.dcm",
    "image_dfl.dcm",
    "ExplVR_BigEnd.dcm",
    "MR_small_bigendian.dcm",
    "SC_jpeg_no_color_transform.dcm",
    "JPEG-lossy.dcm",
    "SC_rgb_jpeg_gdcm.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "JPEGLSNearLossless_08.dcm",
    "GDCMJ2K_TextGBR.dcm",
    "MR_small_jp2klossless.dcm",
    "693_J2KI.dcm",
    "JPEG2000.dcm",
    "MR_small_RLE.dcm",
    "SC_rgb_rle.dcm",
];

/// One file per transfer syntax from the pydicom corpus, stored exactly as received.
async fn transfer_syntax_corpus(mut env: TestEnv) {
    let Some((_, storescu)) = tools() else { return };
    let Some(corpus) = pydicom_test_files() else {
        require("pydicom's test files (pip install pydicom)", false);
        return;
    };
    // Several corpus files share a SOP Instance UID: each new one replaces the last.
    env.config.ingest.duplicate_policy = glia::config::DuplicatePolicy::Replace;
    // Take the SCU's first proposal, so dcmtk sends each file in its own syntax.
    env.config.dimse.transfer_syntax_preference = vec!["*".into()];
    let node = env.start().await;
    let port = node.dimse_addr.port().to_string();

    // One file per transfer syntax (scanning the whole corpus is slow in debug builds).
    let mut seen = std::collections::BTreeMap::new();
    for name in CORPUS {
        let f = corpus.join(name);
        let Ok(obj) = OpenFileOptions::new().open_file(&f) else {
            continue;
        };
        let ts = obj
            .meta()
            .transfer_syntax()
            .trim_end_matches('\0')
            .to_string();
        if propose_flag(&ts).is_some() && !seen.contains_key(&ts) {
            seen.insert(ts, f);
        }
    }
    assert!(
        seen.len() >= 10,
        "corpus covers many syntaxes: {:?}",
        seen.keys()
    );

    let mut stored_ok = Vec::new();
    for (ts, file) in &seen {
        let flag = propose_flag(ts).unwrap();
        let t0 = std::time::Instant::now();
        let (ok, out) = run_dcmtk(
            &storescu,
            &[
                flag.into(),
                "-aec".into(),
                "GLIA".into(),
                "127.0.0.1".into(),
                port.clone(),
                file.display().to_string(),
            ],
        )
        .await;
        eprintln!("{} ({ts}) sent in {:?}", file.display(), t0.elapsed());
        if !ok || out.contains("Store Failed") {
            // dcmtk itself cannot send some files (e.g. it cannot parse them); that is
            // the peer's limit, reported here, not Glia's.
            eprintln!(
                "dcmtk could not send {} ({ts}): {}",
                file.display(),
                out.lines().last().unwrap_or("")
            );
            continue;
        }
        let sent = OpenFileOptions::new().open_file(file).unwrap();
        let sop = sent
            .meta()
            .media_storage_sop_instance_uid()
            .trim_end_matches('\0')
            .to_string();
        let row = node
            .state
            .repo
            .find_instance(&sop)
            .await
            .unwrap()
            .expect("indexed");
        assert_eq!(
            &row.transfer_syntax_uid,
            ts,
            "{}: stored as received",
            file.display()
        );
        let blob = node.state.store.get(&BlobKey(row.blob_key)).await.unwrap();
        let stored = OpenFileOptions::new().from_reader(&blob[128..]).unwrap();
        assert_eq!(stored.meta().transfer_syntax().trim_end_matches('\0'), ts);
        assert_same_dataset(&sent, &stored, &file.display().to_string());
        stored_ok.push(ts.clone());
    }
    eprintln!("stored and verified: {stored_ok:?}");
    for must in [
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.1.99",
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.5",
    ] {
        assert!(
            stored_ok.iter().any(|t| t == must),
            "{must} stored and verified; got {stored_ok:?}"
        );
    }
    env.assert_spool_empty(&node).await;
    node.stop().await;
}
both_backends!(transfer_syntax_corpus, transfer_syntax_corpus);
