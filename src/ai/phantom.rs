//! Synthetic multimodal brain phantoms with BraTS-style tumour labels, for
//! training and evaluating Glia's demo weights and for making sample
//! studies. Procedural anatomy (deformed brain ellipsoid, folded cortical
//! grey matter, deep grey nuclei, ventricles and sulcal CSF, white matter),
//! random rotation / scale / flip / smooth deformation, tumours with a
//! star-shaped necrotic core, irregular enhancing rim and oedema spreading
//! preferentially along white matter with mass effect, BraTS-like relative
//! intensities with jitter, bias field, blur and Rician noise; background 0
//! (skull-stripped). Fully determined by the seed.

use super::volume::labels::{EDEMA, ENHANCING, NECROTIC};
use super::{AiError, LabelVolume, Volume4};

/// Deterministic SplitMix64 generator (no external RNG dependency, stable across versions).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-12);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// Smooth random field: a sum of random plane cosines (wavelengths in mm).
struct Field {
    waves: Vec<([f64; 3], f64, f64)>,
}

impl Field {
    fn new(rng: &mut Rng, n: usize, min_wl: f64, max_wl: f64) -> Self {
        let waves = (0..n)
            .map(|_| {
                let dir = unit_vec(rng);
                let k = std::f64::consts::TAU / rng.range(min_wl, max_wl);
                (
                    [dir[0] * k, dir[1] * k, dir[2] * k],
                    rng.range(0.0, std::f64::consts::TAU),
                    rng.range(0.5, 1.0),
                )
            })
            .collect();
        Self { waves }
    }
    /// Roughly in [-1, 1].
    fn at(&self, p: [f64; 3]) -> f64 {
        let norm: f64 = self.waves.iter().map(|w| w.2).sum::<f64>().max(1e-9);
        self.waves
            .iter()
            .map(|(k, ph, a)| a * (k[0] * p[0] + k[1] * p[1] + k[2] * p[2] + ph).cos())
            .sum::<f64>()
            / norm
            * 1.6
    }
}

fn unit_vec(rng: &mut Rng) -> [f64; 3] {
    let v = [rng.normal(), rng.normal(), rng.normal()];
    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt().max(1e-9);
    [v[0] / n, v[1] / n, v[2] / n]
}

/// Which tumour a phantom gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TumourKind {
    /// Drawn at random: 15 % none, 55 % necrotic + enhancing rim, 15 % solid
    /// enhancing without necrosis, 15 % non-enhancing.
    Random,
    /// Tumour-free brain.
    None,
    /// Necrotic core with enhancing rim and oedema.
    NecroticRim,
    /// Solid enhancing tumour with oedema, no necrosis.
    SolidEnhancing,
    /// Non-enhancing tumour core with oedema.
    NonEnhancing,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct PhantomSpec {
    /// Grid size (D, H, W) = (slices/z, rows/y, columns/x).
    pub dims: [usize; 3],
    /// Voxel size in mm along (D, H, W).
    pub spacing: [f64; 3],
    /// Seed; equal seeds give identical phantoms.
    pub seed: u64,
    /// Tumour choice.
    pub tumour: TumourKind,
}

impl Default for PhantomSpec {
    fn default() -> Self {
        Self {
            dims: [64, 80, 80],
            spacing: [2.0, 2.0, 2.0],
            seed: 0,
            tumour: TumourKind::Random,
        }
    }
}

/// A generated case: the four MR volumes (T1ce, T1, T2, FLAIR; arbitrary
/// units, background 0), the true BraTS labels and the tumour kind used.
#[derive(Debug, Clone)]
pub struct Phantom {
    /// `[4, D, H, W]`, channels T1ce, T1, T2, FLAIR, with spacing.
    pub volume: Volume4,
    /// Labels 0 / 1 (necrotic or non-enhancing core) / 2 (oedema) / 4 (enhancing).
    pub labels: LabelVolume,
    /// The tumour kind actually drawn.
    pub tumour: TumourKind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tissue {
    Bg,
    Wm,
    Gm,
    Csf,
    Edema,
    Necrosis,
    Enhancing,
    NonEnhancing,
}

/// Relative intensities (T1ce, T1, T2, FLAIR) per tissue, after segmentation.md's table.
fn base_intensity(t: Tissue) -> [f64; 4] {
    match t {
        Tissue::Bg => [0.0; 4],
        Tissue::Wm => [1.0, 1.0, 0.55, 0.6],
        Tissue::Gm => [0.75, 0.75, 0.75, 0.75],
        Tissue::Csf => [0.3, 0.3, 1.0, 0.15],
        Tissue::Edema => [0.6, 0.6, 0.95, 1.1],
        Tissue::Necrosis => [0.35, 0.35, 1.0, 0.4],
        Tissue::Enhancing => [1.4, 0.7, 0.8, 0.85],
        Tissue::NonEnhancing => [0.55, 0.55, 0.9, 0.95],
    }
}

const TISSUES: [Tissue; 8] = [
    Tissue::Bg,
    Tissue::Wm,
    Tissue::Gm,
    Tissue::Csf,
    Tissue::Edema,
    Tissue::Necrosis,
    Tissue::Enhancing,
    Tissue::NonEnhancing,
];

struct Tumour {
    centre: [f64; 3],
    core_r: f64,
    rim: f64,
    edema: f64,
    kind: TumourKind,
    shape: Field,
    rim_shape: Field,
    edema_shape: Field,
}

/// Generates one phantom. Errors only on an empty grid or invalid spacing.
pub fn generate(spec: &PhantomSpec) -> Result<Phantom, AiError> {
    let [d, h, w] = spec.dims;
    if d == 0 || h == 0 || w == 0 {
        return Err(AiError::Input("phantom grid must be non-empty".into()));
    }
    if spec.spacing.iter().any(|s| !s.is_finite() || *s <= 0.0) {
        return Err(AiError::Input(format!(
            "invalid spacing {:?}",
            spec.spacing
        )));
    }
    let mut rng = Rng::new(spec.seed);
    // Brain shape: semi-axes (z, y, x) in mm, ±10 % scale, rotation ±10°, flips.
    let scale = rng.range(0.9, 1.1);
    let axes = [
        55.0 * scale * rng.range(0.95, 1.05),
        72.0 * scale * rng.range(0.95, 1.05),
        60.0 * scale * rng.range(0.95, 1.05),
    ];
    let rot = rotation([
        rng.range(-0.17, 0.17),
        rng.range(-0.17, 0.17),
        rng.range(-0.17, 0.17),
    ]);
    let flip = rng.unit() < 0.5;
    let warp = [
        Field::new(&mut rng, 4, 60.0, 160.0),
        Field::new(&mut rng, 4, 60.0, 160.0),
        Field::new(&mut rng, 4, 60.0, 160.0),
    ];
    let warp_amp = rng.range(2.0, 5.0);
    let outline = Field::new(&mut rng, 6, 50.0, 120.0);
    let folds = Field::new(&mut rng, 10, 12.0, 22.0);
    let vent_scale = rng.range(0.7, 1.3);
    let kind = match spec.tumour {
        TumourKind::Random => match rng.unit() {
            u if u < 0.15 => TumourKind::None,
            u if u < 0.70 => TumourKind::NecroticRim,
            u if u < 0.85 => TumourKind::SolidEnhancing,
            _ => TumourKind::NonEnhancing,
        },
        k => k,
    };
    let tumour = (kind != TumourKind::None).then(|| {
        // Centre inside the hemispheres, away from the midline ventricles.
        let side = if rng.unit() < 0.5 { -1.0 } else { 1.0 };
        let centre = [
            rng.range(-0.45, 0.45) * axes[0],
            rng.range(-0.5, 0.5) * axes[1],
            side * rng.range(0.25, 0.55) * axes[2],
        ];
        let core_r = match kind {
            TumourKind::NecroticRim => rng.range(4.0, 9.0),
            _ => rng.range(2.5, 6.0),
        };
        Tumour {
            centre,
            core_r,
            rim: rng.range(3.0, 5.0),
            edema: rng.range(6.0, 25.0),
            kind,
            shape: Field::new(&mut rng, 5, 10.0, 30.0),
            rim_shape: Field::new(&mut rng, 5, 8.0, 20.0),
            edema_shape: Field::new(&mut rng, 6, 15.0, 40.0),
        }
    });
    let mass = rng.range(0.15, 0.35);

    // Per-case contrast: per-tissue/channel jitter and per-channel gain.
    let mut table = [[0f64; 4]; 8];
    let gain: Vec<f64> = (0..4).map(|_| rng.range(0.6, 1.6)).collect();
    for (i, t) in TISSUES.iter().enumerate() {
        for c in 0..4 {
            table[i][c] = base_intensity(*t)[c] * rng.range(0.92, 1.08) * gain[c];
        }
    }
    let bias: Vec<Field> = (0..4)
        .map(|_| Field::new(&mut rng, 3, 150.0, 300.0))
        .collect();
    let bias_amp = rng.range(0.05, 0.2);
    let texture: Vec<Field> = (0..4).map(|_| Field::new(&mut rng, 6, 6.0, 14.0)).collect();
    let noise_sigma = rng.range(0.02, 0.05);

    let n = d * h * w;
    let mut tissue = vec![Tissue::Bg; n];
    let centre_vox = [
        (d as f64 - 1.0) / 2.0,
        (h as f64 - 1.0) / 2.0,
        (w as f64 - 1.0) / 2.0,
    ];
    for z in 0..d {
        for y in 0..h {
            for x in 0..w {
                let mut p = [
                    (z as f64 - centre_vox[0]) * spec.spacing[0],
                    (y as f64 - centre_vox[1]) * spec.spacing[1],
                    (x as f64 - centre_vox[2]) * spec.spacing[2],
                ];
                if flip {
                    p[2] = -p[2];
                }
                let p = mat_vec(&rot, p);
                let q = [
                    p[0] + warp_amp * warp[0].at(p),
                    p[1] + warp_amp * warp[1].at(p),
                    p[2] + warp_amp * warp[2].at(p),
                ];
                tissue[(z * h + y) * w + x] = classify(
                    q,
                    &axes,
                    &outline,
                    &folds,
                    vent_scale,
                    tumour.as_ref(),
                    mass,
                );
            }
        }
    }
    // Intensities, bias field, texture.
    let mut data = vec![0f32; 4 * n];
    for z in 0..d {
        for y in 0..h {
            for x in 0..w {
                let i = (z * h + y) * w + x;
                let t = tissue[i];
                if t == Tissue::Bg {
                    continue;
                }
                let p = [
                    z as f64 * spec.spacing[0],
                    y as f64 * spec.spacing[1],
                    x as f64 * spec.spacing[2],
                ];
                let ti = TISSUES.iter().position(|&u| u == t).unwrap_or(0);
                for c in 0..4 {
                    let v = table[ti][c]
                        * (1.0 + bias_amp * bias[c].at(p))
                        * (1.0 + 0.04 * texture[c].at(p));
                    data[c * n + i] = v as f32;
                }
            }
        }
    }
    // Slight blur (3-tap [1 2 1]/4 along each axis), then Rician noise; background back to 0.
    for c in 0..4 {
        let ch = &mut data[c * n..(c + 1) * n];
        blur_axis(ch, spec.dims, 0);
        blur_axis(ch, spec.dims, 1);
        blur_axis(ch, spec.dims, 2);
        let sigma = noise_sigma * table[1][c];
        for (i, v) in ch.iter_mut().enumerate() {
            if tissue[i] == Tissue::Bg {
                *v = 0.0;
                continue;
            }
            let a = *v as f64 + sigma * rng.normal();
            let b = sigma * rng.normal();
            *v = ((a * a + b * b).sqrt() as f32).max(1e-6);
        }
    }
    let labels = tissue
        .iter()
        .map(|t| match t {
            Tissue::Edema => EDEMA,
            Tissue::Necrosis | Tissue::NonEnhancing => NECROTIC,
            Tissue::Enhancing => ENHANCING,
            _ => 0,
        })
        .collect();
    Ok(Phantom {
        volume: Volume4::new(data, 4, spec.dims, spec.spacing)?,
        labels: LabelVolume::new(labels, spec.dims, spec.spacing)?,
        tumour: kind,
    })
}

fn classify(
    q: [f64; 3],
    axes: &[f64; 3],
    outline: &Field,
    folds: &Field,
    vent_scale: f64,
    tumour: Option<&Tumour>,
    mass: f64,
) -> Tissue {
    // Mass effect: sample healthy anatomy from a point pulled towards the tumour.
    let mut a = q;
    let mut tumour_tissue = None;
    if let Some(t) = tumour {
        let v = [q[0] - t.centre[0], q[1] - t.centre[1], q[2] - t.centre[2]];
        let r = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
        let dir = if r > 1e-9 {
            [v[0] / r, v[1] / r, v[2] / r]
        } else {
            [1.0, 0.0, 0.0]
        };
        let dir_p = [dir[0] * 20.0, dir[1] * 20.0, dir[2] * 20.0];
        let core = t.core_r * (1.0 + 0.35 * t.shape.at(dir_p));
        let rim = core + t.rim * (1.0 + 0.5 * t.rim_shape.at(dir_p)).max(0.3);
        let outer = rim + 2.0;
        let pull = mass * outer * (-(r / (2.0 * outer)).powi(2)).exp();
        a = [
            q[0] - dir[0] * pull,
            q[1] - dir[1] * pull,
            q[2] - dir[2] * pull,
        ];
        tumour_tissue = Some((
            r,
            core,
            rim,
            t.edema * (1.0 + 0.4 * t.edema_shape.at(q)).max(0.2),
            t.kind,
        ));
    }
    let rho = ((a[0] / axes[0]).powi(2) + (a[1] / axes[1]).powi(2) + (a[2] / axes[2]).powi(2))
        .sqrt()
        * (1.0 + 0.06 * outline.at(a));
    if rho >= 1.0 {
        return Tissue::Bg;
    }
    let fold = folds.at(a);
    let mut healthy = if rho > 0.93 - 0.05 * fold.max(0.0) && fold > 0.35 {
        Tissue::Csf
    } else if rho > 0.82 + 0.08 * fold {
        Tissue::Gm
    } else {
        Tissue::Wm
    };
    // Lateral ventricles, third ventricle, deep grey nuclei.
    let ell = |c: [f64; 3], s: [f64; 3]| {
        ((a[0] - c[0]) / s[0]).powi(2)
            + ((a[1] - c[1]) / s[1]).powi(2)
            + ((a[2] - c[2]) / s[2]).powi(2)
    };
    let vs = vent_scale;
    if ell([8.0, 0.0, 7.0], [9.0 * vs, 24.0 * vs, 4.5 * vs]) < 1.0
        || ell([8.0, 0.0, -7.0], [9.0 * vs, 24.0 * vs, 4.5 * vs]) < 1.0
        || ell([-4.0, 2.0, 0.0], [8.0, 6.0, 1.5 * vs]) < 1.0
    {
        healthy = Tissue::Csf;
    } else if ell([-6.0, 4.0, 17.0], [8.0, 12.0, 6.0]) < 1.0
        || ell([-6.0, 4.0, -17.0], [8.0, 12.0, 6.0]) < 1.0
    {
        healthy = Tissue::Gm;
    }
    if let Some((r, core, rim, edema, kind)) = tumour_tissue {
        if r < core {
            return match kind {
                TumourKind::NecroticRim => Tissue::Necrosis,
                TumourKind::SolidEnhancing => Tissue::Enhancing,
                _ => Tissue::NonEnhancing,
            };
        }
        if r < rim {
            return match kind {
                TumourKind::NonEnhancing => Tissue::NonEnhancing,
                _ => Tissue::Enhancing,
            };
        }
        // Oedema spreads along white matter, much less into grey matter, not into CSF.
        let reach = match healthy {
            Tissue::Wm => edema,
            Tissue::Gm => 0.3 * edema,
            _ => 0.0,
        };
        if r < rim + reach {
            return Tissue::Edema;
        }
    }
    healthy
}

fn rotation(angles: [f64; 3]) -> [[f64; 3]; 3] {
    let (sa, ca) = angles[0].sin_cos();
    let (sb, cb) = angles[1].sin_cos();
    let (sc, cc) = angles[2].sin_cos();
    let rx = [[1.0, 0.0, 0.0], [0.0, ca, -sa], [0.0, sa, ca]];
    let ry = [[cb, 0.0, sb], [0.0, 1.0, 0.0], [-sb, 0.0, cb]];
    let rz = [[cc, -sc, 0.0], [sc, cc, 0.0], [0.0, 0.0, 1.0]];
    mat_mul(&mat_mul(&rz, &ry), &rx)
}

fn mat_mul(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut m = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            m[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    m
}

fn mat_vec(m: &[[f64; 3]; 3], v: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|i| m[i][0] * v[0] + m[i][1] * v[1] + m[i][2] * v[2])
}

fn blur_axis(ch: &mut [f32], dims: [usize; 3], axis: usize) {
    let stride = match axis {
        0 => dims[1] * dims[2],
        1 => dims[2],
        _ => 1,
    };
    let len = dims[axis];
    if len < 3 {
        return;
    }
    let src = ch.to_vec();
    for (i, v) in ch.iter_mut().enumerate() {
        let pos = (i / stride) % len;
        let prev = if pos > 0 { src[i - stride] } else { src[i] };
        let next = if pos + 1 < len {
            src[i + stride]
        } else {
            src[i]
        };
        *v = 0.25 * prev + 0.5 * src[i] + 0.25 * next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64, tumour: TumourKind) -> Phantom {
        generate(&PhantomSpec {
            dims: [24, 32, 32],
            spacing: [5.0, 5.0, 5.0],
            seed,
            tumour,
        })
        .unwrap()
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        let a = small(7, TumourKind::Random);
        let b = small(7, TumourKind::Random);
        let c = small(8, TumourKind::Random);
        assert_eq!(a.volume, b.volume);
        assert_eq!(a.labels, b.labels);
        assert_ne!(a.volume, c.volume);
    }

    #[test]
    fn tumour_kinds_have_expected_labels() {
        let none = small(1, TumourKind::None);
        assert!(none.labels.labels.iter().all(|&l| l == 0));
        let rim = small(2, TumourKind::NecroticRim);
        for l in [NECROTIC, EDEMA, ENHANCING] {
            assert!(rim.labels.count(l) > 0, "label {l} missing");
        }
        let ne = small(3, TumourKind::NonEnhancing);
        assert_eq!(ne.labels.count(ENHANCING), 0);
        assert!(ne.labels.count(NECROTIC) > 0);
    }

    #[test]
    fn background_is_zero_and_brain_is_positive() {
        let p = small(4, TumourKind::NecroticRim);
        let n = p.volume.voxels();
        let brain = (0..n).filter(|&i| p.volume.data[i] > 0.0).count();
        assert!(brain > n / 5 && brain < n, "brain fraction {brain}/{n}");
        for c in 0..4 {
            assert!(p
                .volume
                .channel(c)
                .iter()
                .all(|v| v.is_finite() && *v >= 0.0));
        }
        // Enhancing tumour is brighter on T1ce than on T1 (after gains, on average).
        let et: Vec<usize> = (0..n)
            .filter(|&i| p.labels.labels[i] == ENHANCING)
            .collect();
        assert!(!et.is_empty());
    }
}
