//! Parsing and validating a spooled Part 10 object into an `InstanceRecord`.
//!
//! Synchronous (call from `spawn_blocking`). The whole object is checked (parsed, or
//! its header parsed and its structure walked), so a truncated or structurally broken
//! data set is caught here, before anything is stored.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions};

use super::layout::{self, FrameInfo, LastElement, LayoutError};
use super::spool::SpoolFile;
use super::structure;
use super::uid::check_uid;
use super::{IngestContext, IngestError};
use crate::db::InstanceRecord;
use crate::dicom_json;

/// Parse a spooled object and validate it against `ctx`; precompute the DICOMweb
/// metadata and the byte layout of large values (values over `bulk_threshold` bytes
/// become BulkDataURIs).
///
/// An object held in memory whose last element is its pixel data is parsed only up
/// to the pixel data: the structural walk that computes the layout already proves
/// that every value, the pixel data's included, lies inside the object, so the pixel
/// bytes are neither decoded nor copied. Anything else (and any doubt) takes the full
/// parse, [`parse_and_validate_full`], which gives the same record. Before either, the
/// object's structure is checked (`structure::check_structure_bytes`), so a value whose
/// declared length runs past the end of the object is refused before the parser would
/// allocate it.
pub fn parse_and_validate(
    file: &SpoolFile,
    ctx: &IngestContext,
    bulk_threshold: u64,
) -> Result<InstanceRecord, IngestError> {
    // Structure first: the parser allocates every value at its declared length, so a
    // small object declaring a huge value must not reach it.
    let checked = match (file.bytes(), file.path()) {
        (Some(bytes), _) => structure::check_structure_bytes(bytes),
        (None, Some(path)) => structure::check_structure_file(path),
        (None, None) => return Err(IngestError::Io("spool object already consumed".into())),
    };
    match checked {
        Ok(()) | Err(LayoutError::Deflated) => {}
        Err(LayoutError::Malformed(at)) => {
            return Err(IngestError::Unreadable(format!(
                "malformed data set: the element at byte {at} does not fit in the object \
                 (truncated or corrupt)"
            )))
        }
        Err(LayoutError::Io(e)) => return Err(IngestError::Io(e.to_string())),
    }
    if let Some(bytes) = file.bytes() {
        if let Some(rec) = parse_before_pixels(bytes, ctx, bulk_threshold)? {
            return Ok(rec);
        }
    }
    parse_and_validate_full(file, ctx, bulk_threshold)
}

/// [`parse_and_validate`] by parsing the whole object (the reference behaviour).
pub fn parse_and_validate_full(
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
    rec.metadata = Some(metadata_json(&rec, &obj, bulk_threshold));
    let info = frame_info(&obj);
    let scanned = match (file.bytes(), file.path()) {
        (Some(bytes), _) => layout::scan_bytes(bytes, bulk_threshold, info).map(|(l, _)| l),
        (None, Some(path)) => layout::scan(path, bulk_threshold, info),
        (None, None) => return Ok(rec),
    };
    match scanned {
        Ok(l) => rec.layout = serde_json::to_string(&l).ok(),
        Err(e) => tracing::debug!(error = %e, "no byte layout for this object"),
    }
    Ok(rec)
}

/// The header-only parse of [`parse_and_validate`] for an object held in memory;
/// `Ok(None)` when it does not apply (take the full parse). Call it only on bytes
/// that passed `structure::check_structure_bytes` (as `parse_and_validate` does).
pub fn parse_before_pixels(
    bytes: &[u8],
    ctx: &IngestContext,
    threshold: u64,
) -> Result<Option<InstanceRecord>, IngestError> {
    let Ok(obj) = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .from_reader(bytes)
    else {
        return Ok(None);
    };
    let Ok((layout, Some(last))) = layout::scan_bytes(bytes, threshold, frame_info(&obj)) else {
        return Ok(None);
    };
    // Pixel data last, with an explicit VR (the JSON names it) and a value, and every
    // element before it parsed (not so when elements are out of order or repeated).
    if obj.iter().count() != last.index {
        return Ok(None);
    }
    let pixel_vr = match last {
        LastElement {
            tag: PIXEL_DATA,
            vr: Some(_),
            length: None,
            ..
        } => "OB",
        LastElement {
            tag: PIXEL_DATA,
            vr: Some(ref vr),
            length: Some(n),
            ..
        } if n > 0 && matches!(vr, b"OB" | b"OW") => std::str::from_utf8(vr).unwrap_or("OB"),
        _ => return Ok(None),
    };
    let mut rec = record_from_object(&obj, bytes.len() as i64, ctx)?;
    let mut json = metadata_json(&rec, &obj, threshold);
    // The object holds at least the four UIDs, so the JSON is `{…}` with members.
    if json.len() > 2 && json.ends_with('}') {
        json.pop();
        let path = instance_path(&rec);
        json.push_str(&format!(
            ",\"7FE00010\":{{\"vr\":\"{pixel_vr}\",\"BulkDataURI\":\"{}\"}}}}",
            dicom_json::bulk_uri(&path, tags::PIXEL_DATA)
        ));
    } else {
        return Ok(None);
    }
    rec.metadata = Some(json);
    rec.layout = serde_json::to_string(&layout).ok();
    Ok(Some(rec))
}

const PIXEL_DATA: u32 = 0x7FE0_0010;

/// The DICOMweb path of an instance (BulkDataURIs are relative to it).
fn instance_path(rec: &InstanceRecord) -> String {
    format!(
        "/studies/{}/series/{}/instances/{}",
        rec.study_instance_uid, rec.series_instance_uid, rec.sop_instance_uid
    )
}

/// WADO-RS metadata of an accepted object.
fn metadata_json(rec: &InstanceRecord, obj: &DefaultDicomObject, threshold: u64) -> String {
    let instance_path = instance_path(rec);
    let mut json = String::with_capacity(4096);
    dicom_json::write_dataset(
        &mut json,
        obj,
        &dicom_json::JsonOptions {
            bulk_threshold: threshold,
            instance_path: Some(&instance_path),
        },
    );
    json
}

/// The image attributes the frame split of the layout needs.
fn frame_info(obj: &DefaultDicomObject) -> FrameInfo {
    FrameInfo {
        rows: int(obj, tags::ROWS).unwrap_or(0).max(0) as u32,
        columns: int(obj, tags::COLUMNS).unwrap_or(0).max(0) as u32,
        samples_per_pixel: int(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1).max(1) as u32,
        bits_allocated: int(obj, tags::BITS_ALLOCATED).unwrap_or(0).max(0) as u32,
        number_of_frames: int(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) as u32,
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
