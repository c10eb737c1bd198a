//! DICOM Segmentation writer and tumour measurements. [`build_seg`] turns the
//! model's labels on the reference series' own slices ([`ReferenceLabels`])
//! into one complete Part 10 Segmentation Storage object (explicit VR LE,
//! BINARY, bits packed across frames): same study, patient and frame of
//! reference as the source, three BraTS segments with SNOMED CT / NCIt
//! codes from the standard's CIDs 7150/7159, per-frame derivation references
//! to the source slices, dimension organisation (segment + position) and a
//! ReferencedSeriesSequence, as OHIF needs. [`measure`] gives region volumes,
//! bounding box and centroid in patient coordinates.

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use serde::{Deserialize, Serialize};

use super::assemble::ReferenceLabels;
use super::dcm::{self, code_item, get_str, put_ds, put_empty, put_seq, put_str, put_us};
use super::grid::{Grid, Vec3};
use super::{AiError, LabelVolume};

#[path = "seg_codes.rs"]
mod codes;
pub use codes::{rgb_to_dicom_lab, Code, SegmentDef, MORPHOLOGICALLY_ABNORMAL, SEGMENTS};

/// Identity and provenance of the SEG to write.
#[derive(Debug, Clone, PartialEq)]
pub struct SegInfo {
    /// SeriesInstanceUID (`None`: generated).
    pub series_uid: Option<String>,
    /// SOPInstanceUID (`None`: generated).
    pub sop_instance_uid: Option<String>,
    /// SeriesNumber.
    pub series_number: i32,
    /// InstanceNumber.
    pub instance_number: i32,
    /// SeriesDescription.
    pub series_description: String,
    /// ContentLabel (CS: upper case, digits, `_`, space; at most 16).
    pub content_label: String,
    /// ContentDescription.
    pub content_description: String,
    /// Model name: SegmentAlgorithmName and AlgorithmName.
    pub algorithm_name: String,
    /// AlgorithmVersion (e.g. the weights' sha256 prefix).
    pub algorithm_version: String,
    /// ManufacturerModelName.
    pub model_name: String,
    /// DeviceSerialNumber (type 1 in Enhanced General Equipment).
    pub device_serial_number: String,
    /// SoftwareVersions.
    pub software_versions: String,
}

impl Default for SegInfo {
    fn default() -> Self {
        Self {
            series_uid: None,
            sop_instance_uid: None,
            series_number: 9901,
            instance_number: 1,
            series_description: "Glia brain tumour segmentation (research use)".into(),
            content_label: "TUMOUR".into(),
            content_description: "Automatic BraTS-style brain tumour segmentation".into(),
            algorithm_name: "Glia SegResNet".into(),
            algorithm_version: "unknown".into(),
            model_name: "Glia".into(),
            device_serial_number: "GLIA-1".into(),
            software_versions: format!("glia {}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Packs frames of 0/1 pixels into BINARY pixel data: pixel `i` of the
/// concatenated frames is bit `i % 8` of byte `i / 8` (no padding between
/// frames); the result is padded to an even length.
pub fn pack_bits(frames: &[Vec<bool>]) -> Vec<u8> {
    let total: usize = frames.iter().map(Vec::len).sum();
    let mut out = vec![0u8; total.div_ceil(8)];
    let mut i = 0;
    for f in frames {
        for &b in f {
            if b {
                out[i / 8] |= 1 << (i % 8);
            }
            i += 1;
        }
    }
    if out.len() % 2 == 1 {
        out.push(0);
    }
    out
}

fn copy_or_empty(dst: &mut InMemDicomObject, src: &InMemDicomObject, tag: Tag, vr: VR) {
    match src.get(tag) {
        Some(e) => {
            dst.put(e.clone());
        }
        None => put_empty(dst, tag, vr),
    }
}

/// Builds the Segmentation object for `labels` (on the reference series'
/// slices); `source` is any instance header of that series (patient and
/// study attributes are copied from it). One frame per segment and slice
/// holding that segment; when no slice holds any, one empty frame of
/// segment 1 keeps the object valid.
pub fn build_seg(
    source: &InMemDicomObject,
    labels: &ReferenceLabels,
    info: &SegInfo,
) -> Result<Vec<u8>, AiError> {
    let g = &labels.geometry;
    let [n, rows, cols] = labels.labels.dims;
    if n != g.slices.len() || rows != g.rows || cols != g.cols {
        return Err(AiError::Input(
            "labels do not match the reference geometry".into(),
        ));
    }
    if get_str(source, tags::SERIES_INSTANCE_UID).as_deref() != Some(g.series_uid.as_str()) {
        return Err(AiError::Input(
            "source header is not from the reference series".into(),
        ));
    }
    let plane = rows * cols;
    // Frames: (segment number, slice index), segment-major, slices ascending.
    let mut frames: Vec<(usize, usize)> = Vec::new();
    let mut bits: Vec<Vec<bool>> = Vec::new();
    for (si, s) in SEGMENTS.iter().enumerate() {
        for k in 0..n {
            let px = &labels.labels.labels[k * plane..(k + 1) * plane];
            if px.contains(&s.label) {
                frames.push((si + 1, k));
                bits.push(px.iter().map(|&l| l == s.label).collect());
            }
        }
    }
    if frames.is_empty() {
        frames.push((1, 0));
        bits.push(vec![false; plane]);
    }
    let now = chrono::Utc::now();
    let (date, time) = (
        now.format("%Y%m%d").to_string(),
        now.format("%H%M%S").to_string(),
    );
    let series_uid = info.series_uid.clone().unwrap_or_else(dcm::new_uid);
    let sop_uid = info.sop_instance_uid.clone().unwrap_or_else(dcm::new_uid);

    let mut o = InMemDicomObject::new_empty();
    copy_or_empty(&mut o, source, tags::SPECIFIC_CHARACTER_SET, VR::CS);
    if get_str(&o, tags::SPECIFIC_CHARACTER_SET).is_none() {
        o.remove_element(tags::SPECIFIC_CHARACTER_SET);
    }
    put_str(
        &mut o,
        tags::SOP_CLASS_UID,
        VR::UI,
        dcm::SEGMENTATION_STORAGE,
    );
    put_str(&mut o, tags::SOP_INSTANCE_UID, VR::UI, &sop_uid);
    // Patient and study: copied from the source.
    for (tag, vr) in [
        (tags::PATIENT_NAME, VR::PN),
        (tags::PATIENT_ID, VR::LO),
        (tags::PATIENT_BIRTH_DATE, VR::DA),
        (tags::PATIENT_SEX, VR::CS),
        (tags::STUDY_DATE, VR::DA),
        (tags::STUDY_TIME, VR::TM),
        (tags::REFERRING_PHYSICIAN_NAME, VR::PN),
        (tags::STUDY_ID, VR::SH),
        (tags::ACCESSION_NUMBER, VR::SH),
        (tags::POSITION_REFERENCE_INDICATOR, VR::LO),
    ] {
        copy_or_empty(&mut o, source, tag, vr);
    }
    for tag in [
        tags::ISSUER_OF_PATIENT_ID,
        tags::STUDY_DESCRIPTION,
        tags::PATIENT_AGE,
    ] {
        if let Some(e) = source.get(tag) {
            o.put(e.clone());
        }
    }
    put_str(&mut o, tags::STUDY_INSTANCE_UID, VR::UI, &g.study_uid);
    put_str(
        &mut o,
        tags::FRAME_OF_REFERENCE_UID,
        VR::UI,
        &g.frame_of_reference_uid,
    );
    // Series and equipment.
    put_str(&mut o, tags::MODALITY, VR::CS, "SEG");
    put_str(&mut o, tags::SERIES_INSTANCE_UID, VR::UI, &series_uid);
    put_str(
        &mut o,
        tags::SERIES_NUMBER,
        VR::IS,
        &info.series_number.to_string(),
    );
    put_str(
        &mut o,
        tags::SERIES_DESCRIPTION,
        VR::LO,
        &info.series_description,
    );
    put_str(&mut o, tags::SERIES_DATE, VR::DA, &date);
    put_str(&mut o, tags::SERIES_TIME, VR::TM, &time);
    put_str(&mut o, tags::MANUFACTURER, VR::LO, "Glia");
    put_str(
        &mut o,
        tags::MANUFACTURER_MODEL_NAME,
        VR::LO,
        &info.model_name,
    );
    put_str(
        &mut o,
        tags::DEVICE_SERIAL_NUMBER,
        VR::LO,
        &info.device_serial_number,
    );
    put_str(
        &mut o,
        tags::SOFTWARE_VERSIONS,
        VR::LO,
        &info.software_versions,
    );
    put_str(&mut o, tags::INSTANCE_CREATION_DATE, VR::DA, &date);
    put_str(&mut o, tags::INSTANCE_CREATION_TIME, VR::TM, &time);
    // Segmentation image.
    put_str(&mut o, tags::IMAGE_TYPE, VR::CS, "DERIVED\\PRIMARY");
    put_str(
        &mut o,
        tags::INSTANCE_NUMBER,
        VR::IS,
        &info.instance_number.to_string(),
    );
    put_str(&mut o, tags::CONTENT_LABEL, VR::CS, &info.content_label);
    put_str(
        &mut o,
        tags::CONTENT_DESCRIPTION,
        VR::LO,
        &info.content_description,
    );
    put_empty(&mut o, tags::CONTENT_CREATOR_NAME, VR::PN);
    put_str(&mut o, tags::CONTENT_DATE, VR::DA, &date);
    put_str(&mut o, tags::CONTENT_TIME, VR::TM, &time);
    put_us(&mut o, tags::SAMPLES_PER_PIXEL, &[1]);
    put_str(
        &mut o,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2",
    );
    put_us(&mut o, tags::ROWS, &[rows as u16]);
    put_us(&mut o, tags::COLUMNS, &[cols as u16]);
    put_us(&mut o, tags::BITS_ALLOCATED, &[1]);
    put_us(&mut o, tags::BITS_STORED, &[1]);
    put_us(&mut o, tags::HIGH_BIT, &[0]);
    put_us(&mut o, tags::PIXEL_REPRESENTATION, &[0]);
    put_str(&mut o, tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00");
    put_str(&mut o, tags::SEGMENTATION_TYPE, VR::CS, "BINARY");
    put_str(&mut o, tags::SEGMENTS_OVERLAP, VR::CS, "NO");
    put_str(
        &mut o,
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        &frames.len().to_string(),
    );
    put_seq(&mut o, tags::SEGMENT_SEQUENCE, segment_items(info));
    // Dimensions: segment number, then plane position.
    let dim_uid = dcm::new_uid();
    let mut org = InMemDicomObject::new_empty();
    put_str(&mut org, tags::DIMENSION_ORGANIZATION_UID, VR::UI, &dim_uid);
    put_seq(&mut o, tags::DIMENSION_ORGANIZATION_SEQUENCE, vec![org]);
    put_str(&mut o, tags::DIMENSION_ORGANIZATION_TYPE, VR::CS, "3D");
    let dim = |index: Tag, group: Tag, label: &str| {
        let mut d = InMemDicomObject::new_empty();
        put_str(&mut d, tags::DIMENSION_ORGANIZATION_UID, VR::UI, &dim_uid);
        d.put(DataElement::new(
            tags::DIMENSION_INDEX_POINTER,
            VR::AT,
            PrimitiveValue::Tags([index][..].into()),
        ));
        d.put(DataElement::new(
            tags::FUNCTIONAL_GROUP_POINTER,
            VR::AT,
            PrimitiveValue::Tags([group][..].into()),
        ));
        put_str(&mut d, tags::DIMENSION_DESCRIPTION_LABEL, VR::LO, label);
        d
    };
    put_seq(
        &mut o,
        tags::DIMENSION_INDEX_SEQUENCE,
        vec![
            dim(
                tags::REFERENCED_SEGMENT_NUMBER,
                tags::SEGMENT_IDENTIFICATION_SEQUENCE,
                "ReferencedSegmentNumber",
            ),
            dim(
                tags::IMAGE_POSITION_PATIENT,
                tags::PLANE_POSITION_SEQUENCE,
                "ImagePositionPatient",
            ),
        ],
    );
    // Shared functional groups: orientation and pixel measures of the reference.
    let mut orient = InMemDicomObject::new_empty();
    put_ds(&mut orient, tags::IMAGE_ORIENTATION_PATIENT, &g.orientation);
    let mut measures = InMemDicomObject::new_empty();
    put_ds(&mut measures, tags::PIXEL_SPACING, &g.pixel_spacing);
    put_ds(&mut measures, tags::SLICE_THICKNESS, &[g.slice_thickness]);
    put_ds(
        &mut measures,
        tags::SPACING_BETWEEN_SLICES,
        &[g.slice_spacing],
    );
    let mut shared = InMemDicomObject::new_empty();
    put_seq(&mut shared, tags::PLANE_ORIENTATION_SEQUENCE, vec![orient]);
    put_seq(&mut shared, tags::PIXEL_MEASURES_SEQUENCE, vec![measures]);
    put_seq(
        &mut o,
        tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
        vec![shared],
    );
    // Per-frame functional groups.
    let per_frame = frames
        .iter()
        .map(|&(seg, k)| frame_item(g, seg, k))
        .collect();
    put_seq(
        &mut o,
        tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
        per_frame,
    );
    // Common instance reference: every source instance of the reference series.
    let mut refs: Vec<(&str, &str)> = Vec::new();
    for s in &g.slices {
        if !refs.iter().any(|(_, i)| *i == s.sop_instance_uid) {
            refs.push((&s.sop_class_uid, &s.sop_instance_uid));
        }
    }
    let inst = refs
        .iter()
        .map(|(c, i)| {
            let mut it = InMemDicomObject::new_empty();
            put_str(&mut it, tags::REFERENCED_SOP_CLASS_UID, VR::UI, c);
            put_str(&mut it, tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, i);
            it
        })
        .collect();
    let mut rs = InMemDicomObject::new_empty();
    put_str(&mut rs, tags::SERIES_INSTANCE_UID, VR::UI, &g.series_uid);
    put_seq(&mut rs, tags::REFERENCED_INSTANCE_SEQUENCE, inst);
    put_seq(&mut o, tags::REFERENCED_SERIES_SEQUENCE, vec![rs]);
    o.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::U8(pack_bits(&bits).into()),
    ));
    dcm::to_part10(o)
}

fn segment_items(info: &SegInfo) -> Vec<InMemDicomObject> {
    SEGMENTS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut it = InMemDicomObject::new_empty();
            put_us(&mut it, tags::SEGMENT_NUMBER, &[i as u16 + 1]);
            put_str(&mut it, tags::SEGMENT_LABEL, VR::LO, s.name);
            put_str(
                &mut it,
                tags::SEGMENT_DESCRIPTION,
                VR::ST,
                &format!("BraTS label {}", s.label),
            );
            put_seq(
                &mut it,
                tags::ANATOMIC_REGION_SEQUENCE,
                vec![code_item("12738006", "SCT", "Brain")],
            );
            let code = |c: &Code| code_item(c.value, c.scheme, c.meaning);
            put_seq(
                &mut it,
                tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE,
                vec![code(&s.category)],
            );
            put_seq(
                &mut it,
                tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE,
                vec![code(&s.property)],
            );
            put_str(&mut it, tags::SEGMENT_ALGORITHM_TYPE, VR::CS, "AUTOMATIC");
            put_str(
                &mut it,
                tags::SEGMENT_ALGORITHM_NAME,
                VR::LO,
                &info.algorithm_name,
            );
            let mut alg = InMemDicomObject::new_empty();
            put_seq(
                &mut alg,
                tags::ALGORITHM_FAMILY_CODE_SEQUENCE,
                vec![code_item("123110", "DCM", "Artificial Intelligence")],
            );
            put_str(&mut alg, tags::ALGORITHM_NAME, VR::LO, &info.algorithm_name);
            put_str(
                &mut alg,
                tags::ALGORITHM_VERSION,
                VR::LO,
                &info.algorithm_version,
            );
            put_seq(
                &mut it,
                tags::SEGMENTATION_ALGORITHM_IDENTIFICATION_SEQUENCE,
                vec![alg],
            );
            put_us(
                &mut it,
                tags::RECOMMENDED_DISPLAY_CIE_LAB_VALUE,
                &rgb_to_dicom_lab(s.rgb),
            );
            it
        })
        .collect()
}

fn frame_item(g: &super::assemble::ReferenceGeometry, seg: usize, k: usize) -> InMemDicomObject {
    let slice = &g.slices[k];
    let mut src = InMemDicomObject::new_empty();
    put_str(
        &mut src,
        tags::REFERENCED_SOP_CLASS_UID,
        VR::UI,
        &slice.sop_class_uid,
    );
    put_str(
        &mut src,
        tags::REFERENCED_SOP_INSTANCE_UID,
        VR::UI,
        &slice.sop_instance_uid,
    );
    if let Some(f) = slice.frame_number {
        put_str(
            &mut src,
            tags::REFERENCED_FRAME_NUMBER,
            VR::IS,
            &f.to_string(),
        );
    }
    // The mask lies on the source slice's own pixel grid.
    put_str(&mut src, tags::SPATIAL_LOCATIONS_PRESERVED, VR::CS, "YES");
    put_seq(
        &mut src,
        tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
        vec![code_item(
            "121322",
            "DCM",
            "Source image for image processing operation",
        )],
    );
    let mut deriv = InMemDicomObject::new_empty();
    put_seq(&mut deriv, tags::SOURCE_IMAGE_SEQUENCE, vec![src]);
    put_seq(
        &mut deriv,
        tags::DERIVATION_CODE_SEQUENCE,
        vec![code_item("113076", "DCM", "Segmentation")],
    );
    let mut fc = InMemDicomObject::new_empty();
    dcm::put_ul(
        &mut fc,
        tags::DIMENSION_INDEX_VALUES,
        &[seg as u32, k as u32 + 1],
    );
    let mut pp = InMemDicomObject::new_empty();
    put_ds(&mut pp, tags::IMAGE_POSITION_PATIENT, &slice.position);
    let mut sid = InMemDicomObject::new_empty();
    put_us(&mut sid, tags::REFERENCED_SEGMENT_NUMBER, &[seg as u16]);
    let mut it = InMemDicomObject::new_empty();
    put_seq(&mut it, tags::DERIVATION_IMAGE_SEQUENCE, vec![deriv]);
    put_seq(&mut it, tags::FRAME_CONTENT_SEQUENCE, vec![fc]);
    put_seq(&mut it, tags::PLANE_POSITION_SEQUENCE, vec![pp]);
    put_seq(&mut it, tags::SEGMENT_IDENTIFICATION_SEQUENCE, vec![sid]);
    it
}

/// Tumour measurements, in mL and patient coordinates (LPS, mm).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Measurements {
    /// Label 1: necrotic / non-enhancing core.
    pub necrotic_ml: f64,
    /// Label 2: oedema.
    pub edema_ml: f64,
    /// Label 4: enhancing tumour.
    pub enhancing_ml: f64,
    /// Tumour core: labels 1 + 4.
    pub tumor_core_ml: f64,
    /// Whole tumour: labels 1 + 2 + 4.
    pub whole_tumor_ml: f64,
    /// Whole-tumour bounding box, minimum corner (voxel boxes, not centres); `None` without tumour.
    pub bbox_min_mm: Option<Vec3>,
    /// Whole-tumour bounding box, maximum corner.
    pub bbox_max_mm: Option<Vec3>,
    /// Whole-tumour centroid (mean of voxel centres).
    pub centroid_mm: Option<Vec3>,
}

/// Measures `labels` lying on `grid` (the model grid or a reference grid).
pub fn measure(labels: &LabelVolume, grid: &Grid) -> Result<Measurements, AiError> {
    if labels.dims != grid.dims {
        return Err(AiError::Input("labels do not match the grid".into()));
    }
    let [_, h, w] = grid.dims;
    let mut counts = [0usize; 5];
    let (mut lo, mut hi, mut sum) = ([f64::INFINITY; 3], [f64::NEG_INFINITY; 3], [0.0; 3]);
    for (i, &l) in labels.labels.iter().enumerate() {
        if l == 0 {
            continue;
        }
        if (l as usize) < counts.len() {
            counts[l as usize] += 1;
        }
        let p = grid.to_patient([(i / (h * w)) as f64, ((i / w) % h) as f64, (i % w) as f64]);
        for a in 0..3 {
            lo[a] = lo[a].min(p[a]);
            hi[a] = hi[a].max(p[a]);
            sum[a] += p[a];
        }
    }
    let v = grid.voxel_ml();
    let (n, e, et) = (
        counts[1] as f64 * v,
        counts[2] as f64 * v,
        counts[4] as f64 * v,
    );
    let total = counts[1] + counts[2] + counts[4];
    // Half a voxel's extent along each patient axis.
    let half = [0, 1, 2].map(|a| {
        (0..3)
            .map(|k| grid.axes[k][a].abs() * grid.spacing[k] / 2.0)
            .sum::<f64>()
    });
    let some = total > 0;
    Ok(Measurements {
        necrotic_ml: n,
        edema_ml: e,
        enhancing_ml: et,
        tumor_core_ml: n + et,
        whole_tumor_ml: n + e + et,
        bbox_min_mm: some.then(|| [0, 1, 2].map(|a| lo[a] - half[a])),
        bbox_max_mm: some.then(|| [0, 1, 2].map(|a| hi[a] + half[a])),
        centroid_mm: some.then(|| sum.map(|s| s / total as f64)),
    })
}

#[cfg(test)]
#[path = "seg_tests.rs"]
mod tests;
