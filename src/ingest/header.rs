//! Parsing and validating a spooled Part 10 object into an `InstanceRecord`.
//!
//! Synchronous (call from `spawn_blocking`). The whole object is parsed, so a
//! truncated or structurally broken data set is caught here, before anything is stored.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions};

use super::layout::{self, FrameInfo};
use super::spool::SpoolFile;
use super::uid::check_uid;
use super::{IngestContext, IngestError};
use crate::db::InstanceRecord;
use crate::dicom_json;

/// Parse a spooled object and validate it against `ctx`; precompute the DICOMweb
/// metadata and the byte layout of large values (values over `bulk_threshold` bytes
/// become BulkDataURIs).
pub fn parse_and_validate(
    file: &SpoolFile,
    ctx: &IngestContext,
    bulk_threshold: u64,
) -> Result<InstanceRecord, IngestError> {
    let size = file.len().map_err(|e| IngestError::Io(e.to_string()))?;
    let unreadable = |e: dicom_object::ReadError| IngestError::Unreadable(short(&e.to_string()));
    let obj = match (file.bytes(), file.path()) {
        (Some(bytes), _) => OpenFileOptions::new()
            .from_reader(&bytes[..])
            .map_err(unreadable)?,
        (None, Some(path)) => OpenFileOptions::new().open_file(path).map_err(unreadable)?,
        (None, None) => return Err(IngestError::Io("spool object already consumed".into())),
    };
    let mut rec = record_from_object(&obj, size as i64, ctx)?;
    precompute_web(&mut rec, &obj, file, bulk_threshold);
    Ok(rec)
}

/// WADO-RS metadata and layout of an accepted object. A layout that cannot be
/// computed (deflated data set) is left out: such objects are served by parsing.
fn precompute_web(
    rec: &mut InstanceRecord,
    obj: &DefaultDicomObject,
    file: &SpoolFile,
    threshold: u64,
) {
    let instance_path = format!(
        "/studies/{}/series/{}/instances/{}",
        rec.study_instance_uid, rec.series_instance_uid, rec.sop_instance_uid
    );
    let mut json = String::with_capacity(4096);
    dicom_json::write_dataset(
        &mut json,
        obj,
        &dicom_json::JsonOptions {
            bulk_threshold: threshold,
            instance_path: Some(&instance_path),
        },
    );
    rec.metadata = Some(json);
    let info = FrameInfo {
        rows: int(obj, tags::ROWS).unwrap_or(0).max(0) as u32,
        columns: int(obj, tags::COLUMNS).unwrap_or(0).max(0) as u32,
        samples_per_pixel: int(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1).max(1) as u32,
        bits_allocated: int(obj, tags::BITS_ALLOCATED).unwrap_or(0).max(0) as u32,
        number_of_frames: int(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) as u32,
    };
    let scanned = match (file.bytes(), file.path()) {
        (Some(bytes), _) => layout::scan_bytes(bytes, threshold, info),
        (None, Some(path)) => layout::scan(path, threshold, info),
        (None, None) => return,
    };
    match scanned {
        Ok(l) => rec.layout = serde_json::to_string(&l).ok(),
        Err(e) => tracing::debug!(error = %e, "no byte layout for this object"),
    }
}

fn short(s: &str) -> String {
    // Parser messages name tags and offsets, never values; keep them brief.
    s.lines().next().unwrap_or("").chars().take(200).collect()
}

/// A trimmed text value, `None` when absent or empty.
fn text(obj: &DefaultDicomObject, tag: Tag) -> Option<String> {
    let el = obj.get(tag)?;
    let s = el.to_str().ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    (!s.is_empty()).then(|| s.to_string())
}

/// A TM value padded to at least `HHMMSS` (`10` → `100000`, `1030` → `103000`), so
/// that string comparison in the index orders times correctly. Invalid values are
/// kept as they are.
fn time(obj: &DefaultDicomObject, tag: Tag) -> Option<String> {
    let t = text(obj, tag)?;
    let main = t.split('.').next().unwrap_or("");
    if matches!(main.len(), 2 | 4) && main.bytes().all(|b| b.is_ascii_digit()) && !t.contains('.') {
        Some(format!("{t:0<6}"))
    } else {
        Some(t)
    }
}

fn int(obj: &DefaultDicomObject, tag: Tag) -> Option<i32> {
    let el = obj.get(tag)?;
    el.to_int::<i32>().ok()
}

fn required_uid(
    obj: &DefaultDicomObject,
    tag: Tag,
    name: &'static str,
) -> Result<String, IngestError> {
    let uid = text(obj, tag).ok_or(IngestError::MissingAttribute(name))?;
    check_uid(&uid).map_err(|problem| IngestError::InvalidUid { name, problem })?;
    Ok(uid)
}

/// Build the index record and check the object's identity against the request.
pub fn record_from_object(
    obj: &DefaultDicomObject,
    size_bytes: i64,
    ctx: &IngestContext,
) -> Result<InstanceRecord, IngestError> {
    let sop_class_uid = required_uid(obj, tags::SOP_CLASS_UID, "SOP Class UID")?;
    let sop_instance_uid = required_uid(obj, tags::SOP_INSTANCE_UID, "SOP Instance UID")?;
    let study_instance_uid = required_uid(obj, tags::STUDY_INSTANCE_UID, "Study Instance UID")?;
    let series_instance_uid = required_uid(obj, tags::SERIES_INSTANCE_UID, "Series Instance UID")?;

    if let Some(expected) = ctx.expected_sop_class_uid.as_deref() {
        if expected != sop_class_uid {
            return Err(IngestError::SopClassMismatch {
                expected: expected.to_string(),
                found: sop_class_uid,
            });
        }
    }
    if let Some(expected) = ctx.expected_sop_instance_uid.as_deref() {
        if expected != sop_instance_uid {
            return Err(IngestError::SopInstanceMismatch);
        }
    }
    if let Some(expected) = ctx.expected_study_instance_uid.as_deref() {
        if expected != study_instance_uid {
            return Err(IngestError::StudyMismatch);
        }
    }
    let meta = obj.meta();
    let meta_class = meta.media_storage_sop_class_uid().trim_end_matches('\0');
    let meta_instance = meta.media_storage_sop_instance_uid().trim_end_matches('\0');
    if meta_class != sop_class_uid || meta_instance != sop_instance_uid {
        return Err(IngestError::MetaMismatch);
    }
    let transfer_syntax_uid = meta.transfer_syntax().trim_end_matches('\0').to_string();

    Ok(InstanceRecord {
        patient_id: text(obj, tags::PATIENT_ID).unwrap_or_default(),
        issuer_of_patient_id: text(obj, tags::ISSUER_OF_PATIENT_ID).unwrap_or_default(),
        patient_name: text(obj, tags::PATIENT_NAME),
        patient_birth_date: text(obj, tags::PATIENT_BIRTH_DATE),
        patient_sex: text(obj, tags::PATIENT_SEX),
        study_instance_uid,
        study_date: text(obj, tags::STUDY_DATE),
        study_time: time(obj, tags::STUDY_TIME),
        accession_number: text(obj, tags::ACCESSION_NUMBER),
        study_id: text(obj, tags::STUDY_ID),
        referring_physician_name: text(obj, tags::REFERRING_PHYSICIAN_NAME),
        study_description: text(obj, tags::STUDY_DESCRIPTION),
        institution_name: text(obj, tags::INSTITUTION_NAME),
        specific_character_set: text(obj, tags::SPECIFIC_CHARACTER_SET),
        series_instance_uid,
        modality: text(obj, tags::MODALITY),
        series_number: int(obj, tags::SERIES_NUMBER),
        series_description: text(obj, tags::SERIES_DESCRIPTION),
        body_part_examined: text(obj, tags::BODY_PART_EXAMINED),
        protocol_name: text(obj, tags::PROTOCOL_NAME),
        series_date: text(obj, tags::SERIES_DATE),
        series_time: time(obj, tags::SERIES_TIME),
        performed_procedure_step_start_date: text(obj, tags::PERFORMED_PROCEDURE_STEP_START_DATE),
        frame_of_reference_uid: text(obj, tags::FRAME_OF_REFERENCE_UID),
        laterality: text(obj, tags::LATERALITY),
        manufacturer: text(obj, tags::MANUFACTURER),
        station_name: text(obj, tags::STATION_NAME),
        sop_instance_uid,
        sop_class_uid,
        instance_number: int(obj, tags::INSTANCE_NUMBER),
        content_date: text(obj, tags::CONTENT_DATE),
        content_time: time(obj, tags::CONTENT_TIME),
        rows: int(obj, tags::ROWS),
        columns: int(obj, tags::COLUMNS),
        number_of_frames: int(obj, tags::NUMBER_OF_FRAMES),
        bits_allocated: int(obj, tags::BITS_ALLOCATED),
        photometric_interpretation: text(obj, tags::PHOTOMETRIC_INTERPRETATION),
        transfer_syntax_uid,
        size_bytes,
        source_ae: ctx.source_ae.clone(),
        centre_id: ctx.centre_id,
        metadata: None,
        layout: None,
        sequence_items: crate::query::sequence::extract(obj),
    })
}
