//! Direct 3-D convolution for inference on x86-64 (AVX-512F, or AVX2 + FMA):
//! stride 1, any kernel size and padding. It is what SegResNet spends most of its
//! time in on CPU.
//!
//! The im2col + GEMM kernel in `cpu_ops` writes every input value `k³` times into a
//! column buffer that GEMM then packs again; for the narrow layers of SegResNet
//! (16–32 output channels over millions of voxels) that memory traffic, not the
//! arithmetic, sets the speed. Here each thread copies a few input planes once into
//! a zero-padded slab, and a register-blocked micro-kernel accumulates a tile of
//! output channels × output voxels of one row over all input channels and taps,
//! loading straight from the slab. Each output sums its products in one fixed
//! order (input channel, then tap) whatever the thread count or ISA, so results are
//! reproducible; they agree with the GEMM kernel's to rounding (≈1e-6).

// Off x86-64 only the fallback answer of `conv3d` is used.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use rayon::prelude::*;

use super::cpu_ops::SyncPtr;

/// Output planes per task: one slab of `PLANES + kd - 1` padded input planes.
const PLANES: usize = 2;

/// Shapes of one convolution (batch element), stride 1.
#[derive(Clone, Copy)]
pub(crate) struct Dims {
    pub cin: usize,
    pub cout: usize,
    pub d: usize,
    pub h: usize,
    pub w: usize,
    pub k: [usize; 3],
    pub pad: usize,
}

impl Dims {
    fn out(&self) -> [usize; 3] {
        [
            self.d + 2 * self.pad + 1 - self.k[0],
            self.h + 2 * self.pad + 1 - self.k[1],
            self.w + 2 * self.pad + 1 - self.k[2],
        ]
    }
}

/// `out[cout, od, oh, ow] = conv(x[cin, d, h, w], w[cout, cin, kd, kh, kw])` for one
/// batch element, or `false` (nothing written) when this CPU has neither AVX-512F
/// nor AVX2 + FMA. The caller checked that the kernel fits the padded input.
pub(crate) fn conv3d(x: &[f32], wt: &[f32], g: Dims, out: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            run::<x86::Avx512>(x, wt, g, out);
            return true;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            run::<x86::Avx2>(x, wt, g, out);
            return true;
        }
    }
    let _ = (x, wt, g, out);
    false
}

/// One SIMD flavour: its vector type, width and the micro-kernel's tile.
trait Isa: Sync {
    /// Lanes per vector.
    const L: usize;
    /// Output channels per tile.
    const CO: usize;
    /// Run one tile (see [`x86`]); `nv` vectors of output voxels (1..=3).
    ///
    /// # Safety
    /// The CPU has the ISA; pointers cover what the tile reads and writes.
    unsafe fn tile(t: &Tile, nv: usize);
}

/// One micro-kernel call: `CO` output channels × `nv·L` voxels of one output row.
struct Tile {
    /// Slab position of input (ci = 0, tap 0) for the tile's first voxel.
    src: *const f32,
    /// Packed weights of the channel block: `[cin][kd][kh][kw][CO]`.
    wts: *const f32,
    /// Where the CO rows of results go (`CO` rows of `nv·L` floats, `dst_stride` apart).
    dst: *mut f32,
    dst_stride: usize,
    cin: usize,
    /// Slab offsets of one input channel, one plane, one row.
    ch_stride: usize,
    plane_stride: usize,
    row_stride: usize,
    k: [usize; 3],
}

fn run<I: Isa>(x: &[f32], wt: &[f32], g: Dims, out: &mut [f32]) {
    let [od, oh, ow] = g.out();
    let [kd, kh, kw] = g.k;
    let l = I::L;
    let co_blocks = g.cout.div_ceil(I::CO);
    // Weights packed per channel block, zero-padded to a whole block.
    let taps = kd * kh * kw;
    let mut packed = vec![0f32; co_blocks * g.cin * taps * I::CO];
    for co in 0..g.cout {
        let (blk, lane) = (co / I::CO, co % I::CO);
        for ci in 0..g.cin {
            for t in 0..taps {
                packed[((blk * g.cin + ci) * taps + t) * I::CO + lane] =
                    wt[(co * g.cin + ci) * taps + t];
            }
        }
    }
    // Slab rows hold the padded input row plus room for the last vector's overhang.
    let owv = ow.div_ceil(l) * l;
    let row = owv + kw - 1;
    let rows = oh + kh - 1;
    let plane = rows * row;
    let ovox = od * oh * ow;
    let out_ptr = SyncPtr(out.as_mut_ptr());
    let chunks = od.div_ceil(PLANES);
    (0..chunks).into_par_iter().for_each_init(
        || {
            (
                vec![0f32; (PLANES + kd - 1) * g.cin * plane],
                vec![0f32; I::CO * owv],
            )
        },
        |(slab, tmp), c| {
            let z0 = c * PLANES;
            let z1 = (z0 + PLANES).min(od);
            let np = z1 - z0 + kd - 1;
            fill_slab(slab, x, &g, z0, np, row, rows);
            // Slab layout `[plane][ci][row][col]`.
            let (ch_stride, plane_stride) = (plane, g.cin * plane);
            for z in z0..z1 {
                for y in 0..oh {
                    for blk in 0..co_blocks {
                        let co0 = blk * I::CO;
                        let full = co0 + I::CO <= g.cout;
                        let base = (z - z0) * plane_stride + y * row;
                        let mut x0 = 0;
                        while x0 < ow {
                            let nv = ((ow - x0).div_ceil(l)).min(3);
                            // Whole vectors inside the row and a whole channel block
                            // go straight to the output; anything else via `tmp`.
                            let direct = full && x0 + nv * l <= ow;
                            let (dst, dst_stride) = if direct {
                                // SAFETY: in bounds: co0 + CO <= cout, x0 + nv·L <= ow.
                                let p = unsafe {
                                    out_ptr.get().add(co0 * ovox + (z * oh + y) * ow + x0)
                                };
                                (p, ovox)
                            } else {
                                (tmp.as_mut_ptr(), owv)
                            };
                            let t = Tile {
                                src: slab[base + x0..].as_ptr(),
                                wts: packed[blk * g.cin * taps * I::CO..].as_ptr(),
                                dst,
                                dst_stride,
                                cin: g.cin,
                                ch_stride,
                                plane_stride,
                                row_stride: row,
                                k: g.k,
                            };
                            // SAFETY: the ISA was detected; the slab row has
                            // owv + kw - 1 >= x0 + nv·L + kw - 1 floats, rows and
                            // planes cover y + kh - 1 and z - z0 + kd - 1; `dst` has
                            // CO rows of nv·L floats.
                            unsafe { I::tile(&t, nv) };
                            if !direct {
                                let n = (ow - x0).min(nv * l);
                                for lane in 0..I::CO.min(g.cout - co0) {
                                    let o = (co0 + lane) * ovox + (z * oh + y) * ow + x0;
                                    // SAFETY: rows z, y, columns x0..x0+n of channel
                                    // co0+lane belong to this task only.
                                    unsafe {
                                        std::ptr::copy_nonoverlapping(
                                            tmp.as_ptr().add(lane * owv),
                                            out_ptr.get().add(o),
                                            n,
                                        );
                                    }
                                }
                            }
                            x0 += nv * l;
                        }
                    }
                }
            }
        },
    );
}

/// Copy input planes `z0 - pad .. z0 - pad + np` (all channels) into the slab,
/// zero-padded: `[plane][ci][row][col]`, rows `h + 2·pad`-ish, columns `row`.
fn fill_slab(slab: &mut [f32], x: &[f32], g: &Dims, z0: usize, np: usize, row: usize, rows: usize) {
    let p = g.pad;
    let plane = rows * row;
    for pi in 0..np {
        let iz = (z0 + pi).wrapping_sub(p);
        for ci in 0..g.cin {
            let dst = &mut slab[(pi * g.cin + ci) * plane..][..plane];
            if iz >= g.d {
                dst.fill(0.0);
                continue;
            }
            for r in 0..rows {
                let drow = &mut dst[r * row..(r + 1) * row];
                let iy = r.wrapping_sub(p);
                if iy >= g.h {
                    drow.fill(0.0);
                    continue;
                }
                let src = &x[((ci * g.d + iz) * g.h + iy) * g.w..][..g.w];
                let n = g.w.min(row - p);
                drow[..p].fill(0.0);
                drow[p..p + n].copy_from_slice(&src[..n]);
                drow[p + n..].fill(0.0);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The micro-kernels: `CO × NV` vector accumulators live in registers for the
    //! whole reduction over input channels and kernel taps.
    use super::{Isa, Tile};
    use std::arch::x86_64::*;

    /// The reduction for one tile: `NV` vectors × `CO` channels.
    macro_rules! tile_body {
        ($t:expr, $nv:literal, $co:literal, $l:literal, $vec:ty,
         $zero:ident, $load:ident, $splat:ident, $fma:ident, $store:ident) => {{
            let t = $t;
            let mut acc: [[$vec; $nv]; $co] = [[$zero(); $nv]; $co];
            let mut wp = t.wts;
            for ci in 0..t.cin {
                let cbase = t.src.add(ci * t.ch_stride);
                for a in 0..t.k[0] {
                    for b in 0..t.k[1] {
                        let rp = cbase.add(a * t.plane_stride + b * t.row_stride);
                        for c in 0..t.k[2] {
                            let mut v: [$vec; $nv] = [$zero(); $nv];
                            for j in 0..$nv {
                                v[j] = $load(rp.add(c + j * $l));
                            }
                            for o in 0..$co {
                                let wv = $splat(*wp.add(o));
                                for j in 0..$nv {
                                    acc[o][j] = $fma(wv, v[j], acc[o][j]);
                                }
                            }
                            wp = wp.add($co);
                        }
                    }
                }
            }
            for o in 0..$co {
                for j in 0..$nv {
                    $store(t.dst.add(o * t.dst_stride + j * $l), acc[o][j]);
                }
            }
        }};
    }

    /// One ISA: its marker type, tile function (1–3 vectors wide) and [`Isa`] impl.
    macro_rules! isa {
        ($name:ident, $feature:literal, $l:literal, $co:literal, $vec:ty,
         $zero:ident, $load:ident, $splat:ident, $fma:ident, $store:ident) => {
            pub struct $name;

            impl $name {
                #[target_feature(enable = $feature)]
                unsafe fn run_tile(t: &Tile, nv: usize) {
                    match nv {
                        1 => tile_body!(t, 1, $co, $l, $vec, $zero, $load, $splat, $fma, $store),
                        2 => tile_body!(t, 2, $co, $l, $vec, $zero, $load, $splat, $fma, $store),
                        _ => tile_body!(t, 3, $co, $l, $vec, $zero, $load, $splat, $fma, $store),
                    }
                }
            }

            impl Isa for $name {
                const L: usize = $l;
                const CO: usize = $co;
                unsafe fn tile(t: &Tile, nv: usize) {
                    Self::run_tile(t, nv)
                }
            }
        };
    }

    // 8 channels × 3 vectors = 24 of the 32 zmm registers hold accumulators.
    isa!(
        Avx512,
        "avx512f",
        16,
        8,
        __m512,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        _mm512_storeu_ps
    );
    // 4 channels × 3 vectors = 12 of the 16 ymm registers.
    isa!(
        Avx2,
        "avx2,fma",
        8,
        4,
        __m256,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_storeu_ps
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::ops3d::tests::{lcg, naive_conv3d};

    type Kernel = fn(&[f32], &[f32], Dims, &mut [f32]);

    #[test]
    fn direct_conv_matches_naive_on_odd_shapes() {
        // Channel counts off the tile, rows off the vector width, several tile
        // widths, planes not a multiple of the chunk, kernels 3³, 1×3×3 and 5³.
        for (cin, cout, d, h, w, k, pad) in [
            (3, 5, 5, 6, 7, [3, 3, 3], 1),
            (4, 16, 3, 4, 37, [3, 3, 3], 1),
            (8, 9, 7, 3, 53, [1, 3, 3], 1),
            (2, 3, 6, 6, 6, [5, 5, 5], 2),
            (5, 8, 4, 5, 17, [3, 3, 3], 0),
        ] {
            let g = Dims {
                cin,
                cout,
                d,
                h,
                w,
                k,
                pad,
            };
            let x = lcg(cin * d * h * w, 1);
            let wt = lcg(cout * cin * k.iter().product::<usize>(), 2);
            let want = naive_conv3d(&x, [cin, d, h, w], &wt, cout, k, 1, pad);
            let mut kernels: Vec<(&str, Kernel)> = Vec::new();
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    kernels.push(("avx512", run::<x86::Avx512>));
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    kernels.push(("avx2", run::<x86::Avx2>));
                }
            }
            if kernels.is_empty() {
                eprintln!("no AVX2/AVX-512 on this CPU: the direct conv is not used here");
                let mut out = vec![0f32; want.len()];
                assert!(!conv3d(&x, &wt, g, &mut out));
                return;
            }
            for (name, kernel) in kernels {
                let mut got = vec![f32::NAN; want.len()];
                kernel(&x, &wt, g, &mut got);
                let e = want
                    .iter()
                    .zip(&got)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    e < 1e-5,
                    "{name} {cin}->{cout} {d}x{h}x{w} k{k:?}: max error {e}"
                );
            }
        }
    }
}
