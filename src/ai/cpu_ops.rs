//! Fused CPU kernels (candle custom ops) for SegResNet: conv3d (stride 1 through
//! the direct SIMD kernel of `cpu_conv`, otherwise tiled im2col + GEMM writing
//! straight into the output; with a backward pass for training), GroupNorm + ReLU
//! in one pass, and trilinear ×2 upsampling fused with the skip addition. They
//! bound memory to the output tensor plus small per-thread tiles (the composed ops
//! in `ops3d` materialise several full-size temporaries) and run in parallel on
//! rayon's pool. Non-CPU devices use `ops3d`.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Elements of one im2col tile (per thread), ~4 MiB.
const TILE_ELEMS: usize = 1 << 20;

/// Raw output pointer shared by tiles that write disjoint regions.
#[derive(Clone, Copy)]
pub(super) struct SyncPtr(pub(super) *mut f32);
// SAFETY: each user's parallel tasks write disjoint output elements (`Conv3d::cpu_fwd`,
// `cpu_conv::run`), and the buffer outlives the parallel loop.
unsafe impl Send for SyncPtr {}
unsafe impl Sync for SyncPtr {}

impl SyncPtr {
    /// The pointer (a method, so closures capture the whole `Send` wrapper).
    pub(super) fn get(self) -> *mut f32 {
        self.0
    }
}

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        bail!("glia cpu op: f32 tensors only")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("glia cpu op: contiguous input required"),
    }
}

/// 3-D convolution `[N, Cin, D, H, W]` × `[Cout, Cin, kd, kh, kw]`, no bias.
struct Conv3d {
    stride: usize,
    pad: usize,
}

impl CustomOp2 for Conv3d {
    fn name(&self) -> &'static str {
        "glia-conv3d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1)?;
        let w = f32_slice(s2, l2)?;
        let (n, cin, d, h, wd) = l1.shape().dims5()?;
        let (cout, cin_w, kd, kh, kw) = l2.shape().dims5()?;
        let (s, p) = (self.stride.max(1), self.pad);
        if cin != cin_w || d + 2 * p < kd || h + 2 * p < kh || wd + 2 * p < kw {
            bail!(
                "glia-conv3d: incompatible input {:?} and kernel {:?}",
                l1.dims(),
                l2.dims()
            );
        }
        let (od, oh, ow) = (
            (d + 2 * p - kd) / s + 1,
            (h + 2 * p - kh) / s + 1,
            (wd + 2 * p - kw) / s + 1,
        );
        let k = cin * kd * kh * kw;
        let ovox = od * oh * ow;
        if s == 1 && kd * kh * kw > 1 {
            let g = super::cpu_conv::Dims {
                cin,
                cout,
                d,
                h,
                w: wd,
                k: [kd, kh, kw],
                pad: p,
            };
            let mut out = vec![0f32; n * cout * ovox];
            let ok = out
                .chunks_mut(cout * ovox)
                .zip(x.chunks(cin * d * h * wd))
                .all(|(o, xb)| super::cpu_conv::conv3d(xb, w, g, o));
            if ok {
                return Ok((CpuStorage::F32(out), Shape::from((n, cout, od, oh, ow))));
            }
        }
        let rows = od * oh;
        let rows_per_tile = (TILE_ELEMS / (k * ow)).clamp(1, rows);
        let ntiles = rows.div_ceil(rows_per_tile);
        let mut out = vec![0f32; n * cout * ovox];
        let optr = SyncPtr(out.as_mut_ptr());
        for b in 0..n {
            let xb = &x[b * cin * d * h * wd..(b + 1) * cin * d * h * wd];
            (0..ntiles).into_par_iter().for_each_init(
                || vec![0f32; k * rows_per_tile * ow],
                |buf, t| {
                    let r0 = t * rows_per_tile;
                    let r1 = (r0 + rows_per_tile).min(rows);
                    let tv = (r1 - r0) * ow;
                    let geo = Geo {
                        cin,
                        d,
                        h,
                        wd,
                        kd,
                        kh,
                        kw,
                        s,
                        p,
                        oh,
                        ow,
                    };
                    fill_cols(&mut buf[..k * tv], xb, &geo, r0, r1);
                    // SAFETY: rows r0..r1 of every output channel of batch b belong
                    // to this tile only; `buf` holds k × tv values; `w` is cout × k.
                    unsafe {
                        gemm::gemm(
                            cout,
                            tv,
                            k,
                            optr.get().add(b * cout * ovox + r0 * ow),
                            1,
                            ovox as isize,
                            false,
                            w.as_ptr(),
                            1,
                            k as isize,
                            buf.as_ptr(),
                            1,
                            tv as isize,
                            0.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        );
                    }
                },
            );
        }
        Ok((CpuStorage::F32(out), Shape::from((n, cout, od, oh, ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (_, _, d, h, wd) = x.dims5()?;
        let (_, _, kd, kh, kw) = w.dims5()?;
        if kd != kh || kd != kw || self.pad + 1 > kd {
            bail!("glia-conv3d backward: cubic kernels with pad < k only");
        }
        // grad_x: transposed convolution = conv of the (zero-inserted) gradient
        // with the spatially flipped, in/out-swapped kernel, padding k-1-p.
        let k = kd;
        let rev = Tensor::from_vec((0..k as u32).rev().collect::<Vec<_>>(), k, w.device())?;
        let wf = w
            .index_select(&rev, 2)?
            .index_select(&rev, 3)?
            .index_select(&rev, 4)?
            .permute((1, 0, 2, 3, 4))?
            .contiguous()?;
        let mut g = grad.contiguous()?;
        if self.stride == 2 {
            for axis in 2..5 {
                let mut dims = g.dims().to_vec();
                dims[axis] *= 2;
                g = Tensor::stack(&[&g, &g.zeros_like()?], axis + 1)?.reshape(dims)?;
            }
        } else if self.stride != 1 {
            bail!("glia-conv3d backward: stride 1 or 2 only");
        }
        let gx = conv3d(&g, &wf, 1, k - 1 - self.pad)?;
        let gx = gx.narrow(2, 0, d)?.narrow(3, 0, h)?.narrow(4, 0, wd)?;
        let gw = grad.contiguous()?.apply_op2_no_bwd(
            &x.contiguous()?,
            &Conv3dGradW {
                stride: self.stride,
                pad: self.pad,
                k: [kd, kh, kw],
            },
        )?;
        Ok((Some(gx), Some(gw)))
    }
}

/// Weight gradient of [`Conv3d`]: `grad_out [Cout, V] × im2col(x)ᵀ`, summed over batch.
struct Conv3dGradW {
    stride: usize,
    pad: usize,
    k: [usize; 3],
}

impl CustomOp2 for Conv3dGradW {
    fn name(&self) -> &'static str {
        "glia-conv3d-grad-w"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = f32_slice(s1, l1)?;
        let x = f32_slice(s2, l2)?;
        let (n, cout, od, oh, ow) = l1.shape().dims5()?;
        let (n2, cin, d, h, wd) = l2.shape().dims5()?;
        let [kd, kh, kw] = self.k;
        if n != n2 {
            bail!("glia-conv3d-grad-w: batch mismatch");
        }
        let k = cin * kd * kh * kw;
        let ovox = od * oh * ow;
        let rows = od * oh;
        let rows_per_tile = (TILE_ELEMS / (k * ow)).clamp(1, rows);
        let ntiles = rows.div_ceil(rows_per_tile);
        let geo = Geo {
            cin,
            d,
            h,
            wd,
            kd,
            kh,
            kw,
            s: self.stride.max(1),
            p: self.pad,
            oh,
            ow,
        };
        let gw = (0..n * ntiles)
            .into_par_iter()
            .map_init(
                || vec![0f32; k * rows_per_tile * ow],
                |buf, bt| {
                    let mut acc = vec![0f32; cout * k];
                    let (b, t) = (bt / ntiles, bt % ntiles);
                    let r0 = t * rows_per_tile;
                    let r1 = (r0 + rows_per_tile).min(rows);
                    let tv = (r1 - r0) * ow;
                    let xb = &x[b * cin * d * h * wd..(b + 1) * cin * d * h * wd];
                    fill_cols(&mut buf[..k * tv], xb, &geo, r0, r1);
                    // SAFETY: acc is cout × k; the gradient tile starts at row r0 of
                    // batch b with row stride ovox; buf holds k × tv values.
                    unsafe {
                        gemm::gemm(
                            cout,
                            k,
                            tv,
                            acc.as_mut_ptr(),
                            1,
                            k as isize,
                            true,
                            g.as_ptr().add(b * cout * ovox + r0 * ow),
                            1,
                            ovox as isize,
                            buf.as_ptr(),
                            tv as isize,
                            1,
                            1.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        );
                    }
                    acc
                },
            )
            .collect::<Vec<_>>()
            // Sum the per-tile partials in tile order: bitwise reproducible
            // whatever the thread count or scheduling.
            .into_iter()
            .reduce(|mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            })
            .unwrap_or_else(|| vec![0f32; cout * k]);
        Ok((CpuStorage::F32(gw), Shape::from((cout, cin, kd, kh, kw))))
    }
}

/// Geometry of one conv3d: input sizes, kernel, stride, padding, output rows.
struct Geo {
    cin: usize,
    d: usize,
    h: usize,
    wd: usize,
    kd: usize,
    kh: usize,
    kw: usize,
    s: usize,
    p: usize,
    oh: usize,
    ow: usize,
}

/// im2col of output rows `r0..r1` (row = z·oh + y) into `buf` `[K, (r1-r0)·ow]`.
fn fill_cols(buf: &mut [f32], xb: &[f32], g: &Geo, r0: usize, r1: usize) {
    let Geo {
        cin,
        d,
        h,
        wd,
        kd,
        kh,
        kw,
        s,
        p,
        oh,
        ow,
    } = *g;
    let tv = (r1 - r0) * ow;
    for ci in 0..cin {
        for a in 0..kd {
            for bb in 0..kh {
                for c in 0..kw {
                    let kr = ((ci * kd + a) * kh + bb) * kw + c;
                    let dst = &mut buf[kr * tv..(kr + 1) * tv];
                    for (ri, r) in (r0..r1).enumerate() {
                        let (z, y) = (r / oh, r % oh);
                        let drow = &mut dst[ri * ow..(ri + 1) * ow];
                        let iz = (z * s + a).wrapping_sub(p);
                        let iy = (y * s + bb).wrapping_sub(p);
                        if iz >= d || iy >= h {
                            drow.fill(0.0);
                            continue;
                        }
                        let src = &xb[((ci * d + iz) * h + iy) * wd..][..wd];
                        if s == 1 {
                            // valid output x: 0 <= xo + c - p < wd
                            let lo = p.saturating_sub(c).min(ow);
                            let hi = (wd + p).saturating_sub(c).min(ow).max(lo);
                            drow[..lo].fill(0.0);
                            drow[hi..].fill(0.0);
                            let s0 = lo + c - p;
                            drow[lo..hi].copy_from_slice(&src[s0..s0 + (hi - lo)]);
                        } else {
                            for (xo, o) in drow.iter_mut().enumerate() {
                                let ix = (xo * s + c).wrapping_sub(p);
                                *o = if ix < wd { src[ix] } else { 0.0 };
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `conv3d` on CPU through the fused kernel, without gradient tracking.
pub fn conv3d(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2_no_bwd(&w.contiguous()?, &Conv3d { stride, pad })
}

/// `conv3d` on CPU through the fused kernel, differentiable (cubic kernels,
/// stride 1 or 2) for training.
pub fn conv3d_trainable(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&w.contiguous()?, Conv3d { stride, pad })
}

/// GroupNorm followed by ReLU.
struct GroupNormRelu {
    groups: usize,
    eps: f64,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl CustomOp1 for GroupNormRelu {
    fn name(&self) -> &'static str {
        "glia-groupnorm-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l)?;
        let dims = l.dims();
        if dims.len() < 3 {
            bail!("glia-groupnorm-relu: rank {} < 3", dims.len());
        }
        let (n, c) = (dims[0], dims[1]);
        let sp: usize = dims[2..].iter().product();
        let g = self.groups;
        if g == 0 || c % g != 0 || self.weight.len() != c || self.bias.len() != c {
            bail!("glia-groupnorm-relu: {g} groups / {c} channels / affine size mismatch");
        }
        let gl = c / g * sp;
        let stats: Vec<(f64, f64)> = (0..n * g)
            .into_par_iter()
            .map(|i| {
                let v = &x[i * gl..(i + 1) * gl];
                let mean = v.iter().map(|&a| a as f64).sum::<f64>() / gl as f64;
                let var = v.iter().map(|&a| (a as f64 - mean).powi(2)).sum::<f64>() / gl as f64;
                (mean, 1.0 / (var + self.eps).sqrt())
            })
            .collect();
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(sp).enumerate().for_each(|(bc, o)| {
            let (b, ci) = (bc / c, bc % c);
            let (mean, inv) = stats[b * g + ci / (c / g)];
            let scale = inv * self.weight[ci] as f64;
            let shift = self.bias[ci] as f64 - mean * scale;
            let (scale, shift) = (scale as f32, shift as f32);
            for (o, &a) in o.iter_mut().zip(&x[bc * sp..(bc + 1) * sp]) {
                *o = (a * scale + shift).max(0.0);
            }
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
}

/// `relu(group_norm(x))` on CPU in one pass (inference only).
pub fn group_norm_relu(
    x: &Tensor,
    groups: usize,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let op = GroupNormRelu {
        groups,
        eps,
        weight: weight.to_vec1()?,
        bias: bias.to_vec1()?,
    };
    x.contiguous()?.apply_op1_no_bwd(&op)
}

/// Trilinear ×2 (align_corners = false) of the first argument plus the second.
struct UpsampleAdd;

/// Doubles `src` (`outer` lines of `len` values, each value repeated over `inner`
/// contiguous elements) along that axis into `dst`.
fn up2_line(src: &[f32], dst: &mut [f32], outer: usize, len: usize, inner: usize) {
    for o in 0..outer {
        let s = &src[o * len * inner..(o + 1) * len * inner];
        let d = &mut dst[o * 2 * len * inner..(o + 1) * 2 * len * inner];
        for i in 0..len {
            let prev = &s[i.saturating_sub(1) * inner..][..inner];
            let cur = &s[i * inner..][..inner];
            let next = &s[(i + 1).min(len - 1) * inner..][..inner];
            let (even, odd) = d[2 * i * inner..(2 * i + 2) * inner].split_at_mut(inner);
            for j in 0..inner {
                even[j] = 0.75 * cur[j] + 0.25 * prev[j];
                odd[j] = 0.75 * cur[j] + 0.25 * next[j];
            }
        }
    }
}

impl CustomOp2 for UpsampleAdd {
    fn name(&self) -> &'static str {
        "glia-upsample2-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1)?;
        let skip = f32_slice(s2, l2)?;
        let (n, c, d, h, w) = l1.shape().dims5()?;
        if l2.dims() != [n, c, 2 * d, 2 * h, 2 * w] {
            bail!(
                "glia-upsample2-add: skip {:?} is not twice {:?}",
                l2.dims(),
                l1.dims()
            );
        }
        let vin = d * h * w;
        let mut out = vec![0f32; 8 * n * c * vin];
        out.par_chunks_mut(8 * vin).enumerate().for_each(|(bc, o)| {
            let src = &x[bc * vin..(bc + 1) * vin];
            let mut t1 = vec![0f32; 2 * vin];
            up2_line(src, &mut t1, d * h, w, 1);
            let mut t2 = vec![0f32; 4 * vin];
            up2_line(&t1, &mut t2, d, h, 2 * w);
            up2_line(&t2, o, 1, d, 4 * h * w);
            for (a, &b) in o.iter_mut().zip(&skip[bc * 8 * vin..(bc + 1) * 8 * vin]) {
                *a += b;
            }
        });
        Ok((CpuStorage::F32(out), l2.shape().clone()))
    }
}

/// `trilinear_up2(x) + skip` on CPU in one pass (inference only).
pub fn upsample2_add(x: &Tensor, skip: &Tensor) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2_no_bwd(&skip.contiguous()?, &UpsampleAdd)
}

#[cfg(test)]
#[path = "cpu_ops_tests.rs"]
mod tests;
