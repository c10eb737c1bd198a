//! Small DICOM helpers shared by the DICOM-facing AI modules ([`super::synth`],
//! [`super::select`], [`super::assemble`], [`super::seg`]): the four MR input
//! channels, UID generation, typed element writers and readers on
//! `InMemDicomObject`, and Part 10 (explicit VR little endian) encoding and parsing.

use std::fmt;

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{FileDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN;
use serde::{Deserialize, Serialize};

use super::AiError;

/// MR Image Storage.
pub const MR_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.4";
/// Enhanced MR Image Storage (multi-frame, functional groups).
pub const ENHANCED_MR_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.4.1";
/// Segmentation Storage.
pub const SEGMENTATION_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.66.4";
/// Glia's implementation class UID (written in every file meta header it makes).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.302613818143498516853196429127532436231";

/// One of the four MR inputs of the segmentation model. The discriminant is
/// the channel index in [`super::Volume4`] (the engine's order T1ce, T1, T2, FLAIR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Contrast-enhanced T1-weighted.
    T1ce = 0,
    /// Native T1-weighted.
    T1 = 1,
    /// T2-weighted.
    T2 = 2,
    /// T2-weighted FLAIR.
    Flair = 3,
}

impl Channel {
    /// All four, in engine channel order.
    pub const ALL: [Channel; 4] = [Channel::T1ce, Channel::T1, Channel::T2, Channel::Flair];

    /// Channel index in the model input.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Channel::T1ce => "T1ce",
            Channel::T1 => "T1",
            Channel::T2 => "T2",
            Channel::Flair => "FLAIR",
        })
    }
}

/// A fresh UID `2.25.<random UUID as integer>` (PS3.5 B.2).
pub fn new_uid() -> String {
    format!("2.25.{}", uuid::Uuid::new_v4().as_u128())
}

/// A deterministic `2.25.` UID from a seed and a label (for reproducible sample data).
pub fn seeded_uid(seed: u64, label: &str) -> String {
    // FNV-1a over the label, mixed with the seed through two SplitMix64 rounds.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in label.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    let mut rng = super::phantom::Rng::new(seed ^ h.rotate_left(17));
    let hi = rng.next_u64() as u128;
    let lo = rng.next_u64() as u128;
    // Clear the top bits so the integer stays well within 39 digits.
    format!("2.25.{}", ((hi << 64) | lo) >> 2)
}

/// Formats a DS value in at most 16 characters.
pub fn ds(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return "0".into();
    }
    let shortest = format!("{v}");
    if shortest.len() <= 16 && !shortest.contains('e') {
        return shortest;
    }
    for prec in (0..=10).rev() {
        let mut s = format!("{v:.prec$}");
        if s.contains('.') {
            while s.ends_with('0') {
                s.pop();
            }
            if s.ends_with('.') {
                s.pop();
            }
        }
        if s == "-0" {
            s = "0".into();
        }
        if s.len() <= 16 {
            return s;
        }
    }
    format!("{v:.6e}")
}

/// Puts a single- or multi-valued string element (values joined with `\`).
pub fn put_str(obj: &mut InMemDicomObject, tag: Tag, vr: VR, v: &str) {
    if v.contains('\\') {
        let parts: Vec<String> = v.split('\\').map(str::to_string).collect();
        obj.put(DataElement::new(
            tag,
            vr,
            PrimitiveValue::Strs(parts.into()),
        ));
    } else {
        obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
    }
}

/// Puts an empty (zero-length) element, for type 2 attributes.
pub fn put_empty(obj: &mut InMemDicomObject, tag: Tag, vr: VR) {
    obj.put(DataElement::empty(tag, vr));
}

/// Puts a DS element with one or more values.
pub fn put_ds(obj: &mut InMemDicomObject, tag: Tag, vals: &[f64]) {
    let parts: Vec<String> = vals.iter().map(|&v| ds(v)).collect();
    obj.put(DataElement::new(
        tag,
        VR::DS,
        PrimitiveValue::Strs(parts.into()),
    ));
}

/// Puts a US element with one or more values.
pub fn put_us(obj: &mut InMemDicomObject, tag: Tag, vals: &[u16]) {
    obj.put(DataElement::new(
        tag,
        VR::US,
        PrimitiveValue::U16(vals.iter().copied().collect()),
    ));
}

/// Puts a UL element with one or more values.
pub fn put_ul(obj: &mut InMemDicomObject, tag: Tag, vals: &[u32]) {
    obj.put(DataElement::new(
        tag,
        VR::UL,
        PrimitiveValue::U32(vals.iter().copied().collect()),
    ));
}

/// Puts a sequence element.
pub fn put_seq(obj: &mut InMemDicomObject, tag: Tag, items: Vec<InMemDicomObject>) {
    obj.put(DataElement::new(tag, VR::SQ, DataSetSequence::from(items)));
}

/// A data set built from elements.
pub fn item(elements: Vec<DataElement<InMemDicomObject>>) -> InMemDicomObject {
    InMemDicomObject::from_element_iter(elements)
}

/// A coded-entry item (code value, scheme, meaning).
pub fn code_item(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    let mut it = InMemDicomObject::new_empty();
    put_str(&mut it, tags::CODE_VALUE, VR::SH, value);
    put_str(&mut it, tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme);
    put_str(&mut it, tags::CODE_MEANING, VR::LO, meaning);
    it
}

/// A trimmed, non-empty string value.
pub fn get_str(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let e = obj.get(tag)?;
    let s = e.to_str().ok()?;
    let s = s.trim_matches(|c: char| c == ' ' || c == '\0').to_string();
    (!s.is_empty()).then_some(s)
}

/// All numeric values of an element (DS, IS, FD, US, ...).
pub fn get_f64s(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<f64>> {
    let e = obj.get(tag)?;
    let v = e.to_multi_float64().ok()?;
    (!v.is_empty() && v.iter().all(|x| x.is_finite())).then_some(v)
}

/// The first numeric value of an element.
pub fn get_f64(obj: &InMemDicomObject, tag: Tag) -> Option<f64> {
    get_f64s(obj, tag).map(|v| v[0])
}

/// The first value of an integer element (IS, US, UL ...).
pub fn get_int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    get_f64(obj, tag).map(|v| v.round() as i64)
}

/// The items of a sequence element (empty when absent).
pub fn get_items(obj: &InMemDicomObject, tag: Tag) -> &[InMemDicomObject] {
    obj.get(tag).and_then(|e| e.items()).unwrap_or(&[])
}

/// Wraps a data set as a Part 10 object in explicit VR little endian.
pub fn to_file_object(obj: InMemDicomObject) -> Result<FileDicomObject<InMemDicomObject>, AiError> {
    let class = get_str(&obj, tags::SOP_CLASS_UID)
        .ok_or_else(|| AiError::Input("data set without SOPClassUID".into()))?;
    let inst = get_str(&obj, tags::SOP_INSTANCE_UID)
        .ok_or_else(|| AiError::Input("data set without SOPInstanceUID".into()))?;
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(class)
        .media_storage_sop_instance_uid(inst)
        .transfer_syntax(EXPLICIT_VR_LITTLE_ENDIAN.uid())
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name("GLIA")
        .build()
        .map_err(|e| AiError::Input(format!("file meta: {e}")))?;
    Ok(obj.with_exact_meta(meta))
}

/// Encodes a data set as a complete Part 10 file (preamble, meta, explicit VR LE).
pub fn to_part10(obj: InMemDicomObject) -> Result<Vec<u8>, AiError> {
    let file = to_file_object(obj)?;
    let mut out = Vec::new();
    file.write_all(&mut out)
        .map_err(|e| AiError::Input(format!("DICOM encoding failed: {e}")))?;
    Ok(out)
}

/// Parses a Part 10 file held in memory (with or without the 128-byte preamble).
pub fn parse_part10(bytes: &[u8]) -> Result<FileDicomObject<InMemDicomObject>, AiError> {
    let body = if bytes.len() > 132 && &bytes[128..132] == b"DICM" {
        &bytes[128..]
    } else {
        bytes
    };
    OpenFileOptions::new()
        .from_reader(body)
        .map_err(|e| AiError::Input(format!("not a readable DICOM file: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ds_fits_sixteen_chars() {
        assert_eq!(ds(2.0), "2");
        assert_eq!(ds(0.0009765625), "0.0009765625");
        assert_eq!(ds(-0.5), "-0.5");
        let s = ds(-123.456_789_012_345_67);
        assert!(s.len() <= 16 && s.parse::<f64>().unwrap() + 123.456789 < 1e-6);
        assert!(ds(1.0e-12).len() <= 16);
    }

    #[test]
    fn uids_are_valid() {
        for u in [new_uid(), seeded_uid(7, "study"), seeded_uid(u64::MAX, "x")] {
            assert!(u.len() <= 64, "{u}");
            assert!(u.starts_with("2.25.") && u[5..].bytes().all(|b| b.is_ascii_digit()));
            assert!(!u[5..].starts_with('0') || u.len() == 6);
        }
        assert_eq!(seeded_uid(1, "a"), seeded_uid(1, "a"));
        assert_ne!(seeded_uid(1, "a"), seeded_uid(1, "b"));
        assert_ne!(seeded_uid(1, "a"), seeded_uid(2, "a"));
    }
}
