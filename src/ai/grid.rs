//! Voxel grids in DICOM patient space (LPS, millimetres): the model grid the
//! engine sees, the phantom grid of a synthetic study and the reference
//! series' own slices, all as one [`Grid`] type, plus the small vector maths
//! and nearest-neighbour label resampling between grids.
//!
//! Axis convention of [`super::Volume4`] / [`super::LabelVolume`] on the
//! model grid ([`MODEL_AXES`]): index D runs inferior → superior, H posterior
//! → anterior, W left → right (array axes aligned with RAS, in the order
//! slices, rows, columns). This is the orientation of the phantom generator
//! ([`super::phantom`]: z superior with the lateral ventricles above the deep
//! grey nuclei, x the left–right symmetric axis), i.e. what the shipped
//! weights were trained on.

use serde::Serialize;

use super::LabelVolume;

/// A point or direction in patient space (LPS, mm).
pub type Vec3 = [f64; 3];

/// Directions (LPS) of the model grid's index axes D, H, W: superior, anterior, right.
pub const MODEL_AXES: [Vec3; 3] = [[0.0, 0.0, 1.0], [0.0, -1.0, 0.0], [-1.0, 0.0, 0.0]];

/// Dot product.
pub fn dot(a: Vec3, b: Vec3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// Cross product.
pub fn cross(a: Vec3, b: Vec3) -> Vec3 {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

/// `a - b`.
pub fn sub(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

/// `a + s·b`.
pub fn add_scaled(a: Vec3, s: f64, b: Vec3) -> Vec3 {
    [a[0] + s * b[0], a[1] + s * b[1], a[2] + s * b[2]]
}

/// Euclidean length.
pub fn norm(a: Vec3) -> f64 {
    dot(a, a).sqrt()
}

/// `a / |a|` (zero stays zero).
pub fn normalize(a: Vec3) -> Vec3 {
    let n = norm(a);
    if n > 0.0 {
        [a[0] / n, a[1] / n, a[2] / n]
    } else {
        a
    }
}

/// A regular voxel grid: voxel `(i, j, k)` (along D, H, W) has its centre at
/// `origin + i·spacing[0]·axes[0] + j·spacing[1]·axes[1] + k·spacing[2]·axes[2]`.
/// `axes` are orthonormal unit vectors.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Grid {
    /// Centre of voxel (0, 0, 0), LPS mm.
    pub origin: Vec3,
    /// Unit direction of each index axis (D, H, W), LPS.
    pub axes: [Vec3; 3],
    /// Voxel size in mm along (D, H, W).
    pub spacing: [f64; 3],
    /// Size (D, H, W).
    pub dims: [usize; 3],
}

impl Grid {
    /// Patient position of a (possibly fractional) index.
    pub fn to_patient(&self, idx: [f64; 3]) -> Vec3 {
        (0..3).fold(self.origin, |p, a| {
            add_scaled(p, idx[a] * self.spacing[a], self.axes[a])
        })
    }

    /// Fractional index of a patient position (axes assumed orthonormal).
    pub fn to_index(&self, p: Vec3) -> [f64; 3] {
        let d = sub(p, self.origin);
        [0, 1, 2].map(|a| dot(d, self.axes[a]) / self.spacing[a])
    }

    /// Voxel count.
    pub fn voxels(&self) -> usize {
        self.dims.iter().product()
    }

    /// Volume of one voxel in mL.
    pub fn voxel_ml(&self) -> f64 {
        self.spacing.iter().product::<f64>() / 1000.0
    }

    /// Nearest voxel index of a patient position, `None` outside the grid
    /// (half a voxel of margin around the outer centres counts as inside).
    pub fn nearest(&self, p: Vec3) -> Option<[usize; 3]> {
        let f = self.to_index(p);
        let mut out = [0usize; 3];
        for a in 0..3 {
            // Round half up (ties between two voxels go to the higher index).
            let r = (f[a] + 0.5 + 1e-9).floor();
            if r < 0.0 || r >= self.dims[a] as f64 {
                return None;
            }
            out[a] = r as usize;
        }
        Some(out)
    }
}

/// Nearest-neighbour resampling of `src` (on `src_grid`) onto `dst`; voxels
/// of `dst` outside `src_grid` get label 0.
pub fn resample_labels(src: &LabelVolume, src_grid: &Grid, dst: &Grid) -> LabelVolume {
    let [d, h, w] = dst.dims;
    let [_, sh, sw] = src_grid.dims;
    let mut out = vec![0u8; d * h * w];
    for z in 0..d {
        for y in 0..h {
            let row = dst.to_patient([z as f64, y as f64, 0.0]);
            for x in 0..w {
                let p = add_scaled(row, x as f64 * dst.spacing[2], dst.axes[2]);
                if let Some([i, j, k]) = src_grid.nearest(p) {
                    out[(z * h + y) * w + x] = src.labels[(i * sh + j) * sw + k];
                }
            }
        }
    }
    LabelVolume::new(out, dst.dims, dst.spacing).expect("sizes match by construction")
}

/// Sørensen–Dice overlap of two boolean masks (1.0 when both are empty).
pub fn dice(a: impl Iterator<Item = bool>, b: impl Iterator<Item = bool>) -> f64 {
    let (mut inter, mut na, mut nb) = (0usize, 0usize, 0usize);
    for (x, y) in a.zip(b) {
        inter += (x && y) as usize;
        na += x as usize;
        nb += y as usize;
    }
    if na + nb == 0 {
        1.0
    } else {
        2.0 * inter as f64 / (na + nb) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(origin: Vec3, spacing: f64, dims: [usize; 3]) -> Grid {
        Grid {
            origin,
            axes: MODEL_AXES,
            spacing: [spacing; 3],
            dims,
        }
    }

    #[test]
    fn index_patient_round_trip_and_ras() {
        let g = grid([10.0, -5.0, 3.0], 2.0, [4, 5, 6]);
        let p = g.to_patient([1.0, 2.0, 3.0]);
        // +D is superior (+z), +H anterior (-y), +W right (-x) in LPS.
        assert_eq!(p, [10.0 - 6.0, -5.0 - 4.0, 3.0 + 2.0]);
        let back = g.to_index(p);
        assert!(back
            .iter()
            .zip([1.0, 2.0, 3.0])
            .all(|(a, b)| (a - b).abs() < 1e-12));
        assert_eq!(g.nearest(p), Some([1, 2, 3]));
        assert_eq!(g.nearest(g.to_patient([-0.6, 0.0, 0.0])), None);
        assert_eq!(g.nearest(g.to_patient([3.4, 4.4, 5.4])), Some([3, 4, 5]));
    }

    #[test]
    fn resample_halves_and_doubles() {
        let fine = grid([0.0; 3], 1.0, [4, 4, 4]);
        let coarse = grid([0.0; 3], 2.0, [2, 2, 2]);
        let mut l = vec![0u8; 64];
        l[0] = 4; // voxel (0,0,0)
        l[63] = 2; // voxel (3,3,3): centre 3 mm, nearest coarse voxel 1.5 -> 2 (outside)
        let src = LabelVolume::new(l, fine.dims, fine.spacing).unwrap();
        let c = resample_labels(&src, &fine, &coarse);
        assert_eq!(c.labels[0], 4);
        assert_eq!(c.labels.iter().filter(|&&v| v != 0).count(), 1);
        let back = resample_labels(&c, &coarse, &fine);
        // Fine index 1 sits at coarse 0.5, which rounds up to coarse 1: only fine
        // voxel 0 comes back as 4.
        assert_eq!(back.labels[0], 4);
        assert_eq!(back.count(4), 1);
    }

    #[test]
    fn dice_values() {
        let a = [true, true, false, false];
        let b = [true, false, true, false];
        assert!((dice(a.into_iter(), b.into_iter()) - 0.5).abs() < 1e-12);
        assert_eq!(dice([false].into_iter(), [false].into_iter()), 1.0);
    }
}
