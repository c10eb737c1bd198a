//! Synthetic MR instances for tests (small, deterministic pixel data).

use std::path::Path;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{FileDicomObject, InMemDicomObject};
use dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN;

/// A fresh UID under the UUID-derived root.
pub fn new_uid() -> String {
    format!("2.25.{}", uuid::Uuid::new_v4().as_u128())
}

/// Identity of one generated instance.
#[derive(Debug, Clone)]
pub struct Ids {
    pub patient_id: String,
    pub patient_name: String,
    pub study: String,
    pub series: String,
    pub sop: String,
}

impl Ids {
    pub fn new(patient: &str) -> Self {
        Self {
            patient_id: patient.to_string(),
            patient_name: format!("TEST^{patient}"),
            study: new_uid(),
            series: new_uid(),
            sop: new_uid(),
        }
    }
    pub fn next_instance(&self) -> Self {
        Self {
            sop: new_uid(),
            ..self.clone()
        }
    }
    pub fn next_series(&self) -> Self {
        Self {
            series: new_uid(),
            sop: new_uid(),
            ..self.clone()
        }
    }
}

fn s(tag: dicom_core::Tag, vr: VR, v: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(v))
}

/// An MR Image Storage data set with `rows`×`cols` 16-bit pixels.
pub fn mr_dataset(ids: &Ids, number: i32, rows: u16, cols: u16) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    obj.put(s(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"));
    obj.put(s(tags::SOP_CLASS_UID, VR::UI, uids::MR_IMAGE_STORAGE));
    obj.put(s(tags::SOP_INSTANCE_UID, VR::UI, &ids.sop));
    obj.put(s(tags::STUDY_DATE, VR::DA, "20261122"));
    obj.put(s(tags::STUDY_TIME, VR::TM, "101500"));
    obj.put(s(tags::ACCESSION_NUMBER, VR::SH, "ACC001"));
    obj.put(s(tags::MODALITY, VR::CS, "MR"));
    obj.put(s(tags::REFERRING_PHYSICIAN_NAME, VR::PN, "Ref^Doctor"));
    obj.put(s(tags::STUDY_DESCRIPTION, VR::LO, "BRAIN MRI"));
    obj.put(s(tags::SERIES_DESCRIPTION, VR::LO, "T1"));
    obj.put(s(tags::PATIENT_NAME, VR::PN, &ids.patient_name));
    obj.put(s(tags::PATIENT_ID, VR::LO, &ids.patient_id));
    obj.put(s(tags::PATIENT_BIRTH_DATE, VR::DA, "19700101"));
    obj.put(s(tags::PATIENT_SEX, VR::CS, "O"));
    obj.put(s(tags::STUDY_INSTANCE_UID, VR::UI, &ids.study));
    obj.put(s(tags::SERIES_INSTANCE_UID, VR::UI, &ids.series));
    obj.put(s(tags::STUDY_ID, VR::SH, "1"));
    obj.put(s(tags::SERIES_NUMBER, VR::IS, "1"));
    obj.put(s(tags::INSTANCE_NUMBER, VR::IS, &number.to_string()));
    obj.put(DataElement::new(
        tags::SAMPLES_PER_PIXEL,
        VR::US,
        PrimitiveValue::from(1u16),
    ));
    obj.put(s(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"));
    obj.put(DataElement::new(
        tags::ROWS,
        VR::US,
        PrimitiveValue::from(rows),
    ));
    obj.put(DataElement::new(
        tags::COLUMNS,
        VR::US,
        PrimitiveValue::from(cols),
    ));
    obj.put(DataElement::new(
        tags::BITS_ALLOCATED,
        VR::US,
        PrimitiveValue::from(16u16),
    ));
    obj.put(DataElement::new(
        tags::BITS_STORED,
        VR::US,
        PrimitiveValue::from(12u16),
    ));
    obj.put(DataElement::new(
        tags::HIGH_BIT,
        VR::US,
        PrimitiveValue::from(11u16),
    ));
    obj.put(DataElement::new(
        tags::PIXEL_REPRESENTATION,
        VR::US,
        PrimitiveValue::from(0u16),
    ));
    let pixels: Vec<u16> = (0..rows as u32 * cols as u32)
        .map(|i| ((i * 7 + number as u32 * 13) % 4096) as u16)
        .collect();
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(pixels.into()),
    ));
    obj
}

/// The data set encoded in explicit VR little endian (what an SCU sends).
pub fn encode_explicit_le(obj: &InMemDicomObject) -> Vec<u8> {
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, &EXPLICIT_VR_LITTLE_ENDIAN.erased())
        .unwrap();
    out
}

/// Wrap as a Part 10 file object.
pub fn as_file(obj: InMemDicomObject) -> FileDicomObject<InMemDicomObject> {
    let sop_class = obj
        .element(tags::SOP_CLASS_UID)
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
    obj.with_exact_meta(
        FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(sop_class)
            .media_storage_sop_instance_uid(sop)
            .transfer_syntax(EXPLICIT_VR_LITTLE_ENDIAN.uid())
            .implementation_class_uid("2.25.1")
            .build()
            .unwrap(),
    )
}

/// Write a series of `n` instances as Part 10 files into `dir`; returns their ids.
pub fn write_series(dir: &Path, ids: &Ids, n: usize, rows: u16, cols: u16) -> Vec<Ids> {
    std::fs::create_dir_all(dir).unwrap();
    let mut out = Vec::new();
    let mut cur = ids.clone();
    for i in 0..n {
        let obj = mr_dataset(&cur, i as i32 + 1, rows, cols);
        as_file(obj)
            .write_to_file(dir.join(format!("{}.dcm", cur.sop)))
            .unwrap();
        out.push(cur.clone());
        cur = cur.next_instance();
    }
    out
}

/// An MR data set with some attributes replaced (`(tag, vr, value)`).
pub fn mr_dataset_with(
    ids: &Ids,
    number: i32,
    edits: &[(dicom_core::Tag, VR, &str)],
) -> InMemDicomObject {
    let mut obj = mr_dataset(ids, number, 8, 8);
    for (tag, vr, v) in edits {
        obj.put(s(*tag, *vr, v));
    }
    obj
}

/// A query identifier: level plus `(tag, vr, value)` keys.
pub fn identifier(level: &str, keys: &[(dicom_core::Tag, VR, &str)]) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    obj.put(s(tags::QUERY_RETRIEVE_LEVEL, VR::CS, level));
    for (tag, vr, v) in keys {
        if v.is_empty() {
            obj.put(DataElement::empty(*tag, *vr));
        } else {
            obj.put(s(*tag, *vr, v));
        }
    }
    obj
}

/// Replace the pixel data of `obj` with `frames` frames of `rows`×`cols` 16-bit values
/// `f(frame, row, col)` (and Rows, Columns, Number of Frames when more than one).
pub fn set_pixels(
    obj: &mut InMemDicomObject,
    rows: u16,
    cols: u16,
    frames: u32,
    f: impl Fn(u32, u32, u32) -> u16,
) {
    let mut pixels = Vec::with_capacity(frames as usize * rows as usize * cols as usize);
    for k in 0..frames {
        for r in 0..rows as u32 {
            for c in 0..cols as u32 {
                pixels.push(f(k, r, c));
            }
        }
    }
    obj.put(DataElement::new(
        tags::ROWS,
        VR::US,
        PrimitiveValue::from(rows),
    ));
    obj.put(DataElement::new(
        tags::COLUMNS,
        VR::US,
        PrimitiveValue::from(cols),
    ));
    if frames > 1 {
        obj.put(s(tags::NUMBER_OF_FRAMES, VR::IS, &frames.to_string()));
    }
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(pixels.into()),
    ));
}

/// Replace (or add) one text attribute.
pub fn set_str(obj: &mut InMemDicomObject, tag: dicom_core::Tag, vr: VR, v: &str) {
    obj.put(s(tag, vr, v));
}
