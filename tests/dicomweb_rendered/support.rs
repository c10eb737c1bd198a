//! Support for the rendered/WADO-URI tests (over the shared client in
//! `common::http`): ingest helpers and synthetic gradient instances.

use std::net::SocketAddr;
use std::path::Path;

use crate::common::gen::{mr_dataset, Ids};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, InMemDicomObject};
use glia::app::RunningNode;
use glia::ingest::IngestContext;

/// The shared test client's response.
pub type Resp = crate::common::http::HttpResponse;

/// GET (panics when no response comes).
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    crate::common::http::get(addr, path, headers)
        .await
        .expect("an HTTP response")
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
    r.parts()
}
