//! Support for the rendered/WADO-URI tests: a minimal HTTP/1.1 client (GET, with
//! Content-Length, chunked or EOF-delimited bodies), a multipart/related splitter,
//! ingest helpers and synthetic gradient instances.

use std::net::SocketAddr;
use std::path::Path;

use crate::common::gen::{mr_dataset, Ids};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, InMemDicomObject};
use glia::app::RunningNode;
use glia::ingest::IngestContext;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A response of the minimal HTTP/1.1 client below.
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn image(&self) -> image::DynamicImage {
        image::load_from_memory(&self.body).unwrap_or_else(|e| {
            panic!(
                "not an image ({e}): status {} {:?}",
                self.status,
                self.text().chars().take(300).collect::<String>()
            )
        })
    }
}

/// GET with `Connection: close`; handles Content-Length, chunked and EOF bodies.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(60), s.read_to_end(&mut raw))
        .await
        .expect("response within 60 s")
        .unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        let (mut out, mut rest) = (Vec::new(), &body[..]);
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = std::str::from_utf8(&rest[..eol])
                .unwrap()
                .split(';')
                .next()
                .unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 2 + size + 2..];
        }
        body = out;
    }
    Resp {
        status,
        headers,
        body,
    }
}

/// Assert a 400 whose message names `param`.
pub fn assert_bad_param(r: &Resp, param: &str, what: &str) {
    assert_eq!(r.status, 400, "{what}: {}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(
        v["message"].as_str().unwrap_or("").contains(param),
        "{what}: message should name {param}: {v}"
    );
}

/// Store a Part 10 file through the one ingest path.
pub async fn ingest_path(node: &RunningNode, path: &Path) {
    let ing = &node.state.ingestor;
    let spooled = ing.spool().copy_from(path).await.unwrap();
    ing.ingest(spooled, IngestContext::default())
        .await
        .unwrap_or_else(|e| panic!("ingest {}: {e}", path.display()));
}

pub async fn ingest_obj(node: &RunningNode, dir: &Path, obj: FileDicomObject<InMemDicomObject>) {
    let sop = obj
        .meta()
        .media_storage_sop_instance_uid()
        .trim_end_matches('\0')
        .to_string();
    let path = dir.join(format!("{sop}.dcm"));
    obj.write_to_file(&path).unwrap();
    ingest_path(node, &path).await;
}

pub fn put_str(obj: &mut InMemDicomObject, tag: dicom_core::Tag, vr: VR, v: &str) {
    obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
}

/// An MR instance whose pixels run 0..=4095 left to right; `frames` frames, frame k
/// offset by k·`step` (multi-frame when `frames` > 1).
pub fn gradient(
    ids: &Ids,
    number: i32,
    rows: u16,
    cols: u16,
    pi: &str,
    frames: u32,
    step: u16,
) -> InMemDicomObject {
    let mut obj = mr_dataset(ids, number, rows, cols);
    let mut px = Vec::new();
    for f in 0..frames {
        for i in 0..rows as u32 * cols as u32 {
            let x = i % cols as u32;
            let v = (x * 4095 / (cols as u32 - 1).max(1)) as u16;
            px.push(if frames > 1 {
                v / 40 + f as u16 * step
            } else {
                v
            });
        }
    }
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(px.into()),
    ));
    put_str(&mut obj, tags::PHOTOMETRIC_INTERPRETATION, VR::CS, pi);
    if frames > 1 {
        put_str(
            &mut obj,
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            &frames.to_string(),
        );
    }
    obj
}

pub fn luma(img: &image::DynamicImage) -> image::GrayImage {
    img.to_luma8()
}

pub fn mean(img: &image::GrayImage) -> f64 {
    img.pixels().map(|p| p.0[0] as f64).sum::<f64>() / (img.width() * img.height()) as f64
}

pub fn inst_path(ids: &Ids) -> String {
    format!(
        "/dicom-web/studies/{}/series/{}/instances/{}",
        ids.study, ids.series, ids.sop
    )
}

/// Split a multipart/related body into (content type, body) parts.
pub fn multipart_parts(r: &Resp) -> Vec<(String, Vec<u8>)> {
    let ct = r.header("content-type").unwrap();
    let boundary = ct
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .unwrap()
        .trim_matches('"')
        .to_string();
    let delim = format!("--{boundary}").into_bytes();
    let mut out = Vec::new();
    let mut pos = 0;
    let find = |from: usize| {
        r.body[from..]
            .windows(delim.len())
            .position(|w| w == delim.as_slice())
            .map(|p| p + from)
    };
    while let Some(start) = find(pos) {
        let after = start + delim.len();
        if r.body[after..].starts_with(b"--") {
            break;
        }
        let head_end = r.body[after..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap()
            + after;
        let head = String::from_utf8_lossy(&r.body[after..head_end]).to_ascii_lowercase();
        let part_ct = head
            .lines()
            .find_map(|l| l.strip_prefix("content-type:"))
            .unwrap_or("")
            .trim()
            .to_string();
        let next = find(head_end).unwrap();
        out.push((part_ct, r.body[head_end + 4..next - 2].to_vec()));
        pos = next;
    }
    out
}
