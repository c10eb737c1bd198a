//! WADO-RS retrieve of studies, series and instances (PS3.18 §10.4) as
//! `multipart/related; type="application/dicom"`, streamed from the blob store:
//! as stored (`transfer-syntax=*` or the stored syntax), or re-encoded in explicit /
//! implicit VR little endian (decompressing when needed); 406 when a requested
//! syntax cannot be produced for every addressed instance.

use futures::stream::{self, StreamExt};
use poem::web::Data;
use poem::{handler, Request, Response};

use super::media::{self, SyntaxChoice};
use super::multipart::{self, Part, PartBody};
use super::{resolve, DicomWebError, Target, WebResult};
use crate::app::AppState;
use crate::query::WebInstance;
use crate::store::{BlobKey, BlobStore};

/// Objects up to this size are read whole (one request); larger ones are streamed.
const WHOLE_READ_MAX: i64 = 16 << 20;
/// Blobs fetched ahead of the one being sent: many for small objects (object storage
/// answers each GET after a round trip), few for large ones (memory).
const PREFETCH_SMALL: usize = 16;
const PREFETCH_LARGE: usize = 4;
/// Objects up to this size count as small for prefetching.
const SMALL_OBJECT: i64 = 1 << 20;

/// The instances of the study, series or instance the path names.
#[handler]
pub async fn retrieve(
    req: &Request,
    target: Target,
    Data(state): Data<&AppState>,
) -> WebResult<Response> {
    let Target {
        study,
        series,
        instance,
    } = target;
    let wanted = media::dicom_transfer_syntax(&media::accepted(req))?;
    let found = resolve(
        state,
        &study,
        series.as_deref(),
        instance.as_deref(),
        false,
        false,
    )
    .await?;
    let mut plans = Vec::with_capacity(found.len());
    for inst in found {
        let choice = media::choose_syntax(&inst.stored.transfer_syntax_uid, wanted.as_deref())
            .ok_or_else(|| {
                DicomWebError::NotAcceptable(
                    "the requested transfer syntax cannot be produced from the stored one \
                     (explicit and implicit VR little endian, or transfer-syntax=*, can)"
                        .into(),
                )
            })?;
        plans.push((inst, choice));
    }
    let base = super::base_url(req);
    let store = state.store.clone();
    let prefetch = if plans
        .iter()
        .all(|(i, _)| i.stored.size_bytes <= SMALL_OBJECT)
    {
        PREFETCH_SMALL
    } else {
        PREFETCH_LARGE
    };
    let parts = stream::iter(plans)
        .map(move |(inst, choice)| part(store.clone(), base.clone(), inst, choice))
        .buffered(prefetch)
        .boxed();
    Ok(multipart::response(
        parts,
        "application/dicom",
        multipart::new_boundary(),
    ))
}

/// The URL of an instance under the DICOMweb base.
pub fn instance_url(base: &str, inst: &WebInstance) -> String {
    format!(
        "{base}/studies/{}/series/{}/instances/{}",
        inst.study_instance_uid, inst.series_instance_uid, inst.stored.sop_instance_uid
    )
}

async fn part(
    store: BlobStore,
    base: String,
    inst: WebInstance,
    choice: SyntaxChoice,
) -> WebResult<Part> {
    let key = BlobKey(inst.stored.blob_key.clone());
    let location = Some(instance_url(&base, &inst));
    match choice {
        SyntaxChoice::AsStored => {
            let content_type = format!(
                "application/dicom; transfer-syntax={}",
                inst.stored.transfer_syntax_uid
            );
            let body = if inst.stored.size_bytes <= WHOLE_READ_MAX {
                PartBody::Bytes(store.get(&key).await?)
            } else {
                let s = store.get_stream(&key).await?;
                PartBody::Stream(s.map(|r| r.map_err(std::io::Error::other)).boxed())
            };
            Ok(Part {
                content_type,
                location,
                body,
            })
        }
        SyntaxChoice::Uncompressed(ts) => {
            let bytes = store.get(&key).await?;
            let out = tokio::task::spawn_blocking(move || crate::transcode::to_part10(&bytes, ts))
                .await
                .map_err(|e| DicomWebError::Internal(e.to_string()))?
                .map_err(|e| DicomWebError::Internal(format!("transcoding failed: {e}")))?;
            Ok(Part {
                content_type: format!("application/dicom; transfer-syntax={ts}"),
                location,
                body: PartBody::Bytes(out.into()),
            })
        }
    }
}
