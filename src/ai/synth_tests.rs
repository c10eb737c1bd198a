//! Unit tests of the synthetic study generator.

use super::*;
use crate::ai::dcm::{get_f64s, get_str, parse_part10};
use dicom_dictionary_std::tags;

fn small(faults: Vec<Fault>) -> SynthStudy {
    synth_study(&SynthOptions {
        dims: [12, 16, 20],
        spacing: [4.0, 4.0, 4.0],
        faults,
        uid_seed: Some(3),
        ..SynthOptions::default()
    })
    .unwrap()
}

#[test]
fn four_series_one_frame_of_reference() {
    let s = small(vec![]);
    assert_eq!(s.series.len(), 4);
    let mut fors = Vec::new();
    for ser in &s.series {
        assert_eq!(ser.instances.len(), 12);
        let first = parse_part10(&ser.instances[0]).unwrap();
        assert_eq!(
            get_str(&first, tags::SOP_CLASS_UID).unwrap(),
            dcm::MR_IMAGE_STORAGE
        );
        assert_eq!(
            get_str(&first, tags::STUDY_INSTANCE_UID).unwrap(),
            s.study_uid
        );
        assert_eq!(first.meta().transfer_syntax(), "1.2.840.10008.1.2.1");
        fors.push(get_str(&first, tags::FRAME_OF_REFERENCE_UID).unwrap());
        // Instance 1 is the top slice: highest z.
        let z0 = get_f64s(&first, tags::IMAGE_POSITION_PATIENT).unwrap()[2];
        let last = parse_part10(ser.instances.last().unwrap()).unwrap();
        let z1 = get_f64s(&last, tags::IMAGE_POSITION_PATIENT).unwrap()[2];
        assert!((z0 - z1 - 11.0 * 4.0).abs() < 1e-9, "{z0} {z1}");
        assert_eq!(
            get_str(&first, tags::CONTRAST_BOLUS_AGENT).is_some(),
            ser.channel == Channel::T1ce
        );
    }
    assert!(fors.iter().all(|f| *f == s.frame_of_reference_uid));
    // Seeded UIDs are reproducible.
    assert_eq!(small(vec![]).study_uid, s.study_uid);
}

#[test]
fn pixel_orientation_matches_phantom() {
    let s = small(vec![]);
    let ser = s.series(Channel::T2).unwrap();
    // Instance 1 = phantom slice z = D-1; pixel (r, c) = voxel (D-1, H-1-r, W-1-c).
    let obj = parse_part10(&ser.instances[0]).unwrap();
    let slope = get_f64s(&obj, tags::RESCALE_SLOPE).unwrap()[0];
    let icpt = get_f64s(&obj, tags::RESCALE_INTERCEPT).unwrap()[0];
    assert!(icpt < 0.0, "T2 carries an intercept");
    let px: Vec<u16> = obj
        .element(tags::PIXEL_DATA)
        .unwrap()
        .to_multi_int::<u16>()
        .unwrap();
    let [d, h, w] = s.grid.dims;
    let ch = s.volume.channel(Channel::T2.index());
    let mut worst = 0f64;
    for r in 0..h {
        for c in 0..w {
            let want = ch[((d - 1) * h + (h - 1 - r)) * w + (w - 1 - c)] as f64;
            let got = px[r * w + c] as f64 * slope + icpt;
            if want > 0.0 {
                worst = worst.max((want - got).abs());
            }
        }
    }
    assert!(worst <= slope, "max error {worst} > slope {slope}");
}

#[test]
fn faults_are_applied() {
    let s = small(vec![
        Fault::DropSlice {
            channel: Channel::T1,
            index: 5,
        },
        Fault::OtherFrameOfReference(Channel::Flair),
        Fault::GantryTilt {
            channel: Channel::T2,
            degrees: 12.0,
        },
    ]);
    assert_eq!(s.series(Channel::T1).unwrap().instances.len(), 11);
    let fl = parse_part10(&s.series(Channel::Flair).unwrap().instances[0]).unwrap();
    assert_ne!(
        get_str(&fl, tags::FRAME_OF_REFERENCE_UID).unwrap(),
        s.frame_of_reference_uid
    );
    let t2 = parse_part10(&s.series(Channel::T2).unwrap().instances[0]).unwrap();
    let iop = get_f64s(&t2, tags::IMAGE_ORIENTATION_PATIENT).unwrap();
    assert!((iop[4] - 12f64.to_radians().cos()).abs() < 1e-6);
}

#[test]
fn enhanced_is_one_multiframe_instance() {
    let s = synth_study(&SynthOptions {
        dims: [6, 8, 8],
        spacing: [3.0; 3],
        enhanced: true,
        channels: vec![Channel::Flair],
        ..SynthOptions::default()
    })
    .unwrap();
    let ser = &s.series[0];
    assert_eq!(ser.instances.len(), 1);
    let o = parse_part10(&ser.instances[0]).unwrap();
    assert_eq!(
        get_str(&o, tags::SOP_CLASS_UID).unwrap(),
        dcm::ENHANCED_MR_IMAGE_STORAGE
    );
    assert_eq!(get_str(&o, tags::NUMBER_OF_FRAMES).unwrap(), "6");
    assert_eq!(
        dcm::get_items(&o, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE).len(),
        6
    );
}
