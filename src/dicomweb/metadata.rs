//! WADO-RS metadata of a study, series or instance (PS3.18 §10.4.1.1.2) as
//! `application/dicom+json`: the instances' DICOM JSON, precomputed at ingest
//! (BulkDataURIs included), concatenated without opening any DICOM object. Instances
//! indexed before metadata was precomputed are rendered from their blob. Responses
//! carry an ETag (`If-None-Match` → 304) and are gzip-compressed when accepted.

use std::io::Write;

use poem::http::{header, StatusCode};
use poem::web::Data;
use poem::{handler, Body, Request, Response};
use sha2::{Digest, Sha256};

use super::{resolve, DicomWebError, Target, WebResult};
use crate::app::AppState;
use crate::dicom_json::{self, JsonOptions};
use crate::query::WebInstance;
use crate::store::BlobKey;

/// Bodies smaller than this are not worth compressing.
const GZIP_MIN: usize = 1024;

/// Metadata of the study, series or instance the path names.
#[handler]
pub async fn metadata(
    req: &Request,
    target: Target,
    Data(state): Data<&AppState>,
) -> WebResult<Response> {
    let Target {
        study,
        series,
        instance,
    } = target;
    let mut found = resolve(
        state,
        &study,
        series.as_deref(),
        instance.as_deref(),
        true,
        false,
    )
    .await?;
    let base = super::base_url(req);

    // The ETag names exactly what the body is made of: every instance's blob (a
    // replaced instance gets a new key) and the base URL in its BulkDataURIs.
    let mut h = Sha256::new();
    h.update(base.as_bytes());
    for i in &found {
        h.update(i.stored.blob_key.as_bytes());
        h.update([0]);
    }
    let etag = format!("\"{}\"", &hex::encode(h.finalize())[..32]);
    if let Some(inm) = req.headers().get(header::IF_NONE_MATCH) {
        let inm = inm.to_str().unwrap_or("");
        if inm.split(',').any(|t| t.trim() == etag || t.trim() == "*") {
            return Ok(Response::builder()
                .status(StatusCode::NOT_MODIFIED)
                .header(header::ETAG, etag)
                .finish());
        }
    }

    for inst in found.iter_mut().filter(|i| i.metadata.is_none()) {
        inst.metadata = Some(render_from_blob(state, inst).await?);
    }
    let total: usize = found
        .iter()
        .map(|i| i.metadata.as_ref().map_or(0, |m| m.len() + 1))
        .sum();
    let mut json = String::with_capacity(total + 2 + found.len() * 8);
    json.push('[');
    for (n, inst) in found.iter().enumerate() {
        if n > 0 {
            json.push(',');
        }
        json.push_str(inst.metadata.as_deref().unwrap_or("{}"));
    }
    json.push(']');
    let json = dicom_json::resolve_base(&json, &base);

    let gzip = json.len() >= GZIP_MIN && accepts_gzip(req);
    let mut resp = Response::builder()
        .content_type("application/dicom+json")
        .header(header::ETAG, etag)
        .header(header::VARY, "Accept-Encoding");
    let body = if gzip {
        resp = resp.header(header::CONTENT_ENCODING, "gzip");
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(json.len() / 4),
            flate2::Compression::fast(),
        );
        enc.write_all(json.as_bytes())
            .and_then(|_| enc.finish())
            .map(Body::from_vec)
            .map_err(|e| DicomWebError::Internal(format!("gzip: {e}")))?
    } else {
        Body::from_string(json)
    };
    Ok(resp.body(body))
}

fn accepts_gzip(req: &Request) -> bool {
    req.headers()
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| {
            let mut it = e.split(';');
            let name = it.next().unwrap_or("").trim();
            let q0 = it.any(|p| p.trim().replace(' ', "") == "q=0");
            name.eq_ignore_ascii_case("gzip") && !q0
        })
}

/// DICOM JSON of an instance whose metadata was not precomputed (indexed before
/// DICOMweb existed): parse its blob once.
async fn render_from_blob(state: &AppState, inst: &WebInstance) -> WebResult<String> {
    let bytes = state
        .store
        .get(&BlobKey(inst.stored.blob_key.clone()))
        .await?;
    let path = format!(
        "/studies/{}/series/{}/instances/{}",
        inst.study_instance_uid, inst.series_instance_uid, inst.stored.sop_instance_uid
    );
    let threshold = state.config.dicomweb.bulk_data_threshold;
    tokio::task::spawn_blocking(move || {
        let obj = crate::transcode::parse(&bytes)
            .map_err(|e| DicomWebError::Internal(format!("stored object unreadable: {e}")))?;
        let mut out = String::new();
        dicom_json::write_dataset(
            &mut out,
            &obj,
            &JsonOptions {
                bulk_threshold: threshold,
                instance_path: Some(&path),
            },
        );
        Ok(out)
    })
    .await
    .map_err(|e| DicomWebError::Internal(e.to_string()))?
}
