//! 3-D tensor operations that candle 0.11 lacks, composed from its
//! device-generic, differentiable primitives: conv3d (depth-to-channel fold
//! then conv2d, chunked over output depth), trilinear ×2 upsampling
//! (align_corners = false, separable per axis) and GroupNorm on 5-D tensors.
//!
//! Everything here works on any candle device and supports backprop, so the
//! same code serves inference and Glia's own training loop.

use candle_core::{DType, Result, Tensor, D};

/// Upper bound on elements of one folded conv2d input chunk; bounds the
/// memory of a conv3d regardless of volume size.
const FOLD_CHUNK_ELEMS: usize = 48 * 1024 * 1024;

/// 3-D convolution, cubic kernel, same stride and zero padding on every axis.
///
/// `x` is `[N, Cin, D, H, W]`, `w` is `[Cout, Cin, k, k, k]`, optional `bias`
/// `[Cout]`. Returns `[N, Cout, Do, Ho, Wo]` like `torch.nn.functional.conv3d`.
pub fn conv3d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    let (n, cin, d, h, wd) = x.dims5()?;
    let (cout, cin_w, kd, kh, kw) = w.dims5()?;
    if cin != cin_w {
        candle_core::bail!("conv3d: input has {cin} channels, kernel expects {cin_w}");
    }
    let out = if kd == 1 && kh == 1 && kw == 1 && stride == 1 && pad == 0 {
        // Pointwise: a plain matmul over the flattened volume.
        let w2 = w.reshape((1, cout, cin))?.broadcast_as((n, cout, cin))?;
        let x2 = x.reshape((n, cin, d * h * wd))?;
        w2.matmul(&x2)?.reshape((n, cout, d, h, wd))?
    } else {
        conv3d_fold(x, w, stride, pad)?
    };
    match bias {
        Some(b) => out.broadcast_add(&b.reshape((1, cout, 1, 1, 1))?),
        None => Ok(out),
    }
}

fn conv3d_fold(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    let (n, cin, d, h, wd) = x.dims5()?;
    let (cout, _, kd, kh, kw) = w.dims5()?;
    if d + 2 * pad < kd || h + 2 * pad < kh || wd + 2 * pad < kw {
        candle_core::bail!("conv3d: input {d}x{h}x{wd} smaller than kernel");
    }
    let d_out = (d + 2 * pad - kd) / stride + 1;
    let xp = if pad > 0 {
        x.pad_with_zeros(2, pad, pad)?
    } else {
        x.clone()
    };
    // Weight [Cout, Cin, kd, kh, kw] -> [Cout, kd*Cin, kh, kw], channel = t*Cin + c.
    let w2 = w
        .permute((0, 2, 1, 3, 4))?
        .contiguous()?
        .reshape((cout, kd * cin, kh, kw))?;
    let per_slice = n * kd * cin * (h + 2 * pad) * (wd + 2 * pad);
    let chunk = (FOLD_CHUNK_ELEMS / per_slice.max(1)).clamp(1, d_out);
    let mut outs = Vec::with_capacity(d_out.div_ceil(chunk));
    let mut o0 = 0;
    while o0 < d_out {
        let len = chunk.min(d_out - o0);
        let mut taps = Vec::with_capacity(kd);
        for t in 0..kd {
            let tap = if stride == 1 {
                xp.narrow(2, o0 + t, len)?
            } else {
                let idx: Vec<u32> = (0..len).map(|i| ((o0 + i) * stride + t) as u32).collect();
                let idx = Tensor::from_vec(idx, len, xp.device())?;
                xp.index_select(&idx, 2)?
            };
            taps.push(tap);
        }
        // [N, kd, Cin, len, H, W] -> [N, len, kd, Cin, H, W] -> [N*len, kd*Cin, H, W]
        let folded = Tensor::stack(&taps, 1)?
            .permute((0, 3, 1, 2, 4, 5))?
            .contiguous()?
            .reshape((n * len, kd * cin, h, wd))?;
        drop(taps);
        let y = folded.conv2d(&w2, pad, stride, 1, 1)?;
        let (_, _, ho, wo) = y.dims4()?;
        let y = y
            .reshape((n, len, cout, ho, wo))?
            .permute((0, 2, 1, 3, 4))?
            .contiguous()?;
        outs.push(y);
        o0 += len;
    }
    if outs.len() == 1 {
        Ok(outs.remove(0))
    } else {
        Tensor::cat(&outs, 2)
    }
}

/// Doubles one spatial axis with linear interpolation, align_corners=false:
/// `out[2i] = 0.75·x[i] + 0.25·x[i-1]`, `out[2i+1] = 0.75·x[i] + 0.25·x[i+1]`,
/// indices clamped at the edges.
fn up2_axis(x: &Tensor, axis: usize) -> Result<Tensor> {
    let n = x.dim(axis)?;
    let (prev, next) = if n == 1 {
        (x.clone(), x.clone())
    } else {
        let first = x.narrow(axis, 0, 1)?;
        let last = x.narrow(axis, n - 1, 1)?;
        (
            Tensor::cat(&[&first, &x.narrow(axis, 0, n - 1)?], axis)?,
            Tensor::cat(&[&x.narrow(axis, 1, n - 1)?, &last], axis)?,
        )
    };
    let even = ((x * 0.75)? + (prev * 0.25)?)?;
    let odd = ((x * 0.75)? + (next * 0.25)?)?;
    let mut dims = x.dims().to_vec();
    dims[axis] *= 2;
    Tensor::stack(&[even, odd], axis + 1)?.reshape(dims)
}

/// Trilinear ×2 upsampling of `[N, C, D, H, W]`, matching PyTorch's
/// `interpolate(scale_factor=2, mode="trilinear", align_corners=False)`.
pub fn trilinear_up2(x: &Tensor) -> Result<Tensor> {
    let _ = x.dims5()?;
    let x = up2_axis(x, 4)?;
    let x = up2_axis(&x, 3)?;
    up2_axis(&x, 2)
}

/// GroupNorm over `[N, C, ...]` with population variance, then the per-channel
/// affine `weight`, `bias` (`[C]`), like `torch.nn.GroupNorm`.
pub fn group_norm(
    x: &Tensor,
    groups: usize,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    if dims.len() < 3 {
        candle_core::bail!("group_norm: rank {} < 3", dims.len());
    }
    let (n, c) = (dims[0], dims[1]);
    if groups == 0 || c % groups != 0 {
        candle_core::bail!("group_norm: {groups} groups do not divide {c} channels");
    }
    let spatial: usize = dims[2..].iter().product();
    let xg = x.reshape((n, groups, (c / groups) * spatial))?;
    let mean = xg.mean_keepdim(D::Minus1)?;
    let xc = xg.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let inv = (var + eps)?.sqrt()?.recip()?;
    let xn = xc.broadcast_mul(&inv)?.reshape((n, c, spatial))?;
    let w = weight.to_dtype(DType::F32)?.reshape((1, c, 1))?;
    let b = bias.to_dtype(DType::F32)?.reshape((1, c, 1))?;
    xn.broadcast_mul(&w)?.broadcast_add(&b)?.reshape(dims)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use candle_core::Device;

    /// Direct (slow) conv3d: the reference for the fold implementation and the
    /// CPU kernels. Kernel `k` = (kd, kh, kw), stride `s`, padding `p`.
    pub(crate) fn naive_conv3d(
        x: &[f32],
        dims: [usize; 4],
        w: &[f32],
        cout: usize,
        k: [usize; 3],
        s: usize,
        p: usize,
    ) -> Vec<f32> {
        let [cin, d, h, wd] = dims;
        let o = |n: usize, k: usize| (n + 2 * p - k) / s + 1;
        let (od, oh, ow) = (o(d, k[0]), o(h, k[1]), o(wd, k[2]));
        let mut out = vec![0f32; cout * od * oh * ow];
        for co in 0..cout {
            for z in 0..od {
                for y in 0..oh {
                    for xx in 0..ow {
                        let mut acc = 0f32;
                        for ci in 0..cin {
                            for a in 0..k[0] {
                                for b in 0..k[1] {
                                    for c in 0..k[2] {
                                        let iz = (z * s + a) as isize - p as isize;
                                        let iy = (y * s + b) as isize - p as isize;
                                        let ix = (xx * s + c) as isize - p as isize;
                                        if iz < 0
                                            || iy < 0
                                            || ix < 0
                                            || iz >= d as isize
                                            || iy >= h as isize
                                            || ix >= wd as isize
                                        {
                                            continue;
                                        }
                                        let xv = x[((ci * d + iz as usize) * h + iy as usize) * wd
                                            + ix as usize];
                                        let wv =
                                            w[(((co * cin + ci) * k[0] + a) * k[1] + b) * k[2] + c];
                                        acc += xv * wv;
                                    }
                                }
                            }
                        }
                        out[((co * od + z) * oh + y) * ow + xx] = acc;
                    }
                }
            }
        }
        out
    }

    /// Deterministic pseudo-random values in [-0.5, 0.5).
    pub(crate) fn lcg(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn conv3d_matches_naive_stride1_and_2() {
        let dev = Device::Cpu;
        let (cin, cout, d, h, w) = (3, 5, 6, 7, 5);
        let xv = lcg(cin * d * h * w, 1);
        let x = Tensor::from_vec(xv.clone(), (1, cin, d, h, w), &dev).unwrap();
        for (k, s, p) in [(3, 1, 1), (3, 2, 1), (1, 1, 0)] {
            let wv = lcg(cout * cin * k * k * k, 2);
            let wt = Tensor::from_vec(wv.clone(), (cout, cin, k, k, k), &dev).unwrap();
            let got: Vec<f32> = conv3d(&x, &wt, None, s, p)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let want = naive_conv3d(&xv, [cin, d, h, w], &wv, cout, [k; 3], s, p);
            assert_eq!(got.len(), want.len());
            let err = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(err < 1e-5, "k{k} s{s} p{p}: max err {err}");
        }
    }

    #[test]
    fn trilinear_matches_separable_reference_1d() {
        let dev = Device::Cpu;
        let x = Tensor::from_vec(vec![0f32, 1.0, 3.0], (1, 1, 3, 1, 1), &dev).unwrap();
        let y: Vec<f32> = trilinear_up2(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        // PyTorch: [0, 0.25, 0.75, 1.5, 2.5, 3]
        let want = [0.0, 0.25, 0.75, 1.5, 2.5, 3.0];
        let got: Vec<f32> = y.iter().step_by(4).copied().collect();
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{got:?}");
        }
    }
}
