//! Volume assembly: the four selected series (parsed instances, classic or
//! enhanced multi-frame MR) become the engine's [`Volume4`] on one common
//! grid. Per series: frames are gathered (per-frame functional groups
//! included), checked (one orientation, one pixel grid, regular slice
//! spacing without gaps or duplicates, no gantry tilt), sorted along the
//! slice normal by ImagePositionPatient, and their modality LUT
//! (RescaleSlope/Intercept) is applied. All four must share one
//! FrameOfReferenceUID (no registration is attempted). Each is then
//! resampled (trilinear) in patient space onto the model grid: axes
//! [`MODEL_AXES`] (RAS-aligned, the phantom/training orientation), the
//! engine's spacing, covering the reference series' extent.
//! [`labels_to_reference`] maps model-grid labels back onto the reference
//! series' own slices and pixels (nearest neighbour), which is what the SEG
//! is built on.

use std::collections::HashMap;

use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, InMemDicomObject};
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder};
use serde::{Deserialize, Serialize};

use super::dcm::{get_f64s, get_int, get_items, get_str, Channel};
use super::grid::{cross, dot, norm, normalize, resample_labels, sub, Grid, Vec3, MODEL_AXES};
use super::select::SkipReason;
use super::{AiError, LabelVolume, Volume4};

/// Assembly settings (the `[ai.assembly]` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AssembleOptions {
    /// Model-grid voxel size in mm along (D, H, W). The worker should use
    /// `Engine::expected_spacing()` when the weights record it; this is the fallback.
    pub spacing_mm: [f64; 3],
    /// The series whose extent the model grid covers and onto which labels are mapped back.
    pub reference: Channel,
    /// Series with fewer slices are refused.
    pub min_slices: usize,
    /// Slices closer than this along the normal are duplicates (mm).
    pub duplicate_tolerance_mm: f64,
    /// Allowed deviation of a slice step from the median step (fraction).
    pub spacing_tolerance: f64,
    /// Allowed difference of direction cosines between slices.
    pub orientation_tolerance: f64,
    /// Largest angle between slice normal and stacking direction accepted (degrees).
    pub max_tilt_degrees: f64,
    /// Refuse model grids with more voxels than this.
    pub max_voxels: usize,
}

impl Default for AssembleOptions {
    fn default() -> Self {
        Self {
            spacing_mm: [2.0; 3],
            reference: Channel::T1ce,
            min_slices: 3,
            duplicate_tolerance_mm: 0.05,
            spacing_tolerance: 0.1,
            orientation_tolerance: 1e-3,
            max_tilt_degrees: 0.5,
            max_voxels: 256 * 512 * 512,
        }
    }
}

/// One source slice of the reference series, in assembled (ascending normal) order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RefSlice {
    /// SOPClassUID of the instance holding the slice.
    pub sop_class_uid: String,
    /// SOPInstanceUID of that instance.
    pub sop_instance_uid: String,
    /// 1-based frame number for multi-frame instances, `None` for single-frame ones.
    pub frame_number: Option<u32>,
    /// ImagePositionPatient of the slice (LPS mm).
    pub position: Vec3,
}

/// Geometry and identity of the reference series, as the SEG needs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReferenceGeometry {
    /// Which channel is the reference.
    pub channel: Channel,
    /// StudyInstanceUID.
    pub study_uid: String,
    /// SeriesInstanceUID.
    pub series_uid: String,
    /// FrameOfReferenceUID.
    pub frame_of_reference_uid: String,
    /// Rows per slice.
    pub rows: usize,
    /// Columns per slice.
    pub cols: usize,
    /// PixelSpacing (row spacing, column spacing) in mm.
    pub pixel_spacing: [f64; 2],
    /// ImageOrientationPatient (row direction, column direction).
    pub orientation: [f64; 6],
    /// Distance between slice centres along the normal (mm).
    pub slice_spacing: f64,
    /// SliceThickness (the slice spacing when absent).
    pub slice_thickness: f64,
    /// The slices, sorted along the normal (row × column direction).
    pub slices: Vec<RefSlice>,
}

impl ReferenceGeometry {
    /// The reference slices as a grid: D = slice (along the normal), H = row, W = column.
    pub fn grid(&self) -> Grid {
        let o = &self.orientation;
        let (row, col) = ([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
        Grid {
            origin: self.slices[0].position,
            axes: [normalize(cross(row, col)), col, row],
            spacing: [
                self.slice_spacing,
                self.pixel_spacing[0],
                self.pixel_spacing[1],
            ],
            dims: [self.slices.len(), self.rows, self.cols],
        }
    }
}

/// The assembled model input and what is needed to map results back.
#[derive(Debug, Clone)]
pub struct Assembled {
    /// `[4, D, H, W]`, channels T1ce, T1, T2, FLAIR, on `grid`.
    pub volume: Volume4,
    /// The model grid (axes [`MODEL_AXES`]).
    pub grid: Grid,
    /// The reference series.
    pub reference: ReferenceGeometry,
    /// Each input series' own slice grid, in channel order.
    pub series_grids: [Grid; 4],
    /// The reference series' first instance without pixel data or functional
    /// groups (patient, study and equipment attributes for derived objects).
    pub header: InMemDicomObject,
}

/// The model's labels on the reference series' own slices.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceLabels {
    /// The reference series.
    pub geometry: ReferenceGeometry,
    /// `[slices, rows, columns]` labels 0/1/2/4, slices in `geometry.slices` order.
    pub labels: LabelVolume,
}

/// One slice as found in the instances.
struct Frame<'a> {
    obj: &'a FileDicomObject<InMemDicomObject>,
    instance: usize,
    frame: u32,
    multi: bool,
    position: Vec3,
    row: Vec3,
    col: Vec3,
    pixel_spacing: [f64; 2],
    rows: usize,
    cols: usize,
    slope: f64,
    intercept: f64,
    thickness: Option<f64>,
}

/// `tag` inside functional group `group`: per-frame item first, then shared, then top level.
fn fg(
    obj: &InMemDicomObject,
    per_frame: Option<&InMemDicomObject>,
    group: dicom_core::Tag,
    tag: dicom_core::Tag,
) -> Option<Vec<f64>> {
    let shared = get_items(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE).first();
    per_frame
        .into_iter()
        .chain(shared)
        .find_map(|g| get_f64s(get_items(g, group).first()?, tag))
        .or_else(|| get_f64s(obj, tag))
}

fn frames_of<'a>(
    ch: Channel,
    instances: &'a [FileDicomObject<InMemDicomObject>],
) -> Result<Vec<Frame<'a>>, SkipReason> {
    let missing = |what| SkipReason::MissingGeometry { channel: ch, what };
    let mut out = Vec::new();
    for (i, obj) in instances.iter().enumerate() {
        let per_frame = get_items(obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE);
        let n = get_int(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) as usize;
        let multi = !per_frame.is_empty() || n > 1;
        if multi && per_frame.len() != n {
            return Err(missing("PerFrameFunctionalGroupsSequence"));
        }
        if get_int(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1) != 1 {
            return Err(SkipReason::Unsupported {
                channel: ch,
                what: "colour images are not supported".into(),
            });
        }
        let rows = get_int(obj, tags::ROWS)
            .filter(|&v| v > 0)
            .ok_or(missing("Rows"))? as usize;
        let cols = get_int(obj, tags::COLUMNS)
            .filter(|&v| v > 0)
            .ok_or(missing("Columns"))? as usize;
        for f in 0..n {
            let pf = per_frame.get(f);
            let pos = fg(
                obj,
                pf,
                tags::PLANE_POSITION_SEQUENCE,
                tags::IMAGE_POSITION_PATIENT,
            )
            .filter(|v| v.len() == 3)
            .ok_or(missing("ImagePositionPatient"))?;
            let iop = fg(
                obj,
                pf,
                tags::PLANE_ORIENTATION_SEQUENCE,
                tags::IMAGE_ORIENTATION_PATIENT,
            )
            .filter(|v| v.len() == 6)
            .ok_or(missing("ImageOrientationPatient"))?;
            let ps = fg(obj, pf, tags::PIXEL_MEASURES_SEQUENCE, tags::PIXEL_SPACING)
                .filter(|v| v.len() == 2 && v.iter().all(|s| *s > 0.0))
                .ok_or(missing("PixelSpacing"))?;
            let (row, col) = ([iop[0], iop[1], iop[2]], [iop[3], iop[4], iop[5]]);
            if (norm(row) - 1.0).abs() > 0.01
                || (norm(col) - 1.0).abs() > 0.01
                || dot(row, col).abs() > 0.01
            {
                return Err(missing("ImageOrientationPatient (not orthonormal)"));
            }
            let lut = |t| fg(obj, pf, tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE, t).map(|v| v[0]);
            out.push(Frame {
                obj,
                instance: i,
                frame: f as u32,
                multi,
                position: [pos[0], pos[1], pos[2]],
                row: normalize(row),
                col: normalize(col),
                pixel_spacing: [ps[0], ps[1]],
                rows,
                cols,
                slope: lut(tags::RESCALE_SLOPE).unwrap_or(1.0),
                intercept: lut(tags::RESCALE_INTERCEPT).unwrap_or(0.0),
                thickness: fg(
                    obj,
                    pf,
                    tags::PIXEL_MEASURES_SEQUENCE,
                    tags::SLICE_THICKNESS,
                )
                .map(|v| v[0]),
            });
        }
    }
    Ok(out)
}

/// A checked, sorted, rescaled series.
struct Series<'a> {
    frames: Vec<Frame<'a>>,
    grid: Grid,
    data: Vec<f32>,
    for_uid: Option<String>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn load_series<'a>(
    ch: Channel,
    instances: &'a [FileDicomObject<InMemDicomObject>],
    opts: &AssembleOptions,
) -> Result<Series<'a>, SkipReason> {
    if instances.is_empty() {
        return Err(SkipReason::NoInstances(ch));
    }
    let mut frames = frames_of(ch, instances)?;
    if frames.len() < opts.min_slices.max(2) {
        return Err(SkipReason::TooFewSlices {
            channel: ch,
            slices: frames.len(),
            min: opts.min_slices.max(2),
        });
    }
    let f0 = &frames[0];
    let (row, col, ps, rows, cols) = (f0.row, f0.col, f0.pixel_spacing, f0.rows, f0.cols);
    let tol = opts.orientation_tolerance;
    for f in &frames {
        if (0..3).any(|i| (f.row[i] - row[i]).abs() > tol || (f.col[i] - col[i]).abs() > tol) {
            return Err(SkipReason::MixedOrientation(ch));
        }
        if f.rows != rows
            || f.cols != cols
            || (0..2).any(|i| (f.pixel_spacing[i] - ps[i]).abs() > 1e-3 * ps[i])
        {
            return Err(SkipReason::InconsistentPixelGrid(ch));
        }
    }
    let normal = normalize(cross(row, col));
    frames.sort_by(|a, b| dot(a.position, normal).total_cmp(&dot(b.position, normal)));
    let steps: Vec<f64> = frames
        .windows(2)
        .map(|w| dot(sub(w[1].position, w[0].position), normal))
        .collect();
    let dups = steps
        .iter()
        .filter(|&&s| s < opts.duplicate_tolerance_mm)
        .count();
    if dups > 0 {
        return Err(SkipReason::DuplicateSlices {
            channel: ch,
            count: dups,
        });
    }
    let m = median(&steps);
    let (mut missing, mut irregular) = (0usize, false);
    for &s in &steps {
        let r = s / m;
        if (r - 1.0).abs() <= opts.spacing_tolerance {
            continue;
        }
        let k = r.round();
        if k >= 2.0 && (r - k).abs() <= opts.spacing_tolerance {
            missing += k as usize - 1;
        } else {
            irregular = true;
        }
    }
    if missing > 0 {
        return Err(SkipReason::MissingSlices {
            channel: ch,
            missing,
        });
    }
    if irregular {
        return Err(SkipReason::IrregularSpacing(ch));
    }
    let span = sub(frames[frames.len() - 1].position, frames[0].position);
    let along = dot(span, normal);
    let perp = norm(sub(
        span,
        [normal[0] * along, normal[1] * along, normal[2] * along],
    ));
    let tilt = perp.atan2(along).to_degrees();
    if tilt > opts.max_tilt_degrees {
        return Err(SkipReason::GantryTilt {
            channel: ch,
            degrees: tilt,
        });
    }
    let grid = Grid {
        origin: frames[0].position,
        axes: [normal, col, row],
        spacing: [along / (frames.len() - 1) as f64, ps[0], ps[1]],
        dims: [frames.len(), rows, cols],
    };
    // Decode each instance once; raw stored values, then this frame's modality LUT.
    let mut decoded = HashMap::new();
    let raw = ConvertOptions::new().with_modality_lut(ModalityLutOption::None);
    let mut data = Vec::with_capacity(frames.len() * rows * cols);
    for f in &frames {
        if let std::collections::hash_map::Entry::Vacant(e) = decoded.entry(f.instance) {
            let px = f
                .obj
                .decode_pixel_data()
                .map_err(|e| SkipReason::Unsupported {
                    channel: ch,
                    what: format!("pixel data cannot be decoded ({e})"),
                })?;
            e.insert(px);
        }
        let px = &decoded[&f.instance];
        let v: Vec<f32> =
            px.to_vec_frame_with_options(f.frame, &raw)
                .map_err(|e| SkipReason::Unsupported {
                    channel: ch,
                    what: format!("pixel data cannot be read ({e})"),
                })?;
        if v.len() != rows * cols {
            return Err(SkipReason::Unsupported {
                channel: ch,
                what: "pixel data size does not match Rows × Columns".into(),
            });
        }
        let (s, b) = (f.slope, f.intercept);
        data.extend(v.into_iter().map(|x| (x as f64 * s + b) as f32));
    }
    let for_uid = get_str(&instances[0], tags::FRAME_OF_REFERENCE_UID);
    Ok(Series {
        frames,
        grid,
        data,
        for_uid,
    })
}

/// The model grid covering `reference` with `spacing`, axes [`MODEL_AXES`], centred on its extent.
pub fn model_grid(reference: &Grid, spacing: [f64; 3]) -> Grid {
    let mut lo = [f64::INFINITY; 3];
    let mut hi = [f64::NEG_INFINITY; 3];
    let last = reference.dims.map(|n| (n - 1) as f64);
    for corner in 0..8 {
        let idx = [0, 1, 2].map(|a| if corner >> a & 1 == 1 { last[a] } else { 0.0 });
        let p = reference.to_patient(idx);
        for a in 0..3 {
            let c = dot(p, MODEL_AXES[a]);
            lo[a] = lo[a].min(c);
            hi[a] = hi[a].max(c);
        }
    }
    let mut dims = [0usize; 3];
    let mut origin = [0.0; 3];
    for a in 0..3 {
        let extent = hi[a] - lo[a];
        dims[a] = (extent / spacing[a] + 1e-6).floor() as usize + 1;
        let start = lo[a] + (extent - (dims[a] - 1) as f64 * spacing[a]) / 2.0;
        origin = super::grid::add_scaled(origin, start, MODEL_AXES[a]);
    }
    Grid {
        origin,
        axes: MODEL_AXES,
        spacing,
        dims,
    }
}

/// Trilinear resampling of a series (`data` on `src`) onto `dst`; points more
/// than half a voxel outside the series are 0. Returns the values and how many
/// `dst` voxels fell inside.
fn resample(data: &[f32], src: &Grid, dst: &Grid) -> (Vec<f32>, usize) {
    let [d, h, w] = dst.dims;
    let [sd, sh, sw] = src.dims;
    let mut out = vec![0f32; d * h * w];
    let mut inside = 0;
    // Index of dst voxel (z, y, x) in src is affine: f0 + z·dz + y·dy + x·dx.
    let f0 = src.to_index(dst.origin);
    let step = |a: usize| {
        let p = super::grid::add_scaled(dst.origin, dst.spacing[a], dst.axes[a]);
        let f = src.to_index(p);
        [f[0] - f0[0], f[1] - f0[1], f[2] - f0[2]]
    };
    let (dz, dy, dx) = (step(0), step(1), step(2));
    let n = [sd as f64, sh as f64, sw as f64];
    for z in 0..d {
        for y in 0..h {
            for x in 0..w {
                let (zf, yf, xf) = (z as f64, y as f64, x as f64);
                let f = [0, 1, 2].map(|a| f0[a] + zf * dz[a] + yf * dy[a] + xf * dx[a]);
                if (0..3).any(|a| f[a] < -0.5 || f[a] > n[a] - 0.5) {
                    continue;
                }
                inside += 1;
                let mut base = [0usize; 3];
                let mut t = [0f64; 3];
                for a in 0..3 {
                    let c = f[a].clamp(0.0, n[a] - 1.0);
                    let b = (c.floor() as usize).min(src.dims[a].saturating_sub(2));
                    base[a] = b;
                    t[a] = c - b as f64;
                }
                let mut v = 0.0f64;
                for (oz, wz) in [(0, 1.0 - t[0]), (1, t[0])] {
                    for (oy, wy) in [(0, 1.0 - t[1]), (1, t[1])] {
                        for (ox, wx) in [(0, 1.0 - t[2]), (1, t[2])] {
                            let wgt = wz * wy * wx;
                            if wgt > 0.0 {
                                let (iz, iy, ix) = (base[0] + oz, base[1] + oy, base[2] + ox);
                                v += wgt
                                    * data[(iz.min(sd - 1) * sh + iy.min(sh - 1)) * sw
                                        + ix.min(sw - 1)]
                                        as f64;
                            }
                        }
                    }
                }
                out[(z * h + y) * w + x] = v as f32;
            }
        }
    }
    (out, inside)
}

/// Assembles the model input from the four series, given in engine channel
/// order `[T1ce, T1, T2, FLAIR]` (each: that series' parsed instances, any order).
pub fn assemble(
    series: [&[FileDicomObject<InMemDicomObject>]; 4],
    opts: &AssembleOptions,
) -> Result<Assembled, SkipReason> {
    let mut loaded = Vec::with_capacity(4);
    for (ch, inst) in Channel::ALL.into_iter().zip(series) {
        loaded.push(load_series(ch, inst, opts)?);
    }
    for (ch, s) in Channel::ALL.into_iter().zip(&loaded) {
        if s.for_uid.is_none() {
            return Err(SkipReason::MissingGeometry {
                channel: ch,
                what: "FrameOfReferenceUID",
            });
        }
    }
    if loaded.iter().any(|s| s.for_uid != loaded[0].for_uid) {
        return Err(SkipReason::FramesOfReferenceDiffer);
    }
    let r = &loaded[opts.reference.index()];
    let grid = model_grid(&r.grid, opts.spacing_mm);
    let voxels = grid.voxels();
    if voxels > opts.max_voxels {
        return Err(SkipReason::TooLarge {
            voxels,
            cap: opts.max_voxels,
        });
    }
    let mut data = Vec::with_capacity(4 * voxels);
    for (ch, s) in Channel::ALL.into_iter().zip(&loaded) {
        let (v, inside) = resample(&s.data, &s.grid, &grid);
        if inside == 0 {
            return Err(SkipReason::NoOverlap(ch));
        }
        data.extend(v);
    }
    let volume =
        Volume4::new(data, 4, grid.dims, grid.spacing).map_err(|e| SkipReason::Unsupported {
            channel: opts.reference,
            what: e.to_string(),
        })?;
    let first = r.frames[0].obj;
    let mut header: InMemDicomObject = (**first).clone();
    for t in [
        tags::PIXEL_DATA,
        tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
        tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
    ] {
        header.remove_element(t);
    }
    let o = [r.grid.axes[2], r.grid.axes[1]].concat();
    let reference = ReferenceGeometry {
        channel: opts.reference,
        study_uid: get_str(&header, tags::STUDY_INSTANCE_UID).unwrap_or_default(),
        series_uid: get_str(&header, tags::SERIES_INSTANCE_UID).unwrap_or_default(),
        frame_of_reference_uid: r.for_uid.clone().unwrap_or_default(),
        rows: r.grid.dims[1],
        cols: r.grid.dims[2],
        pixel_spacing: [r.grid.spacing[1], r.grid.spacing[2]],
        orientation: [o[0], o[1], o[2], o[3], o[4], o[5]],
        slice_spacing: r.grid.spacing[0],
        slice_thickness: r.frames[0].thickness.unwrap_or(r.grid.spacing[0]),
        slices: r
            .frames
            .iter()
            .map(|f| RefSlice {
                sop_class_uid: get_str(f.obj, tags::SOP_CLASS_UID).unwrap_or_default(),
                sop_instance_uid: get_str(f.obj, tags::SOP_INSTANCE_UID).unwrap_or_default(),
                frame_number: f.multi.then_some(f.frame + 1),
                position: f.position,
            })
            .collect(),
    };
    let series_grids = [0, 1, 2, 3].map(|i| loaded[i].grid.clone());
    Ok(Assembled {
        volume,
        grid,
        reference,
        series_grids,
        header,
    })
}

/// Maps labels on the model grid (`labels.dims == assembled.grid.dims`) onto
/// the reference series' slices and pixels, nearest neighbour.
pub fn labels_to_reference(
    assembled: &Assembled,
    labels: &LabelVolume,
) -> Result<ReferenceLabels, AiError> {
    if labels.dims != assembled.grid.dims {
        return Err(AiError::Input(format!(
            "labels {:?} are not on the model grid {:?}",
            labels.dims, assembled.grid.dims
        )));
    }
    let dst = assembled.reference.grid();
    Ok(ReferenceLabels {
        labels: resample_labels(labels, &assembled.grid, &dst),
        geometry: assembled.reference.clone(),
    })
}

#[cfg(test)]
#[path = "assemble_tests.rs"]
mod tests;
