//! Phantom → DICOM: turns a [`super::phantom::generate`] case into one
//! synthetic MR study of four series (T1, T1ce, T2, FLAIR) sharing one
//! FrameOfReferenceUID, as Part 10 files in explicit VR little endian
//! (16-bit unsigned MONOCHROME2 with RescaleSlope/Intercept, axial in patient
//! LPS, vendor-like names and timing), with fault injection for tests (a
//! dropped slice, another frame of reference, gantry tilt, an oblique
//! series). The study comes back with its true labels and the phantom grid so
//! tests can score Dice. The patient is obviously synthetic.
//!
//! Geometry: the phantom's (D, H, W) axes are the model axes of
//! [`super::grid::MODEL_AXES`] (superior, anterior, right). Slices are
//! written the way scanners do: row direction +L, column direction +P (the
//! image's top is anterior, its left the patient's right), so pixel
//! `(r, c)` of slice `z` holds phantom voxel `(z, H-1-r, W-1-c)`. Instance
//! number 1 is the most superior slice.

use super::dcm::{self, Channel};
use super::grid::{add_scaled, Grid, Vec3, MODEL_AXES};
use super::phantom::{self, PhantomSpec, TumourKind};
use super::{AiError, LabelVolume, Volume4};

#[path = "synth_header.rs"]
mod header;
use header::{protocol, SeriesHeader};

/// A deliberate defect for tests of selection and assembly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Leave out the slice at `index` (0 = most inferior) of a series.
    DropSlice {
        /// Which series.
        channel: Channel,
        /// Slice index along the stack.
        index: usize,
    },
    /// Give a series its own FrameOfReferenceUID.
    OtherFrameOfReference(Channel),
    /// Gantry tilt: image planes tilted about the left–right axis by
    /// `degrees` while the slice positions step straight along the table (z).
    GantryTilt {
        /// Which series.
        channel: Channel,
        /// Tilt angle.
        degrees: f64,
    },
    /// A consistent oblique acquisition: the whole stack rotated about the
    /// left–right axis through the volume centre (valid geometry, must be resampled).
    Oblique {
        /// Which series.
        channel: Channel,
        /// Rotation angle.
        degrees: f64,
    },
}

/// What to synthesise.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    /// Phantom seed.
    pub seed: u64,
    /// Tumour of the phantom.
    pub tumour: TumourKind,
    /// Grid (D, H, W) = (slices, rows, columns).
    pub dims: [usize; 3],
    /// Voxel size in mm along (D, H, W) (slice spacing, row spacing, column spacing).
    pub spacing: [f64; 3],
    /// Which series to emit (any order; output follows T1, T1ce, T2, FLAIR).
    pub channels: Vec<Channel>,
    /// Defects to inject.
    pub faults: Vec<Fault>,
    /// Emit each series as one Enhanced MR Image (multi-frame, functional groups).
    pub enhanced: bool,
    /// Derive all UIDs from this seed (reproducible files); `None` = random UIDs.
    pub uid_seed: Option<u64>,
}

impl Default for SynthOptions {
    /// The phantom default: 64×80×80 at 2 mm, necrotic tumour with rim, all four series.
    fn default() -> Self {
        let spec = PhantomSpec::default();
        Self {
            seed: 1,
            tumour: TumourKind::NecroticRim,
            dims: spec.dims,
            spacing: spec.spacing,
            channels: Channel::ALL.to_vec(),
            faults: Vec::new(),
            enhanced: false,
            uid_seed: None,
        }
    }
}

impl SynthOptions {
    /// A BraTS-like study: 155 slices of 240×240 at 1 mm.
    pub fn brats_like(seed: u64) -> Self {
        Self {
            seed,
            dims: [155, 240, 240],
            spacing: [1.0; 3],
            ..Self::default()
        }
    }
}

/// One synthetic series.
#[derive(Debug, Clone)]
pub struct SynthSeries {
    /// Which input it is.
    pub channel: Channel,
    /// SeriesInstanceUID.
    pub series_uid: String,
    /// SeriesNumber.
    pub series_number: i32,
    /// SeriesDescription.
    pub description: String,
    /// Part 10 files (explicit VR LE), instance number 1 first.
    pub instances: Vec<Vec<u8>>,
}

/// A synthetic study with its ground truth.
#[derive(Debug, Clone)]
pub struct SynthStudy {
    /// StudyInstanceUID.
    pub study_uid: String,
    /// FrameOfReferenceUID shared by the series (unless a fault says otherwise).
    pub frame_of_reference_uid: String,
    /// PatientID (synthetic).
    pub patient_id: String,
    /// PatientName (synthetic).
    pub patient_name: String,
    /// The series, in the order T1, T1ce, T2, FLAIR (those requested).
    pub series: Vec<SynthSeries>,
    /// True labels on [`SynthStudy::grid`].
    pub labels: LabelVolume,
    /// The phantom grid in patient space (axes = model axes).
    pub grid: Grid,
    /// The phantom's intensities (channels T1ce, T1, T2, FLAIR) on `grid`.
    pub volume: Volume4,
}

impl SynthStudy {
    /// The series of one channel, if emitted.
    pub fn series(&self, ch: Channel) -> Option<&SynthSeries> {
        self.series.iter().find(|s| s.channel == ch)
    }
}

/// Rotation of `v` about the patient x (left–right) axis.
fn rot_x(v: Vec3, deg: f64) -> Vec3 {
    let (s, c) = deg.to_radians().sin_cos();
    [v[0], c * v[1] - s * v[2], s * v[1] + c * v[2]]
}

/// Slice geometry of one series: top-left positions, row and column directions.
pub(super) struct Stack {
    pub(super) positions: Vec<Vec3>,
    pub(super) row: Vec3,
    pub(super) col: Vec3,
}

fn stack(grid: &Grid, fault: Option<&Fault>) -> Stack {
    let [d, h, w] = grid.dims;
    let (row, col) = ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]);
    // Top-left pixel of slice z = phantom voxel (z, H-1, W-1).
    let tl = |z: usize| grid.to_patient([z as f64, (h - 1) as f64, (w - 1) as f64]);
    let centre = grid.to_patient([
        (d - 1) as f64 / 2.0,
        (h - 1) as f64 / 2.0,
        (w - 1) as f64 / 2.0,
    ]);
    let around = |p: Vec3, deg: f64| {
        let r = rot_x([p[0] - centre[0], p[1] - centre[1], p[2] - centre[2]], deg);
        [r[0] + centre[0], r[1] + centre[1], r[2] + centre[2]]
    };
    match fault {
        Some(Fault::Oblique { degrees, .. }) => Stack {
            positions: (0..d).map(|z| around(tl(z), *degrees)).collect(),
            row: rot_x(row, *degrees),
            col: rot_x(col, *degrees),
        },
        Some(Fault::GantryTilt { degrees, .. }) => {
            // Tilted planes through the same table positions: each slice's centre
            // stays on the straight z line.
            let (rowt, colt) = (rot_x(row, *degrees), rot_x(col, *degrees));
            let half = [
                (w - 1) as f64 * grid.spacing[2],
                (h - 1) as f64 * grid.spacing[1],
            ];
            let positions = (0..d)
                .map(|z| {
                    let c = add_scaled(
                        centre,
                        (z as f64 - (d - 1) as f64 / 2.0) * grid.spacing[0],
                        MODEL_AXES[0],
                    );
                    add_scaled(add_scaled(c, -half[0] / 2.0, rowt), -half[1] / 2.0, colt)
                })
                .collect();
            Stack {
                positions,
                row: rowt,
                col: colt,
            }
        }
        _ => Stack {
            positions: (0..d).map(tl).collect(),
            row,
            col,
        },
    }
}

/// Trilinear sample of one phantom channel at a patient position (0 outside).
fn sample(grid: &Grid, ch: &[f32], p: Vec3) -> f32 {
    let f = grid.to_index(p);
    let [d, h, w] = grid.dims;
    let mut i0 = [0usize; 3];
    let mut t = [0f64; 3];
    for a in 0..3 {
        let n = grid.dims[a] as f64;
        if f[a] < -1e-6 || f[a] > n - 1.0 + 1e-6 {
            return 0.0;
        }
        let c = f[a].clamp(0.0, n - 1.0);
        let b = (c.floor() as usize).min(grid.dims[a].saturating_sub(2));
        i0[a] = b;
        t[a] = c - b as f64;
    }
    let at = |z: usize, y: usize, x: usize| {
        ch[(z.min(d - 1) * h + y.min(h - 1)) * w + x.min(w - 1)] as f64
    };
    let mut v = 0.0;
    for (dz, wz) in [(0, 1.0 - t[0]), (1, t[0])] {
        for (dy, wy) in [(0, 1.0 - t[1]), (1, t[1])] {
            for (dx, wx) in [(0, 1.0 - t[2]), (1, t[2])] {
                let wgt = wz * wy * wx;
                if wgt > 0.0 {
                    v += wgt * at(i0[0] + dz, i0[1] + dy, i0[2] + dx);
                }
            }
        }
    }
    v as f32
}

/// Generates the study described by `opts`.
pub fn synth_study(opts: &SynthOptions) -> Result<SynthStudy, AiError> {
    if opts.dims.iter().any(|&n| n < 2) {
        return Err(AiError::Input(
            "synthetic grid needs at least 2 voxels per axis".into(),
        ));
    }
    let ph = phantom::generate(&PhantomSpec {
        dims: opts.dims,
        spacing: opts.spacing,
        seed: opts.seed,
        tumour: opts.tumour,
    })?;
    let [d, h, w] = opts.dims;
    // Centre the phantom at LPS (0, 0, 20).
    let half = [0, 1, 2].map(|a| (opts.dims[a] - 1) as f64 * opts.spacing[a] / 2.0);
    let mut origin = [0.0, 0.0, 20.0];
    for a in 0..3 {
        origin = add_scaled(origin, -half[a], MODEL_AXES[a]);
    }
    let grid = Grid {
        origin,
        axes: MODEL_AXES,
        spacing: opts.spacing,
        dims: opts.dims,
    };
    let uid = |label: &str| match opts.uid_seed {
        Some(s) => dcm::seeded_uid(s, label),
        None => dcm::new_uid(),
    };
    let study_uid = uid("study");
    let for_uid = uid("frame-of-reference");
    let patient_id = format!("GLIA-PHANTOM-{}", opts.seed);
    let patient_name = format!("PHANTOM^SYNTHETIC^{}", opts.seed);
    let mut series = Vec::new();
    for ch in [Channel::T1, Channel::T1ce, Channel::T2, Channel::Flair] {
        if !opts.channels.contains(&ch) {
            continue;
        }
        let fault_of = |f: &&Fault| match f {
            Fault::DropSlice { channel, .. }
            | Fault::GantryTilt { channel, .. }
            | Fault::Oblique { channel, .. } => *channel == ch,
            Fault::OtherFrameOfReference(c) => *c == ch,
        };
        let faults: Vec<&Fault> = opts.faults.iter().filter(fault_of).collect();
        let geo_fault = faults
            .iter()
            .find(|f| matches!(f, Fault::GantryTilt { .. } | Fault::Oblique { .. }))
            .copied();
        let st = stack(&grid, geo_fault);
        let series_for = if faults
            .iter()
            .any(|f| matches!(f, Fault::OtherFrameOfReference(_)))
        {
            uid(&format!("frame-of-reference-{ch}"))
        } else {
            for_uid.clone()
        };
        let p = protocol(ch);
        let data = ph.volume.channel(ch.index());
        let vmax = data.iter().fold(0f32, |m, &v| m.max(v)).max(1e-3) as f64;
        // Power-of-two slope: stored·slope + intercept is exact in binary.
        let slope = 2f64.powf((vmax / 4000.0).log2().ceil());
        let intercept = -(p.offset as f64) * slope;
        let series_uid = uid(&format!("series-{ch}"));
        let header = SeriesHeader {
            study_uid: &study_uid,
            series_uid: &series_uid,
            for_uid: &series_for,
            patient_id: &patient_id,
            patient_name: &patient_name,
            channel: ch,
            proto: &p,
            spacing: opts.spacing,
            rows: h,
            cols: w,
            slope,
            intercept,
            vmax,
            seed: opts.seed,
        };
        let drop: Vec<usize> = faults
            .iter()
            .filter_map(|f| match f {
                Fault::DropSlice { index, .. } => Some(*index),
                _ => None,
            })
            .collect();
        // Frames from superior to inferior (instance number 1 = top slice).
        let mut frames = Vec::new();
        for z in (0..d).rev() {
            if drop.contains(&z) {
                continue;
            }
            let mut px = Vec::with_capacity(h * w);
            for r in 0..h {
                for c in 0..w {
                    let pos = add_scaled(
                        add_scaled(st.positions[z], c as f64 * opts.spacing[2], st.row),
                        r as f64 * opts.spacing[1],
                        st.col,
                    );
                    let v = sample(&grid, data, pos) as f64;
                    let s = if v > 0.0 {
                        (v / slope).round().max(1.0)
                    } else {
                        0.0
                    };
                    px.push((s as u16).saturating_add(p.offset));
                }
            }
            frames.push((st.positions[z], px));
        }
        let instances = if opts.enhanced {
            vec![dcm::to_part10(header.enhanced(&frames, &st, &uid))?]
        } else {
            frames
                .iter()
                .enumerate()
                .map(|(i, (pos, px))| {
                    let sop = uid(&format!("sop-{ch}-{i}"));
                    dcm::to_part10(header.classic(i as i32 + 1, &sop, *pos, &st, px))
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        series.push(SynthSeries {
            channel: ch,
            series_uid,
            series_number: p.number,
            description: p.description.to_string(),
            instances,
        });
    }
    Ok(SynthStudy {
        study_uid,
        frame_of_reference_uid: for_uid,
        patient_id,
        patient_name,
        series,
        labels: ph.labels,
        grid,
        volume: ph.volume,
    })
}

#[cfg(test)]
#[path = "synth_tests.rs"]
mod tests;
