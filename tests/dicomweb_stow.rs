//! STOW-RS (`POST /dicom-web/studies[/{study}]`) against an in-process node on both
//! backends: stored instances are indexed and kept byte for byte; mixed, mismatched,
//! truncated, malformed, mistyped and oversized requests get the PS3.18 §10.5 answer
//! and leave nothing behind; the node keeps serving afterwards.

mod common;

use std::net::SocketAddr;
use std::time::Instant;

use common::gen::{as_file, mr_dataset, mr_dataset_with, Ids};
use common::http::{self, HttpResponse};
use common::{Backend, TestEnv};
use dicom_core::VR;
use dicom_dictionary_std::tags;
use glia::app::RunningNode;
use glia::store::BlobKey;

const BOUNDARY: &str = "glia-test-boundary-0123456789";

/// FailureReason values expected in responses (PS3.18 §10.5.3).
const PROCESSING_FAILURE: u64 = 0x0110;
const CANNOT_UNDERSTAND: u64 = 0xC000;

/// DICOM JSON keys of the response attributes.
const RETRIEVE_URL: &str = "00081190";
const FAILED_SOP_SEQUENCE: &str = "00081198";
const REFERENCED_SOP_SEQUENCE: &str = "00081199";
const REFERENCED_SOP_CLASS_UID: &str = "00081150";
const REFERENCED_SOP_INSTANCE_UID: &str = "00081155";
const FAILURE_REASON: &str = "00081197";

fn content_type() -> String {
    format!("multipart/related; type=\"application/dicom\"; boundary={BOUNDARY}")
}

/// A small MR instance as Part 10 bytes.
fn part10(ids: &Ids, number: i32) -> Vec<u8> {
    let mut out = Vec::new();
    as_file(mr_dataset(ids, number, 16, 16))
        .write_all(&mut out)
        .unwrap();
    out
}

/// A multipart/related body of `application/dicom` parts.
fn multipart(parts: &[&[u8]]) -> Vec<u8> {
    let typed: Vec<(&str, &[u8])> = parts.iter().map(|p| ("application/dicom", *p)).collect();
    multipart_typed(&typed)
}

/// A multipart/related body of parts with the given Content-Types.
fn multipart_typed(parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (ct, p) in parts {
        out.extend_from_slice(format!("--{BOUNDARY}\r\nContent-Type: {ct}\r\n\r\n").as_bytes());
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

async fn stow_with(addr: SocketAddr, path: &str, ct: &str, body: &[u8]) -> HttpResponse {
    http::request(
        addr,
        "POST",
        path,
        &[("Content-Type", ct), ("Accept", "application/dicom+json")],
        body,
    )
    .await
    .expect("STOW-RS response")
}

async fn stow(addr: SocketAddr, path: &str, parts: &[&[u8]]) -> HttpResponse {
    stow_with(addr, path, &content_type(), &multipart(parts)).await
}

async fn instances(node: &RunningNode) -> u64 {
    node.state.repo.counts().await.unwrap().instances
}

/// A later good STOW succeeds.
async fn assert_still_serving(node: &RunningNode) {
    let ids = Ids::new("LATER");
    let rsp = stow(node.http_addr, "/dicom-web/studies", &[&part10(&ids, 1)]).await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    assert!(node
        .state
        .repo
        .find_instance(&ids.sop)
        .await
        .unwrap()
        .is_some());
}

fn failure_reasons(json: &serde_json::Value) -> Vec<u64> {
    json[FAILED_SOP_SEQUENCE]["Value"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| i[FAILURE_REASON]["Value"][0].as_u64().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

async fn stores_three(env: TestEnv) {
    let node = env.start().await;
    let first = Ids::new("STOW1");
    let ids = [first.clone(), first.next_instance(), first.next_instance()];
    let files: Vec<Vec<u8>> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| part10(id, i as i32 + 1))
        .collect();
    let parts: Vec<&[u8]> = files.iter().map(|f| f.as_slice()).collect();
    let rsp = stow(node.http_addr, "/dicom-web/studies", &parts).await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    assert!(rsp
        .header("content-type")
        .unwrap()
        .starts_with("application/dicom+json"));
    let json = rsp.json();
    let base = format!("http://{}/dicom-web", node.http_addr);
    assert_eq!(
        json[RETRIEVE_URL]["Value"][0],
        format!("{base}/studies/{}", first.study)
    );
    let items = json[REFERENCED_SOP_SEQUENCE]["Value"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert!(json.get(FAILED_SOP_SEQUENCE).is_none());
    for (item, id) in items.iter().zip(&ids) {
        assert_eq!(
            item[REFERENCED_SOP_CLASS_UID]["Value"][0],
            dicom_dictionary_std::uids::MR_IMAGE_STORAGE
        );
        assert_eq!(
            item[REFERENCED_SOP_INSTANCE_UID]["Value"][0],
            id.sop.as_str()
        );
        assert_eq!(
            item[RETRIEVE_URL]["Value"][0],
            format!(
                "{base}/studies/{}/series/{}/instances/{}",
                id.study, id.series, id.sop
            )
        );
    }
    assert_eq!(instances(&node).await, 3);
    for (id, sent) in ids.iter().zip(&files) {
        let found = node
            .state
            .repo
            .find_instance(&id.sop)
            .await
            .unwrap()
            .unwrap();
        let blob = node
            .state
            .store
            .get(&BlobKey(found.blob_key))
            .await
            .unwrap();
        assert!(
            blob.as_ref() == sent.as_slice(),
            "stored blob differs from the part"
        );
    }
    env.assert_spool_empty(&node).await;

    // Posting them again: kept duplicates count as stored.
    let rsp = stow(node.http_addr, "/dicom-web/studies", &parts).await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    assert_eq!(
        rsp.json()[REFERENCED_SOP_SEQUENCE]["Value"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(instances(&node).await, 3);

    // `type` unquoted or absent is accepted too.
    for ct in [
        format!("multipart/related; type=application/dicom; boundary={BOUNDARY}"),
        format!("multipart/related; boundary=\"{BOUNDARY}\""),
    ] {
        let id = Ids::new("STOWTYPE");
        let rsp = stow_with(
            node.http_addr,
            "/dicom-web/studies",
            &ct,
            &multipart(&[&part10(&id, 1)]),
        )
        .await;
        assert_eq!(rsp.status, 200, "{ct}: {}", rsp.text());
        assert!(node
            .state
            .repo
            .find_instance(&id.sop)
            .await
            .unwrap()
            .is_some());
    }
    node.stop().await;
}
both_backends!(stores_three_instances, stores_three);

async fn mixed_good_and_garbage(env: TestEnv) {
    let node = env.start().await;
    let good = Ids::new("STOWMIX");
    let garbage = b"this is not a DICOM file at all".repeat(20);
    let rsp = stow(
        node.http_addr,
        "/dicom-web/studies",
        &[&part10(&good, 1), &garbage],
    )
    .await;
    assert_eq!(rsp.status, 202, "{}", rsp.text());
    let json = rsp.json();
    assert_eq!(failure_reasons(&json), vec![CANNOT_UNDERSTAND]);
    let stored = json[REFERENCED_SOP_SEQUENCE]["Value"].as_array().unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0][REFERENCED_SOP_INSTANCE_UID]["Value"][0],
        good.sop.as_str()
    );
    assert_eq!(instances(&node).await, 1);
    assert!(node
        .state
        .repo
        .find_instance(&good.sop)
        .await
        .unwrap()
        .is_some());

    // A malformed SOP Instance UID and a part that is not application/dicom: both
    // fail, and the malformed UID is not echoed back.
    let bad_uid = "../../etc/passwd";
    let mut bad = Vec::new();
    as_file(mr_dataset_with(
        &Ids::new("STOWBADUID"),
        1,
        &[(tags::SOP_INSTANCE_UID, VR::UI, bad_uid)],
    ))
    .write_all(&mut bad)
    .unwrap();
    let other = part10(&Ids::new("STOWOCTET"), 1);
    let body = multipart_typed(&[
        ("application/dicom", &bad),
        ("application/octet-stream", &other),
    ]);
    let rsp = stow_with(node.http_addr, "/dicom-web/studies", &content_type(), &body).await;
    assert_eq!(rsp.status, 409, "{}", rsp.text());
    assert!(!rsp.text().contains(bad_uid), "{}", rsp.text());
    let json = rsp.json();
    assert_eq!(
        failure_reasons(&json),
        vec![CANNOT_UNDERSTAND, CANNOT_UNDERSTAND]
    );
    let first = &json[FAILED_SOP_SEQUENCE]["Value"][0];
    // (dicom-object refuses the file meta group over the malformed UID, so the part's
    // SOP Class is unknown too.)
    assert!(first.get(REFERENCED_SOP_INSTANCE_UID).is_none(), "{first}");
    assert_eq!(instances(&node).await, 1);
    env.assert_spool_empty(&node).await;
    node.stop().await;
}
both_backends!(mixed_parts, mixed_good_and_garbage);

async fn study_mismatch(env: TestEnv) {
    let node = env.start().await;
    let ids = Ids::new("STOWSTUDY");
    let other = Ids::new("OTHER").study;
    let file = part10(&ids, 1);
    let rsp = stow(
        node.http_addr,
        &format!("/dicom-web/studies/{other}"),
        &[&file],
    )
    .await;
    assert_eq!(rsp.status, 409, "{}", rsp.text());
    let json = rsp.json();
    assert_eq!(failure_reasons(&json), vec![PROCESSING_FAILURE]);
    let failed = &json[FAILED_SOP_SEQUENCE]["Value"][0];
    assert_eq!(
        failed[REFERENCED_SOP_INSTANCE_UID]["Value"][0],
        ids.sop.as_str()
    );
    assert_eq!(instances(&node).await, 0);

    // The right study is accepted.
    let rsp = stow(
        node.http_addr,
        &format!("/dicom-web/studies/{}", ids.study),
        &[&file],
    )
    .await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    assert_eq!(instances(&node).await, 1);

    // A malformed study UID in the path is a bad request.
    let rsp = stow(node.http_addr, "/dicom-web/studies/1.2.x", &[&file]).await;
    assert_eq!(rsp.status, 400, "{}", rsp.text());
    env.assert_spool_empty(&node).await;
    node.stop().await;
}
both_backends!(study_mismatch_fails, study_mismatch);

async fn truncated_stores_nothing(env: TestEnv) {
    let node = env.start().await;
    let a = Ids::new("STOWTRUNC");
    let b = a.next_instance();
    let body = multipart(&[&part10(&a, 1), &part10(&b, 2)]);

    // The connection ends in the middle of the second part.
    let cut = body.len() - 200;
    let mut raw = format!(
        "POST /dicom-web/studies HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
        http::token_for(node.http_addr).expect("harness token"),
        content_type(),
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body[..cut]);
    match http::send_raw(node.http_addr, raw, true).await {
        Ok(rsp) => assert_eq!(rsp.status, 400, "{}", rsp.text()),
        Err(e) => eprintln!("truncated body: connection error {e} (acceptable)"),
    }
    assert_eq!(instances(&node).await, 0);
    env.assert_spool_empty(&node).await;

    // A complete HTTP body whose multipart body has no closing boundary.
    let rsp = stow_with(
        node.http_addr,
        "/dicom-web/studies",
        &content_type(),
        &body[..cut],
    )
    .await;
    assert_eq!(rsp.status, 400, "{}", rsp.text());
    assert_eq!(rsp.json()["code"], "bad_request");
    assert_eq!(instances(&node).await, 0);
    env.assert_spool_empty(&node).await;

    // A body without any part.
    let rsp = stow_with(
        node.http_addr,
        "/dicom-web/studies",
        &content_type(),
        format!("--{BOUNDARY}--\r\n").as_bytes(),
    )
    .await;
    assert_eq!(rsp.status, 400, "{}", rsp.text());

    assert_still_serving(&node).await;
    node.stop().await;
}
both_backends!(truncated_body, truncated_stores_nothing);

/// The same with every part spooled to a file (objects over the memory spool's limits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_body_disk_spool() {
    if let Some(env) = TestEnv::new(Backend::Sqlite).await {
        truncated_stores_nothing(env.disk_spool()).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_parts_disk_spool() {
    if let Some(env) = TestEnv::new(Backend::Sqlite).await {
        mixed_good_and_garbage(env.disk_spool()).await
    }
}

async fn bad_media_types(env: TestEnv) {
    let node = env.start().await;
    let ids = Ids::new("STOWMEDIA");
    let body = multipart(&[&part10(&ids, 1)]);
    let cases = [
        ("multipart/related; type=\"application/dicom\"", 400),
        (
            "multipart/related; type=\"application/dicom\"; boundary=",
            400,
        ),
        ("application/json", 415),
        ("application/dicom", 415),
        (
            &*format!("multipart/related; type=\"application/dicom+json\"; boundary={BOUNDARY}"),
            415,
        ),
        (
            &*format!("multipart/related; type=\"application/dicom+xml\"; boundary={BOUNDARY}"),
            415,
        ),
    ];
    for (ct, want) in cases {
        let rsp = stow_with(node.http_addr, "/dicom-web/studies", ct, &body).await;
        assert_eq!(rsp.status, want, "{ct}: {}", rsp.text());
        let err = rsp.json();
        assert!(
            err["code"].is_string() && err["message"].is_string(),
            "{err}"
        );
    }
    assert_eq!(instances(&node).await, 0);
    env.assert_spool_empty(&node).await;
    assert_still_serving(&node).await;
    node.stop().await;
}
both_backends!(media_types, bad_media_types);

async fn too_large(mut env: TestEnv) {
    const LIMIT: u64 = 8 * 1024;
    env.config.dicomweb.max_upload_bytes = LIMIT;
    let node = env.start().await;
    let first = Ids::new("STOWBIG");
    let files: Vec<Vec<u8>> = (0..8)
        .map(|i| {
            let id = if i == 0 {
                first.clone()
            } else {
                first.next_instance()
            };
            part10(&id, i + 1)
        })
        .collect();
    let parts: Vec<&[u8]> = files.iter().map(|f| f.as_slice()).collect();
    let body = multipart(&parts);
    assert!(body.len() as u64 > LIMIT);

    // Declared too large: refused before the body is read.
    let rsp = stow_with(node.http_addr, "/dicom-web/studies", &content_type(), &body).await;
    assert_eq!(rsp.status, 413, "{}", rsp.text());
    assert_eq!(rsp.json()["code"], "payload_too_large");

    // Chunked, no Content-Length: refused when the limit is crossed.
    let rsp = http::request(
        node.http_addr,
        "POST",
        "/dicom-web/studies",
        &[
            ("Content-Type", &content_type()),
            ("Transfer-Encoding", "chunked"),
        ],
        &http::chunked(&body, 1024),
    )
    .await
    .expect("response");
    assert_eq!(rsp.status, 413, "{}", rsp.text());

    assert_eq!(instances(&node).await, 0);
    env.assert_spool_empty(&node).await;
    assert_still_serving(&node).await;
    node.stop().await;
}
both_backends!(payload_too_large, too_large);

/// Throughput by hand (`cargo test --release --test dicomweb_stow -- --ignored
/// --nocapture`): one request of 40 MR slices of 256×256 (≈133 kB each, the size of
/// the C-STORE and Orthanc benchmarks), best of a few runs, on both backends.
async fn throughput(env: TestEnv) {
    const SLICES: usize = 40;
    const RUNS: usize = 3;
    const SIDE: u16 = 256;
    let _ = tracing_subscriber::fmt()
        .with_env_filter("glia::dicomweb=info")
        .with_test_writer()
        .try_init();
    let node = env.start().await;
    let mut part_kb = 0;
    let mut best = f64::MAX;
    for _ in 0..RUNS {
        let first = Ids::new("STOWBENCH");
        let mut cur = first.clone();
        let files: Vec<Vec<u8>> = (0..SLICES)
            .map(|i| {
                let mut out = Vec::new();
                as_file(mr_dataset(&cur, i as i32 + 1, SIDE, SIDE))
                    .write_all(&mut out)
                    .unwrap();
                cur = cur.next_instance();
                out
            })
            .collect();
        part_kb = files[0].len() / 1024;
        let parts: Vec<&[u8]> = files.iter().map(|f| f.as_slice()).collect();
        let body = multipart(&parts);
        let t = Instant::now();
        let rsp = stow_with(node.http_addr, "/dicom-web/studies", &content_type(), &body).await;
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(rsp.status, 200, "{}", rsp.text());
        best = best.min(secs);
    }
    eprintln!(
        "STOW-RS {:?}: {SLICES} × {} kB in {:.1} ms: {:.0} instances/s",
        env.backend,
        part_kb,
        best * 1e3,
        SLICES as f64 / best
    );
    node.stop().await;
}

mod bench {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "benchmark, run by hand"]
    async fn throughput_sqlite() {
        if let Some(env) = crate::common::TestEnv::new(crate::common::Backend::Sqlite).await {
            super::throughput(env).await
        }
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "benchmark, run by hand"]
    async fn throughput_postgres_s3() {
        if let Some(env) = crate::common::TestEnv::new(crate::common::Backend::PgS3).await {
            super::throughput(env).await
        }
    }
}
