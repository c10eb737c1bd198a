//! The DICOM JSON model (PS3.18 Annex F): data sets and single attributes written as
//! `application/dicom+json`, with large binary values replaced by a BulkDataURI.
//!
//! Written by hand rather than through serde so that the ingest path can precompute an
//! instance's metadata once (WADO-RS metadata then concatenates stored strings) and so
//! that BulkDataURIs can carry a base-URL marker that is resolved per request: a raw
//! [`BASE_MARKER`] byte, which no JSON string produced by an escaper ever contains.

use std::fmt::Write;

use base64::Engine;
use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::mem::InMemElement;
use dicom_object::InMemDicomObject;

/// Stands for the DICOMweb base URL (`http://host:port/dicom-web`) in stored JSON.
pub const BASE_MARKER: char = '\u{1}';

/// How a data set is written.
pub struct JsonOptions<'a> {
    /// Top-level binary values longer than this (bytes) become a BulkDataURI.
    pub bulk_threshold: u64,
    /// Path of the instance under the base URL (`/studies/S/series/E/instances/I`);
    /// `None` writes binary values inline whatever their size (no PixelData).
    pub instance_path: Option<&'a str>,
}

/// Is a VR one whose value is binary (written as InlineBinary or BulkDataURI)?
pub fn is_binary_vr(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB | VR::OW | VR::OF | VR::OD | VR::OL | VR::OV | VR::UN
    )
}

/// Escape `s` as a JSON string (with quotes) onto `out`.
fn string(out: &mut String, s: &str) {
    // serde_json's escaper: correct for every Unicode input.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

fn tag_key(out: &mut String, tag: Tag) {
    let _ = write!(out, "\"{:04X}{:04X}\"", tag.group(), tag.element());
}

/// Write a whole data set as a JSON object (`{"00100010": {...}, ...}`).
pub fn write_dataset(out: &mut String, obj: &InMemDicomObject, opts: &JsonOptions<'_>) {
    write_object(out, obj, opts, true);
}

/// A data set as a JSON string, binary values inline (no BulkDataURIs).
pub fn dataset_to_string(obj: &InMemDicomObject) -> String {
    let mut out = String::new();
    write_dataset(
        &mut out,
        obj,
        &JsonOptions {
            bulk_threshold: u64::MAX,
            instance_path: None,
        },
    );
    out
}

fn write_object(out: &mut String, obj: &InMemDicomObject, opts: &JsonOptions<'_>, top: bool) {
    out.push('{');
    let mut first = true;
    for el in obj.iter() {
        let tag = el.header().tag;
        // Group lengths are retired in data sets (PS3.18 F.2: not included).
        if tag.element() == 0x0000 || tag.group() == 0x0002 {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        tag_key(out, tag);
        out.push(':');
        write_element(out, el, opts, top);
    }
    out.push('}');
}

/// Is this element written as a BulkDataURI under `opts`?
pub fn is_bulk(tag: Tag, vr: VR, len: u64, top: bool, opts: &JsonOptions<'_>) -> bool {
    opts.instance_path.is_some()
        && top
        && (tag == tags::PIXEL_DATA
            || tag == tags::FLOAT_PIXEL_DATA
            || tag == tags::DOUBLE_FLOAT_PIXEL_DATA
            || (is_binary_vr(vr) && len > opts.bulk_threshold))
}

/// The BulkDataURI of a top-level attribute (with the base marker).
pub fn bulk_uri(instance_path: &str, tag: Tag) -> String {
    format!(
        "{BASE_MARKER}{instance_path}/bulkdata/{:04X}{:04X}",
        tag.group(),
        tag.element()
    )
}

fn write_element(out: &mut String, el: &InMemElement, opts: &JsonOptions<'_>, top: bool) {
    let tag = el.header().tag;
    let vr = el.vr();
    let _ = write!(out, "{{\"vr\":\"{}\"", vr.to_string());
    match el.value() {
        Value::Sequence(seq) => {
            if !seq.items().is_empty() {
                out.push_str(",\"Value\":[");
                for (i, item) in seq.items().iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_object(out, item, opts, false);
                }
                out.push(']');
            }
        }
        Value::PixelSequence(_) => {
            // Encapsulated pixel data: only ever by reference.
            if let Some(path) = opts.instance_path.filter(|_| top) {
                out.push_str(",\"BulkDataURI\":\"");
                out.push_str(&bulk_uri(path, tag));
                out.push('"');
            }
        }
        Value::Primitive(p) => {
            let len = p.calculate_byte_len() as u64;
            if is_binary_vr(vr) {
                if len == 0 {
                } else if is_bulk(tag, vr, len, top, opts) {
                    out.push_str(",\"BulkDataURI\":\"");
                    out.push_str(&bulk_uri(opts.instance_path.unwrap_or(""), tag));
                    out.push('"');
                } else {
                    out.push_str(",\"InlineBinary\":\"");
                    out.push_str(&base64::engine::general_purpose::STANDARD.encode(p.to_bytes()));
                    out.push('"');
                }
            } else {
                write_primitive_value(out, vr, p);
            }
        }
    }
    out.push('}');
}

/// `,"Value":[...]` for a non-binary primitive value (nothing when empty).
fn write_primitive_value(out: &mut String, vr: VR, p: &PrimitiveValue) {
    if p.multiplicity() == 0 {
        return;
    }
    let mut items: Vec<String> = Vec::new();
    match (vr, p) {
        (VR::AT, PrimitiveValue::Tags(t)) => {
            for t in t.iter() {
                items.push(format!("\"{:04X}{:04X}\"", t.group(), t.element()));
            }
        }
        (
            VR::US | VR::SS | VR::UL | VR::SL | VR::FL | VR::FD | VR::UV | VR::SV,
            PrimitiveValue::Strs(_) | PrimitiveValue::Str(_),
        )
        | (VR::IS | VR::DS, _) => {
            for s in p.to_multi_str().iter() {
                items.push(number_or_string(s));
            }
        }
        (VR::US | VR::SS | VR::UL | VR::SL | VR::FL | VR::FD | VR::UV | VR::SV, _) => {
            numeric(p, &mut items);
        }
        _ => {
            let single = matches!(vr, VR::LT | VR::ST | VR::UT | VR::UR);
            let text = p.to_str();
            let text = text.trim_end_matches(['\0', ' ']);
            let parts: Vec<&str> = if single {
                vec![text]
            } else {
                text.split('\\').collect()
            };
            for part in parts {
                let part = if single {
                    part
                } else {
                    part.trim_matches([' ', '\0'])
                };
                if part.is_empty() {
                    items.push("null".into());
                } else if vr == VR::PN {
                    items.push(person_name(part));
                } else {
                    let mut s = String::new();
                    string(&mut s, part);
                    items.push(s);
                }
            }
        }
    }
    if items.iter().all(|i| i == "null") {
        return;
    }
    out.push_str(",\"Value\":[");
    out.push_str(&items.join(","));
    out.push(']');
}

fn numeric(p: &PrimitiveValue, items: &mut Vec<String>) {
    macro_rules! each {
        ($v:expr) => {
            for x in $v.iter() {
                items.push(x.to_string())
            }
        };
    }
    match p {
        PrimitiveValue::U8(v) => each!(v),
        PrimitiveValue::I16(v) => each!(v),
        PrimitiveValue::U16(v) => each!(v),
        PrimitiveValue::I32(v) => each!(v),
        PrimitiveValue::U32(v) => each!(v),
        PrimitiveValue::I64(v) => each!(v),
        PrimitiveValue::U64(v) => each!(v),
        PrimitiveValue::F32(v) => {
            for x in v.iter() {
                items.push(float(f64::from(*x)))
            }
        }
        PrimitiveValue::F64(v) => {
            for x in v.iter() {
                items.push(float(*x))
            }
        }
        other => {
            for s in other.to_multi_str().iter() {
                items.push(number_or_string(s));
            }
        }
    }
}

fn float(x: f64) -> String {
    if x.is_finite() {
        serde_json::Number::from_f64(x)
            .map(|n| n.to_string())
            .unwrap_or_else(|| "null".into())
    } else {
        // JSON has no NaN/Inf; PS3.18 F.2.3.1 allows the strings.
        format!(
            "\"{}\"",
            if x.is_nan() {
                "NaN"
            } else if x > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            }
        )
    }
}

/// IS/DS (and numbers stored as text) as JSON numbers; a value that does not parse is
/// kept as a string rather than dropped.
fn number_or_string(s: &str) -> String {
    let t = s.trim_matches([' ', '\0']);
    if t.is_empty() {
        return "null".into();
    }
    if let Ok(i) = t.parse::<i64>() {
        return i.to_string();
    }
    match t.parse::<f64>() {
        Ok(x) if x.is_finite() => float(x),
        _ => {
            let mut out = String::new();
            string(&mut out, t);
            out
        }
    }
}

/// A PN value as `{"Alphabetic": ..., "Ideographic": ..., "Phonetic": ...}`.
fn person_name(v: &str) -> String {
    let mut out = String::from("{");
    let mut first = true;
    for (group, name) in v.split('=').zip(["Alphabetic", "Ideographic", "Phonetic"]) {
        if group.is_empty() {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "\"{name}\":");
        string(&mut out, group);
    }
    out.push('}');
    out
}

/// Write one attribute given as text (a QIDO-RS result column) as `"GGGGEEEE":{...}`.
pub fn write_text_attribute(out: &mut String, tag: Tag, vr: VR, value: Option<&str>) {
    tag_key(out, tag);
    let _ = write!(out, ":{{\"vr\":\"{}\"", vr.to_string());
    if let Some(v) = value {
        write_primitive_value(out, vr, &PrimitiveValue::from(v));
    }
    out.push('}');
}

/// Replace the base marker of stored JSON with the request's DICOMweb base URL.
pub fn resolve_base(json: &str, base: &str) -> String {
    if json.contains(BASE_MARKER) {
        json.replace(BASE_MARKER, base)
    } else {
        json.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::value::DataSetSequence;
    use dicom_core::DataElement;

    fn obj() -> InMemDicomObject {
        let mut o = InMemDicomObject::new_empty();
        o.put(DataElement::new(
            tags::PATIENT_NAME,
            VR::PN,
            PrimitiveValue::from("Müller^Hans=ミュラー"),
        ));
        o.put(DataElement::new(
            tags::IMAGE_TYPE,
            VR::CS,
            PrimitiveValue::from("ORIGINAL\\PRIMARY\\\\M"),
        ));
        o.put(DataElement::new(
            tags::SLICE_THICKNESS,
            VR::DS,
            PrimitiveValue::from("2.50"),
        ));
        o.put(DataElement::new(
            tags::ROWS,
            VR::US,
            PrimitiveValue::from(256u16),
        ));
        o.put(DataElement::new(
            tags::STUDY_DESCRIPTION,
            VR::LO,
            PrimitiveValue::from("a \"quoted\" \\ text"),
        ));
        o.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U8(vec![1u8; 2048].into()),
        ));
        o.put(DataElement::new(
            Tag(0x0009, 0x1010),
            VR::OB,
            PrimitiveValue::U8(vec![1u8, 2, 3, 4].into()),
        ));
        let mut item = InMemDicomObject::new_empty();
        item.put(DataElement::new(
            tags::CODE_VALUE,
            VR::SH,
            PrimitiveValue::from("T-A0100"),
        ));
        o.put(DataElement::new(
            tags::ANATOMIC_REGION_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![item]),
        ));
        o
    }

    #[test]
    fn writes_the_json_model() {
        let mut out = String::new();
        write_dataset(
            &mut out,
            &obj(),
            &JsonOptions {
                bulk_threshold: 1024,
                instance_path: Some("/studies/1/series/2/instances/3"),
            },
        );
        let resolved = resolve_base(&out, "http://h/dicom-web");
        let v: serde_json::Value = serde_json::from_str(&resolved).expect(&out);
        assert_eq!(
            v["00100010"]["Value"][0]["Alphabetic"], "Müller^Hans",
            "{resolved}"
        );
        assert_eq!(v["00100010"]["Value"][0]["Ideographic"], "ミュラー");
        assert_eq!(
            v["00080008"]["Value"],
            serde_json::json!(["ORIGINAL", "PRIMARY", null, "M"])
        );
        assert_eq!(v["00180050"]["Value"][0], 2.5);
        assert_eq!(v["00280010"]["Value"][0], 256);
        // Backslash separates values of LO; quotes are escaped.
        assert_eq!(
            v["00081030"]["Value"],
            serde_json::json!(["a \"quoted\"", "text"])
        );
        assert_eq!(
            v["7FE00010"]["BulkDataURI"],
            "http://h/dicom-web/studies/1/series/2/instances/3/bulkdata/7FE00010"
        );
        assert_eq!(v["00091010"]["InlineBinary"], "AQIDBA==");
        assert_eq!(v["00082218"]["Value"][0]["00080100"]["Value"][0], "T-A0100");
        assert_eq!(v["00082218"]["vr"], "SQ");
    }

    #[test]
    fn text_attributes() {
        let mut out = String::from("{");
        write_text_attribute(&mut out, tags::MODALITIES_IN_STUDY, VR::CS, Some("MR\\SEG"));
        out.push(',');
        write_text_attribute(&mut out, tags::ACCESSION_NUMBER, VR::SH, None);
        out.push(',');
        write_text_attribute(
            &mut out,
            tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
            VR::IS,
            Some("40"),
        );
        out.push('}');
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["00080061"]["Value"], serde_json::json!(["MR", "SEG"]));
        assert_eq!(v["00080050"], serde_json::json!({"vr": "SH"}));
        assert_eq!(v["00201208"]["Value"][0], 40);
    }
}
