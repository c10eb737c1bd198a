//! WADO-RS bulk data (PS3.18 §10.4.1.1.5): the value of a top-level attribute named by
//! the BulkDataURI in the metadata (`.../bulkdata/7FE00010`), read from the blob by the
//! byte range recorded at ingest, with HTTP `Range` support (206 / 416). Encapsulated
//! pixel data is returned frame by frame as the frames resource does.

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use poem::http::{header, StatusCode};
use poem::web::{Data, Path};
use poem::{handler, Body, Request, Response};

use super::multipart::{self, Part, PartBody};
use super::{resolve, DicomWebError, WebResult};
use crate::app::AppState;
use crate::ingest::layout::PixelLayout;
use crate::store::BlobKey;

const OCTET: &str = "application/octet-stream";

/// Parse a single `bytes=a-b` / `bytes=a-` / `bytes=-n` range against `size`.
/// `Ok(None)` when there is no Range header.
pub fn parse_range(value: Option<&str>, size: u64) -> WebResult<Option<(u64, u64)>> {
    let Some(v) = value else { return Ok(None) };
    let unsatisfiable = DicomWebError::RangeNotSatisfiable { size };
    let spec = v
        .trim()
        .strip_prefix("bytes=")
        .ok_or_else(|| DicomWebError::param("Range", "only bytes ranges are supported"))?;
    if spec.contains(',') {
        return Err(DicomWebError::param(
            "Range",
            "multiple ranges are not supported",
        ));
    }
    let (a, b) = spec
        .split_once('-')
        .ok_or_else(|| DicomWebError::param("Range", "malformed"))?;
    let num = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| DicomWebError::param("Range", "malformed"))
    };
    let (start, end) = match (a.trim().is_empty(), b.trim().is_empty()) {
        (true, false) => {
            let n = num(b)?;
            if n == 0 {
                return Err(unsatisfiable);
            }
            (size.saturating_sub(n), size)
        }
        (false, true) => (num(a)?, size),
        (false, false) => (num(a)?, num(b)?.saturating_add(1).min(size)),
        (true, true) => return Err(DicomWebError::param("Range", "malformed")),
    };
    if start >= size || start >= end {
        return Err(unsatisfiable);
    }
    Ok(Some((start, end)))
}

fn wants_multipart(req: &Request) -> bool {
    let ranges = super::media::accepted(req);
    match ranges.first() {
        Some(r) => r.essence == "multipart/related",
        None => false,
    }
}

#[handler]
pub async fn get_bulkdata(
    req: &Request,
    Path((study, series, instance, tag)): Path<(String, String, String, String)>,
    Data(state): Data<&AppState>,
) -> WebResult<Response> {
    let tag = (tag.len() == 8)
        .then(|| u32::from_str_radix(&tag, 16).ok())
        .flatten()
        .ok_or_else(|| DicomWebError::param("tag", "eight hexadecimal digits"))?;
    let inst = resolve(state, &study, Some(&series), Some(&instance), false, true)
        .await?
        .remove(0);
    let layout = super::frames::layout_of(&inst);
    let key = BlobKey(inst.stored.blob_key.clone());
    let (offset, length) = match layout.as_ref().and_then(|l| l.bulk_range(tag)) {
        Some(r) => r,
        None => {
            let encapsulated = matches!(
                layout.as_ref().and_then(|l| l.pixel.as_ref()),
                Some(PixelLayout::Encapsulated { .. })
            );
            if tag == 0x7FE0_0010 && (encapsulated || layout.is_none()) {
                // Compressed pixel data: the frames, as stored.
                return whole_value_by_parsing(state, &key, tag, req).await;
            }
            if layout.is_some() {
                return Err(DicomWebError::NotFound("bulk data"));
            }
            return whole_value_by_parsing(state, &key, tag, req).await;
        }
    };
    let range = parse_range(
        req.headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok()),
        length,
    )?;
    let (start, end) = range.unwrap_or((0, length));
    let bytes = state
        .store
        .get_range(&key, offset + start..offset + end)
        .await?;
    Ok(respond(req, bytes, range.map(|r| (r, length))))
}

fn respond(req: &Request, bytes: Bytes, range: Option<((u64, u64), u64)>) -> Response {
    let status = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut resp = if wants_multipart(req) {
        let part = Part {
            content_type: OCTET.into(),
            location: None,
            body: PartBody::Bytes(bytes),
        };
        multipart::response(
            stream::iter([Ok(part)]).boxed(),
            OCTET,
            multipart::new_boundary(),
        )
    } else {
        Response::builder()
            .content_type(OCTET)
            .body(Body::from_bytes(bytes))
    };
    resp.set_status(status);
    resp.headers_mut().insert(
        header::ACCEPT_RANGES,
        header::HeaderValue::from_static("bytes"),
    );
    if let Some(((s, e), size)) = range {
        if let Ok(v) = format!("bytes {s}-{}/{size}", e - 1).parse() {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    resp
}

/// The value of `tag` from a parsed object (no layout recorded, or encapsulated pixel
/// data: then its fragments, concatenated).
async fn whole_value_by_parsing(
    state: &AppState,
    key: &BlobKey,
    tag: u32,
    req: &Request,
) -> WebResult<Response> {
    let blob = state.store.get(key).await?;
    let value = tokio::task::spawn_blocking(move || -> WebResult<Vec<u8>> {
        let obj = crate::transcode::parse(&blob)
            .map_err(|e| DicomWebError::Internal(format!("stored object unreadable: {e}")))?;
        let t = dicom_core::Tag((tag >> 16) as u16, (tag & 0xFFFF) as u16);
        let el = obj
            .element(t)
            .map_err(|_| DicomWebError::NotFound("bulk data"))?;
        if let Some(frags) = el.fragments() {
            return Ok(frags.concat());
        }
        el.to_bytes()
            .map(|b| b.into_owned())
            .map_err(|_| DicomWebError::NotFound("bulk data"))
    })
    .await
    .map_err(|e| DicomWebError::Internal(e.to_string()))??;
    let size = value.len() as u64;
    let range = parse_range(
        req.headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok()),
        size,
    )?;
    let bytes = match range {
        Some((s, e)) => Bytes::from(value).slice(s as usize..e as usize),
        None => Bytes::from(value),
    };
    Ok(respond(req, bytes, range.map(|r| (r, size))))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(Some("bytes=0-9"), 100).unwrap(), Some((0, 10)));
        assert_eq!(
            parse_range(Some("bytes=90-"), 100).unwrap(),
            Some((90, 100))
        );
        assert_eq!(
            parse_range(Some("bytes=-10"), 100).unwrap(),
            Some((90, 100))
        );
        assert_eq!(
            parse_range(Some("bytes=50-500"), 100).unwrap(),
            Some((50, 100))
        );
        assert!(parse_range(Some("bytes=100-"), 100).is_err());
        assert!(parse_range(Some("bytes=a-b"), 100).is_err());
        assert!(parse_range(Some("items=1-2"), 100).is_err());
        assert_eq!(parse_range(None, 100).unwrap(), None);
    }
}
