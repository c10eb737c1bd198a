//! STOW-RS (PS3.18 §10.5): `POST /studies` and `POST /studies/{study}` with a
//! `multipart/related; type="application/dicom"` body of Part 10 instances.
//!
//! Two phases of the one ingest path, so that a truncated or malformed body stores
//! nothing:
//!
//! 1. **Receive and prepare**: the body is streamed part by part (multer) into the
//!    spool (memory for small parts within the spool's budget, files otherwise);
//!    `[dicomweb] max_upload_bytes` caps the whole body (413). Each complete part is
//!    parsed and validated (`Ingestor::prepare`) while the next ones arrive. Any
//!    multipart error drops every prepared part (nothing was stored) and answers 400.
//! 2. **Commit**: only once the body is complete, each prepared part is stored (blob,
//!    then index: `Ingestor::commit`), a few at a time. This phase runs in its own
//!    task, so a client that disconnects cannot cancel a store halfway.
//!
//! The response (PS3.18 §10.5.3) is a DICOM JSON data set: ReferencedSOPSequence for
//! stored instances (kept duplicates included), FailedSOPSequence with a FailureReason
//! for the others; 200 when all were stored, 202 when some failed, 409 when all did.

use std::time::Instant;

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::mem::InMemElement;
use dicom_object::InMemDicomObject;
use futures::StreamExt;
use poem::http::{header, StatusCode};
use poem::web::{Data, Path as PathParam};
use poem::{handler, Body, Request, Response};

use super::media::{self, MediaRange};
use super::{base_url, check_uid_param, DicomWebError, State, WebResult};
use crate::ingest::{IngestContext, IngestError, Ingestor, Prepared, SpoolFile, Stored};

/// The `source_ae` recorded for instances stored through STOW-RS.
pub const SOURCE_LABEL: &str = "STOW-RS";

/// How many spooled parts are ingested at once (parse, blob put and index commit
/// overlap across parts; the index serialises what it must).
pub const INGEST_CONCURRENCY: usize = 4;

/// The request media type (PS3.18 §10.5.1.1).
const MULTIPART_RELATED: &str = "multipart/related";
/// The only part media type supported: Part 10 instances.
const APPLICATION_DICOM: &str = "application/dicom";
/// The longest boundary RFC 2046 §5.1.1 allows.
const MAX_BOUNDARY_LEN: usize = 70;
/// The response media type.
const DICOM_JSON: &str = "application/dicom+json";

/// FailureReason (0008,1197) values: the storage statuses of PS3.4 Annex B / PS3.18
/// §10.5.3.
pub mod failure_reason {
    use crate::dimse::status;

    /// Processing failure: here, the instance belongs to another study than the one
    /// the request was addressed to (`POST /studies/{study}`).
    pub const PROCESSING_FAILURE: u16 = 0x0110;
    /// Refused, not authorized: the instance belongs to an existing study outside the
    /// sender's scope (e.g. another centre's).
    pub const NOT_AUTHORIZED: u16 = status::NOT_AUTHORIZED;
    /// Refused, out of resources: spool, blob store or index failed, or too large.
    pub const OUT_OF_RESOURCES: u16 = status::OUT_OF_RESOURCES;
    /// Error: the data set does not match its SOP Class (or its file meta information).
    pub const DATA_SET_DOES_NOT_MATCH_SOP_CLASS: u16 = status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS;
    /// Error: cannot understand (not DICOM, unreadable, missing or malformed UIDs, a
    /// part that is not `application/dicom`).
    pub const CANNOT_UNDERSTAND: u16 = status::CANNOT_UNDERSTAND;
}

/// The FailureReason for an instance the ingest path did not store.
pub fn failure_reason_for(e: &IngestError) -> u16 {
    match e {
        IngestError::StudyMismatch => failure_reason::PROCESSING_FAILURE,
        IngestError::NotAuthorized => failure_reason::NOT_AUTHORIZED,
        IngestError::SopClassMismatch { .. } | IngestError::MetaMismatch => {
            failure_reason::DATA_SET_DOES_NOT_MATCH_SOP_CLASS
        }
        IngestError::TooLarge { .. }
        | IngestError::Io(_)
        | IngestError::Store(_)
        | IngestError::Index(_) => failure_reason::OUT_OF_RESOURCES,
        IngestError::Unreadable(_)
        | IngestError::MissingAttribute(_)
        | IngestError::InvalidUid { .. }
        | IngestError::SopInstanceMismatch => failure_reason::CANNOT_UNDERSTAND,
    }
}

/// `POST /dicom-web/studies`: store instances of any studies.
#[handler]
pub async fn store(req: &Request, body: Body, Data(state): State<'_>) -> WebResult<Response> {
    run(req, body, state, None).await
}

/// `POST /dicom-web/studies/{study}`: store instances of one study; instances of
/// another study fail with FailureReason 0110.
#[handler]
pub async fn store_in_study(
    req: &Request,
    PathParam(study): PathParam<String>,
    body: Body,
    Data(state): State<'_>,
) -> WebResult<Response> {
    check_uid_param("StudyInstanceUID", &study)?;
    run(req, body, state, Some(study)).await
}

async fn run(
    req: &Request,
    body: Body,
    state: &crate::app::AppState,
    study: Option<String>,
) -> WebResult<Response> {
    let started = Instant::now();
    let limit = state.config.dicomweb.max_upload_bytes;
    let boundary = request_boundary(req)?;
    if let Some(len) = content_length(req)? {
        if len > limit {
            return Err(DicomWebError::PayloadTooLarge(limit));
        }
    }

    // New studies belong to the sender's centre; existing ones must be visible to it.
    let centre_id = crate::auth::context::principal().and_then(|p| p.centre_id);
    let ctx = IngestContext {
        source_ae: Some(SOURCE_LABEL.into()),
        centre_id,
        expected_study_instance_uid: study.clone(),
        scope: crate::auth::context::scope(),
        ..Default::default()
    };

    let parts = receive(body, &boundary, limit, &state.ingestor, &ctx).await?;
    let n_parts = parts.len();
    let received = started.elapsed();

    // The body is complete and well-formed: from here on, finish whatever happens to
    // the connection.
    let ingestor = state.ingestor.clone();
    let outcomes = tokio::spawn(async move {
        futures::stream::iter(parts.into_inner())
            .map(|part| commit_part(&ingestor, part))
            .buffered(INGEST_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
    })
    .await
    .map_err(|_| DicomWebError::Internal("STOW-RS ingest task failed".into()))?;

    let summary = Summary::of(&outcomes);
    tracing::info!(
        parts = n_parts,
        stored = summary.stored,
        duplicates = summary.duplicates,
        failed = summary.failed,
        receive_ms = received.as_millis() as u64,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "STOW-RS request"
    );
    let dataset = response_dataset(&base_url(req), study.as_deref(), &outcomes);
    Ok(Response::builder()
        .status(summary.status())
        .content_type(DICOM_JSON)
        .body(crate::dicom_json::dataset_to_string(&dataset)))
}

/// The media type (`type/subtype`, lower-cased) and parameters of a Content-Type.
fn parse_media_type(value: &str) -> Option<MediaRange> {
    media::parse_accept(value).into_iter().next()
}

/// Check the request's Content-Type and return its boundary: 415 for another media
/// type (or another `type` than `application/dicom`), 400 without a usable boundary.
fn request_boundary(req: &Request) -> WebResult<String> {
    let Some(ct) = req.content_type() else {
        return Err(DicomWebError::UnsupportedMediaType(
            "a multipart/related request body is required".into(),
        ));
    };
    let media = parse_media_type(ct);
    let Some(media) = media.filter(|m| m.essence == MULTIPART_RELATED) else {
        return Err(DicomWebError::UnsupportedMediaType(format!(
            "STOW-RS takes {MULTIPART_RELATED}; type=\"{APPLICATION_DICOM}\""
        )));
    };
    if let Some(t) = media.param("type") {
        if !t.eq_ignore_ascii_case(APPLICATION_DICOM) {
            return Err(DicomWebError::UnsupportedMediaType(format!(
                "only type=\"{APPLICATION_DICOM}\" is supported (no metadata + bulk data STOW)"
            )));
        }
    }
    match media.param("boundary") {
        Some(b) if !b.is_empty() && b.len() <= MAX_BOUNDARY_LEN => Ok(b.to_string()),
        Some(_) => Err(DicomWebError::BadRequest(format!(
            "the multipart boundary must have 1 to {MAX_BOUNDARY_LEN} characters"
        ))),
        None => Err(DicomWebError::BadRequest(
            "the Content-Type has no multipart boundary".into(),
        )),
    }
}

/// The declared Content-Length, if any (400 when unparsable).
fn content_length(req: &Request) -> WebResult<Option<u64>> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| DicomWebError::BadRequest("malformed Content-Length".into()))
        })
        .transpose()
}

/// What the prepare phase of one part yields: the part's identity from its file meta
/// information (to name it if it fails) and the prepared object.
type PrepareResult = (Option<Identity>, Result<Prepared, IngestError>);

/// One part of the body after the receive phase.
enum Received {
    /// A complete part being prepared (parsed and validated) in its own task.
    Preparing(tokio::task::JoinHandle<PrepareResult>),
    /// A part that will not be ingested, with its FailureReason.
    Rejected(u16),
}

/// The parts of a body being received. Dropped before the commit phase (a broken
/// body, a client gone), it stops their prepare tasks: nothing was stored.
#[derive(Default)]
struct Parts(Vec<Received>);

impl Parts {
    fn len(&self) -> usize {
        self.0.len()
    }

    /// The parts, for the commit phase.
    fn into_inner(mut self) -> Vec<Received> {
        std::mem::take(&mut self.0)
    }
}

impl Drop for Parts {
    fn drop(&mut self) {
        for part in &self.0 {
            if let Received::Preparing(task) = part {
                task.abort();
            }
        }
    }
}

/// Map a multipart parsing error to the request's failure. Messages name no field
/// names or values from the request.
fn multipart_error(e: multer::Error, limit: u64) -> DicomWebError {
    use multer::Error as M;
    match e {
        M::StreamSizeExceeded { .. } | M::FieldSizeExceeded { .. } => {
            DicomWebError::PayloadTooLarge(limit)
        }
        M::StreamReadFailed(_) => {
            DicomWebError::BadRequest("the request body could not be read to its end".into())
        }
        M::IncompleteStream | M::IncompleteFieldData { .. } => DicomWebError::BadRequest(
            "the multipart body is truncated (no closing boundary)".into(),
        ),
        M::IncompleteHeaders
        | M::ReadHeaderFailed(_)
        | M::DecodeHeaderName { .. }
        | M::DecodeHeaderValue { .. } => {
            DicomWebError::BadRequest("a part of the multipart body has malformed headers".into())
        }
        _ => DicomWebError::BadRequest("malformed multipart body".into()),
    }
}

/// Is a part's Content-Type one we ingest? A missing one is taken as
/// `application/dicom` (the request's `type`).
fn is_dicom_part(headers: &poem::http::HeaderMap) -> bool {
    match headers.get(header::CONTENT_TYPE) {
        None => true,
        Some(v) => v
            .to_str()
            .map(|s| parse_media_type(s).is_some_and(|m| m.essence == APPLICATION_DICOM))
            .unwrap_or(false),
    }
}

/// Receive phase: stream every part into the spool and start preparing each complete
/// one. Any error drops what was received.
async fn receive(
    body: Body,
    boundary: &str,
    limit: u64,
    ingestor: &Ingestor,
    ctx: &IngestContext,
) -> WebResult<Parts> {
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(limit));
    let mut multipart =
        multer::Multipart::with_constraints(body.into_bytes_stream(), boundary, constraints);
    let spool = ingestor.spool();
    // Parts parsed at once (the rest wait, already spooled).
    let preparing = std::sync::Arc::new(tokio::sync::Semaphore::new(INGEST_CONCURRENCY));
    let mut parts = Parts::default();
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(e, limit))?
    {
        let mut writer = None;
        let mut rejected = None;
        if is_dicom_part(field.headers()) {
            match spool.create().await {
                Ok(w) => writer = Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "STOW-RS: spool unavailable");
                    rejected = Some(failure_reason::OUT_OF_RESOURCES);
                }
            }
        } else {
            rejected = Some(failure_reason::CANNOT_UNDERSTAND);
        }
        // Read the part to its end even when it is not kept.
        while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, limit))? {
            if let Some(w) = writer.as_mut() {
                if let Err(e) = w.write(&chunk).await {
                    tracing::warn!(error = %e, "STOW-RS: spool write failed");
                    writer = None;
                    rejected = Some(failure_reason::OUT_OF_RESOURCES);
                }
            }
        }
        let part = match (writer, rejected) {
            (Some(w), None) => match w.finish().await {
                Ok(file) => {
                    let (ingestor, ctx) = (ingestor.clone(), ctx.clone());
                    let preparing = preparing.clone();
                    Received::Preparing(tokio::spawn(async move {
                        let _slot = preparing.acquire_owned().await;
                        let meta_id = identify_from_meta(&file);
                        (meta_id, ingestor.prepare(file, ctx).await)
                    }))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "STOW-RS: spool write failed");
                    Received::Rejected(failure_reason::OUT_OF_RESOURCES)
                }
            },
            (_, reason) => Received::Rejected(reason.unwrap_or(failure_reason::OUT_OF_RESOURCES)),
        };
        parts.0.push(part);
    }
    if parts.len() == 0 {
        return Err(DicomWebError::BadRequest(
            "the multipart body has no parts".into(),
        ));
    }
    Ok(parts)
}

/// The UIDs of a part, as far as they can be read.
#[derive(Debug, Default, Clone)]
struct Identity {
    sop_class: Option<String>,
    sop_instance: Option<String>,
    study: Option<String>,
    series: Option<String>,
}

/// A UID value trimmed of padding, kept only when well-formed: whatever else a part
/// carries there is never echoed back.
fn valid_uid(s: &str) -> Option<String> {
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    crate::ingest::uid::check_uid(s).ok().map(|_| s.to_string())
}

/// SOP Class and Instance UID from the file meta group alone (read from the first
/// bytes of the part).
fn identify_from_meta(file: &SpoolFile) -> Option<Identity> {
    /// The Part 10 preamble before `DICM`.
    const PREAMBLE_LEN: usize = 128;
    /// Enough for any reasonable file meta group.
    const META_HEAD: usize = 16 << 10;
    let head = file.head(META_HEAD).ok()?;
    let at = if head.starts_with(b"DICM") {
        0
    } else {
        PREAMBLE_LEN.min(head.len())
    };
    let meta = dicom_object::meta::FileMetaTable::from_reader(&head[at..]).ok()?;
    Some(Identity {
        sop_class: valid_uid(meta.media_storage_sop_class_uid()),
        sop_instance: valid_uid(meta.media_storage_sop_instance_uid()),
        study: None,
        series: None,
    })
}

/// What happened to one part.
enum Outcome {
    Stored { id: Identity, duplicate: bool },
    Failed { id: Identity, reason: u16 },
}

/// Commit phase for one part: wait for its preparation, then store it.
async fn commit_part(ingestor: &Ingestor, part: Received) -> Outcome {
    let task = match part {
        Received::Preparing(task) => task,
        Received::Rejected(reason) => {
            return Outcome::Failed {
                id: Identity::default(),
                reason,
            }
        }
    };
    let (meta_id, prepared) = match task.await {
        Ok(r) => r,
        Err(e) => (None, Err(IngestError::Io(e.to_string()))),
    };
    match prepared.map(|p| ingestor.commit(p)) {
        Ok(commit) => match commit.await {
            Ok((stored, id)) => Outcome::Stored {
                id: Identity {
                    sop_class: Some(id.sop_class_uid),
                    sop_instance: Some(id.sop_instance_uid),
                    study: Some(id.study_instance_uid),
                    series: Some(id.series_instance_uid),
                },
                duplicate: stored == Stored::Duplicate,
            },
            Err(e) => failed(meta_id, &e),
        },
        Err(e) => failed(meta_id, &e),
    }
}

/// The outcome of a part the ingest path did not store, named by its file meta.
fn failed(meta_id: Option<Identity>, e: &IngestError) -> Outcome {
    if e.is_rejection() {
        tracing::debug!(code = e.code(), "STOW-RS part rejected");
    } else {
        tracing::warn!(code = e.code(), "STOW-RS part failed");
    }
    Outcome::Failed {
        id: meta_id.unwrap_or_default(),
        reason: failure_reason_for(e),
    }
}

/// Counts over a request's outcomes.
struct Summary {
    stored: usize,
    duplicates: usize,
    failed: usize,
}

impl Summary {
    fn of(outcomes: &[Outcome]) -> Self {
        let mut s = Summary {
            stored: 0,
            duplicates: 0,
            failed: 0,
        };
        for o in outcomes {
            match o {
                Outcome::Stored { duplicate, .. } => {
                    s.stored += 1;
                    s.duplicates += usize::from(*duplicate);
                }
                Outcome::Failed { .. } => s.failed += 1,
            }
        }
        s
    }

    /// PS3.18 §10.5.3.1: 200 all stored, 202 some failed, 409 all failed.
    fn status(&self) -> StatusCode {
        match (self.stored, self.failed) {
            (_, 0) => StatusCode::OK,
            (0, _) => StatusCode::CONFLICT,
            _ => StatusCode::ACCEPTED,
        }
    }
}

fn text(tag: Tag, vr: VR, value: &str) -> InMemElement {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

/// The response data set (PS3.18 §10.5.3, Table 10.5.3-1).
fn response_dataset(base: &str, study: Option<&str>, outcomes: &[Outcome]) -> InMemDicomObject {
    let mut referenced = Vec::new();
    let mut failed = Vec::new();
    let mut studies: Vec<&str> = Vec::new();
    for o in outcomes {
        match o {
            Outcome::Stored { id, .. } => {
                let mut item = InMemDicomObject::new_empty();
                if let Some(c) = &id.sop_class {
                    item.put(text(tags::REFERENCED_SOP_CLASS_UID, VR::UI, c));
                }
                if let Some(i) = &id.sop_instance {
                    item.put(text(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, i));
                }
                if let (Some(s), Some(e), Some(i)) = (&id.study, &id.series, &id.sop_instance) {
                    let url = format!("{base}/studies/{s}/series/{e}/instances/{i}");
                    item.put(text(tags::RETRIEVE_URL, VR::UR, &url));
                }
                if let Some(s) = id.study.as_deref() {
                    if !studies.contains(&s) {
                        studies.push(s);
                    }
                }
                referenced.push(item);
            }
            Outcome::Failed { id, reason } => {
                let mut item = InMemDicomObject::new_empty();
                if let Some(c) = &id.sop_class {
                    item.put(text(tags::REFERENCED_SOP_CLASS_UID, VR::UI, c));
                }
                if let Some(i) = &id.sop_instance {
                    item.put(text(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, i));
                }
                item.put(DataElement::new(
                    tags::FAILURE_REASON,
                    VR::US,
                    PrimitiveValue::from(*reason),
                ));
                failed.push(item);
            }
        }
    }
    let mut out = InMemDicomObject::new_empty();
    // The study's URL when the request named it, or when everything stored is of one
    // study.
    let study_url = study.or(match studies.as_slice() {
        [only] => Some(*only),
        _ => None,
    });
    if let Some(s) = study_url {
        out.put(text(
            tags::RETRIEVE_URL,
            VR::UR,
            &format!("{base}/studies/{s}"),
        ));
    }
    if !failed.is_empty() {
        out.put(DataElement::new(
            tags::FAILED_SOP_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(failed),
        ));
    }
    if !referenced.is_empty() {
        out.put(DataElement::new(
            tags::REFERENCED_SOP_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(referenced),
        ));
    }
    out
}

#[cfg(test)]
#[path = "stow_tests.rs"]
mod tests;
