//! The segmentation pipeline as a pure function of a multi-channel volume:
//! input checks, per-channel non-zero normalisation, padding, MONAI-style
//! sliding-window inference with constant or Gaussian blending, sigmoid +
//! threshold and BraTS label assembly. [`Engine`] holds one loaded model
//! (shared via `Arc`) and runs jobs off the async runtime with a
//! concurrency cap.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use tokio::sync::Semaphore;

use super::volume::labels::{EDEMA, ENHANCING, NECROTIC};
use super::{AiConfig, AiError, BlendMode, LabelVolume, SegResNet, Volume4};

/// Progress of one segmentation: sliding windows done out of total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Windows finished.
    pub done: usize,
    /// Windows in this job.
    pub total: usize,
}

/// Cooperative cancellation flag, checked between windows.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A fresh, un-cancelled token.
    pub fn new() -> Self {
        Self::default()
    }
    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A loaded segmentation model plus its settings; clone freely (shared state).
#[derive(Clone)]
pub struct Engine {
    model: Arc<SegResNet>,
    device: Device,
    cfg: AiConfig,
    roi: [usize; 3],
    permits: Arc<Semaphore>,
}

/// Parses `"a,b,c"` metadata into three numbers.
fn meta_triple<T: std::str::FromStr + Copy>(s: &str) -> Option<[T; 3]> {
    let v: Vec<T> = s.split(',').filter_map(|p| p.trim().parse().ok()).collect();
    (v.len() == 3).then(|| [v[0], v[1], v[2]])
}

impl Engine {
    /// Loads the weights named by `cfg.weights` onto `cfg.device`.
    pub fn load(cfg: &AiConfig) -> Result<Self, AiError> {
        let device = cfg.device()?;
        let bytes = std::fs::read(&cfg.weights)
            .map_err(|e| AiError::Weights(format!("cannot read {}: {e}", cfg.weights.display())))?;
        let model = SegResNet::from_safetensors_bytes(&bytes, &device)?;
        Self::from_model(model, device, cfg)
    }

    /// Wraps an already loaded model. The ROI is `cfg.roi` unless the weights
    /// carry a `glia.roi` metadata entry and `cfg.roi` is the default.
    pub fn from_model(model: SegResNet, device: Device, cfg: &AiConfig) -> Result<Self, AiError> {
        let mut roi = cfg.roi;
        if roi == AiConfig::default().roi {
            if let Some(r) = model
                .metadata()
                .get("glia.roi")
                .and_then(|s| meta_triple(s))
            {
                roi = r;
            }
        }
        let m = model.config().size_multiple();
        if roi.iter().any(|&r| r == 0 || r % m != 0) {
            return Err(AiError::Config(format!(
                "roi {roi:?} must be positive multiples of {m}"
            )));
        }
        if !(0.0..1.0).contains(&cfg.overlap) {
            return Err(AiError::Config(format!(
                "overlap {} not in [0, 1)",
                cfg.overlap
            )));
        }
        let permits = Arc::new(Semaphore::new(cfg.max_concurrent.max(1)));
        Ok(Self {
            model: Arc::new(model),
            device,
            cfg: cfg.clone(),
            roi,
            permits,
        })
    }

    /// The network.
    pub fn model(&self) -> &SegResNet {
        &self.model
    }

    /// Effective sliding-window ROI `[D, H, W]`.
    pub fn roi(&self) -> [usize; 3] {
        self.roi
    }

    /// Voxel spacing (mm, along D, H, W) the weights were trained at, when recorded.
    /// Inputs should be resampled to it (BraTS/MONAI weights: 1 mm isotropic).
    pub fn expected_spacing(&self) -> Option<[f64; 3]> {
        self.model
            .metadata()
            .get("glia.spacing_mm")
            .and_then(|s| meta_triple(s))
    }

    /// Segments `vol` (channels T1ce, T1, T2, FLAIR) into BraTS labels
    /// 0/1/2/4. Blocking and CPU-heavy: call from a blocking thread (see
    /// [`Engine::segment_async`]).
    pub fn segment(
        &self,
        vol: &Volume4,
        progress: &dyn Fn(Progress),
        cancel: &CancelToken,
    ) -> Result<LabelVolume, AiError> {
        let logits = self.predict_logits(vol, progress, cancel)?;
        let mut labels = labels_from_logits(&logits, vol.dims, vol.spacing)?;
        if self.cfg.min_component_ml > 0.0 {
            let min_voxels = (self.cfg.min_component_ml / labels.voxel_ml()).ceil() as usize;
            labels.remove_small_components(min_voxels);
        }
        Ok(labels)
    }

    /// Runs [`Engine::segment`] on tokio's blocking pool, at most
    /// `ai.max_concurrent` at a time.
    pub async fn segment_async(
        &self,
        vol: Arc<Volume4>,
        progress: Arc<dyn Fn(Progress) + Send + Sync>,
        cancel: CancelToken,
    ) -> Result<LabelVolume, AiError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| AiError::Config(e.to_string()))?;
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            engine.segment(&vol, &*progress, &cancel)
        })
        .await
        .map_err(|e| {
            AiError::Io(std::io::Error::other(format!(
                "segmentation task failed: {e}"
            )))
        })?
    }

    /// Checks and normalises `vol`, then returns the blended logits
    /// `[out_channels, D, H, W]` (un-padded, before sigmoid).
    pub fn predict_logits(
        &self,
        vol: &Volume4,
        progress: &dyn Fn(Progress),
        cancel: &CancelToken,
    ) -> Result<Vec<f32>, AiError> {
        let cfg = self.model.config();
        validate_input(vol, cfg.in_channels, self.cfg.max_voxels)?;
        let norm = normalize_nonzero(vol);
        // Pad each axis symmetrically to a multiple of the network stride and
        // to at least the ROI (as MONAI's sliding_window_inference does).
        let m = cfg.size_multiple();
        let mut padded = [0usize; 3];
        let mut before = [0usize; 3];
        for a in 0..3 {
            let p = vol.dims[a].div_ceil(m) * m;
            padded[a] = p.max(self.roi[a]);
            before[a] = (padded[a] - vol.dims[a]) / 2;
        }
        let (c_in, c_out) = (cfg.in_channels, cfg.out_channels);
        let starts: Vec<Vec<usize>> = (0..3)
            .map(|a| window_starts(padded[a], self.roi[a], self.cfg.overlap))
            .collect();
        let total = starts[0].len() * starts[1].len() * starts[2].len();
        let importance = importance_map(self.roi, self.cfg.blend);
        let [rd, rh, rw] = self.roi;
        let rvox = rd * rh * rw;
        let [d, h, w] = vol.dims;
        let nvox = d * h * w;
        let mut acc = vec![0f32; c_out * nvox];
        let mut weight = vec![0f32; nvox];
        let mut done = 0;
        progress(Progress { done, total });
        for &z0 in &starts[0] {
            for &y0 in &starts[1] {
                for &x0 in &starts[2] {
                    if cancel.is_cancelled() {
                        return Err(AiError::Cancelled);
                    }
                    // Window in padded coordinates -> gather from the volume.
                    let mut win = vec![0f32; c_in * rvox];
                    for c in 0..c_in {
                        let src = &norm[c * nvox..(c + 1) * nvox];
                        for z in 0..rd {
                            let Some(sz) = (z0 + z).checked_sub(before[0]).filter(|&v| v < d)
                            else {
                                continue;
                            };
                            for y in 0..rh {
                                let Some(sy) = (y0 + y).checked_sub(before[1]).filter(|&v| v < h)
                                else {
                                    continue;
                                };
                                let row = &src[(sz * h + sy) * w..(sz * h + sy + 1) * w];
                                let dst = &mut win[((c * rd + z) * rh + y) * rw..][..rw];
                                for (x, o) in dst.iter_mut().enumerate() {
                                    if let Some(sx) =
                                        (x0 + x).checked_sub(before[2]).filter(|&v| v < w)
                                    {
                                        *o = row[sx];
                                    }
                                }
                            }
                        }
                    }
                    let t = Tensor::from_vec(win, (1, c_in, rd, rh, rw), &self.device)?;
                    let out: Vec<f32> = self.model.forward(&t)?.flatten_all()?.to_vec1()?;
                    for z in 0..rd {
                        let Some(sz) = (z0 + z).checked_sub(before[0]).filter(|&v| v < d) else {
                            continue;
                        };
                        for y in 0..rh {
                            let Some(sy) = (y0 + y).checked_sub(before[1]).filter(|&v| v < h)
                            else {
                                continue;
                            };
                            for x in 0..rw {
                                let Some(sx) = (x0 + x).checked_sub(before[2]).filter(|&v| v < w)
                                else {
                                    continue;
                                };
                                let wi = (z * rh + y) * rw + x;
                                let imp = importance.as_ref().map_or(1.0, |m| m[wi]);
                                let vi = (sz * h + sy) * w + sx;
                                weight[vi] += imp;
                                for c in 0..c_out {
                                    acc[c * nvox + vi] += imp * out[c * rvox + wi];
                                }
                            }
                        }
                    }
                    done += 1;
                    progress(Progress { done, total });
                }
            }
        }
        for c in 0..c_out {
            for (a, &wv) in acc[c * nvox..(c + 1) * nvox].iter_mut().zip(&weight) {
                *a /= wv.max(f32::MIN_POSITIVE);
            }
        }
        Ok(acc)
    }
}

/// Rejects unusable inputs: channel count, size cap, non-finite voxels, all-zero channels.
pub fn validate_input(vol: &Volume4, channels: usize, max_voxels: usize) -> Result<(), AiError> {
    if vol.channels != channels {
        return Err(AiError::Input(format!(
            "model expects {channels} channels (T1ce, T1, T2, FLAIR), got {}",
            vol.channels
        )));
    }
    let n = vol.voxels();
    if vol.data.len() != channels * n || n == 0 {
        return Err(AiError::Input("data length does not match dims".into()));
    }
    if n > max_voxels {
        return Err(AiError::TooLarge {
            voxels: n,
            cap: max_voxels,
        });
    }
    for c in 0..channels {
        let ch = vol.channel(c);
        if let Some(i) = ch.iter().position(|v| !v.is_finite()) {
            return Err(AiError::Input(format!(
                "channel {c} has a non-finite value at voxel {i}"
            )));
        }
        if ch.iter().all(|&v| v == 0.0) {
            return Err(AiError::Input(format!("channel {c} is all zero")));
        }
    }
    Ok(())
}

/// Per channel: mean and population std over non-zero voxels; only non-zero
/// voxels are rewritten as `(v - mean) / std` (std 0 → 1). MONAI's
/// `NormalizeIntensityd(nonzero=True, channel_wise=True)`.
pub fn normalize_nonzero(vol: &Volume4) -> Vec<f32> {
    let n = vol.voxels();
    let mut out = vol.data.clone();
    for c in 0..vol.channels {
        let ch = &mut out[c * n..(c + 1) * n];
        let (mut cnt, mut sum) = (0usize, 0f64);
        for &v in ch.iter().filter(|v| **v != 0.0) {
            cnt += 1;
            sum += v as f64;
        }
        if cnt == 0 {
            continue;
        }
        let mean = sum / cnt as f64;
        let var = ch
            .iter()
            .filter(|v| **v != 0.0)
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / cnt as f64;
        let std = if var.sqrt() == 0.0 { 1.0 } else { var.sqrt() };
        for v in ch.iter_mut().filter(|v| **v != 0.0) {
            *v = ((*v as f64 - mean) / std) as f32;
        }
    }
    out
}

/// Window start offsets along one axis, as MONAI's `_get_scan_interval` +
/// `dense_patch_slices`: interval `roi·(1-overlap)` (≥ 1), last window flush.
pub fn window_starts(size: usize, roi: usize, overlap: f64) -> Vec<usize> {
    if size <= roi {
        return vec![0];
    }
    let interval = ((roi as f64 * (1.0 - overlap)) as usize).max(1);
    let num = (size - roi).div_ceil(interval) + 1;
    let mut v: Vec<usize> = (0..num).map(|i| (i * interval).min(size - roi)).collect();
    v.dedup();
    v
}

/// Blending weights for one window, `None` for constant blending.
fn importance_map(roi: [usize; 3], blend: BlendMode) -> Option<Vec<f32>> {
    match blend {
        BlendMode::Constant => None,
        BlendMode::Gaussian => {
            let g: Vec<Vec<f32>> = roi
                .iter()
                .map(|&r| {
                    let sigma = 0.125 * r as f64;
                    let centre = (r as f64 - 1.0) / 2.0;
                    (0..r)
                        .map(|i| {
                            (-((i as f64 - centre).powi(2)) / (2.0 * sigma * sigma)).exp() as f32
                        })
                        .collect()
                })
                .collect();
            let mut m = Vec::with_capacity(roi.iter().product());
            for a in &g[0] {
                for b in &g[1] {
                    for c in &g[2] {
                        m.push(a * b * c);
                    }
                }
            }
            let max = m
                .iter()
                .copied()
                .fold(0f32, f32::max)
                .max(f32::MIN_POSITIVE);
            let min_pos = m
                .iter()
                .map(|v| v / max)
                .filter(|v| *v > 0.0)
                .fold(1f32, f32::min);
            Some(m.into_iter().map(|v| (v / max).max(min_pos)).collect())
        }
    }
}

/// Sigmoid ≥ 0.5 per channel (0 = TC, 1 = WT, 2 = ET), then ET → 4, else TC → 1,
/// else WT → 2, else 0.
pub fn labels_from_logits(
    logits: &[f32],
    dims: [usize; 3],
    spacing: [f64; 3],
) -> Result<LabelVolume, AiError> {
    let n = dims.iter().product::<usize>();
    let on = |c: usize, i: usize| logits.get(c * n + i).is_some_and(|&v| v >= 0.0);
    let labels = (0..n)
        .map(|i| {
            if on(2, i) {
                ENHANCING
            } else if on(0, i) {
                NECROTIC
            } else if on(1, i) {
                EDEMA
            } else {
                0
            }
        })
        .collect();
    LabelVolume::new(labels, dims, spacing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::SegResNetConfig;
    use candle_nn::VarMap;

    fn tiny_engine(cfg: &AiConfig) -> Engine {
        let arch = SegResNetConfig {
            init_filters: 8,
            in_channels: 4,
            out_channels: 3,
            blocks_down: vec![1, 1],
            blocks_up: vec![1],
            norm_groups: 8,
        };
        let vm = VarMap::new();
        let model = SegResNet::init_trainable(arch, &vm, &Device::Cpu).unwrap();
        Engine::from_model(model, Device::Cpu, cfg).unwrap()
    }

    fn small_cfg() -> AiConfig {
        AiConfig {
            roi: [8, 8, 8],
            max_voxels: 4096,
            ..AiConfig::default()
        }
    }

    fn volume(dims: [usize; 3], channels: usize) -> Volume4 {
        let n = dims.iter().product::<usize>();
        let data = (0..channels * n).map(|i| 1.0 + (i % 7) as f32).collect();
        Volume4::new(data, channels, dims, [1.0; 3]).unwrap()
    }

    fn run(e: &Engine, v: &Volume4) -> Result<LabelVolume, AiError> {
        e.segment(v, &|_| {}, &CancelToken::new())
    }

    #[test]
    fn segments_non_multiple_sizes_smaller_and_larger_than_roi() {
        let e = tiny_engine(&small_cfg());
        for dims in [[5, 6, 7], [13, 9, 11]] {
            let l = run(&e, &volume(dims, 4)).unwrap();
            assert_eq!(l.dims, dims);
            assert_eq!(l.labels.len(), dims.iter().product::<usize>());
            assert!(l.labels.iter().all(|v| [0, 1, 2, 4].contains(v)));
        }
    }

    #[test]
    fn rejects_wrong_channel_count() {
        let e = tiny_engine(&small_cfg());
        let err = run(&e, &volume([8, 8, 8], 3)).unwrap_err();
        assert!(matches!(err, AiError::Input(m) if m.contains("4 channels")));
    }

    #[test]
    fn rejects_mismatched_shape() {
        assert!(Volume4::new(vec![1.0; 100], 4, [3, 3, 3], [1.0; 3]).is_err());
        assert!(Volume4::new(vec![1.0; 108], 4, [3, 3, 3], [0.0, 1.0, 1.0]).is_err());
    }

    #[test]
    fn rejects_nan_inf_and_zero_channel() {
        let e = tiny_engine(&small_cfg());
        for bad in [f32::NAN, f32::INFINITY] {
            let mut v = volume([8, 8, 8], 4);
            v.data[600] = bad;
            assert!(matches!(run(&e, &v), Err(AiError::Input(m)) if m.contains("non-finite")));
        }
        let mut v = volume([8, 8, 8], 4);
        v.data[1024..1536].fill(0.0);
        assert!(
            matches!(run(&e, &v), Err(AiError::Input(m)) if m.contains("channel 2 is all zero"))
        );
    }

    #[test]
    fn refuses_volume_above_cap() {
        let e = tiny_engine(&small_cfg());
        let err = run(&e, &volume([17, 16, 16], 4)).unwrap_err();
        assert!(matches!(
            err,
            AiError::TooLarge {
                voxels: 4352,
                cap: 4096
            }
        ));
    }

    #[test]
    fn cancellation_and_progress() {
        let e = tiny_engine(&small_cfg());
        let cancel = CancelToken::new();
        cancel.cancel();
        let r = e.segment(&volume([8, 8, 8], 4), &|_| {}, &cancel);
        assert!(matches!(r, Err(AiError::Cancelled)));
        let seen = std::sync::Mutex::new(Vec::new());
        run_with(&e, &volume([16, 8, 8], 4), &|p| {
            seen.lock().unwrap().push(p)
        });
        let seen = seen.into_inner().unwrap();
        // 16 with roi 8, overlap 0.5: starts 0, 4, 8 -> 3 windows.
        assert_eq!(seen.last(), Some(&Progress { done: 3, total: 3 }));
    }

    fn run_with(e: &Engine, v: &Volume4, p: &dyn Fn(Progress)) {
        e.segment(v, p, &CancelToken::new()).unwrap();
    }

    #[test]
    fn normalisation_is_nonzero_channelwise() {
        let v = Volume4::new(vec![0.0, 2.0, 4.0, 0.0, 5.0, 5.0], 2, [1, 1, 3], [1.0; 3]).unwrap();
        let n = normalize_nonzero(&v);
        assert_eq!(n, vec![0.0, -1.0, 1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn window_starts_like_monai() {
        assert_eq!(window_starts(240, 240, 0.5), vec![0]);
        assert_eq!(window_starts(16, 8, 0.5), vec![0, 4, 8]);
        assert_eq!(window_starts(20, 8, 0.5), vec![0, 4, 8, 12]);
        assert_eq!(window_starts(10, 8, 0.0), vec![0, 2]);
    }

    #[test]
    fn label_assembly_priority() {
        // voxel 0: ET+TC+WT -> 4; 1: TC+WT -> 1; 2: WT -> 2; 3: none -> 0
        let logits = [
            1.0, 1.0, -1.0, -1.0, 1.0, 1.0, 1.0, -1.0, 1.0, -1.0, -1.0, -1.0,
        ];
        let l = labels_from_logits(&logits, [1, 1, 4], [1.0, 2.0, 0.5]).unwrap();
        assert_eq!(l.labels, vec![4, 1, 2, 0]);
        let r = l.region_volumes();
        assert!(
            (r.whole_tumor_ml - 0.003).abs() < 1e-12 && (r.tumor_core_ml - 0.002).abs() < 1e-12
        );
    }

    #[tokio::test]
    async fn async_runs_on_blocking_pool() {
        let e = tiny_engine(&small_cfg());
        let v = Arc::new(volume([8, 8, 8], 4));
        let l = e
            .segment_async(v, Arc::new(|_| {}), CancelToken::new())
            .await
            .unwrap();
        assert_eq!(l.dims, [8, 8, 8]);
    }
}
