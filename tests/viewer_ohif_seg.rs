//! OHIF shows Glia's DICOM SEG: a synthetic four-series MR study
//! (`glia::ai::synth`, seeded) and a SEG built from its TRUE labels
//! (assemble → labels_to_reference → build_seg, no inference) are stored by
//! STOW-RS on a node that serves OHIF's real dist at `/viewer`; then
//! `tests/peers/ohif_seg_check.mjs` in headless Chromium opens the study and
//! checks that the study browser lists the SEG series, that the SEG loads onto
//! the viewport over its reference series (the hydration prompt answered),
//! that the segmentation panel lists the three segments by label, that the
//! overlay's colours are drawn, and that no request fails and no console error
//! comes from the SEG path. The screenshot is kept as
//! `target/test-artifacts/ohif-seg.png`.
//!
//! Missing Chromium / node / playwright-core / OHIF dist skip loudly, or fail
//! under `CI=true` (as `tests/viewer_ohif.rs`).
//!
//! Every HTTP call to the node goes through [`node_http`] and the viewer's URL
//! is made by [`viewer_url`] only: adding credentials later is one change there.

mod common;

use std::net::SocketAddr;

use common::http::HttpResponse;
use common::ohif::{browser_available, ohif_dist, repo, OHIF_VERSION};
use common::{require, Backend, TestEnv};
use dicom_object::{FileDicomObject, InMemDicomObject};
use glia::ai::assemble::{assemble, labels_to_reference, AssembleOptions};
use glia::ai::dcm::{parse_part10, Channel};
use glia::ai::seg::{build_seg, SegInfo, SEGMENTS};
use glia::ai::synth::{synth_study, SynthOptions};

/// The SEG's SeriesDescription, looked for in OHIF's study browser.
const SEG_DESCRIPTION: &str = "Glia tumour SEG (truth)";
const BOUNDARY: &str = "glia-ohif-seg-boundary";

// ---- the one place that talks HTTP to the node -----------------------------------

/// One request to the node (all of this test's HTTP goes through here).
async fn node_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    common::http::request(addr, method, path, headers, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// The URL at which OHIF opens `study` (the browser's only entry point).
fn viewer_url(addr: SocketAddr, study: &str) -> String {
    format!(
        "http://127.0.0.1:{}/viewer/viewer?StudyInstanceUIDs={study}",
        addr.port()
    )
}

// ---- OHIF dist and browser --------------------------------------------------------

// ---- the study and its SEG --------------------------------------------------------

struct Stored {
    study: String,
    reference_series: String,
    /// SeriesDescription of the reference series.
    reference_description: String,
    seg_series: String,
    /// Part 10 files: the 4 MR series, then the SEG.
    files: Vec<Vec<u8>>,
}

/// The synthetic study (defaults: 64 slices of 80×80 at 2 mm, necrotic tumour
/// with rim, seeded) and a SEG of its true labels on the reference (T1ce) series.
fn study_with_seg() -> Stored {
    let st = synth_study(&SynthOptions {
        seed: 11,
        uid_seed: Some(11),
        ..Default::default()
    })
    .unwrap();
    let parsed = |ch: Channel| -> Vec<FileDicomObject<InMemDicomObject>> {
        st.series(ch)
            .unwrap()
            .instances
            .iter()
            .map(|b| parse_part10(b).unwrap())
            .collect()
    };
    let [a, b, c, d] = Channel::ALL.map(parsed);
    // Model grid = phantom grid at 2 mm: the truth applies directly.
    let asm = assemble([&a, &b, &c, &d], &AssembleOptions::default()).unwrap();
    assert_eq!(asm.grid.dims, st.grid.dims);
    let rl = labels_to_reference(&asm, &st.labels).unwrap();
    for s in &SEGMENTS {
        assert!(
            rl.labels.count(s.label) > 0,
            "label {} in the truth",
            s.label
        );
    }
    let seg_series = glia::ai::dcm::new_uid();
    let seg = build_seg(
        &asm.header,
        &rl,
        &SegInfo {
            series_uid: Some(seg_series.clone()),
            series_description: SEG_DESCRIPTION.into(),
            algorithm_version: "truth".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let mut files: Vec<Vec<u8>> = st
        .series
        .iter()
        .flat_map(|s| s.instances.iter().cloned())
        .collect();
    files.push(seg);
    Stored {
        study: st.study_uid.clone(),
        reference_series: asm.reference.series_uid.clone(),
        reference_description: st
            .series(asm.reference.channel)
            .unwrap()
            .description
            .clone(),
        seg_series,
        files,
    }
}

/// STOW-RS of every file in one request.
async fn stow(addr: SocketAddr, files: &[Vec<u8>]) {
    let mut body = Vec::new();
    for f in files {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(f);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    let ct = format!("multipart/related; type=\"application/dicom\"; boundary={BOUNDARY}");
    let r = node_http(
        addr,
        "POST",
        "/dicom-web/studies",
        &[("Content-Type", &ct), ("Accept", "application/dicom+json")],
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "STOW-RS: {}", r.text());
}

/// QIDO-RS: the study's series as (SeriesInstanceUID, Modality).
async fn series_of(addr: SocketAddr, study: &str) -> Vec<(String, String)> {
    let r = node_http(
        addr,
        "GET",
        &format!("/dicom-web/studies/{study}/series"),
        &[("Accept", "application/dicom+json")],
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "QIDO series: {}", r.text());
    let v = |it: &serde_json::Value, tag: &str| {
        it[tag]["Value"][0].as_str().unwrap_or_default().to_string()
    };
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|it| (v(it, "0020000E"), v(it, "00080060")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ohif_lists_and_overlays_seg() {
    if !require(
        "Chromium (/usr/bin/chromium), node and playwright-core in tests/peers/node_modules (.ci/run installs them)",
        browser_available(),
    ) {
        return;
    }
    let Some(dist) = ohif_dist() else {
        require(
            &format!("OHIF's dist (target/ohif-dist/ohif-app-{OHIF_VERSION}.tgz from `npm pack @ohif/app@{OHIF_VERSION}`; .ci/run fetches it)"),
            false,
        );
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter("glia=info,warn")
        .with_test_writer()
        .try_init();
    let mut env = TestEnv::new(Backend::Sqlite).await.unwrap();
    env.config.http.viewer_dir = dist.display().to_string();
    let node = env.start().await;
    let addr = node.http_addr;

    let stored = study_with_seg();
    assert_eq!(stored.files.len(), 4 * 64 + 1);
    stow(addr, &stored.files).await;
    // The node holds the four MR series and the SEG (else OHIF could not list it).
    let series = series_of(addr, &stored.study).await;
    assert_eq!(series.len(), 5, "{series:?}");
    assert!(
        series.contains(&(stored.seg_series.clone(), "SEG".into())),
        "SEG series not in QIDO: {series:?}"
    );
    assert!(
        series.contains(&(stored.reference_series.clone(), "MR".into())),
        "{series:?}"
    );

    let out = repo().join("target/test-artifacts/ohif-seg.png");
    let labels: Vec<&str> = SEGMENTS.iter().map(|s| s.name).collect();
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(repo().join("tests/peers/ohif_seg_check.mjs"))
        .args([
            "--url",
            &format!(
                "{}&token={}",
                viewer_url(addr, &stored.study),
                common::admin_link_token(&node).await
            ),
        ])
        .args(["--seg-description", SEG_DESCRIPTION])
        .args(["--reference-description", &stored.reference_description])
        .arg("--out")
        .arg(&out);
    for l in &labels {
        cmd.args(["--segment", l]);
    }
    let run = tokio::time::timeout(
        std::time::Duration::from_secs(500),
        cmd.kill_on_drop(true).output(),
    )
    .await
    .expect("ohif_seg_check.mjs finishes within 500 s")
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    println!("{text}");
    println!("OHIF SEG screenshot: {}", out.display());
    // Each check the script prints as PASS/FAIL; any FAIL fails here. What a broken
    // SEG would fail: see the comments at each check in ohif_seg_check.mjs.
    assert!(
        run.status.success() && text.contains("0 failed"),
        "ohif_seg_check.mjs failed ({}):\n{text}",
        run.status
    );
    node.stop().await;
}
