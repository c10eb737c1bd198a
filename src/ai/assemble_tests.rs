//! Unit tests of volume assembly on synthetic studies (round trip to the
//! phantom, oblique and enhanced input, every geometry skip, modality LUT).

use dicom_core::{DataElement, PrimitiveValue, VR};

use super::*;
use crate::ai::dcm::{self, parse_part10};
use crate::ai::synth::{synth_study, Fault, SynthOptions, SynthStudy};

type Obj = FileDicomObject<InMemDicomObject>;

fn opts_small(faults: Vec<Fault>) -> SynthOptions {
    SynthOptions {
        dims: [20, 24, 28],
        spacing: [4.0, 4.0, 4.0],
        faults,
        ..SynthOptions::default()
    }
}

fn parsed(st: &SynthStudy) -> [Vec<Obj>; 4] {
    Channel::ALL.map(|ch| {
        st.series(ch)
            .unwrap()
            .instances
            .iter()
            .map(|b| parse_part10(b).unwrap())
            .collect()
    })
}

fn run(series: &[Vec<Obj>; 4], spacing: f64) -> Result<Assembled, SkipReason> {
    let o = AssembleOptions {
        spacing_mm: [spacing; 3],
        ..AssembleOptions::default()
    };
    assemble([&series[0], &series[1], &series[2], &series[3]], &o)
}

fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (
        a.iter().map(|&v| v as f64).sum::<f64>() / n,
        b.iter().map(|&v| v as f64).sum::<f64>() / n,
    );
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64 - ma, y as f64 - mb);
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    sab / (saa * sbb).sqrt()
}

#[test]
fn round_trip_gives_back_the_phantom() {
    let st = synth_study(&opts_small(vec![])).unwrap();
    let a = run(&parsed(&st), 4.0).unwrap();
    // Same grid as the phantom: same dims, same voxel centres, same axes.
    assert_eq!(a.grid.dims, st.grid.dims);
    assert_eq!(a.grid.axes, MODEL_AXES);
    for i in 0..3 {
        assert!(
            (a.grid.origin[i] - st.grid.origin[i]).abs() < 1e-6,
            "{:?} vs {:?}",
            a.grid.origin,
            st.grid.origin
        );
    }
    for ch in Channel::ALL {
        let (got, want) = (a.volume.channel(ch.index()), st.volume.channel(ch.index()));
        let max = want.iter().fold(0f32, |m, &v| m.max(v));
        let err = got
            .iter()
            .zip(want)
            .map(|(g, w)| (g - w).abs())
            .fold(0f32, f32::max);
        // Quantisation to 12 bits of the channel maximum (slope ≤ max/2000).
        assert!(err <= max / 2000.0, "{ch}: max error {err} (max {max})");
        assert!(correlation(got, want) > 0.999, "{ch}");
        // Background stays exactly 0 (the T2 intercept is undone).
        let bg = want
            .iter()
            .zip(got)
            .filter(|(w, _)| **w == 0.0)
            .all(|(_, g)| *g == 0.0);
        assert!(bg, "{ch}: background not 0");
    }
    // Reference = T1ce, sorted inferior → superior, single-frame.
    let r = &a.reference;
    assert_eq!(r.channel, Channel::T1ce);
    assert_eq!(r.series_uid, st.series(Channel::T1ce).unwrap().series_uid);
    assert_eq!((r.slices.len(), r.rows, r.cols), (20, 24, 28));
    assert!(r
        .slices
        .windows(2)
        .all(|w| w[1].position[2] > w[0].position[2]));
    assert!(r.slices.iter().all(|s| s.frame_number.is_none()));
    assert_eq!(r.orientation, [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    assert!(a.header.element_opt(tags::PIXEL_DATA).unwrap().is_none());
}

#[test]
fn instance_order_does_not_matter_and_labels_map_back() {
    let st = synth_study(&opts_small(vec![])).unwrap();
    let mut series = parsed(&st);
    let a = run(&series, 4.0).unwrap();
    for s in &mut series {
        s.reverse();
        s.swap(3, 11);
    }
    let b = run(&series, 4.0).unwrap();
    assert_eq!(a.volume, b.volume);
    assert_eq!(a.reference, b.reference);
    // Truth on the model grid -> reference pixels: (k, r, c) = phantom (k, H-1-r, W-1-c).
    let rl = labels_to_reference(&a, &st.labels).unwrap();
    let [d, h, w] = st.grid.dims;
    assert_eq!(rl.labels.dims, [d, h, w]);
    let mut checked = 0;
    for k in 0..d {
        for r in 0..h {
            for c in 0..w {
                let want = st.labels.labels[(k * h + (h - 1 - r)) * w + (w - 1 - c)];
                assert_eq!(rl.labels.labels[(k * h + r) * w + c], want);
                checked += (want != 0) as usize;
            }
        }
    }
    assert!(checked > 50, "tumour present ({checked} voxels)");
    let wrong = LabelVolume::new(vec![0; 8], [2, 2, 2], [1.0; 3]).unwrap();
    assert!(labels_to_reference(&a, &wrong).is_err());
}

/// Correlation of an assembled channel with the nearest phantom voxels,
/// away from the top and bottom slices (which an oblique stack does not cover).
fn corr_vs_phantom(a: &Assembled, st: &SynthStudy, ch: Channel) -> f64 {
    let (got, want) = (a.volume.channel(ch.index()), st.volume.channel(ch.index()));
    let [_, hh, ww] = a.grid.dims;
    let [pd, ph, pw] = st.grid.dims;
    let (mut g, mut wv) = (Vec::new(), Vec::new());
    for (i, &v) in got.iter().enumerate() {
        let p = a.grid.to_patient([
            (i / (hh * ww)) as f64,
            ((i / ww) % hh) as f64,
            (i % ww) as f64,
        ]);
        if let Some([z, y, x]) = st.grid.nearest(p) {
            if z >= pd / 6 && z < pd - pd / 6 {
                g.push(v);
                wv.push(want[(z * ph + y) * pw + x]);
            }
        }
    }
    correlation(&g, &wv)
}

#[test]
fn coarser_model_grid_and_oblique_series() {
    let st = synth_study(&SynthOptions {
        dims: [24, 32, 32],
        spacing: [3.0; 3],
        faults: vec![Fault::Oblique {
            channel: Channel::T2,
            degrees: 12.0,
        }],
        ..SynthOptions::default()
    })
    .unwrap();
    let mut series = parsed(&st);
    let a = run(&series, 4.5).unwrap();
    assert_eq!(a.grid.dims, [16, 21, 21]);
    for ch in Channel::ALL {
        let c = corr_vs_phantom(&a, &st, ch);
        // The oblique series is interpolated twice (synthesis, assembly): blurrier.
        let min = if ch == Channel::T2 { 0.85 } else { 0.95 };
        assert!(c > min, "{ch}: correlation {c}");
    }
    // Control: the same rotated pixels under an axial header (geometry ignored)
    // must match clearly worse, so the test above does check the geometry.
    let t1 = series[Channel::T1.index()].clone();
    for (o, r) in series[Channel::T2.index()].iter_mut().zip(&t1) {
        let ipp = dcm::get_f64s(r, tags::IMAGE_POSITION_PATIENT).unwrap();
        dcm::put_ds(o, tags::IMAGE_POSITION_PATIENT, &ipp);
        dcm::put_ds(
            o,
            tags::IMAGE_ORIENTATION_PATIENT,
            &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        );
    }
    let wrong = run(&series, 4.5).unwrap();
    let (good, bad) = (
        corr_vs_phantom(&a, &st, Channel::T2),
        corr_vs_phantom(&wrong, &st, Channel::T2),
    );
    assert!(
        good > bad + 0.05,
        "oblique geometry: {good} vs ignored {bad}"
    );
}

#[test]
fn enhanced_multiframe_equals_classic() {
    let classic = synth_study(&SynthOptions {
        uid_seed: Some(5),
        ..opts_small(vec![])
    })
    .unwrap();
    let enhanced = synth_study(&SynthOptions {
        uid_seed: Some(5),
        enhanced: true,
        ..opts_small(vec![])
    })
    .unwrap();
    let a = run(&parsed(&classic), 4.0).unwrap();
    let b = run(&parsed(&enhanced), 4.0).unwrap();
    assert_eq!(a.volume, b.volume);
    assert_eq!(a.grid, b.grid);
    assert_eq!(b.reference.slices.len(), 20);
    // Sorted ascending: frame 20 (written first, the top slice) comes last.
    assert_eq!(b.reference.slices[0].frame_number, Some(20));
    assert_eq!(b.reference.slices[19].frame_number, Some(1));
    assert_eq!(
        b.reference.slices[0].sop_class_uid,
        dcm::ENHANCED_MR_IMAGE_STORAGE
    );
}

#[test]
fn modality_lut_is_applied() {
    let st = synth_study(&opts_small(vec![])).unwrap();
    let mut series = parsed(&st);
    let a = run(&series, 4.0).unwrap();
    // Double every FLAIR slope: the FLAIR channel doubles, the others do not move.
    for obj in &mut series[Channel::Flair.index()] {
        let s = dcm::get_f64(obj, tags::RESCALE_SLOPE).unwrap();
        dcm::put_ds(obj, tags::RESCALE_SLOPE, &[2.0 * s]);
    }
    let b = run(&series, 4.0).unwrap();
    let (fa, fb) = (a.volume.channel(3), b.volume.channel(3));
    assert!(fa
        .iter()
        .zip(fb)
        .all(|(x, y)| (2.0 * x - y).abs() <= 1e-5 * x.abs().max(1.0)));
    assert!(fa.iter().any(|&v| v > 0.0));
    assert_eq!(a.volume.channel(0), b.volume.channel(0));
}

fn first_skip(faults: Vec<Fault>) -> SkipReason {
    let st = synth_study(&opts_small(faults)).unwrap();
    run(&parsed(&st), 4.0).unwrap_err()
}

#[test]
fn injected_faults_are_skipped() {
    assert_eq!(
        first_skip(vec![Fault::DropSlice {
            channel: Channel::T1,
            index: 7
        }]),
        SkipReason::MissingSlices {
            channel: Channel::T1,
            missing: 1
        }
    );
    assert_eq!(
        first_skip(vec![Fault::OtherFrameOfReference(Channel::Flair)]),
        SkipReason::FramesOfReferenceDiffer
    );
    assert_eq!(
        SkipReason::FramesOfReferenceDiffer.to_string(),
        "frames of reference differ; no registration is attempted"
    );
    match first_skip(vec![Fault::GantryTilt {
        channel: Channel::T2,
        degrees: 12.0,
    }]) {
        SkipReason::GantryTilt { channel, degrees } => {
            assert_eq!(channel, Channel::T2);
            assert!((degrees - 12.0).abs() < 0.1, "{degrees}");
        }
        e => panic!("unexpected {e:?}"),
    }
}

fn edited(edit: &dyn Fn(&mut Vec<Obj>)) -> SkipReason {
    let st = synth_study(&opts_small(vec![])).unwrap();
    let mut series = parsed(&st);
    edit(&mut series[Channel::T2.index()]);
    run(&series, 4.0).unwrap_err()
}

#[test]
fn header_defects_are_skipped() {
    let dup = edited(&|s| {
        let mut extra = s[4].clone();
        dcm::put_str(&mut extra, tags::SOP_INSTANCE_UID, VR::UI, &dcm::new_uid());
        s.push(extra);
    });
    assert_eq!(
        dup,
        SkipReason::DuplicateSlices {
            channel: Channel::T2,
            count: 1
        }
    );
    let mixed = edited(&|s| {
        let c = 10f64.to_radians().cos();
        let sn = 10f64.to_radians().sin();
        dcm::put_ds(
            &mut s[5],
            tags::IMAGE_ORIENTATION_PATIENT,
            &[1.0, 0.0, 0.0, 0.0, c, sn],
        );
    });
    assert_eq!(mixed, SkipReason::MixedOrientation(Channel::T2));
    let spacing = edited(&|s| dcm::put_ds(&mut s[2], tags::PIXEL_SPACING, &[4.0, 3.5]));
    assert_eq!(spacing, SkipReason::InconsistentPixelGrid(Channel::T2));
    let irregular = edited(&|s| {
        let mut p = dcm::get_f64s(&s[6], tags::IMAGE_POSITION_PATIENT).unwrap();
        p[2] += 1.6; // 0.4 of the 4 mm step
        dcm::put_ds(&mut s[6], tags::IMAGE_POSITION_PATIENT, &p);
    });
    assert_eq!(irregular, SkipReason::IrregularSpacing(Channel::T2));
    let no_ipp = edited(&|s| {
        s[0].remove_element(tags::IMAGE_POSITION_PATIENT);
    });
    assert_eq!(
        no_ipp,
        SkipReason::MissingGeometry {
            channel: Channel::T2,
            what: "ImagePositionPatient"
        }
    );
    let colour = edited(&|s| {
        s[0].put(DataElement::new(
            tags::SAMPLES_PER_PIXEL,
            VR::US,
            PrimitiveValue::from(3u16),
        ));
    });
    assert!(matches!(
        colour,
        SkipReason::Unsupported {
            channel: Channel::T2,
            ..
        }
    ));
    assert_eq!(edited(&|s| s.clear()), SkipReason::NoInstances(Channel::T2));
    assert_eq!(
        edited(&|s| s.truncate(2)),
        SkipReason::TooFewSlices {
            channel: Channel::T2,
            slices: 2,
            min: 3
        }
    );
}

#[test]
fn missing_coverage_and_size_cap() {
    let st = synth_study(&opts_small(vec![])).unwrap();
    let mut series = parsed(&st);
    // Move the FLAIR stack 1 m away: no overlap with the reference.
    for obj in &mut series[Channel::Flair.index()] {
        let mut p = dcm::get_f64s(obj, tags::IMAGE_POSITION_PATIENT).unwrap();
        p[0] += 1000.0;
        dcm::put_ds(obj, tags::IMAGE_POSITION_PATIENT, &p);
    }
    assert_eq!(
        run(&series, 4.0).unwrap_err(),
        SkipReason::NoOverlap(Channel::Flair)
    );
    let series = parsed(&st);
    let o = AssembleOptions {
        spacing_mm: [4.0; 3],
        max_voxels: 1000,
        ..AssembleOptions::default()
    };
    let e = assemble([&series[0], &series[1], &series[2], &series[3]], &o).unwrap_err();
    assert_eq!(
        e,
        SkipReason::TooLarge {
            voxels: 20 * 24 * 28,
            cap: 1000
        }
    );
}
