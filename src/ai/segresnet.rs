//! SegResNet (Myronenko 2018, as implemented by MONAI) on candle: configurable
//! width and depth, weights addressed by MONAI's state-dict keys so a MONAI
//! checkpoint converted to safetensors loads unchanged, architecture inferred
//! from the weight shapes. Pre-activation residual blocks, GroupNorm, ReLU,
//! non-trainable upsampling (1×1×1 conv then trilinear ×2).

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use super::cpu_ops;
use super::ops3d::{conv3d, group_norm, trilinear_up2};
use super::AiError;

/// Hyper-parameters of a SegResNet, named as in MONAI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegResNetConfig {
    /// Channels of the first stage; stage i has `init_filters · 2^i`.
    pub init_filters: usize,
    /// Input modalities (4 for BraTS: T1ce, T1, T2, FLAIR).
    pub in_channels: usize,
    /// Output logit channels (3 for BraTS: TC, WT, ET).
    pub out_channels: usize,
    /// Residual blocks per encoder stage.
    pub blocks_down: Vec<usize>,
    /// Residual blocks per decoder stage.
    pub blocks_up: Vec<usize>,
    /// GroupNorm groups (MONAI default 8).
    pub norm_groups: usize,
}

impl SegResNetConfig {
    /// The MONAI `brats_mri_segmentation` bundle network.
    pub fn brats() -> Self {
        Self {
            init_filters: 16,
            in_channels: 4,
            out_channels: 3,
            blocks_down: vec![1, 2, 2, 4],
            blocks_up: vec![1, 1, 1],
            norm_groups: 8,
        }
    }

    /// Spatial sizes must be multiples of this (2^(stages-1)).
    pub fn size_multiple(&self) -> usize {
        1 << self.blocks_down.len().saturating_sub(1)
    }

    fn validate(&self) -> Result<(), AiError> {
        let bad = |m: String| Err(AiError::Architecture(m));
        if self.blocks_down.is_empty() || self.blocks_up.len() + 1 != self.blocks_down.len() {
            return bad(format!(
                "blocks_up ({}) must be one shorter than blocks_down ({})",
                self.blocks_up.len(),
                self.blocks_down.len()
            ));
        }
        if self.init_filters == 0 || self.in_channels == 0 || self.out_channels == 0 {
            return bad("zero channel count".into());
        }
        if self.norm_groups == 0 || !self.init_filters.is_multiple_of(self.norm_groups) {
            return bad(format!(
                "{} groups do not divide {} filters",
                self.norm_groups, self.init_filters
            ));
        }
        Ok(())
    }

    /// Infers the architecture from tensor names and shapes (MONAI keys).
    /// GroupNorm groups are not visible in shapes: taken from `norm_groups`
    /// metadata when present, else MONAI's default 8.
    pub fn infer(
        shapes: &HashMap<String, Vec<usize>>,
        metadata: Option<&HashMap<String, String>>,
    ) -> Result<Self, AiError> {
        let arch = |m: &str| AiError::Architecture(m.to_string());
        let init = shapes
            .get("convInit.conv.weight")
            .ok_or_else(|| arch("missing convInit.conv.weight: not a SegResNet state dict"))?;
        if init.len() != 5 {
            return Err(arch("convInit.conv.weight is not a 3-D conv kernel"));
        }
        let fin = shapes
            .get("conv_final.2.conv.weight")
            .ok_or_else(|| arch("missing conv_final.2.conv.weight"))?;
        let count = |prefix: &str| -> BTreeMap<usize, usize> {
            let mut m: BTreeMap<usize, usize> = BTreeMap::new();
            for k in shapes.keys() {
                if let Some(rest) = k.strip_prefix(prefix) {
                    let mut it = rest.split('.');
                    if let (Some(Ok(i)), Some(Ok(j))) = (
                        it.next().map(str::parse::<usize>),
                        it.next().map(str::parse::<usize>),
                    ) {
                        let e = m.entry(i).or_default();
                        *e = (*e).max(j + 1);
                    }
                }
            }
            m
        };
        let down = count("down_layers.");
        let up = count("up_layers.");
        let blocks_down: Vec<usize> = (0..down.len())
            // index 0 is the stride-2 conv (Identity at stage 0); blocks follow
            .map(|i| down.get(&i).map_or(0, |n| n.saturating_sub(1)))
            .collect();
        let blocks_up: Vec<usize> = (0..up.len()).map(|i| *up.get(&i).unwrap_or(&0)).collect();
        let norm_groups = metadata
            .and_then(|m| m.get("norm_groups"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(8);
        let cfg = Self {
            init_filters: init[0],
            in_channels: init[1],
            out_channels: fin[0],
            blocks_down,
            blocks_up,
            norm_groups,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Pre-activation residual block: `x + conv2(relu(norm2(conv1(relu(norm1(x))))))`.
struct ResBlock {
    n1: (Tensor, Tensor),
    c1: Tensor,
    n2: (Tensor, Tensor),
    c2: Tensor,
}

/// A loaded SegResNet, cheap to share behind an `Arc`.
pub struct SegResNet {
    cfg: SegResNetConfig,
    conv_init: Tensor,
    down: Vec<(Option<Tensor>, Vec<ResBlock>)>,
    up_samples: Vec<Tensor>,
    up_layers: Vec<Vec<ResBlock>>,
    final_norm: (Tensor, Tensor),
    final_w: Tensor,
    final_b: Tensor,
    metadata: HashMap<String, String>,
    /// Use the fused inference-only CPU kernels (weights loaded for inference on CPU).
    fused: bool,
}

const EPS: f64 = 1e-5;

/// Differentiable 3×3×3 conv, pad 1: the fused kernel (with its backward) on
/// CPU, the composed candle ops elsewhere.
fn conv_train(x: &Tensor, w: &Tensor, stride: usize) -> candle_core::Result<Tensor> {
    if x.device().is_cpu() {
        cpu_ops::conv3d_trainable(x, w, stride, 1)
    } else {
        conv3d(x, w, None, stride, 1)
    }
}

fn conv_w(
    vb: &VarBuilder,
    cout: usize,
    cin: usize,
    k: usize,
    name: &str,
) -> candle_core::Result<Tensor> {
    let fan_in = (cin * k * k * k) as f64;
    let bound = (1.0 / fan_in).sqrt() * 3f64.sqrt();
    vb.get_with_hints(
        (cout, cin, k, k, k),
        name,
        Init::Uniform {
            lo: -bound,
            up: bound,
        },
    )
}

fn norm(vb: &VarBuilder, c: usize) -> candle_core::Result<(Tensor, Tensor)> {
    Ok((
        vb.get_with_hints(c, "weight", Init::Const(1.0))?,
        vb.get_with_hints(c, "bias", Init::Const(0.0))?,
    ))
}

impl ResBlock {
    fn load(vb: VarBuilder, c: usize) -> candle_core::Result<Self> {
        Ok(Self {
            n1: norm(&vb.pp("norm1"), c)?,
            c1: conv_w(&vb.pp("conv1").pp("conv"), c, c, 3, "weight")?,
            n2: norm(&vb.pp("norm2"), c)?,
            c2: conv_w(&vb.pp("conv2").pp("conv"), c, c, 3, "weight")?,
        })
    }

    fn forward(&self, x: &Tensor, groups: usize, fused: bool) -> candle_core::Result<Tensor> {
        if fused {
            // Explicit drops keep at most three full-size activations alive.
            let g = cpu_ops::group_norm_relu(x, groups, &self.n1.0, &self.n1.1, EPS)?;
            let h = cpu_ops::conv3d(&g, &self.c1, 1, 1)?;
            drop(g);
            let g = cpu_ops::group_norm_relu(&h, groups, &self.n2.0, &self.n2.1, EPS)?;
            drop(h);
            let h = cpu_ops::conv3d(&g, &self.c2, 1, 1)?;
            drop(g);
            return h + x;
        }
        let h = group_norm(x, groups, &self.n1.0, &self.n1.1, EPS)?.relu()?;
        let h = conv_train(&h, &self.c1, 1)?;
        let h = group_norm(&h, groups, &self.n2.0, &self.n2.1, EPS)?.relu()?;
        let h = conv_train(&h, &self.c2, 1)?;
        h + x
    }
}

impl SegResNet {
    /// Builds the network from a var builder whose names are MONAI's keys.
    /// With a `VarMap`-backed builder the missing tensors are initialised
    /// (training); with a safetensors-backed one every tensor must exist
    /// with the right shape, else an `Architecture` error.
    pub fn new(cfg: SegResNetConfig, vb: VarBuilder) -> Result<Self, AiError> {
        cfg.validate()?;
        Self::build(&cfg, vb).map_err(|e| AiError::Architecture(e.to_string()))
    }

    fn build(cfg: &SegResNetConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let f = cfg.init_filters;
        let conv_init = conv_w(
            &vb.pp("convInit").pp("conv"),
            f,
            cfg.in_channels,
            3,
            "weight",
        )?;
        let mut down = Vec::new();
        for (i, &nb) in cfg.blocks_down.iter().enumerate() {
            let c = f << i;
            let vbi = vb.pp("down_layers").pp(i);
            let pre = if i > 0 {
                Some(conv_w(&vbi.pp(0).pp("conv"), c, c / 2, 3, "weight")?)
            } else {
                None
            };
            let blocks = (0..nb)
                .map(|j| ResBlock::load(vbi.pp(j + 1), c))
                .collect::<candle_core::Result<Vec<_>>>()?;
            down.push((pre, blocks));
        }
        let n_up = cfg.blocks_up.len();
        let mut up_samples = Vec::new();
        let mut up_layers = Vec::new();
        for (i, &nb) in cfg.blocks_up.iter().enumerate() {
            let c = f << (n_up - i);
            up_samples.push(conv_w(
                &vb.pp("up_samples").pp(i).pp(0).pp("conv"),
                c / 2,
                c,
                1,
                "weight",
            )?);
            let blocks = (0..nb)
                .map(|j| ResBlock::load(vb.pp("up_layers").pp(i).pp(j), c / 2))
                .collect::<candle_core::Result<Vec<_>>>()?;
            up_layers.push(blocks);
        }
        let final_norm = norm(&vb.pp("conv_final").pp(0), f)?;
        let fc = vb.pp("conv_final").pp(2).pp("conv");
        let final_w = conv_w(&fc, cfg.out_channels, f, 1, "weight")?;
        let final_b = fc.get_with_hints(cfg.out_channels, "bias", Init::Const(0.0))?;
        Ok(Self {
            cfg: cfg.clone(),
            conv_init,
            down,
            up_samples,
            up_layers,
            final_norm,
            final_w,
            final_b,
            metadata: HashMap::new(),
            fused: false,
        })
    }

    /// Loads weights from safetensors bytes, inferring the architecture.
    pub fn from_safetensors_bytes(bytes: &[u8], device: &Device) -> Result<Self, AiError> {
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| AiError::Weights(format!("not a readable safetensors file: {e}")))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| AiError::Weights(e.to_string()))?;
        let shapes: HashMap<String, Vec<usize>> = st
            .tensors()
            .into_iter()
            .map(|(k, v)| (k, v.shape().to_vec()))
            .collect();
        let cfg = SegResNetConfig::infer(&shapes, meta.metadata().as_ref())?;
        let tensors = candle_core::safetensors::load_buffer(bytes, device)
            .map_err(|e| AiError::Weights(e.to_string()))?;
        let tensors = tensors
            .into_iter()
            .map(|(k, t)| Ok((k, t.to_dtype(DType::F32)?)))
            .collect::<candle_core::Result<HashMap<_, _>>>()?;
        for (k, t) in &tensors {
            let v: f32 = t.abs()?.sum_all()?.to_scalar()?;
            if !v.is_finite() {
                return Err(AiError::Weights(format!("tensor {k} holds NaN or Inf")));
            }
        }
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let mut net = Self::new(cfg, vb)?;
        net.metadata = meta.metadata().clone().unwrap_or_default();
        net.fused = device.is_cpu();
        Ok(net)
    }

    /// String metadata stored with the weights (provenance, `glia.roi`, `glia.spacing_mm` ...).
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Creates a freshly initialised network whose parameters live in `varmap`.
    pub fn init_trainable(
        cfg: SegResNetConfig,
        varmap: &VarMap,
        device: &Device,
    ) -> Result<Self, AiError> {
        let vb = VarBuilder::from_varmap(varmap, DType::F32, device);
        Self::new(cfg, vb)
    }

    /// Switches the fused CPU inference kernels on or off (they are on for
    /// CPU inference weights; off they fall back to the composed, differentiable ops).
    pub fn set_fused(&mut self, on: bool) {
        self.fused = on;
    }

    /// The architecture.
    pub fn config(&self) -> &SegResNetConfig {
        &self.cfg
    }

    /// Forward pass: `[N, in_channels, D, H, W]` → logits `[N, out_channels, D, H, W]`.
    /// Spatial sizes must be multiples of [`SegResNetConfig::size_multiple`].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, AiError> {
        let (_, c, d, h, w) = x
            .dims5()
            .map_err(|_| AiError::Input(format!("expected a 5-D input, got {:?}", x.dims())))?;
        if c != self.cfg.in_channels {
            return Err(AiError::Input(format!(
                "model expects {} channels, input has {c}",
                self.cfg.in_channels
            )));
        }
        let m = self.cfg.size_multiple();
        if d % m != 0 || h % m != 0 || w % m != 0 || d == 0 || h == 0 || w == 0 {
            return Err(AiError::Input(format!(
                "spatial size {d}x{h}x{w} is not a positive multiple of {m}"
            )));
        }
        Ok(self.forward_inner(x)?)
    }

    fn forward_inner(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let g = self.cfg.norm_groups;
        let fused = self.fused;
        let conv = |x: &Tensor, w: &Tensor, stride: usize| {
            if fused {
                cpu_ops::conv3d(x, w, stride, 1)
            } else {
                conv_train(x, w, stride)
            }
        };
        let mut x = conv(x, &self.conv_init, 1)?;
        let mut skips = Vec::with_capacity(self.down.len());
        for (pre, blocks) in &self.down {
            if let Some(p) = pre {
                x = conv(&x, p, 2)?;
            }
            for b in blocks {
                x = b.forward(&x, g, fused)?;
            }
            skips.push(x.clone());
        }
        skips.pop();
        for (us, blocks) in self.up_samples.iter().zip(&self.up_layers) {
            let y = conv3d(&x, us, None, 1, 0)?;
            drop(x);
            let Some(skip) = skips.pop() else {
                candle_core::bail!("decoder deeper than encoder")
            };
            x = if fused {
                cpu_ops::upsample2_add(&y, &skip)?
            } else {
                (trilinear_up2(&y)? + &skip)?
            };
            drop((y, skip));
            for b in blocks {
                x = b.forward(&x, g, fused)?;
            }
        }
        let h = if fused {
            cpu_ops::group_norm_relu(&x, g, &self.final_norm.0, &self.final_norm.1, EPS)?
        } else {
            group_norm(&x, g, &self.final_norm.0, &self.final_norm.1, EPS)?.relu()?
        };
        drop(x);
        conv3d(&h, &self.final_w, Some(&self.final_b), 1, 0)
    }
}
