//! DICOMweb QIDO-RS and WADO-RS (retrieve, metadata, frames, bulk data) against a node
//! on both backends, checked against what was stored. (Independent clients — Python's
//! dicomweb-client and OHIF in Chromium — are in their own tests.)

mod common;

use common::gen::{self, Ids};
use common::{Backend, TestEnv};
use dicom_dictionary_std::tags;
use glia::ingest::IngestContext;

/// A minimal HTTP/1.1 exchange (Connection: close; chunked bodies decoded).
async fn http(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let hdrs: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if hdrs
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[..nl])
                    .split(';')
                    .next()
                    .unwrap()
                    .trim(),
                16,
            )
            .unwrap();
            rest = &rest[nl + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body = out;
    }
    (status, hdrs, body)
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The parts of a multipart/related body: (part headers, part body).
fn parts(content_type: &str, body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .unwrap()
        .trim_matches('"');
    let delim = format!("--{boundary}");
    let mut out = Vec::new();
    let find = |from: usize| {
        body[from..]
            .windows(delim.len())
            .position(|w| w == delim.as_bytes())
            .map(|p| p + from)
    };
    let mut start = find(0).unwrap();
    loop {
        let pos = start + delim.len();
        if body[pos..].starts_with(b"--") {
            break;
        }
        let next = find(pos).unwrap();
        let part = &body[pos + 2..next - 2];
        let hsplit = part.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        out.push((
            String::from_utf8_lossy(&part[..hsplit]).to_string(),
            part[hsplit + 4..].to_vec(),
        ));
        start = next;
    }
    out
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

async fn ingest_file(node: &glia::app::RunningNode, path: &std::path::Path) {
    let f = node.state.ingestor.spool().copy_from(path).await.unwrap();
    node.state
        .ingestor
        .ingest(f, IngestContext::default())
        .await
        .unwrap();
}

async fn run(backend: Backend) {
    let Some(env) = TestEnv::new(backend).await else {
        return;
    };
    let node = env.start().await;
    let addr = node.http_addr;
    let dir = env.dir.path().join("src");
    let mut ids = Ids::new("WEB1");
    ids.patient_name = "Müller^Hans".into();
    let series_a = gen::write_series(&dir.join("a"), &ids, 3, 16, 12);
    let series_b = gen::write_series(&dir.join("b"), &ids.next_series(), 2, 16, 12);
    let other = gen::write_series(&dir.join("c"), &Ids::new("WEB2"), 1, 8, 8);
    for d in ["a", "b", "c"] {
        for e in std::fs::read_dir(dir.join(d)).unwrap() {
            ingest_file(&node, &e.unwrap().path()).await;
        }
    }
    let study = &ids.study;

    // QIDO-RS: studies by PatientID, wildcard name (case-insensitive), fuzzy name.
    let (st, h, b) = http(addr, "/dicom-web/studies?PatientID=WEB1", &[]).await;
    assert_eq!(st, 200);
    assert_eq!(header(&h, "content-type"), Some("application/dicom+json"));
    let v = json(&b);
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["0020000D"]["Value"][0], study.as_str());
    assert_eq!(
        v[0]["00201206"]["Value"][0], 2,
        "NumberOfStudyRelatedSeries"
    );
    assert_eq!(
        v[0]["00201208"]["Value"][0], 5,
        "NumberOfStudyRelatedInstances"
    );
    assert_eq!(v[0]["00100010"]["Value"][0]["Alphabetic"], "Müller^Hans");
    assert_eq!(
        v[0]["00081190"]["Value"][0],
        format!("http://{addr}/dicom-web/studies/{study}")
    );
    let (_, _, b) = http(addr, "/dicom-web/studies?PatientName=m%C3%BCl*", &[]).await;
    assert_eq!(
        json(&b).as_array().unwrap().len(),
        1,
        "case-insensitive wildcard"
    );
    let (_, _, b) = http(
        addr,
        "/dicom-web/studies?PatientName=mul&fuzzymatching=true",
        &[],
    )
    .await;
    assert_eq!(
        json(&b).as_array().unwrap().len(),
        1,
        "fuzzy: accents and case"
    );
    let (_, _, b) = http(
        addr,
        "/dicom-web/studies?PatientName=hans&fuzzymatching=true",
        &[],
    )
    .await;
    assert_eq!(json(&b).as_array().unwrap().len(), 1, "fuzzy: any word");
    let (_, _, b) = http(
        addr,
        "/dicom-web/studies?PatientName=ans&fuzzymatching=true",
        &[],
    )
    .await;
    assert_eq!(
        json(&b).as_array().unwrap().len(),
        0,
        "fuzzy: word prefix only"
    );
    let (_, _, b) = http(
        addr,
        "/dicom-web/studies?00100020=WEB2&includefield=StudyDescription",
        &[],
    )
    .await;
    assert_eq!(json(&b)[0]["00100020"]["Value"][0], "WEB2");

    // Series of the study, instances of a series, all instances, limit/offset.
    let (_, _, b) = http(addr, &format!("/dicom-web/studies/{study}/series"), &[]).await;
    let v = json(&b);
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[0]["00080060"]["Value"][0], "MR");
    let (_, _, b) = http(
        addr,
        &format!("/dicom-web/studies/{study}/series/{}/instances", ids.series),
        &[],
    )
    .await;
    let v = json(&b);
    let mut got: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["00080018"]["Value"][0].as_str().unwrap().to_string())
        .collect();
    got.sort();
    let mut want: Vec<String> = series_a.iter().map(|i| i.sop.clone()).collect();
    want.sort();
    assert_eq!(got, want);
    let (_, _, b) = http(addr, &format!("/dicom-web/studies/{study}/instances"), &[]).await;
    assert_eq!(json(&b).as_array().unwrap().len(), 5);
    let (_, h, b) = http(addr, "/dicom-web/instances?limit=2&offset=1", &[]).await;
    assert_eq!(json(&b).as_array().unwrap().len(), 2);
    assert!(header(&h, "warning").unwrap().starts_with("299"), "{h:?}");
    let (_, h, b) = http(addr, "/dicom-web/series?Modality=MR&limit=10", &[]).await;
    assert_eq!(json(&b).as_array().unwrap().len(), 3);
    assert!(header(&h, "warning").is_none());
    assert_eq!(
        json(&b)[0]["00100020"]["Value"][0],
        "WEB1",
        "study attributes in /series"
    );

    // Bad parameters name the parameter; unknown UIDs are 404.
    for (q, param) in [
        ("/dicom-web/studies?NoSuchKeyword=1", "NoSuchKeyword"),
        ("/dicom-web/studies?StudyDate=2024-13-45", "StudyDate"),
        ("/dicom-web/studies?limit=-1", "limit"),
        ("/dicom-web/studies?includefield=../../", "includefield"),
        ("/dicom-web/studies?fuzzymatching=maybe", "fuzzymatching"),
    ] {
        let (st, _, b) = http(addr, q, &[]).await;
        assert_eq!(st, 400, "{q}");
        let e = json(&b);
        assert!(e["message"].as_str().unwrap().contains(param), "{q}: {e}");
        assert_eq!(e["code"], "bad_parameter");
    }
    let (st, _, _) = http(addr, "/dicom-web/studies/1.2.3.999/series", &[]).await;
    assert_eq!(st, 404);
    let (st, _, _) = http(addr, "/dicom-web/studies/1.2.3.999/metadata", &[]).await;
    assert_eq!(st, 404);
    let (st, _, _) = http(addr, "/dicom-web/studies/not..a..uid", &[]).await;
    assert_eq!(st, 400);

    // WADO-RS series retrieve: the stored objects, byte for byte.
    let (st, h, b) = http(
        addr,
        &format!("/dicom-web/studies/{study}/series/{}", ids.series),
        &[(
            "Accept",
            "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
        )],
    )
    .await;
    assert_eq!(st, 200);
    let ps = parts(header(&h, "content-type").unwrap(), &b);
    assert_eq!(ps.len(), 3);
    for (ph, body) in &ps {
        assert!(ph.contains("application/dicom"), "{ph}");
        let obj = dicom_object::OpenFileOptions::new()
            .from_reader(&body[128..])
            .unwrap();
        let sop = obj
            .element(tags::SOP_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let stored = node.state.repo.find_instance(&sop).await.unwrap().unwrap();
        let blob = node
            .state
            .store
            .get(&glia::store::BlobKey(stored.blob_key))
            .await
            .unwrap();
        assert_eq!(&blob[..], &body[..], "part equals the stored blob");
    }
    // Default (no transfer-syntax): explicit VR little endian, here as stored.
    let (st, _, _) = http(addr, &format!("/dicom-web/studies/{study}"), &[]).await;
    assert_eq!(st, 200);
    let (st, _, _) = http(
        addr,
        &format!("/dicom-web/studies/{study}"),
        &[(
            "Accept",
            "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.50",
        )],
    )
    .await;
    assert_eq!(st, 406, "JPEG cannot be produced from uncompressed data");

    // Series metadata: one object per instance, source attributes, BulkDataURI.
    let url = format!("/dicom-web/studies/{study}/series/{}/metadata", ids.series);
    let (st, h, b) = http(addr, &url, &[]).await;
    assert_eq!(st, 200);
    let meta = json(&b);
    assert_eq!(meta.as_array().unwrap().len(), 3);
    let first = &meta[0];
    assert_eq!(first["00100010"]["Value"][0]["Alphabetic"], "Müller^Hans");
    assert_eq!(first["00280010"]["Value"][0], 16, "Rows");
    let bulk = first["7FE00010"]["BulkDataURI"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        bulk.starts_with(&format!("http://{addr}/dicom-web/studies/{study}/")),
        "{bulk}"
    );
    let etag = header(&h, "etag").unwrap().to_string();
    let (st, _, _) = http(addr, &url, &[("If-None-Match", &etag)]).await;
    assert_eq!(st, 304);
    let (st, h, gz) = http(addr, &url, &[("Accept-Encoding", "gzip")]).await;
    assert_eq!(st, 200);
    assert_eq!(header(&h, "content-encoding"), Some("gzip"));
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut plain).unwrap();
    assert_eq!(plain, b);

    // Frames and bulk data: the stored pixel bytes, located by the ingest-time layout.
    let sop = first["00080018"]["Value"][0].as_str().unwrap();
    let src = series_a.iter().find(|i| i.sop == sop).unwrap();
    let src_obj = dicom_object::open_file(dir.join("a").join(format!("{}.dcm", src.sop))).unwrap();
    let pixels = src_obj
        .element(tags::PIXEL_DATA)
        .unwrap()
        .to_bytes()
        .unwrap()
        .to_vec();
    let inst_url = format!(
        "/dicom-web/studies/{study}/series/{}/instances/{sop}",
        ids.series
    );
    let (st, h, b) = http(addr, &format!("{inst_url}/frames/1"), &[]).await;
    assert_eq!(st, 200);
    let ps = parts(header(&h, "content-type").unwrap(), &b);
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0].1, pixels, "frame 1 = pixel data");
    let (st, _, _) = http(addr, &format!("{inst_url}/frames/2"), &[]).await;
    assert_eq!(st, 404, "frame beyond the last");
    let (st, _, _) = http(addr, &format!("{inst_url}/frames/0,x"), &[]).await;
    assert_eq!(st, 400);
    let bulk_path = bulk.trim_start_matches(&format!("http://{addr}"));
    let (st, _, b) = http(addr, bulk_path, &[("Accept", "application/octet-stream")]).await;
    assert_eq!(st, 200);
    assert_eq!(b, pixels);
    let (st, h, b) = http(addr, bulk_path, &[("Range", "bytes=10-19")]).await;
    assert_eq!(st, 206);
    assert_eq!(b, &pixels[10..20]);
    assert_eq!(
        header(&h, "content-range"),
        Some(format!("bytes 10-19/{}", pixels.len()).as_str())
    );
    let (st, _, _) = http(addr, bulk_path, &[("Range", "bytes=100000-")]).await;
    assert_eq!(st, 416, "range past the end");

    // The node keeps serving.
    let (st, _, b) = http(addr, "/dicom-web/studies", &[]).await;
    assert_eq!(st, 200);
    assert_eq!(json(&b).as_array().unwrap().len(), 2);
    let _ = (series_b, other);
    node.stop().await;
}

/// Compressed frames come back as stored (their own media type) or decompressed.
async fn compressed(backend: Backend) {
    let Some(files) = common::pydicom_test_files() else {
        common::require("pydicom test files", false);
        return;
    };
    let Some(env) = TestEnv::new(backend).await else {
        return;
    };
    let node = env.start().await;
    let path = files.join("JPEG2000.dcm");
    let obj = dicom_object::open_file(&path).unwrap();
    let frag = obj.element(tags::PIXEL_DATA).unwrap().fragments().unwrap()[0].clone();
    ingest_file(&node, &path).await;
    let study = obj
        .element(tags::STUDY_INSTANCE_UID)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let series = obj
        .element(tags::SERIES_INSTANCE_UID)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let sop = obj
        .element(tags::SOP_INSTANCE_UID)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let url = format!("/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/1");
    let (st, h, b) = http(
        node.http_addr,
        &url,
        &[("Accept", "multipart/related; type=\"image/jp2\"")],
    )
    .await;
    assert_eq!(st, 200);
    let ps = parts(header(&h, "content-type").unwrap(), &b);
    assert!(ps[0].0.contains("image/jp2"), "{}", ps[0].0);
    assert_eq!(ps[0].1, frag, "compressed frame as stored");
    let (st, h, b) = http(
        node.http_addr,
        &url,
        &[(
            "Accept",
            "multipart/related; type=\"application/octet-stream\"",
        )],
    )
    .await;
    assert_eq!(st, 200);
    let ps = parts(header(&h, "content-type").unwrap(), &b);
    let rows = obj.element(tags::ROWS).unwrap().to_int::<usize>().unwrap();
    let cols = obj
        .element(tags::COLUMNS)
        .unwrap()
        .to_int::<usize>()
        .unwrap();
    assert_eq!(ps[0].1.len(), rows * cols * 2, "decompressed 16-bit frame");
    let (st, _, _) = http(
        node.http_addr,
        &url,
        &[("Accept", "multipart/related; type=\"image/jpeg\"")],
    )
    .await;
    assert_eq!(st, 406);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn qido_and_wado_on_sqlite() {
    run(Backend::Sqlite).await;
    compressed(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn qido_and_wado_on_postgres_and_s3() {
    run(Backend::PgS3).await;
    compressed(Backend::PgS3).await;
}
