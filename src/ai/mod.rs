//! Glia's AI layer: brain-tumour segmentation with a MONAI-compatible
//! SegResNet on candle (CPU by default, CUDA with the `cuda` feature), the
//! inference pipeline (normalisation, sliding window, BraTS labels), a
//! synthetic multimodal brain-phantom generator and the training/evaluation
//! code that produces Glia's shipped demo weights.
//!
//! Entry points for the rest of Glia: [`AiConfig`] (the `[ai]` config table),
//! [`Engine`] (load once, share, `segment`), [`phantom::generate`] and the
//! CLI handlers in [`cli`].

pub mod assemble;
pub mod cli;
mod cpu_conv;
mod cpu_ops;
pub mod dcm;
pub mod grid;
pub mod ops3d;
pub mod phantom;
pub mod pipeline;
pub mod report;
pub mod run;
pub mod sample;
pub mod seg;
pub mod segresnet;
pub mod select;
pub mod synth;
pub mod train;
pub mod volume;
pub mod worker;

use std::path::PathBuf;

use candle_core::Device;
use serde::{Deserialize, Serialize};

pub use pipeline::{CancelToken, Engine, Progress};
pub use segresnet::{SegResNet, SegResNetConfig};
pub use volume::{LabelVolume, RegionVolumes, Volume4};

/// Errors of the AI layer. Bad input and bad weights are reported, never panicked on.
#[derive(Debug, thiserror::Error)]
pub enum AiError {
    /// The input volume is unusable (shape, channels, non-finite values, empty channel).
    #[error("invalid input: {0}")]
    Input(String),
    /// The input exceeds the configured voxel cap.
    #[error("input has {voxels} voxels per channel, above the configured cap of {cap}")]
    TooLarge {
        /// Voxels per channel of the input.
        voxels: usize,
        /// `ai.max_voxels`.
        cap: usize,
    },
    /// The weights file is missing, unreadable or corrupt.
    #[error("weights: {0}")]
    Weights(String),
    /// The weights do not describe a usable SegResNet.
    #[error("weights do not match a SegResNet architecture: {0}")]
    Architecture(String),
    /// Bad `[ai]` configuration (device string, ROI, overlap ...).
    #[error("ai config: {0}")]
    Config(String),
    /// The caller cancelled the run.
    #[error("segmentation cancelled")]
    Cancelled,
    /// A tensor operation failed.
    #[error("tensor backend: {0}")]
    Backend(#[from] candle_core::Error),
    /// File I/O failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// How overlapping sliding-window predictions are blended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BlendMode {
    /// Every window voxel weighs 1 (MONAI `mode="constant"`, the bundle's setting).
    #[default]
    Constant,
    /// Gaussian importance map, sigma = 0.125 · ROI (MONAI `mode="gaussian"`).
    Gaussian,
}

/// The `[ai]` configuration table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AiConfig {
    /// `"auto"` (CUDA device 0 when built with `cuda` and present, else CPU), `"cpu"` or `"cuda:N"`.
    pub device: String,
    /// SegResNet weights (safetensors, MONAI state-dict names).
    pub weights: PathBuf,
    /// Sliding-window ROI as `[D, H, W]` (slices, rows, columns); MONAI's
    /// 240×240×160 (x, y, z) is `[160, 240, 240]` here.
    pub roi: [usize; 3],
    /// Fractional window overlap in `[0, 1)`.
    pub overlap: f64,
    /// Blending of overlapping windows.
    pub blend: BlendMode,
    /// Refuse inputs with more voxels per channel than this.
    pub max_voxels: usize,
    /// Segmentations allowed to run at once (each holds a full forward pass in memory).
    pub max_concurrent: usize,
    /// Post-processing: drop connected tumour components smaller than this
    /// many mL (0 = off, MONAI's pipeline has no such step).
    pub min_component_ml: f64,
    /// Series selection rules (`[ai.selection]`).
    pub selection: select::SelectionRules,
    /// Volume assembly settings (`[ai.assembly]`).
    pub assembly: assemble::AssembleOptions,
    /// Run the pipeline on studies as they arrive (stable-study detection and workers).
    pub enabled: bool,
    /// Seconds without a new instance after which a study is stable.
    pub stable_age: u64,
    /// Milliseconds between two scans for stable studies.
    pub scan_interval_ms: u64,
    /// Jobs this node runs at once.
    pub workers: usize,
    /// Seconds without a heartbeat after which another node takes over a job.
    pub heartbeat_timeout_secs: u64,
    /// Attempts per job before it fails for good.
    pub max_attempts: i32,
    /// Base of the retry backoff in seconds (doubles per attempt).
    pub retry_base_secs: u64,
    /// An instance arriving after a result re-triggers the pipeline (the new
    /// result supersedes the old; the old SEG is kept).
    pub retrigger_on_late_instance: bool,
    /// This node's name in the job queue (stable across restarts); empty = host
    /// name and HTTP port.
    pub node_name: String,
    /// SeriesNumber of the SEG series Glia adds to a study.
    pub seg_series_number: i32,
}

impl Default for AiConfig {
    fn default() -> Self {
        Self {
            device: "auto".into(),
            weights: PathBuf::from("weights/glia-phantom-segresnet.safetensors"),
            roi: [160, 240, 240],
            overlap: 0.5,
            blend: BlendMode::Constant,
            max_voxels: 256 * 512 * 512,
            max_concurrent: 1,
            min_component_ml: 0.0,
            selection: select::SelectionRules::default(),
            assembly: assemble::AssembleOptions::default(),
            enabled: true,
            stable_age: 10,
            scan_interval_ms: 1000,
            workers: 1,
            heartbeat_timeout_secs: 60,
            max_attempts: 3,
            retry_base_secs: 10,
            retrigger_on_late_instance: true,
            node_name: String::new(),
            seg_series_number: 9901,
        }
    }
}

impl AiConfig {
    /// Resolves `device` to a candle device.
    pub fn device(&self) -> Result<Device, AiError> {
        parse_device(&self.device)
    }
}

/// Parses `"auto"`, `"cpu"` or `"cuda:N"`.
pub fn parse_device(s: &str) -> Result<Device, AiError> {
    let s = s.trim();
    match s {
        "cpu" => Ok(Device::Cpu),
        "auto" => Device::cuda_if_available(0).map_err(|e| AiError::Config(e.to_string())),
        _ => {
            let n = s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| {
                    AiError::Config(format!("device {s:?}: expected auto, cpu or cuda:N"))
                })?;
            Device::new_cuda(n).map_err(|e| AiError::Config(format!("device {s}: {e}")))
        }
    }
}

#[cfg(test)]
mod weights_tests;
