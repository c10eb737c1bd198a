//! WADO-RS frames (PS3.18 §10.4.1.1.3): `/frames/1,3,5` of an instance. Frames are
//! located by the byte layout recorded at ingest, so each frame is a ranged read of
//! the blob: native frames as `application/octet-stream`, compressed frames in their
//! own media type (or decompressed when the client accepts only octet-stream).
//! Objects without a usable layout (deflated, ambiguous fragments, big endian) are
//! parsed once and their frames extracted or decoded.

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use poem::web::{Data, Path};
use poem::{handler, Body, Request, Response};

use super::media::{self, MediaRange};
use super::multipart::{self, Part, PartBody};
use super::{resolve, DicomWebError, WebResult};
use crate::app::AppState;
use crate::ingest::layout::{Layout, PixelLayout};
use crate::query::WebInstance;
use crate::store::BlobKey;
use crate::transcode::EXPLICIT_VR_LE;

const OCTET: &str = "application/octet-stream";
const BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";
const DEFLATED: &str = "1.2.840.10008.1.2.1.99";

/// The media type of a frame in a compressed transfer syntax (PS3.18 Table 8.7.3-2);
/// `None` for native syntaxes.
pub fn frame_media_type(ts: &str) -> Option<&'static str> {
    Some(match ts {
        "1.2.840.10008.1.2.4.50"
        | "1.2.840.10008.1.2.4.51"
        | "1.2.840.10008.1.2.4.57"
        | "1.2.840.10008.1.2.4.70" => "image/jpeg",
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => "image/jls",
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => "image/jp2",
        "1.2.840.10008.1.2.4.92" | "1.2.840.10008.1.2.4.93" => "image/jpx",
        "1.2.840.10008.1.2.4.201" | "1.2.840.10008.1.2.4.202" | "1.2.840.10008.1.2.4.203" => {
            "image/jphc"
        }
        "1.2.840.10008.1.2.5" => "image/dicom-rle",
        "1.2.840.10008.1.2.4.100" | "1.2.840.10008.1.2.4.101" => "video/mpeg",
        "1.2.840.10008.1.2.4.102" | "1.2.840.10008.1.2.4.103" => "video/mp4",
        "1.2.840.10008.1.2" | EXPLICIT_VR_LE | BIG_ENDIAN | DEFLATED => return None,
        _ => "application/octet-stream",
    })
}

/// How frames are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FrameForm {
    /// The stored bytes (compressed frames as they are).
    AsStored,
    /// Decoded native pixels, little endian.
    Decoded,
}

/// Decide the form from what the client accepts and what is stored; also whether the
/// response may be a bare (single-part) body.
fn negotiate(ranges: &[MediaRange], stored_ts: &str) -> WebResult<(FrameForm, bool)> {
    let compressed = frame_media_type(stored_ts);
    for r in ranges {
        let (kind, ts, bare) = match r.essence.as_str() {
            "multipart/related" => (
                r.param("type").unwrap_or(OCTET).to_ascii_lowercase(),
                r.param("transfer-syntax"),
                false,
            ),
            "*/*" | "multipart/*" => ("*/*".to_string(), Some("*"), false),
            other => (other.to_string(), r.param("transfer-syntax"), true),
        };
        let as_stored_ok = ts == Some("*") || ts == Some(stored_ts);
        match (kind.as_str(), compressed) {
            ("*/*", _) => return Ok((FrameForm::AsStored, bare)),
            (OCTET, None) => return Ok((FrameForm::AsStored, bare)),
            (OCTET, Some(_)) if as_stored_ok => return Ok((FrameForm::AsStored, bare)),
            (OCTET, Some(_)) if ts.is_none() || ts == Some(EXPLICIT_VR_LE) => {
                return Ok((FrameForm::Decoded, bare))
            }
            (k, Some(m))
                if (k == m || (k.ends_with("/*") && r.admits(m)))
                    && (ts.is_none() || as_stored_ok) =>
            {
                return Ok((FrameForm::AsStored, bare));
            }
            _ => {}
        }
    }
    Err(DicomWebError::NotAcceptable(format!(
        "frames of this instance are available as {} or application/octet-stream",
        compressed.unwrap_or(OCTET)
    )))
}

/// Parse `1,3,5` (1-based frame numbers).
pub fn parse_frame_list(s: &str) -> WebResult<Vec<u32>> {
    let list: Result<Vec<u32>, _> = s.split(',').map(|p| p.trim().parse::<u32>()).collect();
    match list {
        Ok(l) if !l.is_empty() && l.iter().all(|&n| n >= 1) => Ok(l),
        _ => Err(DicomWebError::param(
            "frames",
            "a comma-separated list of frame numbers from 1",
        )),
    }
}

/// The stored layout of an instance, if recorded and usable.
pub fn layout_of(inst: &WebInstance) -> Option<Layout> {
    if inst.stored.transfer_syntax_uid == BIG_ENDIAN {
        return None;
    }
    serde_json::from_str(inst.layout.as_deref()?).ok()
}

#[handler]
pub async fn get_frames(
    req: &Request,
    Path((study, series, instance, list)): Path<(String, String, String, String)>,
    Data(state): Data<&AppState>,
) -> WebResult<Response> {
    let numbers = parse_frame_list(&list)?;
    let inst = resolve(state, &study, Some(&series), Some(&instance), false, true)
        .await?
        .remove(0);
    let count = inst.number_of_frames.unwrap_or(1).max(1) as u32;
    if numbers.iter().any(|&n| n > count) {
        return Err(DicomWebError::NotFound("frame"));
    }
    let ts = inst.stored.transfer_syntax_uid.clone();
    let (form, bare) = negotiate(&media::accepted(req), &ts)?;
    let media = match (&form, frame_media_type(&ts)) {
        (FrameForm::AsStored, Some(m)) => format!("{m}; transfer-syntax={ts}"),
        _ => format!("{OCTET}; transfer-syntax={EXPLICIT_VR_LE}"),
    };
    let key = BlobKey(inst.stored.blob_key.clone());
    let layout = layout_of(&inst).filter(|l| match (&form, &l.pixel) {
        (FrameForm::AsStored, Some(PixelLayout::Native { frame_len, .. })) => *frame_len > 0,
        (FrameForm::AsStored, Some(PixelLayout::Encapsulated { frames })) => {
            frames.len() as u32 == count
        }
        _ => false,
    });
    let frames: Vec<Bytes> = match layout.and_then(|l| l.pixel) {
        Some(pixel) => {
            let store = state.store.clone();
            let reads: Vec<_> = numbers
                .clone()
                .into_iter()
                .map(|n| {
                    let (store, key, pixel) = (store.clone(), key.clone(), pixel.clone());
                    async move { read_frame(&store, &key, &pixel, n).await }
                })
                .collect();
            stream::iter(reads)
                .buffered(4)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<WebResult<_>>()?
        }
        None => {
            let bytes = state.store.get(&key).await?;
            let decode = form == FrameForm::Decoded || frame_media_type(&ts).is_none();
            tokio::task::spawn_blocking(move || frames_by_parsing(&bytes, &numbers, decode, count))
                .await
                .map_err(|e| DicomWebError::Internal(e.to_string()))??
        }
    };
    if bare && frames.len() == 1 {
        let frame = frames.into_iter().next().unwrap_or_default();
        return Ok(Response::builder()
            .content_type(media)
            .body(Body::from_bytes(frame)));
    }
    let base = super::base_url(req);
    let url = super::retrieve::instance_url(&base, &inst);
    let parts: Vec<WebResult<Part>> = frames
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            Ok(Part {
                content_type: media.clone(),
                location: Some(format!("{url}/frames/{}", i + 1)),
                body: PartBody::Bytes(f),
            })
        })
        .collect();
    let part_type = media.split(';').next().unwrap_or(OCTET).to_string();
    Ok(multipart::response(
        stream::iter(parts).boxed(),
        &part_type,
        multipart::new_boundary(),
    ))
}

/// One frame by ranged reads of the blob.
async fn read_frame(
    store: &crate::store::BlobStore,
    key: &BlobKey,
    pixel: &PixelLayout,
    n: u32,
) -> WebResult<Bytes> {
    match pixel {
        PixelLayout::Native {
            offset,
            length,
            frame_len,
            ..
        } => {
            let start = offset + u64::from(n - 1) * frame_len;
            let end = (start + frame_len).min(offset + length);
            if start >= end {
                return Err(DicomWebError::NotFound("frame"));
            }
            Ok(store.get_range(key, start..end).await?)
        }
        PixelLayout::Encapsulated { frames } => {
            let frags = frames
                .get(n as usize - 1)
                .ok_or(DicomWebError::NotFound("frame"))?;
            if let [(off, len)] = frags.as_slice() {
                return Ok(store.get_range(key, *off..off + len).await?);
            }
            let mut out = Vec::new();
            for (off, len) in frags {
                out.extend_from_slice(&store.get_range(key, *off..off + len).await?);
            }
            Ok(out.into())
        }
    }
}

/// Frames of a whole stored object: decoded with dicom-pixeldata (`decode`), or the
/// stored fragments of each frame.
fn frames_by_parsing(
    part10: &[u8],
    numbers: &[u32],
    decode: bool,
    total: u32,
) -> WebResult<Vec<Bytes>> {
    use dicom_pixeldata::PixelDecoder;
    let obj = crate::transcode::parse(part10)
        .map_err(|e| DicomWebError::Internal(format!("stored object unreadable: {e}")))?;
    let mut out = Vec::with_capacity(numbers.len());
    if decode {
        for &n in numbers {
            let px = obj.decode_pixel_data_frame(n - 1).map_err(|e| {
                DicomWebError::NotAcceptable(format!("frame cannot be decoded: {e}"))
            })?;
            out.push(Bytes::copy_from_slice(px.data()));
        }
        return Ok(out);
    }
    let el = obj
        .element(dicom_dictionary_std::tags::PIXEL_DATA)
        .map_err(|_| DicomWebError::NotFound("frame"))?;
    let fragments = el
        .fragments()
        .ok_or_else(|| DicomWebError::Internal("pixel data is not encapsulated".into()))?;
    for &n in numbers {
        // Without a usable layout, fragments map to frames one to one (or all to one).
        let f = if fragments.len() == total as usize {
            fragments.get(n as usize - 1).cloned().unwrap_or_default()
        } else if total == 1 {
            fragments.concat()
        } else {
            return Err(DicomWebError::NotAcceptable(
                "the frames of this object can only be sent decompressed \
                 (multipart/related; type=\"application/octet-stream\")"
                    .into(),
            ));
        };
        out.push(Bytes::from(f));
    }
    Ok(out)
}
