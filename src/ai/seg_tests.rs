//! Unit tests of the SEG writer (bit packing, structure, round trip of the
//! mask through the encoded object) and of the measurements.

use super::*;
use crate::ai::assemble::{assemble, labels_to_reference, AssembleOptions, Assembled};
use crate::ai::dcm::{get_int, get_items, parse_part10, Channel};
use crate::ai::grid::MODEL_AXES;
use crate::ai::synth::{synth_study, SynthOptions, SynthStudy};

#[test]
fn bits_pack_across_frame_boundaries() {
    // Two 3×3 frames: the last pixel of frame 1 and the first of frame 2 are set.
    let mut a = vec![false; 9];
    a[8] = true;
    let mut b = vec![false; 9];
    b[0] = true;
    b[4] = true;
    let p = pack_bits(&[a, b]);
    // 18 bits -> 3 bytes -> padded to 4.
    assert_eq!(p.len(), 4);
    // Bit 8 and 9 (byte 1, bits 0 and 1), bit 13 (byte 1, bit 5).
    assert_eq!(p, vec![0b0000_0000, 0b0010_0011, 0, 0]);
    assert_eq!(pack_bits(&[vec![true; 16]]), vec![0xff, 0xff]);
}

#[test]
fn cielab_of_white_black_red() {
    assert_eq!(rgb_to_dicom_lab([255, 255, 255])[0], 65535);
    let black = rgb_to_dicom_lab([0, 0, 0]);
    assert_eq!(black[0], 0);
    assert!((black[1] as i32 - 32896).abs() <= 1 && (black[2] as i32 - 32896).abs() <= 1);
    let red = rgb_to_dicom_lab([255, 0, 0]);
    // L* ≈ 53.2, a* ≈ 80.1, b* ≈ 67.2.
    assert!((red[0] as f64 / 65535.0 * 100.0 - 53.2).abs() < 0.5);
    assert!((red[1] as f64 / 65535.0 * 255.0 - 128.0 - 80.1).abs() < 0.5);
    assert!((red[2] as f64 / 65535.0 * 255.0 - 128.0 - 67.2).abs() < 0.5);
}

#[test]
fn measurements_of_a_known_cube() {
    let grid = Grid {
        origin: [10.0, 20.0, 30.0],
        axes: MODEL_AXES,
        spacing: [2.0; 3],
        dims: [10, 10, 10],
    };
    let mut l = vec![0u8; 1000];
    // A 3×3×3 cube at indices 2..5 on each axis: label 2, centre voxel 1, one corner 4.
    for z in 2..5 {
        for y in 2..5 {
            for x in 2..5 {
                l[(z * 10 + y) * 10 + x] = 2;
            }
        }
    }
    l[(3 * 10 + 3) * 10 + 3] = 1;
    l[(2 * 10 + 2) * 10 + 2] = 4;
    let lv = LabelVolume::new(l, grid.dims, grid.spacing).unwrap();
    let m = measure(&lv, &grid).unwrap();
    let v = 8.0 / 1000.0;
    assert!((m.edema_ml - 25.0 * v).abs() < 1e-12);
    assert!((m.necrotic_ml - v).abs() < 1e-12 && (m.enhancing_ml - v).abs() < 1e-12);
    assert!((m.tumor_core_ml - 2.0 * v).abs() < 1e-12);
    assert!((m.whole_tumor_ml - 27.0 * v).abs() < 1e-12);
    // Centre voxel (3,3,3): z = 30 + 6, y = 20 - 6, x = 10 - 6 (D superior, H anterior, W right).
    let c = m.centroid_mm.unwrap();
    assert!(
        (c[0] - 4.0).abs() < 1e-9 && (c[1] - 14.0).abs() < 1e-9 && (c[2] - 36.0).abs() < 1e-9,
        "{c:?}"
    );
    // Voxel boxes: centres 4..8 mm from the origin on each axis, ±1 mm.
    assert_eq!(
        m.bbox_min_mm.unwrap(),
        [10.0 - 8.0 - 1.0, 20.0 - 8.0 - 1.0, 30.0 + 4.0 - 1.0]
    );
    assert_eq!(
        m.bbox_max_mm.unwrap(),
        [10.0 - 4.0 + 1.0, 20.0 - 4.0 + 1.0, 30.0 + 8.0 + 1.0]
    );
    let json = serde_json::to_value(m).unwrap();
    assert!(json["whole_tumor_ml"].as_f64().unwrap() > 0.2);
    let empty = LabelVolume::new(vec![0; 1000], grid.dims, grid.spacing).unwrap();
    let e = measure(&empty, &grid).unwrap();
    assert_eq!((e.whole_tumor_ml, e.centroid_mm), (0.0, None));
}

fn study() -> (SynthStudy, Assembled) {
    let st = synth_study(&SynthOptions {
        dims: [16, 24, 20],
        spacing: [4.0; 3],
        ..SynthOptions::default()
    })
    .unwrap();
    let series: Vec<Vec<_>> = Channel::ALL
        .iter()
        .map(|&ch| {
            st.series(ch)
                .unwrap()
                .instances
                .iter()
                .map(|b| parse_part10(b).unwrap())
                .collect()
        })
        .collect();
    let o = AssembleOptions {
        spacing_mm: [4.0; 3],
        ..AssembleOptions::default()
    };
    let a = assemble([&series[0], &series[1], &series[2], &series[3]], &o).unwrap();
    (st, a)
}

fn unpack(bytes: &[u8], i: usize) -> bool {
    bytes[i / 8] >> (i % 8) & 1 == 1
}

#[test]
fn seg_structure_and_mask_round_trip() {
    let (st, a) = study();
    let rl = labels_to_reference(&a, &st.labels).unwrap();
    let info = SegInfo {
        series_number: 42,
        algorithm_version: "test".into(),
        ..SegInfo::default()
    };
    let bytes = build_seg(&a.header, &rl, &info).unwrap();
    let seg = parse_part10(&bytes).unwrap();
    assert_eq!(
        seg.meta().media_storage_sop_class_uid(),
        dcm::SEGMENTATION_STORAGE
    );
    assert_eq!(seg.meta().transfer_syntax(), "1.2.840.10008.1.2.1");
    assert_eq!(get_str(&seg, tags::MODALITY).unwrap(), "SEG");
    assert_eq!(
        get_str(&seg, tags::STUDY_INSTANCE_UID).unwrap(),
        st.study_uid
    );
    assert_eq!(get_str(&seg, tags::PATIENT_ID).unwrap(), st.patient_id);
    assert_eq!(
        get_str(&seg, tags::FRAME_OF_REFERENCE_UID).unwrap(),
        st.frame_of_reference_uid
    );
    assert_eq!(get_int(&seg, tags::SERIES_NUMBER), Some(42));
    assert_ne!(
        get_str(&seg, tags::SERIES_INSTANCE_UID).unwrap(),
        a.reference.series_uid
    );
    let segs = get_items(&seg, tags::SEGMENT_SEQUENCE);
    assert_eq!(segs.len(), 3);
    let ty = |i: usize| {
        get_str(
            &get_items(&segs[i], tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE)[0],
            tags::CODE_VALUE,
        )
    };
    assert_eq!(
        [ty(0), ty(1), ty(2)].map(Option::unwrap),
        ["6574001", "79654002", "C113842"]
    );
    // Frames: one per (segment, slice) holding it.
    let [n, rows, cols] = rl.labels.dims;
    let plane = rows * cols;
    let mut expect = Vec::new();
    for (si, s) in SEGMENTS.iter().enumerate() {
        for k in 0..n {
            if rl.labels.labels[k * plane..(k + 1) * plane].contains(&s.label) {
                expect.push((si + 1, k));
            }
        }
    }
    assert!(expect.len() > 3);
    assert_eq!(
        get_int(&seg, tags::NUMBER_OF_FRAMES),
        Some(expect.len() as i64)
    );
    let pf = get_items(&seg, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE);
    assert_eq!(pf.len(), expect.len());
    let px = seg.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
    assert_eq!(
        px.len(),
        (expect.len() * plane).div_ceil(8).next_multiple_of(2)
    );
    for (f, &(segno, k)) in expect.iter().enumerate() {
        let item = &pf[f];
        let sid = &get_items(item, tags::SEGMENT_IDENTIFICATION_SEQUENCE)[0];
        assert_eq!(
            get_int(sid, tags::REFERENCED_SEGMENT_NUMBER),
            Some(segno as i64)
        );
        let src = &get_items(
            &get_items(item, tags::DERIVATION_IMAGE_SEQUENCE)[0],
            tags::SOURCE_IMAGE_SEQUENCE,
        )[0];
        assert_eq!(
            get_str(src, tags::REFERENCED_SOP_INSTANCE_UID).unwrap(),
            a.reference.slices[k].sop_instance_uid
        );
        let pos = dcm::get_f64s(
            &get_items(item, tags::PLANE_POSITION_SEQUENCE)[0],
            tags::IMAGE_POSITION_PATIENT,
        )
        .unwrap();
        assert!((0..3).all(|i| (pos[i] - a.reference.slices[k].position[i]).abs() < 1e-6));
        let label = SEGMENTS[segno - 1].label;
        for p in 0..plane {
            assert_eq!(
                unpack(&px, f * plane + p),
                rl.labels.labels[k * plane + p] == label,
                "frame {f} pixel {p}"
            );
        }
    }
    let rs = get_items(&seg, tags::REFERENCED_SERIES_SEQUENCE);
    assert_eq!(
        get_str(&rs[0], tags::SERIES_INSTANCE_UID).unwrap(),
        a.reference.series_uid
    );
    assert_eq!(
        get_items(&rs[0], tags::REFERENCED_INSTANCE_SEQUENCE).len(),
        n
    );
}

#[test]
fn tumour_free_seg_keeps_one_empty_frame_and_checks_inputs() {
    let (_, a) = study();
    let zero = LabelVolume::new(vec![0; a.grid.voxels()], a.grid.dims, a.grid.spacing).unwrap();
    let rl = labels_to_reference(&a, &zero).unwrap();
    let seg = parse_part10(&build_seg(&a.header, &rl, &SegInfo::default()).unwrap()).unwrap();
    assert_eq!(get_int(&seg, tags::NUMBER_OF_FRAMES), Some(1));
    let px = seg.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
    assert!(px.iter().all(|&b| b == 0));
    // A header of another series is refused.
    let mut other = a.header.clone();
    dcm::put_str(&mut other, tags::SERIES_INSTANCE_UID, VR::UI, "1.2.3");
    assert!(build_seg(&other, &rl, &SegInfo::default()).is_err());
}
