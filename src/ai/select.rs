//! Series selection: which four series of an arriving study are the model's
//! T1, T1ce, T2 and FLAIR inputs. Each series is summarised from the header
//! of one of its instances ([`SeriesCandidate::from_header`]); vendor-like
//! names (Siemens, GE, Philips) are matched case-insensitively by the
//! configurable [`SelectionRules`] (`[ai.selection]`), with TR/TE/TI ranges
//! as a fallback and the contrast-agent attributes deciding T1 versus T1ce.
//! Non-MR and derived series (Glia's own SEG included) are ignored. When a
//! study cannot be used, a [`SkipReason`] says why in words that carry no
//! patient data; the same enum reports volume-assembly problems
//! ([`super::assemble`]).

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use serde::{Deserialize, Serialize};

use super::dcm::{self, get_f64, get_f64s, get_int, get_items, get_str, Channel};

/// Why a study (or series set) is not segmented. Display texts are for
/// people and job records: they name channels, never patient data.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SkipReason {
    /// No MR series at all.
    #[error("not an MR study")]
    NotMr,
    /// No series was recognised for a channel.
    #[error("no {0} series found")]
    NoSeries(Channel),
    /// T1-weighted series exist but none can be told to be the contrast-enhanced one.
    #[error("{channel} ambiguous: {candidates} candidates and no contrast-agent attribute or name to tell them apart")]
    Ambiguous {
        /// The channel concerned.
        channel: Channel,
        /// How many series could be it.
        candidates: usize,
    },
    /// An explicitly chosen series is not in the study.
    #[error("the series chosen as {0} is not in this study")]
    UnknownSeries(Channel),
    /// An explicitly chosen series is not an MR image series.
    #[error("the series chosen as {0} is not an MR image series")]
    NotMrSeries(Channel),
    /// One series was chosen for two channels.
    #[error("the same series was chosen as {0} and {1}")]
    SameSeriesTwice(Channel, Channel),
    /// The four series are not in one frame of reference.
    #[error("frames of reference differ; no registration is attempted")]
    FramesOfReferenceDiffer,
    /// A series has no instances.
    #[error("{0} series has no instances")]
    NoInstances(Channel),
    /// Too few slices to make a volume.
    #[error("{channel} series has {slices} slices, at least {min} are needed")]
    TooFewSlices {
        /// The channel concerned.
        channel: Channel,
        /// Slices found.
        slices: usize,
        /// Configured minimum.
        min: usize,
    },
    /// A geometry attribute is missing or malformed.
    #[error("{channel} series: {what} missing or invalid")]
    MissingGeometry {
        /// The channel concerned.
        channel: Channel,
        /// Which attribute.
        what: &'static str,
    },
    /// Pixel data Glia cannot use (colour, undecodable, unsupported SOP class).
    #[error("{channel} series: {what}")]
    Unsupported {
        /// The channel concerned.
        channel: Channel,
        /// What is wrong.
        what: String,
    },
    /// Slices of one series have different orientations.
    #[error("{0} series mixes slice orientations")]
    MixedOrientation(Channel),
    /// Slices of one series differ in rows, columns or pixel spacing.
    #[error("{0} series: slices differ in size or pixel spacing")]
    InconsistentPixelGrid(Channel),
    /// Several slices at one position.
    #[error("{channel} series: {count} duplicate slice positions")]
    DuplicateSlices {
        /// The channel concerned.
        channel: Channel,
        /// Slices sharing a position with another.
        count: usize,
    },
    /// Gaps in the slice stack.
    #[error("{channel} series: {missing} missing slice(s)")]
    MissingSlices {
        /// The channel concerned.
        channel: Channel,
        /// Estimated number of missing slices.
        missing: usize,
    },
    /// Slice spacing varies without being a whole gap.
    #[error("{0} series: irregular slice spacing")]
    IrregularSpacing(Channel),
    /// Slice positions do not advance along the slice normal.
    #[error("{channel} series: gantry tilt of {degrees:.1} degrees is not supported")]
    GantryTilt {
        /// The channel concerned.
        channel: Channel,
        /// Angle between slice normal and stacking direction.
        degrees: f64,
    },
    /// A series does not overlap the reference volume.
    #[error("{0} series does not cover the reference volume")]
    NoOverlap(Channel),
    /// The assembled volume would be too large.
    #[error("assembled volume of {voxels} voxels exceeds the cap of {cap}")]
    TooLarge {
        /// Voxels of the model grid.
        voxels: usize,
        /// Configured cap.
        cap: usize,
    },
}

/// What selection needs to know about one series, read from one instance header.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SeriesCandidate {
    /// SeriesInstanceUID.
    pub series_uid: String,
    /// Modality (MR, SEG, ...).
    pub modality: String,
    /// SOPClassUID of the instance read.
    pub sop_class_uid: String,
    /// Instances in the series.
    pub n_instances: usize,
    /// Frames per instance (NumberOfFrames, 1 when absent).
    pub frames_per_instance: usize,
    /// SeriesNumber.
    pub series_number: Option<i64>,
    /// SeriesDescription.
    pub series_description: String,
    /// ProtocolName.
    pub protocol_name: String,
    /// SequenceName (or PulseSequenceName for enhanced MR).
    pub sequence_name: String,
    /// ContrastBolusAgent, or the first agent code meaning of ContrastBolusAgentSequence.
    pub contrast_agent: Option<String>,
    /// ImageType, values joined with `\`.
    pub image_type: String,
    /// RepetitionTime in ms.
    pub repetition_time: Option<f64>,
    /// EchoTime in ms (EffectiveEchoTime for enhanced MR).
    pub echo_time: Option<f64>,
    /// InversionTime in ms (InversionTimes for enhanced MR).
    pub inversion_time: Option<f64>,
    /// FrameOfReferenceUID.
    pub frame_of_reference_uid: Option<String>,
    /// ImageOrientationPatient (top level or shared functional groups).
    pub orientation: Option<[f64; 6]>,
}

/// First value of `tag` in `obj`, else in the shared functional group item
/// `group`, else in the first per-frame item's `group`.
fn fg_f64s(
    obj: &InMemDicomObject,
    group: dicom_core::Tag,
    tag: dicom_core::Tag,
) -> Option<Vec<f64>> {
    get_f64s(obj, tag).or_else(|| {
        [
            tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
            tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
        ]
        .iter()
        .find_map(|fg| {
            let fg = get_items(obj, *fg).first()?;
            get_f64s(get_items(fg, group).first()?, tag)
        })
    })
}

impl SeriesCandidate {
    /// Summarises a series from one of its instances' header (pixel data not needed).
    pub fn from_header(series_uid: &str, n_instances: usize, obj: &InMemDicomObject) -> Self {
        let s = |t| get_str(obj, t).unwrap_or_default();
        let agent = get_str(obj, tags::CONTRAST_BOLUS_AGENT).or_else(|| {
            get_items(obj, tags::CONTRAST_BOLUS_AGENT_SEQUENCE)
                .first()
                .map(|it| get_str(it, tags::CODE_MEANING).unwrap_or_else(|| "agent".into()))
        });
        let orientation = fg_f64s(
            obj,
            tags::PLANE_ORIENTATION_SEQUENCE,
            tags::IMAGE_ORIENTATION_PATIENT,
        )
        .filter(|v| v.len() == 6)
        .map(|v| [v[0], v[1], v[2], v[3], v[4], v[5]]);
        let sequence = get_str(obj, tags::SEQUENCE_NAME)
            .or_else(|| get_str(obj, tags::PULSE_SEQUENCE_NAME))
            .unwrap_or_default();
        Self {
            series_uid: series_uid.to_string(),
            modality: s(tags::MODALITY),
            sop_class_uid: s(tags::SOP_CLASS_UID),
            n_instances,
            frames_per_instance: get_int(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) as usize,
            series_number: get_int(obj, tags::SERIES_NUMBER),
            series_description: s(tags::SERIES_DESCRIPTION),
            protocol_name: s(tags::PROTOCOL_NAME),
            sequence_name: sequence,
            contrast_agent: agent,
            image_type: s(tags::IMAGE_TYPE),
            repetition_time: fg_f64s(
                obj,
                tags::MR_TIMING_AND_RELATED_PARAMETERS_SEQUENCE,
                tags::REPETITION_TIME,
            )
            .map(|v| v[0]),
            echo_time: get_f64(obj, tags::ECHO_TIME).or_else(|| {
                fg_f64s(obj, tags::MR_ECHO_SEQUENCE, tags::EFFECTIVE_ECHO_TIME).map(|v| v[0])
            }),
            inversion_time: get_f64(obj, tags::INVERSION_TIME).or_else(|| {
                fg_f64s(obj, tags::MR_MODIFIER_SEQUENCE, tags::INVERSION_TIMES).map(|v| v[0])
            }),
            frame_of_reference_uid: get_str(obj, tags::FRAME_OF_REFERENCE_UID),
            orientation,
        }
    }

    /// Slices (instances × frames).
    pub fn slices(&self) -> usize {
        self.n_instances * self.frames_per_instance
    }

    /// Whether this is an MR image series Glia can read.
    pub fn is_mr_image(&self) -> bool {
        self.modality.eq_ignore_ascii_case("MR")
            && (self.sop_class_uid == dcm::MR_IMAGE_STORAGE
                || self.sop_class_uid == dcm::ENHANCED_MR_IMAGE_STORAGE)
    }

    fn has_agent(&self) -> bool {
        self.contrast_agent.as_deref().is_some_and(|a| {
            let a = a.trim().to_ascii_lowercase();
            !a.is_empty() && !matches!(a.as_str(), "none" | "no" | "n/a" | "na" | "-" | "0")
        })
    }
}

/// The `[ai.selection]` table: name patterns and timing fallbacks.
///
/// Matching: the series' SeriesDescription, ProtocolName and SequenceName are
/// lower-cased, `_ - / .` become spaces, and the text is padded with one
/// space at each end; a pattern (normalised the same way) matches when it
/// occurs in that text, so `" pre"` matches the word start "pre" only.
/// Order: exclude, then FLAIR, then T1 family, then T2; TR/TE/TI ranges
/// decide series whose names match nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SelectionRules {
    /// Series to ignore (localisers, diffusion, perfusion, SWI, T2*, ...).
    pub exclude: Vec<String>,
    /// FLAIR names (Siemens "tirm"/"dark-fluid", GE/Philips "FLAIR").
    pub flair: Vec<String>,
    /// T1-weighted names (Siemens t1_mprage/t1_se, GE FSPGR/BRAVO, Philips T1W_3D_TFE).
    pub t1: Vec<String>,
    /// T2-weighted names (t2_tse, T2W, FSE).
    pub t2: Vec<String>,
    /// Names marking a T1 series as post-contrast ("post", "+c", "gd", "gad").
    pub post_contrast: Vec<String>,
    /// Names marking a T1 series as native ("pre") when no agent attribute is set.
    pub pre_contrast: Vec<String>,
    /// Use TR/TE/TI ranges for series whose names match nothing.
    pub timing_fallback: bool,
    /// FLAIR: inversion time range (ms).
    pub flair_inversion_ms: [f64; 2],
    /// T2: echo time range (ms).
    pub t2_echo_ms: [f64; 2],
    /// T2: minimum repetition time (ms).
    pub t2_min_repetition_ms: f64,
    /// T1 (spin echo): maximum repetition time (ms).
    pub t1_max_repetition_ms: f64,
    /// T1: maximum echo time (ms).
    pub t1_max_echo_ms: f64,
    /// T1 (inversion-prepared gradient echo, MPRAGE-like): inversion time range (ms).
    pub t1_inversion_ms: [f64; 2],
    /// Series with fewer slices are ignored.
    pub min_slices: usize,
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl Default for SelectionRules {
    fn default() -> Self {
        Self {
            exclude: strs(&[
                "localizer",
                "localiser",
                "scout",
                "survey",
                "t2*",
                "t2star",
                "t2 star",
                "swi",
                "dwi",
                "diffusion",
                " adc",
                "trace",
                "dti",
                "perfusion",
                " perf",
                " dsc",
                " dce",
                " asl",
                " mip",
                " tof",
                "angio",
                " bold",
                "mosaic",
                "subtract",
            ]),
            flair: strs(&["flair", "tirm", "dark fluid", "darkfluid"]),
            t1: strs(&[
                "t1", "mprage", "mp rage", "fspgr", "bravo", "spgr", " tfe", "vibe",
            ]),
            t2: strs(&["t2", " tse", " fse", "frfse"]),
            post_contrast: strs(&[
                "post", "+c", "c+", " gd", "gad", "contrast", " ce ", "t1ce", "+km", " km ",
            ]),
            pre_contrast: strs(&[" pre", "native", "nativ "]),
            timing_fallback: true,
            flair_inversion_ms: [1500.0, 3500.0],
            t2_echo_ms: [60.0, 300.0],
            t2_min_repetition_ms: 1500.0,
            t1_max_repetition_ms: 1000.0,
            t1_max_echo_ms: 30.0,
            t1_inversion_ms: [500.0, 1300.0],
            min_slices: 10,
        }
    }
}

fn normalise(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push(' ');
    for c in s.chars() {
        out.push(match c {
            '_' | '-' | '/' | '.' => ' ',
            c => c.to_ascii_lowercase(),
        });
    }
    out.push(' ');
    out
}

/// The family a series was recognised as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Flair,
    T1,
    T2,
}

impl SelectionRules {
    fn matches(&self, text: &str, pats: &[String]) -> bool {
        pats.iter().any(|p| {
            let p = normalise(p);
            let p = p[1..p.len() - 1].to_string();
            !p.trim().is_empty() && text.contains(&p)
        })
    }

    fn classify(&self, c: &SeriesCandidate) -> Option<Class> {
        let text = normalise(&format!(
            "{} {} {}",
            c.series_description, c.protocol_name, c.sequence_name
        ));
        if self.matches(&text, &self.exclude) {
            return None;
        }
        if self.matches(&text, &self.flair) {
            return Some(Class::Flair);
        }
        if self.matches(&text, &self.t1) {
            return Some(Class::T1);
        }
        if self.matches(&text, &self.t2) {
            return Some(Class::T2);
        }
        if !self.timing_fallback {
            return None;
        }
        let (tr, te, ti) = (c.repetition_time?, c.echo_time?, c.inversion_time);
        let within = |v: f64, r: [f64; 2]| v >= r[0] && v <= r[1];
        match ti {
            Some(ti) if within(ti, self.flair_inversion_ms) => Some(Class::Flair),
            Some(ti) if within(ti, self.t1_inversion_ms) && te <= self.t1_max_echo_ms => {
                Some(Class::T1)
            }
            Some(_) => None,
            None if within(te, self.t2_echo_ms) && tr >= self.t2_min_repetition_ms => {
                Some(Class::T2)
            }
            None if tr <= self.t1_max_repetition_ms && te <= self.t1_max_echo_ms => Some(Class::T1),
            None => None,
        }
    }

    /// `Some(true)` post-contrast, `Some(false)` native, `None` unknown.
    fn contrast(&self, c: &SeriesCandidate) -> Option<bool> {
        if c.has_agent() {
            return Some(true);
        }
        let text = normalise(&format!("{} {}", c.series_description, c.protocol_name));
        if self.matches(&text, &self.pre_contrast) {
            Some(false)
        } else if self.matches(&text, &self.post_contrast) {
            Some(true)
        } else {
            None
        }
    }
}

/// The four series chosen (SeriesInstanceUIDs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// Native T1-weighted.
    pub t1: String,
    /// Contrast-enhanced T1-weighted.
    pub t1ce: String,
    /// T2-weighted.
    pub t2: String,
    /// FLAIR.
    pub flair: String,
}

impl Selection {
    /// The series of one channel.
    pub fn uid(&self, ch: Channel) -> &str {
        match ch {
            Channel::T1 => &self.t1,
            Channel::T1ce => &self.t1ce,
            Channel::T2 => &self.t2,
            Channel::Flair => &self.flair,
        }
    }

    /// The UIDs in engine channel order (T1ce, T1, T2, FLAIR).
    pub fn in_channel_order(&self) -> [&str; 4] {
        Channel::ALL.map(|c| self.uid(c))
    }
}

/// Deterministic preference among several series of one channel: original
/// over derived images, then most slices, then highest series number (the
/// latest repeat), then the UID.
fn rank(c: &SeriesCandidate) -> (bool, usize, i64, &str) {
    let original = !c.image_type.to_ascii_uppercase().starts_with("DERIVED");
    (
        original,
        c.slices(),
        c.series_number.unwrap_or(i64::MIN),
        c.series_uid.as_str(),
    )
}

fn best<'a>(v: &[&'a SeriesCandidate]) -> Option<&'a SeriesCandidate> {
    v.iter().copied().max_by(|a, b| rank(a).cmp(&rank(b)))
}

/// Picks T1, T1ce, T2 and FLAIR among a study's series.
///
/// Non-MR series (SEG, SR, PR ...), other SOP classes, excluded names and
/// series with fewer than `rules.min_slices` slices are ignored. Within a
/// channel, repeats are resolved by [`rank`]. When the best picks do not share
/// a frame of reference, the frame of reference that has all four channels
/// (preferring the best T1ce's) is used instead.
pub fn select(cands: &[SeriesCandidate], rules: &SelectionRules) -> Result<Selection, SkipReason> {
    if !cands.iter().any(|c| c.modality.eq_ignore_ascii_case("MR")) {
        return Err(SkipReason::NotMr);
    }
    let mut by: [Vec<&SeriesCandidate>; 4] = Default::default();
    let mut t1_unknown = Vec::new();
    for c in cands
        .iter()
        .filter(|c| c.is_mr_image() && c.slices() >= rules.min_slices)
    {
        match rules.classify(c) {
            Some(Class::Flair) => by[Channel::Flair.index()].push(c),
            Some(Class::T2) => by[Channel::T2.index()].push(c),
            Some(Class::T1) => match rules.contrast(c) {
                Some(true) => by[Channel::T1ce.index()].push(c),
                Some(false) => by[Channel::T1.index()].push(c),
                None => t1_unknown.push(c),
            },
            None => {}
        }
    }
    // T1 series without any contrast hint are native when a marked T1ce exists;
    // with none marked, two or more T1 series cannot be told apart.
    if !by[Channel::T1ce.index()].is_empty() {
        by[Channel::T1.index()].append(&mut t1_unknown);
    } else if !t1_unknown.is_empty() {
        let candidates = t1_unknown.len() + by[Channel::T1.index()].len();
        if candidates >= 2 {
            return Err(SkipReason::Ambiguous {
                channel: Channel::T1ce,
                candidates,
            });
        }
        by[Channel::T1.index()].append(&mut t1_unknown);
    }
    for ch in [Channel::T1, Channel::T1ce, Channel::T2, Channel::Flair] {
        if by[ch.index()].is_empty() {
            return Err(SkipReason::NoSeries(ch));
        }
    }
    let pick = |filter: Option<&str>| -> Option<[&SeriesCandidate; 4]> {
        let mut out = Vec::new();
        for v in &by {
            let ok: Vec<&SeriesCandidate> = v
                .iter()
                .copied()
                .filter(|c| filter.is_none() || c.frame_of_reference_uid.as_deref() == filter)
                .collect();
            out.push(best(&ok)?);
        }
        Some([out[0], out[1], out[2], out[3]])
    };
    let first = pick(None).expect("every channel has a candidate");
    let same_for = |p: &[&SeriesCandidate; 4]| {
        p[0].frame_of_reference_uid.is_some()
            && p.iter()
                .all(|c| c.frame_of_reference_uid == p[0].frame_of_reference_uid)
    };
    let chosen = if same_for(&first) {
        first
    } else {
        // Frames of reference holding all four channels, the best T1ce's first.
        let mut t1ce = by[Channel::T1ce.index()].clone();
        t1ce.sort_by(|a, b| rank(b).cmp(&rank(a)));
        t1ce.iter()
            .filter_map(|c| pick(Some(c.frame_of_reference_uid.as_deref()?)))
            .next()
            .ok_or(SkipReason::FramesOfReferenceDiffer)?
    };
    Ok(Selection {
        t1ce: chosen[0].series_uid.clone(),
        t1: chosen[1].series_uid.clone(),
        t2: chosen[2].series_uid.clone(),
        flair: chosen[3].series_uid.clone(),
    })
}

/// Validates an explicit choice (API override) given as `[t1, t1ce, t2, flair]`
/// series UIDs: each must be an MR image series of `cands`, all distinct.
pub fn select_explicit(
    cands: &[SeriesCandidate],
    uids: [&str; 4],
) -> Result<Selection, SkipReason> {
    let order = [Channel::T1, Channel::T1ce, Channel::T2, Channel::Flair];
    for (i, (ch, uid)) in order.iter().zip(uids).enumerate() {
        let c = cands
            .iter()
            .find(|c| c.series_uid == uid)
            .ok_or(SkipReason::UnknownSeries(*ch))?;
        if !c.is_mr_image() {
            return Err(SkipReason::NotMrSeries(*ch));
        }
        if let Some(j) = uids[..i].iter().position(|u| *u == uid) {
            return Err(SkipReason::SameSeriesTwice(order[j], *ch));
        }
    }
    Ok(Selection {
        t1: uids[0].into(),
        t1ce: uids[1].into(),
        t2: uids[2].into(),
        flair: uids[3].into(),
    })
}

#[cfg(test)]
#[path = "select_tests.rs"]
mod tests;
