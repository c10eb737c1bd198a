//! Unit tests of series selection on vendor-like series sets.

use super::*;

fn cand(uid: &str, desc: &str) -> SeriesCandidate {
    SeriesCandidate {
        series_uid: uid.into(),
        modality: "MR".into(),
        sop_class_uid: dcm::MR_IMAGE_STORAGE.into(),
        n_instances: 30,
        frames_per_instance: 1,
        series_description: desc.into(),
        image_type: "ORIGINAL\\PRIMARY\\M\\ND".into(),
        frame_of_reference_uid: Some("1.2.3".into()),
        ..Default::default()
    }
}

fn with_agent(mut c: SeriesCandidate) -> SeriesCandidate {
    c.contrast_agent = Some("Gadovist".into());
    c
}

fn rules() -> SelectionRules {
    SelectionRules::default()
}

#[test]
fn siemens_names_and_agent_decide_t1ce() {
    let mut seg = cand("seg", "Glia tumour segmentation t1 flair t2");
    seg.modality = "SEG".into();
    seg.sop_class_uid = dcm::SEGMENTATION_STORAGE.into();
    let cands = vec![
        cand("loc", "localizer"),
        cand("t1", "t1_mprage_tra_iso"),
        // Same name as the native series: only the agent attribute tells them apart.
        with_agent(cand("t1c", "t1_mprage_tra_iso")),
        cand("t2", "t2_tse_tra"),
        cand("fl", "t2_tirm_tra_dark-fluid"),
        cand("dwi", "ep2d_diff_3scan_trace_p2"),
        cand("adc", "ep2d_diff_3scan_trace_p2_ADC"),
        seg,
    ];
    let s = select(&cands, &rules()).unwrap();
    assert_eq!(
        (
            s.t1.as_str(),
            s.t1ce.as_str(),
            s.t2.as_str(),
            s.flair.as_str()
        ),
        ("t1", "t1c", "t2", "fl")
    );
    assert_eq!(s.in_channel_order(), ["t1c", "t1", "t2", "fl"]);
}

#[test]
fn ge_and_philips_names() {
    let ge = vec![
        cand("a", "AX T1"),
        cand("b", "AX T1 POST GAD"),
        cand("c", "AX T2 FRFSE"),
        cand("d", "AX T2 FLAIR"),
        cand("e", "3-PL LOC"),
    ];
    let s = select(&ge, &rules()).unwrap();
    assert_eq!(
        (
            s.t1.as_str(),
            s.t1ce.as_str(),
            s.t2.as_str(),
            s.flair.as_str()
        ),
        ("a", "b", "c", "d")
    );
    let mut fspgr = cand("f", "Ax 3D FSPGR");
    fspgr.protocol_name = "BRAIN TUMOR".into();
    let ge2 = vec![
        cand("p", "SAG FSPGR BRAVO PRE"),
        with_agent(fspgr),
        cand("c", "AX T2 FSE"),
        cand("d", "Ax T2 FLAIR"),
    ];
    let s = select(&ge2, &rules()).unwrap();
    assert_eq!((s.t1.as_str(), s.t1ce.as_str()), ("p", "f"));
    let philips = vec![
        cand("1", "T1W_3D_TFE"),
        cand("2", "T1W_3D_TFE +C"),
        cand("3", "T2W_TSE"),
        cand("4", "FLAIR_longTR"),
        cand("5", "DWI_b1000"),
    ];
    let s = select(&philips, &rules()).unwrap();
    assert_eq!(
        (
            s.t1.as_str(),
            s.t1ce.as_str(),
            s.t2.as_str(),
            s.flair.as_str()
        ),
        ("1", "2", "3", "4")
    );
}

#[test]
fn repeats_pick_most_slices_then_latest() {
    let mut a = with_agent(cand("t1c-a", "t1_mprage_tra_post"));
    a.series_number = Some(7);
    let mut b = a.clone();
    b.series_uid = "t1c-b".into();
    b.series_number = Some(9);
    let mut c = a.clone();
    c.series_uid = "t1c-c".into();
    c.series_number = Some(3);
    c.n_instances = 20; // fewer slices: loses despite nothing else
    let base = vec![
        cand("t1", "t1_se_tra"),
        cand("t2", "t2_tse_tra"),
        cand("fl", "t2_flair_tra"),
    ];
    let mut cands = base.clone();
    cands.extend([a.clone(), b.clone(), c.clone()]);
    assert_eq!(select(&cands, &rules()).unwrap().t1ce, "t1c-b");
    // Order of candidates does not matter.
    cands.reverse();
    assert_eq!(select(&cands, &rules()).unwrap().t1ce, "t1c-b");
    // More slices beats a later series number.
    let mut cands = base;
    a.n_instances = 40;
    cands.extend([a, b]);
    assert_eq!(select(&cands, &rules()).unwrap().t1ce, "t1c-a");
}

#[test]
fn unmarked_t1_pair_is_ambiguous_and_missing_series_are_named() {
    let cands = vec![
        cand("a", "t1_se_tra"),
        cand("b", "t1_mprage_tra"),
        cand("c", "t2_tse_tra"),
        cand("d", "flair"),
    ];
    let e = select(&cands, &rules()).unwrap_err();
    assert_eq!(
        e,
        SkipReason::Ambiguous {
            channel: Channel::T1ce,
            candidates: 2
        }
    );
    assert_eq!(
        e.to_string(),
        "T1ce ambiguous: 2 candidates and no contrast-agent attribute or name to tell them apart"
    );
    let no_flair = vec![
        cand("a", "t1_se_tra"),
        with_agent(cand("b", "t1_se_tra")),
        cand("c", "t2_tse_tra"),
    ];
    let e = select(&no_flair, &rules()).unwrap_err();
    assert_eq!(e, SkipReason::NoSeries(Channel::Flair));
    assert_eq!(e.to_string(), "no FLAIR series found");
    let one_t1 = vec![
        cand("a", "t1_se_tra"),
        cand("c", "t2_tse_tra"),
        cand("d", "flair"),
    ];
    assert_eq!(
        select(&one_t1, &rules()).unwrap_err(),
        SkipReason::NoSeries(Channel::T1ce)
    );
    // Too few slices: ignored.
    let mut short = cand("d", "flair");
    short.n_instances = 3;
    let cands = vec![
        cand("a", "t1"),
        with_agent(cand("b", "t1")),
        cand("c", "t2"),
        short,
    ];
    assert_eq!(
        select(&cands, &rules()).unwrap_err(),
        SkipReason::NoSeries(Channel::Flair)
    );
}

#[test]
fn not_mr() {
    let mut ct = cand("ct", "HEAD W/O");
    ct.modality = "CT".into();
    let e = select(&[ct], &rules()).unwrap_err();
    assert_eq!(e, SkipReason::NotMr);
    assert_eq!(e.to_string(), "not an MR study");
    assert_eq!(select(&[], &rules()).unwrap_err(), SkipReason::NotMr);
}

#[test]
fn timing_fallback_for_unnamed_series() {
    let timed = |uid: &str, tr: f64, te: f64, ti: Option<f64>, agent: bool| {
        let mut c = cand(uid, "");
        c.repetition_time = Some(tr);
        c.echo_time = Some(te);
        c.inversion_time = ti;
        if agent {
            c.contrast_agent = Some("GD".into());
        }
        c
    };
    let cands = vec![
        timed("se", 550.0, 9.0, None, false),
        timed("mp", 2300.0, 2.3, Some(900.0), true),
        timed("t2", 5000.0, 98.0, None, false),
        timed("fl", 9000.0, 81.0, Some(2500.0), false),
        timed("odd", 30.0, 5.0, Some(5.0), false),
    ];
    let s = select(&cands, &rules()).unwrap();
    assert_eq!(
        (
            s.t1.as_str(),
            s.t1ce.as_str(),
            s.t2.as_str(),
            s.flair.as_str()
        ),
        ("se", "mp", "t2", "fl")
    );
    let off = SelectionRules {
        timing_fallback: false,
        ..rules()
    };
    assert_eq!(
        select(&cands, &off).unwrap_err(),
        SkipReason::NoSeries(Channel::T1)
    );
}

#[test]
fn agent_none_is_not_contrast_and_config_patterns_apply() {
    let mut pre = cand("a", "T1 axial");
    pre.contrast_agent = Some("NONE".into());
    let cands = vec![
        pre,
        with_agent(cand("b", "T1 axial")),
        cand("c", "T2 axial"),
        cand("d", "Water suppressed"),
    ];
    // "Water suppressed" is a site-specific FLAIR name: unknown by default ...
    assert_eq!(
        select(&cands, &rules()).unwrap_err(),
        SkipReason::NoSeries(Channel::Flair)
    );
    // ... and recognised once configured.
    let mut r = rules();
    r.flair.push("water suppressed".into());
    let s = select(&cands, &r).unwrap();
    assert_eq!(
        (s.t1.as_str(), s.t1ce.as_str(), s.flair.as_str()),
        ("a", "b", "d")
    );
}

#[test]
fn frames_of_reference() {
    let mut fl_other = cand("fl2", "t2_flair_tra");
    fl_other.frame_of_reference_uid = Some("9.9".into());
    fl_other.n_instances = 60; // preferred by rank, but in another frame of reference
    let base = vec![
        cand("t1", "t1_se"),
        with_agent(cand("t1c", "t1_se")),
        cand("t2", "t2_tse"),
    ];
    let mut cands = base.clone();
    cands.extend([fl_other.clone(), cand("fl1", "t2_flair_tra")]);
    assert_eq!(select(&cands, &rules()).unwrap().flair, "fl1");
    let mut cands = base;
    cands.push(fl_other);
    assert_eq!(
        select(&cands, &rules()).unwrap_err(),
        SkipReason::FramesOfReferenceDiffer
    );
}

#[test]
fn explicit_choice_is_validated() {
    let mut seg = cand("seg", "AI");
    seg.modality = "SEG".into();
    let cands = vec![
        cand("a", "x"),
        cand("b", "y"),
        cand("c", "z"),
        cand("d", "w"),
        seg,
    ];
    let s = select_explicit(&cands, ["a", "b", "c", "d"]).unwrap();
    assert_eq!(
        (
            s.t1.as_str(),
            s.t1ce.as_str(),
            s.t2.as_str(),
            s.flair.as_str()
        ),
        ("a", "b", "c", "d")
    );
    assert_eq!(
        select_explicit(&cands, ["a", "b", "c", "zz"]).unwrap_err(),
        SkipReason::UnknownSeries(Channel::Flair)
    );
    assert_eq!(
        select_explicit(&cands, ["a", "seg", "c", "d"]).unwrap_err(),
        SkipReason::NotMrSeries(Channel::T1ce)
    );
    assert_eq!(
        select_explicit(&cands, ["a", "b", "a", "d"]).unwrap_err(),
        SkipReason::SameSeriesTwice(Channel::T1, Channel::T2)
    );
}

#[test]
fn from_header_reads_classic_and_enhanced() {
    use crate::ai::synth::{synth_study, SynthOptions};
    for enhanced in [false, true] {
        let st = synth_study(&SynthOptions {
            dims: [4, 6, 6],
            spacing: [3.0; 3],
            enhanced,
            ..SynthOptions::default()
        })
        .unwrap();
        let cands: Vec<SeriesCandidate> = st
            .series
            .iter()
            .map(|s| {
                let obj = dcm::parse_part10(&s.instances[0]).unwrap();
                SeriesCandidate::from_header(&s.series_uid, s.instances.len(), &obj)
            })
            .collect();
        let fl = cands
            .iter()
            .find(|c| c.series_description.contains("tirm"))
            .unwrap();
        assert_eq!(fl.slices(), 4);
        assert_eq!(fl.inversion_time, Some(2500.0));
        assert_eq!(fl.repetition_time, Some(9000.0));
        assert_eq!(fl.echo_time, Some(81.0));
        assert_eq!(fl.orientation, Some([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]));
        assert_eq!(
            fl.frame_of_reference_uid.as_deref(),
            Some(st.frame_of_reference_uid.as_str())
        );
        let r = SelectionRules {
            min_slices: 4,
            ..rules()
        };
        let s = select(&cands, &r).unwrap();
        for ch in Channel::ALL {
            assert_eq!(
                s.uid(ch),
                st.series(ch).unwrap().series_uid,
                "{ch} enhanced={enhanced}"
            );
        }
    }
}
