//! Plain volume types exchanged with the rest of Glia: a multi-channel f32
//! input volume, a BraTS label volume, region volume measurement in mL, and
//! small safetensors read/write helpers for CLI tensors.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::Serialize;

use super::AiError;

/// BraTS label values written by the pipeline.
pub mod labels {
    /// Necrotic / non-enhancing tumour core.
    pub const NECROTIC: u8 = 1;
    /// Peritumoural oedema.
    pub const EDEMA: u8 = 2;
    /// Enhancing tumour.
    pub const ENHANCING: u8 = 4;
}

/// A multi-channel volume: `data` is channel-major `[C, D, H, W]` f32,
/// `spacing` is the voxel size in mm along (D, H, W).
/// For segmentation C = 4 in the order T1ce, T1, T2, FLAIR.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume4 {
    /// Voxel values, `[C, D, H, W]` row-major.
    pub data: Vec<f32>,
    /// Channel count C.
    pub channels: usize,
    /// Spatial size (D, H, W).
    pub dims: [usize; 3],
    /// Voxel size in mm along (D, H, W).
    pub spacing: [f64; 3],
}

impl Volume4 {
    /// Wraps `data` after checking its length against `channels · D · H · W`.
    pub fn new(
        data: Vec<f32>,
        channels: usize,
        dims: [usize; 3],
        spacing: [f64; 3],
    ) -> Result<Self, AiError> {
        let n = channels * dims.iter().product::<usize>();
        if data.len() != n || n == 0 {
            return Err(AiError::Input(format!(
                "{} values do not fill {channels} channels of {}x{}x{}",
                data.len(),
                dims[0],
                dims[1],
                dims[2]
            )));
        }
        if spacing.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(AiError::Input(format!("invalid voxel spacing {spacing:?}")));
        }
        Ok(Self {
            data,
            channels,
            dims,
            spacing,
        })
    }

    /// Voxels per channel.
    pub fn voxels(&self) -> usize {
        self.dims.iter().product()
    }

    /// One channel's voxels.
    pub fn channel(&self, c: usize) -> &[f32] {
        let n = self.voxels();
        &self.data[c * n..(c + 1) * n]
    }
}

/// A label volume `[D, H, W]` with BraTS values 0, 1, 2, 4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelVolume {
    /// Labels, row-major `[D, H, W]`.
    pub labels: Vec<u8>,
    /// Spatial size (D, H, W).
    pub dims: [usize; 3],
    /// Voxel size in mm along (D, H, W), kept as f64 bits for `Eq`.
    spacing_bits: [u64; 3],
}

/// Tumour region volumes in millilitres.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RegionVolumes {
    /// Label 1.
    pub necrotic_ml: f64,
    /// Label 2.
    pub edema_ml: f64,
    /// Label 4.
    pub enhancing_ml: f64,
    /// Tumour core: labels 1 + 4.
    pub tumor_core_ml: f64,
    /// Whole tumour: labels 1 + 2 + 4.
    pub whole_tumor_ml: f64,
}

impl LabelVolume {
    /// Wraps labels after checking the length.
    pub fn new(labels: Vec<u8>, dims: [usize; 3], spacing: [f64; 3]) -> Result<Self, AiError> {
        if labels.len() != dims.iter().product::<usize>() {
            return Err(AiError::Input("label count does not match dims".into()));
        }
        Ok(Self {
            labels,
            dims,
            spacing_bits: spacing.map(f64::to_bits),
        })
    }

    /// Voxel size in mm along (D, H, W).
    pub fn spacing(&self) -> [f64; 3] {
        self.spacing_bits.map(f64::from_bits)
    }

    /// Volume of one voxel in mL (1 mL = 1000 mm³).
    pub fn voxel_ml(&self) -> f64 {
        self.spacing().iter().product::<f64>() / 1000.0
    }

    /// Voxels carrying `label`.
    pub fn count(&self, label: u8) -> usize {
        self.labels.iter().filter(|&&l| l == label).count()
    }

    /// Volume of `label` in mL.
    pub fn volume_ml(&self, label: u8) -> f64 {
        self.count(label) as f64 * self.voxel_ml()
    }

    /// Clears tumour components (26-connected voxels with any non-zero label)
    /// smaller than `min_voxels`; returns how many voxels were cleared.
    pub fn remove_small_components(&mut self, min_voxels: usize) -> usize {
        let [d, h, w] = self.dims;
        let mut seen = vec![false; self.labels.len()];
        let mut removed = 0;
        let mut stack = Vec::new();
        let mut comp = Vec::new();
        for start in 0..self.labels.len() {
            if seen[start] || self.labels[start] == 0 {
                continue;
            }
            seen[start] = true;
            stack.push(start);
            comp.clear();
            while let Some(i) = stack.pop() {
                comp.push(i);
                let (z, y, x) = (i / (h * w), (i / w) % h, i % w);
                for dz in -1isize..=1 {
                    for dy in -1isize..=1 {
                        for dx in -1isize..=1 {
                            let (nz, ny, nx) = (z as isize + dz, y as isize + dy, x as isize + dx);
                            if nz < 0
                                || ny < 0
                                || nx < 0
                                || nz >= d as isize
                                || ny >= h as isize
                                || nx >= w as isize
                            {
                                continue;
                            }
                            let j = (nz as usize * h + ny as usize) * w + nx as usize;
                            if !seen[j] && self.labels[j] != 0 {
                                seen[j] = true;
                                stack.push(j);
                            }
                        }
                    }
                }
            }
            if comp.len() < min_voxels {
                for &i in &comp {
                    self.labels[i] = 0;
                }
                removed += comp.len();
            }
        }
        removed
    }

    /// BraTS region volumes (necrosis, oedema, enhancing, TC, WT) in mL.
    pub fn region_volumes(&self) -> RegionVolumes {
        let mut c = [0usize; 5];
        for &l in &self.labels {
            if (l as usize) < c.len() {
                c[l as usize] += 1;
            }
        }
        let v = self.voxel_ml();
        let (n, e, et) = (c[1] as f64 * v, c[2] as f64 * v, c[4] as f64 * v);
        RegionVolumes {
            necrotic_ml: n,
            edema_ml: e,
            enhancing_ml: et,
            tumor_core_ml: n + et,
            whole_tumor_ml: n + e + et,
        }
    }
}

/// Reads all tensors of a safetensors file onto `device`.
pub fn read_tensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>, AiError> {
    let bytes = std::fs::read(path)
        .map_err(|e| AiError::Input(format!("cannot read {}: {e}", path.display())))?;
    candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| {
        AiError::Input(format!(
            "{} is not a readable safetensors file: {e}",
            path.display()
        ))
    })
}

/// Writes named tensors (and string metadata) to a safetensors file.
pub fn write_tensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<(), AiError> {
    let tensors = tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<Result<Vec<_>, candle_core::Error>>()?;
    safetensors::serialize_to_file(tensors.iter().map(|(k, t)| (k.as_str(), t)), metadata, path)
        .map_err(|e| AiError::Io(std::io::Error::other(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_components_are_removed_large_kept() {
        // 1x4x4: a 3-voxel L-shaped blob (diagonal link counts) and a lone voxel.
        let mut l = LabelVolume::new(
            vec![2, 0, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2],
            [1, 4, 4],
            [1.0; 3],
        )
        .unwrap();
        assert_eq!(l.remove_small_components(2), 1);
        assert_eq!(l.labels.iter().filter(|&&v| v != 0).count(), 3);
        assert_eq!(l.labels[15], 0);
        assert_eq!(l.remove_small_components(4), 3);
        assert!(l.labels.iter().all(|&v| v == 0));
    }
}
