//! Glia's own training and evaluation of SegResNet on synthetic phantoms
//! (candle autograd + AdamW, deterministic seeds), producing the shipped
//! demo weights, and Dice evaluation on held-out phantoms.
//!
//! Training: one freshly generated phantom per step (seed = base + step),
//! non-zero normalisation, a random crop (biased towards the tumour),
//! BraTS region targets (TC, WT, ET), loss = soft Dice + BCE-with-logits,
//! AdamW with warm-up and cosine decay, stopped by step count or wall time;
//! checkpoints are written as it goes so an interrupted run still leaves weights.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::phantom::{generate, PhantomSpec, Rng, TumourKind};
use super::pipeline::{normalize_nonzero, CancelToken};
use super::volume::labels::{EDEMA, ENHANCING, NECROTIC};
use super::volume::write_tensors;
use super::{AiConfig, AiError, Engine, LabelVolume, SegResNet, SegResNetConfig};

/// Training settings.
#[derive(Debug, Clone, Serialize)]
pub struct TrainOptions {
    /// Network to train.
    pub arch: SegResNetConfig,
    /// Phantom grid (D, H, W).
    pub dims: [usize; 3],
    /// Phantom voxel size (mm).
    pub spacing: [f64; 3],
    /// Training crop (D, H, W), multiples of 8; also the recorded inference ROI.
    pub crop: [usize; 3],
    /// Base seed for weights init order, phantoms and crops.
    pub seed: u64,
    /// Maximum optimiser steps.
    pub steps: usize,
    /// Wall-clock budget in minutes (stops early when exceeded).
    pub minutes: f64,
    /// Peak learning rate.
    pub lr: f64,
    /// Where to write the weights.
    pub output: PathBuf,
    /// Start from these weights (same architecture) instead of a fresh
    /// initialisation: continue a run with further steps.
    pub init: Option<PathBuf>,
    /// Share of training phantoms given a non-enhancing tumour on top of the
    /// random mix (0 = the mix of `TumourKind::Random` alone). Raising it teaches the
    /// network that a tumour core without contrast uptake has no enhancing part.
    pub non_enhancing_share: f64,
}

/// Region masks (TC, WT, ET) as 0/1 floats, `[3, N]` row-major.
pub fn region_targets(labels: &[u8]) -> Vec<f32> {
    let n = labels.len();
    let mut t = vec![0f32; 3 * n];
    for (i, &l) in labels.iter().enumerate() {
        let tc = l == NECROTIC || l == ENHANCING;
        let wt = tc || l == EDEMA;
        t[i] = tc as u8 as f32;
        t[n + i] = wt as u8 as f32;
        t[2 * n + i] = (l == ENHANCING) as u8 as f32;
    }
    t
}

fn crop_origin(rng: &mut Rng, dims: [usize; 3], crop: [usize; 3], labels: &[u8]) -> [usize; 3] {
    let tumour: Vec<usize> = labels
        .iter()
        .enumerate()
        .filter(|(_, &l)| l != 0)
        .map(|(i, _)| i)
        .collect();
    let [_, h, w] = dims;
    let centre = if !tumour.is_empty() && rng.unit() < 0.8 {
        let i = tumour[(rng.unit() * tumour.len() as f64) as usize % tumour.len()];
        [i / (h * w), (i / w) % h, i % w]
    } else {
        [0, 1, 2].map(|a| (rng.unit() * dims[a] as f64) as usize)
    };
    [0, 1, 2].map(|a| {
        let max0 = dims[a].saturating_sub(crop[a]);
        let jitter = (rng.range(-0.25, 0.25) * crop[a] as f64) as isize;
        ((centre[a] as isize - crop[a] as isize / 2 + jitter).max(0) as usize).min(max0)
    })
}

fn crop(data: &[f32], channels: usize, dims: [usize; 3], o: [usize; 3], c: [usize; 3]) -> Vec<f32> {
    let [_, h, w] = dims;
    let n = dims.iter().product::<usize>();
    let mut out = Vec::with_capacity(channels * c.iter().product::<usize>());
    for ch in 0..channels {
        for z in o[0]..o[0] + c[0] {
            for y in o[1]..o[1] + c[1] {
                let s = ch * n + (z * h + y) * w + o[2];
                out.extend_from_slice(&data[s..s + c[2]]);
            }
        }
    }
    out
}

/// Soft Dice (per channel, averaged) + BCE-with-logits, both means.
pub fn dice_bce_loss(logits: &Tensor, target: &Tensor) -> candle_core::Result<Tensor> {
    let p = candle_nn::ops::sigmoid(logits)?;
    let (b, c) = (logits.dim(0)?, logits.dim(1)?);
    let pf = p.reshape((b, c, ()))?;
    let tf = target.reshape((b, c, ()))?;
    let inter = (&pf * &tf)?.sum(D::Minus1)?;
    let denom = (pf.sum(D::Minus1)? + tf.sum(D::Minus1)?)?;
    let dice = ((inter * 2.0)? + 1e-5)?.div(&(denom + 1e-5)?)?;
    let dice_loss = (1.0 - dice.mean_all()?.to_dtype(DType::F32)?)?;
    // max(x,0) - x*y + log(1 + exp(-|x|))
    let bce = ((logits.relu()? - (logits * target)?)?
        + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?)?
    .mean_all()?;
    dice_loss + bce
}

/// Trains per `opts`, printing progress to stderr; returns the final steps run.
pub fn train(opts: &TrainOptions, device: &Device) -> Result<usize, AiError> {
    if opts
        .crop
        .iter()
        .zip(opts.dims)
        .any(|(c, d)| *c == 0 || *c > d || c % opts.arch.size_multiple() != 0)
    {
        return Err(AiError::Config(format!(
            "crop {:?} must be multiples of {} within {:?}",
            opts.crop,
            opts.arch.size_multiple(),
            opts.dims
        )));
    }
    let mut varmap = VarMap::new();
    let model = SegResNet::init_trainable(opts.arch.clone(), &varmap, device)?;
    // Re-initialise deterministically (VarMap init draws from candle's global RNG).
    reseed_vars(&varmap, opts.seed)?;
    let init_sha = match &opts.init {
        Some(path) => {
            let bytes = std::fs::read(path)?;
            varmap.load(path).map_err(|e| {
                AiError::Weights(format!(
                    "{} does not fit the network being trained: {e}",
                    path.display()
                ))
            })?;
            Some(hex::encode(Sha256::digest(&bytes)))
        }
        None => None,
    };
    let mut opt = AdamW::new(
        varmap.all_vars(),
        ParamsAdamW {
            lr: opts.lr,
            weight_decay: 1e-5,
            ..Default::default()
        },
    )?;
    let mut rng = Rng::new(opts.seed ^ 0xC0FFEE);
    let start = Instant::now();
    let save = |step: usize| {
        let secs = start.elapsed().as_secs_f64();
        save_weights(&varmap, opts, init_sha.as_deref(), step, secs)
    };
    let warmup = 30.min(opts.steps / 10 + 1);
    let mut ema = None;
    let mut step = 0;
    // Each phantom serves two steps (two different crops): generation is ~20 % of a step.
    let mut cached: Option<(Vec<f32>, Vec<f32>, Vec<u8>)> = None;
    while step < opts.steps {
        let elapsed_min = start.elapsed().as_secs_f64() / 60.0;
        if elapsed_min > opts.minutes {
            eprintln!("time budget reached after {step} steps");
            break;
        }
        // Cosine schedule over the step count only, so a run is reproducible
        // from (seed, steps); `minutes` is just a safety cap.
        let frac = (step as f64 / opts.steps as f64).min(1.0);
        let lr = if step < warmup {
            opts.lr * (step + 1) as f64 / warmup as f64
        } else {
            1e-5 + 0.5 * (opts.lr - 1e-5) * (1.0 + (std::f64::consts::PI * frac).cos())
        };
        opt.set_learning_rate(lr);
        if step % 2 == 0 || cached.is_none() {
            let seed = opts
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add(step as u64 / 2);
            // Drawn from the phantom's own seed, so the crop sequence stays the same.
            let forced = Rng::new(seed ^ 0x4E45_4E48).unit() < opts.non_enhancing_share;
            let spec = PhantomSpec {
                dims: opts.dims,
                spacing: opts.spacing,
                seed,
                tumour: if forced {
                    TumourKind::NonEnhancing
                } else {
                    TumourKind::Random
                },
            };
            let ph = generate(&spec)?;
            let labels = ph.labels.labels;
            cached = Some((
                normalize_nonzero(&ph.volume),
                region_targets(&labels),
                labels,
            ));
        }
        let Some((x, t, labels)) = cached.as_ref() else {
            continue;
        };
        let o = crop_origin(&mut rng, opts.dims, opts.crop, labels);
        let [cd, ch, cw] = opts.crop;
        let xt = Tensor::from_vec(
            crop(x, 4, opts.dims, o, opts.crop),
            (1, 4, cd, ch, cw),
            device,
        )?;
        let tt = Tensor::from_vec(
            crop(t, 3, opts.dims, o, opts.crop),
            (1, 3, cd, ch, cw),
            device,
        )?;
        let logits = model.forward(&xt)?;
        let loss = dice_bce_loss(&logits, &tt)?;
        opt.backward_step(&loss)?;
        let l: f32 = loss.to_scalar()?;
        ema = Some(ema.map_or(l, |e: f32| 0.95 * e + 0.05 * l));
        step += 1;
        if step % 10 == 0 || step == 1 {
            eprintln!(
                "step {step:5}  loss {l:.4}  ema {:.4}  lr {lr:.2e}  {:.1} min",
                ema.unwrap_or(l),
                start.elapsed().as_secs_f64() / 60.0
            );
        }
        if step % 50 == 0 {
            save(step)?;
        }
    }
    save(step)?;
    Ok(step)
}

/// Deterministic re-initialisation of all variables from `seed`: convs uniform
/// ±sqrt(3/fan_in) (Kaiming-uniform-like), norms weight 1 / bias 0.
fn reseed_vars(varmap: &VarMap, seed: u64) -> Result<(), AiError> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| AiError::Config("var map lock poisoned".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = Rng::new(seed);
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        if dims.len() == 5 {
            let fan_in = (dims[1] * dims[2] * dims[3] * dims[4]) as f64;
            let bound = (3.0 / fan_in).sqrt();
            let v: Vec<f32> = (0..var.elem_count())
                .map(|_| rng.range(-bound, bound) as f32)
                .collect();
            var.set(&Tensor::from_vec(v, dims, var.device())?)?;
        }
    }
    Ok(())
}

fn save_weights(
    varmap: &VarMap,
    opts: &TrainOptions,
    init_sha: Option<&str>,
    steps: usize,
    secs: f64,
) -> Result<(), AiError> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| AiError::Config("var map lock poisoned".into()))?;
    let mut tensors: Vec<(String, Tensor)> = data
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let join = |v: &[String]| v.join(",");
    let mut meta = HashMap::new();
    meta.insert("format".into(), "pt".into());
    meta.insert("norm_groups".into(), opts.arch.norm_groups.to_string());
    meta.insert(
        "glia.arch".into(),
        serde_json::to_string(&opts.arch).unwrap_or_default(),
    );
    meta.insert("glia.roi".into(), join(&opts.crop.map(|v| v.to_string())));
    meta.insert(
        "glia.spacing_mm".into(),
        join(&opts.spacing.map(|v| v.to_string())),
    );
    meta.insert("glia.channels".into(), "T1ce,T1,T2,FLAIR".into());
    meta.insert("glia.outputs".into(), "TC,WT,ET (logits)".into());
    meta.insert(
        "glia.provenance".into(),
        format!(
            "trained by `glia train` on synthetic phantoms only (no patient data): seed {}, {} steps, {:.0} s, phantom {:?} @ {:?} mm, crop {:?}, lr {}{}{}",
            opts.seed,
            steps,
            secs,
            opts.dims,
            opts.spacing,
            opts.crop,
            opts.lr,
            if opts.non_enhancing_share > 0.0 {
                format!(", non-enhancing share {}", opts.non_enhancing_share)
            } else {
                String::new()
            },
            init_sha
                .map(|h| format!(", continued from weights with sha256 {h}"))
                .unwrap_or_default()
        ),
    );
    meta.insert(
        "glia.licence".into(),
        "Apache-2.0 (Glia project); demo only, not for clinical use".into(),
    );
    let tmp = opts.output.with_extension("safetensors.tmp");
    write_tensors(&tmp, &tensors, Some(meta))?;
    std::fs::rename(&tmp, &opts.output)?;
    Ok(())
}

/// Dice of one region (BraTS convention: both empty → 1).
pub fn dice(pred: &LabelVolume, truth: &LabelVolume, region: impl Fn(u8) -> bool) -> f64 {
    let (mut inter, mut p, mut t) = (0usize, 0usize, 0usize);
    for (&a, &b) in pred.labels.iter().zip(&truth.labels) {
        let (ra, rb) = (region(a), region(b));
        inter += (ra && rb) as usize;
        p += ra as usize;
        t += rb as usize;
    }
    if p + t == 0 {
        1.0
    } else {
        2.0 * inter as f64 / (p + t) as f64
    }
}

/// Mean Dice (WT, TC, ET) over held-out phantoms.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EvalReport {
    /// Cases evaluated.
    pub cases: usize,
    /// Whole tumour (labels 1, 2, 4).
    pub wt: f64,
    /// Tumour core (labels 1, 4).
    pub tc: f64,
    /// Enhancing tumour (label 4).
    pub et: f64,
    /// Cases whose phantom has a tumour.
    pub tumour_cases: usize,
    /// Mean (WT, TC, ET) Dice over the tumour cases only.
    pub tumour_only: [f64; 3],
}

/// Evaluates `weights` on `cases` phantoms with seeds `seed..seed+cases`
/// (keep them disjoint from training seeds), via the full [`Engine`] pipeline.
pub fn evaluate(
    weights: &Path,
    device: &str,
    min_component_ml: f64,
    dims: [usize; 3],
    spacing: [f64; 3],
    seed: u64,
    cases: usize,
) -> Result<EvalReport, AiError> {
    let cfg = AiConfig {
        device: device.into(),
        weights: weights.to_path_buf(),
        min_component_ml,
        ..AiConfig::default()
    };
    let engine = Engine::load(&cfg)?;
    let (mut wt, mut tc, mut et) = (0.0, 0.0, 0.0);
    let (mut nt, mut tum) = (0usize, [0f64; 3]);
    for i in 0..cases {
        let ph = generate(&PhantomSpec {
            dims,
            spacing,
            seed: seed + i as u64,
            tumour: TumourKind::Random,
        })?;
        let pred = engine.segment(&ph.volume, &|_| {}, &CancelToken::new())?;
        let d = [
            dice(&pred, &ph.labels, |l| l != 0),
            dice(&pred, &ph.labels, |l| l == NECROTIC || l == ENHANCING),
            dice(&pred, &ph.labels, |l| l == ENHANCING),
        ];
        eprintln!(
            "case {i:3} ({:?}): WT {:.3} TC {:.3} ET {:.3}",
            ph.tumour, d[0], d[1], d[2]
        );
        if ph.tumour != TumourKind::None {
            nt += 1;
            (0..3).for_each(|k| tum[k] += d[k]);
        }
        wt += d[0];
        tc += d[1];
        et += d[2];
    }
    let n = cases.max(1) as f64;
    Ok(EvalReport {
        cases,
        wt: wt / n,
        tc: tc / n,
        et: et / n,
        tumour_cases: nt,
        tumour_only: tum.map(|v| v / nt.max(1) as f64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::volume::read_tensors;

    fn opts(out: PathBuf) -> TrainOptions {
        TrainOptions {
            arch: SegResNetConfig {
                init_filters: 8,
                in_channels: 4,
                out_channels: 3,
                blocks_down: vec![1, 1],
                blocks_up: vec![1],
                norm_groups: 8,
            },
            dims: [16, 16, 16],
            spacing: [8.0, 8.0, 8.0],
            crop: [16, 16, 16],
            seed: 5,
            steps: 3,
            minutes: 5.0,
            lr: 1e-3,
            output: out,
            init: None,
            non_enhancing_share: 0.0,
        }
    }

    #[test]
    fn training_is_reproducible_and_changes_weights() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            dir.path().join("a.safetensors"),
            dir.path().join("b.safetensors"),
        );
        assert_eq!(train(&opts(a.clone()), &Device::Cpu).unwrap(), 3);
        assert_eq!(train(&opts(b.clone()), &Device::Cpu).unwrap(), 3);
        let (ta, tb) = (
            read_tensors(&a, &Device::Cpu).unwrap(),
            read_tensors(&b, &Device::Cpu).unwrap(),
        );
        assert_eq!(ta.len(), tb.len());
        for (k, v) in &ta {
            let x: Vec<f32> = v.flatten_all().unwrap().to_vec1().unwrap();
            let y: Vec<f32> = tb[k].flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(x, y, "{k} differs between identical runs");
        }
        // Training moved the norm weights away from their initial 1.0.
        let w: Vec<f32> = ta["conv_final.0.weight"].to_vec1().unwrap();
        assert!(w.iter().any(|v| (v - 1.0).abs() > 1e-6));
        // And the result loads as an inference model with the recorded ROI.
        let m =
            SegResNet::from_safetensors_bytes(&std::fs::read(&a).unwrap(), &Device::Cpu).unwrap();
        assert_eq!(
            m.metadata().get("glia.roi").map(String::as_str),
            Some("16,16,16")
        );
    }

    #[test]
    fn dice_conventions() {
        let l = |v: Vec<u8>| LabelVolume::new(v, [1, 1, 4], [1.0; 3]).unwrap();
        let truth = l(vec![0, 1, 2, 4]);
        assert_eq!(dice(&truth, &truth, |x| x != 0), 1.0);
        assert_eq!(
            dice(&l(vec![0; 4]), &l(vec![0; 4]), |x| x == ENHANCING),
            1.0
        );
        assert!((dice(&l(vec![0, 1, 0, 0]), &truth, |x| x != 0) - 0.5).abs() < 1e-12);
    }
}
