//! From a stored Part 10 object to the data set bytes a retrieve sends (C-STORE
//! sub-operations of C-MOVE/C-GET, WADO-RS, WADO-URI).
//!
//! Two paths: [`dataset_offset`] finds where the data set starts in a stored blob, so
//! an object the peer accepts in its stored transfer syntax goes out byte for byte
//! (`&blob[offset..]`); [`to_uncompressed`] re-encodes the data set in explicit or
//! implicit VR little endian, decompressing encapsulated pixel data with
//! dicom-pixeldata first, for peers that accept only the uncompressed syntaxes.
//! Synchronous and CPU-bound: call `to_uncompressed` from `spawn_blocking`.

use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::Transcode;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

/// Explicit VR Little Endian.
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
/// Implicit VR Little Endian (the default transfer syntax every peer accepts).
pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
/// RLE Lossless (decoded without a colour transform).
const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";
/// Transfer syntaxes whose compression is lossy (PS3.5 §8.2): decompressing them
/// must leave Lossy Image Compression (0028,2110) at "01".
const LOSSY: &[&str] = &[
    "1.2.840.10008.1.2.4.50",  // JPEG baseline
    "1.2.840.10008.1.2.4.51",  // JPEG extended
    "1.2.840.10008.1.2.4.81",  // JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.91",  // JPEG 2000
    "1.2.840.10008.1.2.4.93",  // JPEG 2000 part 2
    "1.2.840.10008.1.2.4.203", // HTJ2K
    "1.2.840.10008.1.2.4.111", // JPEG XL JPEG recompression
    "1.2.840.10008.1.2.4.112", // JPEG XL
    "1.2.840.10008.1.2.4.100", // MPEG2
    "1.2.840.10008.1.2.4.102", // MPEG-4
];

/// Errors turning a stored object into data set bytes.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    #[error("not a Part 10 object: {0}")]
    NotPart10(&'static str),
    #[error("stored object could not be parsed: {0}")]
    Parse(String),
    #[error("target transfer syntax {0} is not an uncompressed little-endian syntax")]
    UnsupportedTarget(String),
    #[error("stored transfer syntax {0} is unknown or unsupported")]
    UnsupportedSource(String),
    #[error("pixel data could not be decompressed: {0}")]
    Decode(String),
    #[error("data set could not be encoded: {0}")]
    Encode(String),
}

fn trim_uid(s: &str) -> &str {
    s.trim_matches(|c: char| c == '\0' || c == ' ')
}

/// Where `DICM` starts: after the 128-byte preamble, or at 0 for a blob without one.
fn magic_offset(part10: &[u8]) -> Result<usize, TranscodeError> {
    if part10.len() >= 132 && &part10[128..132] == b"DICM" {
        Ok(128)
    } else if part10.len() >= 4 && &part10[..4] == b"DICM" {
        Ok(0)
    } else {
        Err(TranscodeError::NotPart10("no DICM prefix"))
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The byte offset where the data set starts in a stored Part 10 object (after the
/// preamble, `DICM` and the file meta group).
///
/// Uses the meta group's File Meta Information Group Length (0002,0000) when it is
/// the first element; otherwise walks the (explicit VR little endian) meta elements
/// until the first element outside group 0002.
pub fn dataset_offset(part10: &[u8]) -> Result<usize, TranscodeError> {
    let start = magic_offset(part10)? + 4;
    // (0002,0000) UL, 4-byte value: group length.
    if u16_at(part10, start) == Some(0x0002)
        && u16_at(part10, start + 2) == Some(0x0000)
        && part10.get(start + 4..start + 6) == Some(b"UL")
    {
        let len = u32_at(part10, start + 8).ok_or_else(truncated_err)? as usize;
        let end = (start + 12)
            .checked_add(len)
            .filter(|e| *e <= part10.len())
            .ok_or_else(truncated_err)?;
        return Ok(end);
    }
    let mut pos = start;
    loop {
        match u16_at(part10, pos) {
            Some(0x0002) => {}
            Some(_) => return Ok(pos),
            None if pos == part10.len() => return Ok(pos),
            None => return Err(truncated_err()),
        }
        let vr = part10.get(pos + 4..pos + 6).ok_or_else(truncated_err)?;
        let (header, len) = match vr {
            b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"SV" | b"UC" | b"UN"
            | b"UR" | b"UT" | b"UV" => (12, u32_at(part10, pos + 8).ok_or_else(truncated_err)?),
            _ => (8, u16_at(part10, pos + 6).ok_or_else(truncated_err)? as u32),
        };
        if len == u32::MAX {
            return Err(TranscodeError::NotPart10(
                "undefined length in file meta group",
            ));
        }
        pos = (pos + header)
            .checked_add(len as usize)
            .filter(|e| *e <= part10.len())
            .ok_or_else(truncated_err)?;
    }
}

fn truncated_err() -> TranscodeError {
    TranscodeError::NotPart10("file meta group truncated")
}

/// Parse a stored object (with or without preamble).
pub fn parse(part10: &[u8]) -> Result<DefaultDicomObject, TranscodeError> {
    let at = magic_offset(part10)?;
    OpenFileOptions::new()
        .from_reader(&part10[at..])
        .map_err(|e| TranscodeError::Parse(first_line(&e.to_string())))
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(200).collect()
}

fn text(obj: &DefaultDicomObject, tag: Tag) -> Option<String> {
    let s = obj.get(tag)?.to_str().ok()?.to_string();
    Some(s.trim_matches(|c: char| c == '\0' || c == ' ').to_string())
}

/// The data set of a stored object, encoded in `target_ts` (explicit or implicit VR
/// little endian), without the file meta group.
///
/// Encapsulated pixel data is decompressed (Photometric Interpretation becomes RGB
/// for colour data the codec converted, MONOCHROME2 when it was neither monochrome;
/// Planar Configuration 0; Lossy Image Compression "01" after a lossy syntax). A
/// native stored syntax is only re-encoded; when it already equals `target_ts` the
/// stored data set bytes are returned unchanged.
pub fn to_uncompressed(part10: &[u8], target_ts: &str) -> Result<Vec<u8>, TranscodeError> {
    let target_uid = trim_uid(target_ts);
    if target_uid != EXPLICIT_VR_LE && target_uid != IMPLICIT_VR_LE {
        return Err(TranscodeError::UnsupportedTarget(target_uid.to_string()));
    }
    let target = TransferSyntaxRegistry
        .get(target_uid)
        .ok_or_else(|| TranscodeError::UnsupportedTarget(target_uid.to_string()))?;
    let mut obj = parse(part10)?;
    let source_uid = trim_uid(obj.meta().transfer_syntax()).to_string();
    if source_uid == target_uid {
        return Ok(part10[dataset_offset(part10)?..].to_vec());
    }
    let source = TransferSyntaxRegistry
        .get(&source_uid)
        .filter(|ts| !ts.is_unsupported())
        .ok_or_else(|| TranscodeError::UnsupportedSource(source_uid.clone()))?;

    let has_pixels = obj.get(tags::PIXEL_DATA).is_some();
    if source.is_encapsulated_pixel_data() && has_pixels {
        let original_pi = text(&obj, tags::PHOTOMETRIC_INTERPRETATION);
        obj.transcode(target)
            .map_err(|e| TranscodeError::Decode(first_line(&e.to_string())))?;
        fix_after_decode(&mut obj, &source_uid, original_pi.as_deref());
    }

    let mut out = Vec::with_capacity(part10.len());
    obj.write_dataset_with_ts(&mut out, target)
        .map_err(|e| TranscodeError::Encode(first_line(&e.to_string())))?;
    Ok(out)
}

/// A whole Part 10 object (preamble, file meta naming `target_ts`, data set) re-encoded
/// from a stored one in explicit or implicit VR little endian (see [`to_uncompressed`]).
pub fn to_part10(part10: &[u8], target_ts: &str) -> Result<Vec<u8>, TranscodeError> {
    let dataset = to_uncompressed(part10, target_ts)?;
    let stored = parse(part10)?;
    let meta = stored.meta();
    let meta = dicom_object::meta::FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(trim_uid(meta.media_storage_sop_class_uid()))
        .media_storage_sop_instance_uid(trim_uid(meta.media_storage_sop_instance_uid()))
        .transfer_syntax(trim_uid(target_ts))
        .implementation_class_uid(trim_uid(meta.implementation_class_uid()))
        .build()
        .map_err(|e| TranscodeError::Encode(first_line(&e.to_string())))?;
    let mut out = Vec::with_capacity(dataset.len() + 512);
    out.extend_from_slice(&[0u8; 128]);
    out.extend_from_slice(b"DICM");
    meta.write(&mut out)
        .map_err(|e| TranscodeError::Encode(first_line(&e.to_string())))?;
    out.extend_from_slice(&dataset);
    Ok(out)
}

/// Attribute fixes after decompression that dicom-pixeldata leaves out.
fn fix_after_decode(obj: &mut DefaultDicomObject, source_uid: &str, original_pi: Option<&str>) {
    // Attributes that only describe encapsulated pixel data.
    for tag in [
        tags::EXTENDED_OFFSET_TABLE,
        tags::EXTENDED_OFFSET_TABLE_LENGTHS,
        tags::ENCAPSULATED_PIXEL_DATA_VALUE_TOTAL_LENGTH,
    ] {
        obj.remove_element(tag);
    }
    // 8-bit samples: OB, even length (the decoder writes them as OW bytes).
    let bits_allocated = obj
        .get(tags::BITS_ALLOCATED)
        .and_then(|e| e.to_int::<u16>().ok());
    if bits_allocated == Some(8) {
        let bytes = obj.get(tags::PIXEL_DATA).and_then(|e| match e.value() {
            Value::Primitive(PrimitiveValue::U8(v)) => Some(v.to_vec()),
            _ => None,
        });
        if let Some(mut bytes) = bytes {
            if bytes.len() % 2 == 1 {
                bytes.push(0);
            }
            obj.put(DataElement::new(
                tags::PIXEL_DATA,
                VR::OB,
                PrimitiveValue::from(bytes),
            ));
        }
    }
    let samples = obj
        .get(tags::SAMPLES_PER_PIXEL)
        .and_then(|e| e.to_int::<u16>().ok())
        .unwrap_or(1);
    if samples > 1 {
        // Decoded frames are always colour-by-pixel.
        obj.put(DataElement::new(
            tags::PLANAR_CONFIGURATION,
            VR::US,
            PrimitiveValue::from(0u16),
        ));
        // RLE codes the samples as they are: YBR_FULL stays YBR_FULL (dicom-pixeldata
        // labels every decoded colour image RGB).
        if source_uid == RLE_LOSSLESS && original_pi == Some("YBR_FULL") {
            obj.put(DataElement::new(
                tags::PHOTOMETRIC_INTERPRETATION,
                VR::CS,
                PrimitiveValue::from("YBR_FULL"),
            ));
        }
    }
    if LOSSY.contains(&source_uid) {
        obj.put(DataElement::new(
            tags::LOSSY_IMAGE_COMPRESSION,
            VR::CS,
            PrimitiveValue::from("01"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn corpus() -> Option<PathBuf> {
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import pydicom,os;print(os.path.join(os.path.dirname(pydicom.__file__),'data','test_files'))",
            ])
            .output()
            .ok()?;
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if p.is_dir() {
            Some(p)
        } else {
            eprintln!("SKIPPED: pydicom's test files are not available");
            None
        }
    }

    /// A pydicom test file as a stored blob (preamble, DICM, meta, data set).
    fn blob(dir: &std::path::Path, name: &str) -> Vec<u8> {
        std::fs::read(dir.join(name)).unwrap()
    }

    fn read_dataset(bytes: &[u8], ts: &str) -> dicom_object::InMemDicomObject {
        let ts = TransferSyntaxRegistry.get(ts).unwrap();
        dicom_object::InMemDicomObject::read_dataset_with_ts(bytes, ts).unwrap()
    }

    fn pixel_bytes(obj: &dicom_object::InMemDicomObject) -> Vec<u8> {
        obj.element(tags::PIXEL_DATA)
            .unwrap()
            .to_bytes()
            .unwrap()
            .to_vec()
    }

    #[test]
    fn offset_from_group_length_and_by_walking() {
        let meta = dicom_object::meta::FileMetaTableBuilder::new()
            .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.4")
            .media_storage_sop_instance_uid("1.2.3.4")
            .transfer_syntax(EXPLICIT_VR_LE)
            .implementation_class_uid("2.25.1")
            .build()
            .unwrap();
        let mut b = vec![0u8; 128];
        b.extend_from_slice(b"DICM");
        meta.write(&mut b).unwrap();
        let end = b.len();
        b.extend_from_slice(&[0x08, 0x00, 0x16, 0x00]);
        assert_eq!(dataset_offset(&b).unwrap(), end);
        // Without preamble.
        assert_eq!(dataset_offset(&b[128..]).unwrap(), end - 128);
        // Without group length: walk the elements.
        let gl = 132 + 12;
        let mut no_gl = b[..132].to_vec();
        no_gl.extend_from_slice(&b[gl..]);
        assert_eq!(dataset_offset(&no_gl).unwrap(), end - 12);
        // Truncated or foreign input is an error, never a panic.
        assert!(dataset_offset(&b[..140]).is_err());
        assert!(dataset_offset(b"not dicom").is_err());
        assert!(dataset_offset(&[]).is_err());
    }

    #[test]
    fn native_source_reencodes_and_same_ts_is_untouched() {
        let Some(dir) = corpus() else { return };
        let b = blob(&dir, "MR_small.dcm"); // explicit VR LE
        let same = to_uncompressed(&b, EXPLICIT_VR_LE).unwrap();
        assert_eq!(same, b[dataset_offset(&b).unwrap()..]);
        let implicit = to_uncompressed(&b, IMPLICIT_VR_LE).unwrap();
        let a = read_dataset(&same, EXPLICIT_VR_LE);
        let c = read_dataset(&implicit, IMPLICIT_VR_LE);
        assert_eq!(pixel_bytes(&a), pixel_bytes(&c));
        assert_eq!(
            a.element(tags::PATIENT_NAME).unwrap().to_str().unwrap(),
            c.element(tags::PATIENT_NAME).unwrap().to_str().unwrap()
        );
        // Big endian: pixel words swapped into little endian.
        let be = blob(&dir, "MR_small_bigendian.dcm");
        let le = read_dataset(
            &to_uncompressed(&be, EXPLICIT_VR_LE).unwrap(),
            EXPLICIT_VR_LE,
        );
        assert_eq!(pixel_bytes(&le), pixel_bytes(&a));
        assert!(matches!(
            to_uncompressed(&b, "1.2.840.10008.1.2.4.50"),
            Err(TranscodeError::UnsupportedTarget(_))
        ));
    }

    #[test]
    fn rle_is_decoded_losslessly() {
        let Some(dir) = corpus() else { return };
        let native = read_dataset(
            &to_uncompressed(&blob(&dir, "MR_small.dcm"), EXPLICIT_VR_LE).unwrap(),
            EXPLICIT_VR_LE,
        );
        for ts in [EXPLICIT_VR_LE, IMPLICIT_VR_LE] {
            let out = to_uncompressed(&blob(&dir, "MR_small_RLE.dcm"), ts).unwrap();
            let obj = read_dataset(&out, ts);
            assert_eq!(pixel_bytes(&obj), pixel_bytes(&native), "RLE → {ts}");
            assert!(obj
                .element_opt(tags::ENCAPSULATED_PIXEL_DATA_VALUE_TOTAL_LENGTH)
                .unwrap()
                .is_none());
        }
        // Colour RLE: 8-bit RGB, interleaved, even length.
        let out = to_uncompressed(&blob(&dir, "SC_rgb_rle.dcm"), EXPLICIT_VR_LE).unwrap();
        let obj = read_dataset(&out, EXPLICIT_VR_LE);
        // The colour bands of pydicom's SC_rgb test image (100 × 100), at column 50.
        let px = pixel_bytes(&obj);
        assert_eq!(px.len(), 100 * 100 * 3);
        let bands = [
            (5, [255, 0, 0]),
            (15, [255, 128, 128]),
            (25, [0, 255, 0]),
            (35, [128, 255, 128]),
            (45, [0, 0, 255]),
            (55, [128, 128, 255]),
            (65, [0, 0, 0]),
            (75, [64, 64, 64]),
            (85, [192, 192, 192]),
            (95, [255, 255, 255]),
        ];
        for (row, rgb) in bands {
            let at = (row * 100 + 50) * 3;
            assert_eq!(px[at..at + 3], rgb, "row {row}");
        }
        assert_eq!(
            obj.element(tags::PHOTOMETRIC_INTERPRETATION)
                .unwrap()
                .to_str()
                .unwrap()
                .trim(),
            "RGB"
        );
        assert_eq!(obj.element(tags::PIXEL_DATA).unwrap().vr(), VR::OB);
    }

    #[test]
    fn jpeg2000_lossless_matches_native() {
        let Some(dir) = corpus() else { return };
        let native = read_dataset(
            &to_uncompressed(&blob(&dir, "MR_small.dcm"), EXPLICIT_VR_LE).unwrap(),
            EXPLICIT_VR_LE,
        );
        let out =
            to_uncompressed(&blob(&dir, "MR_small_jp2klossless.dcm"), EXPLICIT_VR_LE).unwrap();
        let obj = read_dataset(&out, EXPLICIT_VR_LE);
        assert_eq!(pixel_bytes(&obj), pixel_bytes(&native));
        // A lossy J2K object decodes to the declared frame size and is marked lossy.
        let out = to_uncompressed(&blob(&dir, "JPEG2000.dcm"), EXPLICIT_VR_LE).unwrap();
        let obj = read_dataset(&out, EXPLICIT_VR_LE);
        let int = |t| obj.element(t).unwrap().to_int::<usize>().unwrap();
        let frame = int(tags::ROWS) * int(tags::COLUMNS) * int(tags::BITS_ALLOCATED) / 8
            * int(tags::SAMPLES_PER_PIXEL);
        let frames = obj
            .element_opt(tags::NUMBER_OF_FRAMES)
            .unwrap()
            .map(|e| e.to_int::<usize>().unwrap())
            .unwrap_or(1);
        assert_eq!(pixel_bytes(&obj).len(), frame * frames);
        assert_eq!(
            obj.element(tags::LOSSY_IMAGE_COMPRESSION)
                .unwrap()
                .to_str()
                .unwrap()
                .trim(),
            "01"
        );
    }

    #[test]
    fn jpeg_colour_becomes_rgb_near_the_original_bands() {
        let Some(dir) = corpus() else { return };
        for name in ["SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb_jpeg_gdcm.dcm"] {
            let out = to_uncompressed(&blob(&dir, name), IMPLICIT_VR_LE).unwrap();
            let obj = read_dataset(&out, IMPLICIT_VR_LE);
            let text = |t| obj.element(t).unwrap().to_str().unwrap().trim().to_string();
            assert_eq!(text(tags::PHOTOMETRIC_INTERPRETATION), "RGB", "{name}");
            assert_eq!(text(tags::PLANAR_CONFIGURATION), "0", "{name}");
            let px = pixel_bytes(&obj);
            assert_eq!(px.len(), 100 * 100 * 3, "{name}");
            // Row 5 is red, row 25 green, row 45 blue (lossy: within a tolerance).
            for (row, rgb) in [(5, [255, 0, 0]), (25, [0, 255, 0]), (45, [0, 0, 255])] {
                let at = (row * 100 + 50) * 3;
                for c in 0..3 {
                    let d = (px[at + c] as i32 - rgb[c]).abs();
                    assert!(d <= 8, "{name} row {row}: {:?}", &px[at..at + 3]);
                }
            }
        }
    }
}
