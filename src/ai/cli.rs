//! `glia model …`, `glia train`, `glia eval`, `glia phantom`: clap subcommand
//! definitions and their handlers; `main.rs` only dispatches here.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use clap::{Args, Subcommand};

use super::phantom::{generate, PhantomSpec, TumourKind};
use super::train::{evaluate, train, TrainOptions};
use super::volume::{read_tensors, write_tensors};
use super::{
    parse_device, AiConfig, AiError, CancelToken, Engine, SegResNet, SegResNetConfig, Volume4,
};

fn triple<T: std::str::FromStr + Copy>(s: &str) -> Result<[T; 3], String> {
    let v: Vec<T> = s
        .split([',', 'x'])
        .map(|p| p.trim().parse().map_err(|_| format!("bad number in {s:?}")))
        .collect::<Result<_, _>>()?;
    if v.len() != 3 {
        return Err(format!("expected three values like 64,80,80, got {s:?}"));
    }
    Ok([v[0], v[1], v[2]])
}

fn dims_arg(s: &str) -> Result<[usize; 3], String> {
    triple(s)
}

fn spacing_arg(s: &str) -> Result<[f64; 3], String> {
    triple(s)
}

/// `glia model …`
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Run a SegResNet on a raw input tensor (no pre/post-processing):
    /// IN holds `input` [1, C, D, H, W] f32, OUT receives `output` logits.
    Run {
        /// Weights (safetensors with MONAI state-dict names).
        #[arg(long)]
        weights: PathBuf,
        /// Input safetensors holding tensor `input`.
        #[arg(long)]
        input: PathBuf,
        /// Output safetensors to write tensor `output` to.
        #[arg(long)]
        output: PathBuf,
        /// auto | cpu | cuda:N
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Use the composed candle ops instead of the fused CPU kernels.
        #[arg(long)]
        composed: bool,
    },
    /// Full pipeline (normalise, sliding window, labels) on IN's `volume`
    /// [4, D, H, W] (T1ce, T1, T2, FLAIR); writes `labels` u8 to OUT and prints region volumes.
    Segment {
        /// Weights; defaults to `[ai] weights`.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Input safetensors with `volume` (and optional `spacing` [3] f32, mm).
        #[arg(long)]
        input: PathBuf,
        /// Output safetensors receiving `labels`.
        #[arg(long)]
        output: PathBuf,
        /// auto | cpu | cuda:N
        #[arg(long, default_value = "auto")]
        device: String,
    },
}

/// `glia train`: train SegResNet demo weights on synthetic phantoms.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Output weights file.
    #[arg(long, default_value = "weights/glia-phantom-segresnet.safetensors")]
    pub output: PathBuf,
    /// Base seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Maximum steps.
    #[arg(long, default_value_t = 2000)]
    pub steps: usize,
    /// Wall-clock budget, minutes.
    #[arg(long, default_value_t = 40.0)]
    pub minutes: f64,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    /// First-stage filters.
    #[arg(long, default_value_t = 8)]
    pub init_filters: usize,
    /// Phantom grid D,H,W.
    #[arg(long, default_value = "64,80,80", value_parser = dims_arg)]
    pub dims: [usize; 3],
    /// Phantom spacing in mm.
    #[arg(long, default_value = "2,2,2", value_parser = spacing_arg)]
    pub spacing: [f64; 3],
    /// Training crop D,H,W (also the recorded inference ROI).
    #[arg(long, default_value = "48,48,48", value_parser = dims_arg)]
    pub crop: [usize; 3],
    /// auto | cpu | cuda:N
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Continue from these weights (same architecture) instead of a fresh start.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Share (0..1) of phantoms given a non-enhancing tumour on top of the random mix.
    #[arg(long, default_value_t = 0.0)]
    pub non_enhancing_share: f64,
}

/// `glia eval`: Dice on held-out phantoms.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Post-processing: drop tumour components smaller than this (mL; 0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub min_component_ml: f64,
    /// Weights to evaluate.
    #[arg(long, default_value = "weights/glia-phantom-segresnet.safetensors")]
    pub weights: PathBuf,
    /// Number of phantoms.
    #[arg(long, default_value_t = 20)]
    pub cases: usize,
    /// First seed (training uses seeds derived from its base seed · 1000003; keep apart).
    #[arg(long, default_value_t = 900_000_000)]
    pub seed: u64,
    /// Phantom grid D,H,W.
    #[arg(long, default_value = "64,80,80", value_parser = dims_arg)]
    pub dims: [usize; 3],
    /// Phantom spacing in mm.
    #[arg(long, default_value = "2,2,2", value_parser = spacing_arg)]
    pub spacing: [f64; 3],
    /// auto | cpu | cuda:N
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// `glia phantom`: write one synthetic case as safetensors
/// (`volume` [4,D,H,W] f32, `input` [1,4,D,H,W], `labels` [D,H,W] u8, `spacing` [3]).
#[derive(Debug, Args)]
pub struct PhantomArgs {
    /// Output file.
    #[arg(long)]
    pub output: PathBuf,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Grid D,H,W.
    #[arg(long, default_value = "64,80,80", value_parser = dims_arg)]
    pub dims: [usize; 3],
    /// Spacing in mm.
    #[arg(long, default_value = "2,2,2", value_parser = spacing_arg)]
    pub spacing: [f64; 3],
    /// Force a tumour-free case.
    #[arg(long)]
    pub no_tumour: bool,
}

/// Loads a SegResNet from a safetensors file.
pub fn load_model(
    path: &std::path::Path,
    device: &candle_core::Device,
) -> Result<SegResNet, AiError> {
    let bytes = std::fs::read(path)
        .map_err(|e| AiError::Weights(format!("cannot read {}: {e}", path.display())))?;
    SegResNet::from_safetensors_bytes(&bytes, device)
}

/// Handles `glia model …`.
pub fn run_model(cmd: ModelCommand) -> Result<(), AiError> {
    match cmd {
        ModelCommand::Run {
            weights,
            input,
            output,
            device,
            composed,
        } => {
            let device = parse_device(&device)?;
            let mut model = load_model(&weights, &device)?;
            if composed {
                model.set_fused(false);
            }
            let mut t = read_tensors(&input, &device)?;
            let x = t
                .remove("input")
                .ok_or_else(|| {
                    AiError::Input(format!("{} has no tensor named `input`", input.display()))
                })?
                .to_dtype(DType::F32)?;
            let start = std::time::Instant::now();
            let y = model.forward(&x)?;
            eprintln!(
                "forward {:?} -> {:?} in {:.2?}",
                x.dims(),
                y.dims(),
                start.elapsed()
            );
            write_tensors(&output, &[("output".to_string(), y)], None)
        }
        ModelCommand::Segment {
            weights,
            input,
            output,
            device,
        } => segment_file(weights, input, output, device),
    }
}

/// Handles `glia train`.
pub fn run_train(a: TrainArgs) -> Result<(), AiError> {
    let device = parse_device(&a.device)?;
    let arch = SegResNetConfig {
        init_filters: a.init_filters,
        ..SegResNetConfig::brats()
    };
    let opts = TrainOptions {
        arch,
        dims: a.dims,
        spacing: a.spacing,
        crop: a.crop,
        seed: a.seed,
        steps: a.steps,
        minutes: a.minutes,
        lr: a.lr,
        output: a.output,
        init: a.init,
        non_enhancing_share: a.non_enhancing_share.clamp(0.0, 1.0),
    };
    let steps = train(&opts, &device)?;
    eprintln!("wrote {} after {steps} steps", opts.output.display());
    Ok(())
}

/// Handles `glia eval`.
pub fn run_eval(a: EvalArgs) -> Result<(), AiError> {
    let r = evaluate(
        &a.weights,
        &a.device,
        a.min_component_ml,
        a.dims,
        a.spacing,
        a.seed,
        a.cases,
    )?;
    println!(
        "{} held-out phantoms: mean Dice WT {:.4}  TC {:.4}  ET {:.4}",
        r.cases, r.wt, r.tc, r.et
    );
    let t = r.tumour_only;
    println!(
        "{} with tumour:        mean Dice WT {:.4}  TC {:.4}  ET {:.4}",
        r.tumour_cases, t[0], t[1], t[2]
    );
    Ok(())
}

/// Handles `glia phantom`.
pub fn run_phantom(a: PhantomArgs) -> Result<(), AiError> {
    let tumour = if a.no_tumour {
        TumourKind::None
    } else {
        TumourKind::Random
    };
    let p = generate(&PhantomSpec {
        dims: a.dims,
        spacing: a.spacing,
        seed: a.seed,
        tumour,
    })?;
    let [d, h, w] = a.dims;
    let dev = Device::Cpu;
    let vol = Tensor::from_vec(p.volume.data.clone(), (4, d, h, w), &dev)?;
    let input = vol.unsqueeze(0)?;
    let labels = Tensor::from_vec(p.labels.labels.clone(), (d, h, w), &dev)?;
    let spacing = Tensor::from_vec(a.spacing.map(|v| v as f32).to_vec(), 3, &dev)?;
    let mut meta = HashMap::new();
    meta.insert("glia.phantom_seed".to_string(), a.seed.to_string());
    meta.insert("glia.tumour".to_string(), format!("{:?}", p.tumour));
    write_tensors(
        &a.output,
        &[
            ("volume".into(), vol),
            ("input".into(), input),
            ("labels".into(), labels),
            ("spacing".into(), spacing),
        ],
        Some(meta),
    )?;
    let r = p.labels.region_volumes();
    println!(
        "{:?}: WT {:.1} mL, TC {:.1} mL, ET {:.1} mL",
        p.tumour, r.whole_tumor_ml, r.tumor_core_ml, r.enhancing_ml
    );
    Ok(())
}

fn segment_file(
    weights: Option<PathBuf>,
    input: PathBuf,
    output: PathBuf,
    device: String,
) -> Result<(), AiError> {
    let mut cfg = AiConfig {
        device,
        ..AiConfig::default()
    };
    if let Some(w) = weights {
        cfg.weights = w;
    }
    let engine = Engine::load(&cfg)?;
    let mut t = read_tensors(&input, &Device::Cpu)?;
    let vol = t
        .remove("volume")
        .ok_or_else(|| AiError::Input(format!("{} has no tensor named `volume`", input.display())))?
        .to_dtype(DType::F32)?;
    let (c, d, h, w) = vol.dims4().map_err(|_| {
        AiError::Input(format!(
            "`volume` must be [C, D, H, W], got {:?}",
            vol.dims()
        ))
    })?;
    let spacing = match t.remove("spacing") {
        Some(s) => {
            let v: Vec<f32> = s.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
            if v.len() != 3 {
                return Err(AiError::Input("`spacing` must hold 3 values".into()));
            }
            [v[0] as f64, v[1] as f64, v[2] as f64]
        }
        None => [1.0; 3],
    };
    let data: Vec<f32> = vol.flatten_all()?.to_vec1()?;
    let volume = Volume4::new(data, c, [d, h, w], spacing)?;
    let start = std::time::Instant::now();
    let labels = engine.segment(
        &volume,
        &|p| eprint!("\rwindow {}/{}", p.done, p.total),
        &CancelToken::new(),
    )?;
    eprintln!("\nsegmented in {:.2?}", start.elapsed());
    let lt = Tensor::from_vec(labels.labels.clone(), (d, h, w), &Device::Cpu)?;
    write_tensors(&output, &[("labels".into(), lt)], None)?;
    let r = labels.region_volumes();
    println!(
        "WT {:.2} mL  TC {:.2} mL  ET {:.2} mL  (necrotic {:.2}, oedema {:.2})",
        r.whole_tumor_ml, r.tumor_core_ml, r.enhancing_ml, r.necrotic_ml, r.edema_ml
    );
    Ok(())
}
