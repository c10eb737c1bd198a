//! Helpers of the AI pipeline tests: synthetic studies on disk, pushing them with
//! dcmtk's storescu, polling the AI API, and decoding a DICOM SEG back onto the
//! reference series to compute Dice against the phantom's truth.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use glia::ai::assemble::{self, AssembleOptions};
use glia::ai::dcm;
use glia::ai::synth::{synth_study, SynthOptions, SynthStudy};

use crate::common::{self, http, Backend, TestEnv};

/// An environment with the pipeline on: short stable age, fast scans, CPU.
pub async fn ai_env(backend: Backend) -> Option<TestEnv> {
    let mut env = TestEnv::new(backend).await?;
    let ai = &mut env.config.ai;
    ai.enabled = true;
    ai.device = "cpu".into();
    // Long enough that storescu's pauses on a loaded 2-core CI machine do not make
    // a half-sent study stable (which would be handled correctly, but as two jobs).
    ai.stable_age = 4;
    ai.scan_interval_ms = 200;
    ai.heartbeat_timeout_secs = 4;
    ai.retry_base_secs = 1;
    ai.max_attempts = 2;
    ai.node_name = "test-node-a".into();
    Some(env)
}

/// A synthetic study (seeded UIDs, so reruns are reproducible).
pub fn study(seed: u64, f: impl FnOnce(&mut SynthOptions)) -> SynthStudy {
    let mut o = SynthOptions {
        seed,
        uid_seed: Some(seed.wrapping_mul(7919)),
        ..SynthOptions::default()
    };
    f(&mut o);
    synth_study(&o).expect("synthetic study")
}

/// Write a study's files under `dir` and return the folder.
pub fn write_study(dir: &Path, s: &SynthStudy) -> PathBuf {
    let root = dir.join(format!("study-{}", &s.study_uid[s.study_uid.len() - 8..]));
    for series in &s.series {
        let d = root.join(format!("{:02}", series.series_number));
        std::fs::create_dir_all(&d).unwrap();
        for (i, b) in series.instances.iter().enumerate() {
            std::fs::write(d.join(format!("{i:04}.dcm")), b).unwrap();
        }
    }
    root
}

/// `storescu` (dcmtk); `None` after a loud skip message when it is missing.
pub fn storescu() -> Option<PathBuf> {
    let p = common::dcmtk("storescu");
    common::require("dcmtk storescu", p.is_some()).then(|| p.unwrap())
}

/// Push every file under `dir` with storescu as AE `MRSCANNER`.
pub async fn push(storescu: &Path, dimse: SocketAddr, dir: &Path) {
    let out = tokio::process::Command::new(storescu)
        .args([
            "-aec",
            "GLIA",
            "-aet",
            "MRSCANNER",
            "+sd",
            "+r",
            "127.0.0.1",
        ])
        .arg(dimse.port().to_string())
        .arg(dir)
        .output()
        .await
        .expect("run storescu");
    assert!(
        out.status.success(),
        "storescu: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `GET` a JSON resource of the node.
pub async fn get_json(node: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let r = http::get(node, path, &[]).await.expect("http");
    let v = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
    (r.status, v)
}

/// `POST` JSON.
pub async fn post_json(node: SocketAddr, path: &str, body: &str) -> (u16, serde_json::Value) {
    let r = http::request(
        node,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .await
    .expect("http");
    let v = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
    (r.status, v)
}

/// The AI jobs of a study, newest first.
pub async fn jobs(node: SocketAddr, study_uid: &str) -> Vec<serde_json::Value> {
    let (status, v) = get_json(node, &format!("/api/ai/jobs?study_uid={study_uid}")).await;
    assert_eq!(status, 200, "job list: {v}");
    v.as_array().cloned().unwrap_or_default()
}

/// Wait until the study's newest job is in one of `states`; panics with the job
/// list after `timeout`.
pub async fn wait_job(
    node: SocketAddr,
    study_uid: &str,
    states: &[&str],
    timeout: Duration,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let list = jobs(node, study_uid).await;
        if let Some(j) = list.first() {
            if states.contains(&j["state"].as_str().unwrap_or("")) {
                return j.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no job in {states:?} after {timeout:?}: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Wait until the study's newest job has finished (succeeded, failed or skipped).
pub async fn wait_done(node: SocketAddr, study_uid: &str) -> serde_json::Value {
    wait_job(
        node,
        study_uid,
        &["succeeded", "failed", "skipped"],
        JOB_TIMEOUT,
    )
    .await
}

/// How long a test waits for a job (debug builds on a loaded 2-core machine).
pub const JOB_TIMEOUT: Duration = Duration::from_secs(600);

/// The study's AI results, newest first.
pub async fn results(node: SocketAddr, study_uid: &str) -> Vec<serde_json::Value> {
    let (status, v) = get_json(node, &format!("/api/ai/studies/{study_uid}/results")).await;
    assert_eq!(status, 200, "results: {v}");
    v.as_array().cloned().unwrap_or_default()
}

/// SEG series of the study in QIDO-RS (Modality=SEG).
pub async fn qido_seg_series(node: SocketAddr, study_uid: &str) -> Vec<String> {
    let (status, v) = get_json(
        node,
        &format!("/dicom-web/studies/{study_uid}/series?Modality=SEG"),
    )
    .await;
    if status == 204 {
        return Vec::new();
    }
    assert_eq!(status, 200, "QIDO: {v}");
    v.as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["0020000E"]["Value"][0].as_str().map(str::to_string))
        .collect()
}

/// Whole-tumour Dice of the SEG `seg` against the study's true labels, both on the
/// reference (T1ce) series' own slices.
pub fn whole_tumour_dice(s: &SynthStudy, seg: &[u8]) -> f64 {
    // The truth on the reference series: assemble the synthetic series exactly as
    // the pipeline does, then map the true labels (on the phantom grid, which is the
    // model grid at 2 mm) back onto the reference slices.
    let parsed: Vec<Vec<_>> = glia::ai::dcm::Channel::ALL
        .iter()
        .map(|ch| {
            s.series(*ch)
                .expect("all four series")
                .instances
                .iter()
                .map(|b| dcm::parse_part10(b).unwrap())
                .collect()
        })
        .collect();
    let asm = assemble::assemble(
        [&parsed[0], &parsed[1], &parsed[2], &parsed[3]],
        &AssembleOptions::default(),
    )
    .expect("assembles");
    assert_eq!(asm.grid.dims, s.labels.dims, "model grid = phantom grid");
    let truth = assemble::labels_to_reference(&asm, &s.labels).unwrap();
    let slice_of: std::collections::HashMap<&str, usize> = truth
        .geometry
        .slices
        .iter()
        .enumerate()
        .map(|(i, sl)| (sl.sop_instance_uid.as_str(), i))
        .collect();

    let obj = dcm::parse_part10(seg).expect("SEG parses");
    let rows = dcm::get_int(&obj, tags::ROWS).unwrap() as usize;
    let cols = dcm::get_int(&obj, tags::COLUMNS).unwrap() as usize;
    let frames = dcm::get_int(&obj, tags::NUMBER_OF_FRAMES).unwrap() as usize;
    let [n, h, w] = truth.labels.dims;
    assert_eq!((rows, cols), (h, w));
    let pixels = obj.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
    let per_frame = dcm::get_items(&obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE);
    assert_eq!(per_frame.len(), frames);
    let mut predicted = vec![false; n * h * w];
    for (f, item) in per_frame.iter().enumerate() {
        let src = source_uid(item).expect("frame names its source image");
        let z = *slice_of
            .get(src.as_str())
            .expect("source is a reference slice");
        for p in 0..h * w {
            let bit = f * h * w + p;
            if pixels[bit / 8] >> (bit % 8) & 1 == 1 {
                predicted[z * h * w + p] = true;
            }
        }
    }
    let (mut inter, mut a, mut b) = (0usize, 0usize, 0usize);
    for (i, &p) in predicted.iter().enumerate() {
        let t = truth.labels.labels[i] != 0;
        inter += (p && t) as usize;
        a += p as usize;
        b += t as usize;
    }
    if a + b == 0 {
        1.0
    } else {
        2.0 * inter as f64 / (a + b) as f64
    }
}

fn source_uid(frame: &InMemDicomObject) -> Option<String> {
    let der = dcm::get_items(frame, tags::DERIVATION_IMAGE_SEQUENCE).first()?;
    let src = dcm::get_items(der, tags::SOURCE_IMAGE_SEQUENCE).first()?;
    dcm::get_str(src, tags::REFERENCED_SOP_INSTANCE_UID)
}

/// Retrieve one instance over WADO-RS (`application/dicom`, as stored).
pub async fn wado_instance(node: SocketAddr, study: &str, series: &str, sop: &str) -> Vec<u8> {
    let r = http::get(
        node,
        &format!("/dicom-web/studies/{study}/series/{series}/instances/{sop}"),
        &[(
            "Accept",
            "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
        )],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "WADO-RS: {}", r.text());
    let parts = r.parts();
    assert_eq!(parts.len(), 1);
    parts.into_iter().next().unwrap().1
}
