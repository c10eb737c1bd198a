//! The render pipeline behind WADO-RS `rendered` / `thumbnail` and WADO-URI images:
//! one frame of a decoded object → modality LUT → VOI (window or min/max) →
//! MONOCHROME1 inversion → 8-bit grey or RGB → crop and scale to a viewport →
//! JPEG or PNG bytes.
//!
//! Pure and synchronous (CPU-bound: call it from `spawn_blocking`). The only
//! dicom-pixeldata step is decoding the frame to samples; everything after that
//! (stored-bit extraction, sign extension, rescale, VOI, colour) is done here so that
//! odd input (1-bit, signed, planar configuration 1, YBR from RLE) is handled and
//! never panics.

use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::DefaultDicomObject;
use dicom_pixeldata::{
    DecodedPixelData, PhotometricInterpretation, PixelDecoder, PixelRepresentation,
    PlanarConfiguration, VoiLutFunction,
};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use image::{imageops::FilterType, DynamicImage, GrayImage, RgbImage};

/// Largest viewport side a client may ask for.
pub const MAX_VIEWPORT: u32 = 8192;
/// JPEG quality when the request names none.
pub const DEFAULT_QUALITY: u8 = 90;

/// The encoded image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
}

impl Format {
    /// The media type of the encoded bytes.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
        }
    }
}

/// A VOI LUT function (PS3.3 C.11.2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoiFunction {
    Linear,
    LinearExact,
    Sigmoid,
}

/// A window: center, width and function, in modality (rescaled) units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub center: f64,
    pub width: f64,
    pub function: VoiFunction,
}

impl Window {
    /// A window with the LINEAR function.
    pub fn linear(center: f64, width: f64) -> Self {
        Self {
            center,
            width,
            function: VoiFunction::Linear,
        }
    }

    /// Map one modality value to 0..=255.
    pub fn apply(&self, x: f64) -> u8 {
        let y = match self.function {
            VoiFunction::Linear => {
                // Width below 1 is not meaningful for LINEAR: treat it as 1 (a threshold).
                let w = self.width.max(1.0);
                let c = self.center;
                if x <= c - 0.5 - (w - 1.0) / 2.0 {
                    0.0
                } else if x > c - 0.5 + (w - 1.0) / 2.0 {
                    255.0
                } else {
                    // Unreachable for w == 1 (the two bounds coincide).
                    ((x - (c - 0.5)) / (w - 1.0) + 0.5) * 255.0
                }
            }
            VoiFunction::LinearExact => {
                let w = self.width.max(f64::MIN_POSITIVE);
                let c = self.center;
                if x <= c - w / 2.0 {
                    0.0
                } else if x > c + w / 2.0 {
                    255.0
                } else {
                    ((x - c) / w + 0.5) * 255.0
                }
            }
            VoiFunction::Sigmoid => {
                let w = self.width.max(f64::MIN_POSITIVE);
                255.0 / (1.0 + (-4.0 * (x - self.center) / w).exp())
            }
        };
        y.round().clamp(0.0, 255.0) as u8
    }
}

/// A source region in pixels (`sx,sy,sw,sh` of a viewport); a negative width or
/// height flips the image along that axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    pub x: u32,
    pub y: u32,
    pub width: i64,
    pub height: i64,
}

/// Output size: the image (or its region) is scaled to fit `width`×`height`,
/// preserving the aspect ratio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Viewport {
    pub width: u32,
    pub height: u32,
    pub region: Option<Region>,
}

/// Everything a render needs besides the object.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderOptions {
    /// Zero-based frame index.
    pub frame: u32,
    /// An explicit window; `None`: the object's first window, else min/max.
    pub window: Option<Window>,
    pub viewport: Option<Viewport>,
    pub format: Format,
    /// JPEG quality 1..=100.
    pub quality: u8,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            frame: 0,
            window: None,
            viewport: None,
            format: Format::Jpeg,
            quality: DEFAULT_QUALITY,
        }
    }
}

/// Why an object could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the instance has no pixel data and cannot be rendered")]
    NoPixelData,
    #[error("frame {frame} does not exist (the instance has {frames})")]
    FrameOutOfRange { frame: u32, frames: u32 },
    #[error("cannot render this image: {0}")]
    Unsupported(String),
    #[error("pixel data could not be decoded: {0}")]
    Decode(String),
    #[error("the viewport region lies outside the image")]
    EmptyRegion,
    #[error("image could not be encoded: {0}")]
    Encode(String),
}

/// The number of frames of an object (NumberOfFrames, 1 when absent or malformed).
pub fn frame_count(obj: &DefaultDicomObject) -> u32 {
    obj.get(tags::NUMBER_OF_FRAMES)
        .and_then(|e| e.to_int::<i64>().ok())
        .filter(|n| *n >= 1)
        .map(|n| n.min(u32::MAX as i64) as u32)
        .unwrap_or(1)
}

/// Whether the object carries pixel data at all.
pub fn has_pixel_data(obj: &DefaultDicomObject) -> bool {
    obj.get(tags::PIXEL_DATA).is_some()
}

/// Render one frame of `obj` to encoded image bytes.
pub fn render(obj: &DefaultDicomObject, opts: &RenderOptions) -> Result<Vec<u8>, RenderError> {
    let img = render_frame(obj, opts.frame, opts.window)?;
    let img = fit_viewport(img, opts.viewport)?;
    encode(&img, opts.format, opts.quality)
}

/// Decode and map one frame to an 8-bit grey or RGB image (no scaling).
pub fn render_frame(
    obj: &DefaultDicomObject,
    frame: u32,
    window: Option<Window>,
) -> Result<DynamicImage, RenderError> {
    if !has_pixel_data(obj) {
        return Err(RenderError::NoPixelData);
    }
    let frames = frame_count(obj);
    if frame >= frames {
        return Err(RenderError::FrameOutOfRange {
            frame: frame + 1,
            frames,
        });
    }
    let original_pi = obj
        .get(tags::PHOTOMETRIC_INTERPRETATION)
        .and_then(|e| e.to_str().ok().map(|s| s.trim().to_ascii_uppercase()))
        .unwrap_or_default();
    let ts = obj.meta().transfer_syntax().trim_end_matches('\0').trim();
    // Native YBR_FULL_422 is subsampled on the wire; dicom-pixeldata does not size it.
    if original_pi == "YBR_FULL_422" && is_native_or_rle(ts) {
        return Err(RenderError::Unsupported(
            "uncompressed YBR_FULL_422 pixel data".into(),
        ));
    }
    match TransferSyntaxRegistry.get(ts) {
        Some(t) if t.can_decode_all() => {}
        Some(t) => {
            return Err(RenderError::Unsupported(format!(
                "pixel data in {} cannot be decoded by this node",
                t.name()
            )))
        }
        None => return Err(RenderError::Unsupported("unknown transfer syntax".into())),
    }
    let px = obj
        .decode_pixel_data_frame(frame)
        .map_err(|e| RenderError::Decode(first_line(&e.to_string())))?;
    let (w, h) = (px.columns(), px.rows());
    if w == 0 || h == 0 {
        return Err(RenderError::Unsupported("zero rows or columns".into()));
    }
    let pixels = w as usize * h as usize;
    match px.samples_per_pixel() {
        1 => {
            let pi = px.photometric_interpretation();
            if *pi == PhotometricInterpretation::PaletteColor {
                return Err(RenderError::Unsupported("PALETTE COLOR".into()));
            }
            let values = mono_values(&px, pixels)?;
            let window = window.or_else(|| object_window(&px));
            let mut out = to_gray8(&values, window);
            if *pi == PhotometricInterpretation::Monochrome1 {
                invert(&mut out);
            }
            GrayImage::from_raw(w, h, out)
                .map(DynamicImage::ImageLuma8)
                .ok_or_else(|| RenderError::Decode("frame size mismatch".into()))
        }
        3 => {
            let mut rgb = colour_values(&px, pixels)?;
            // Decoders label every colour result RGB, but RLE (and native data) keep
            // YBR_FULL samples as they are.
            if original_pi == "YBR_FULL" && is_native_or_rle(ts) {
                ybr_full_to_rgb(&mut rgb);
            }
            RgbImage::from_raw(w, h, rgb)
                .map(DynamicImage::ImageRgb8)
                .ok_or_else(|| RenderError::Decode("frame size mismatch".into()))
        }
        n => Err(RenderError::Unsupported(format!("{n} samples per pixel"))),
    }
}

fn is_native_or_rle(ts: &str) -> bool {
    matches!(
        ts,
        "1.2.840.10008.1.2"
            | "1.2.840.10008.1.2.1"
            | "1.2.840.10008.1.2.2"
            | "1.2.840.10008.1.2.1.99"
            | "1.2.840.10008.1.2.5"
    )
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(200).collect()
}

/// The object's first window (per frame where functional groups give one).
fn object_window(px: &DecodedPixelData<'_>) -> Option<Window> {
    let wl = *px.window().ok()??.first()?;
    if !wl.width.is_finite() || !wl.center.is_finite() || wl.width <= 0.0 {
        return None;
    }
    let function = match px.voi_lut_function().ok().flatten().and_then(|f| f.first()) {
        Some(VoiLutFunction::LinearExact) => VoiFunction::LinearExact,
        Some(VoiLutFunction::Sigmoid) => VoiFunction::Sigmoid,
        _ => VoiFunction::Linear,
    };
    Some(Window {
        center: wl.center,
        width: wl.width,
        function,
    })
}

/// Stored sample layout of a frame.
struct Layout {
    bits_allocated: u16,
    bits_stored: u16,
    shift: u16,
    signed: bool,
}

impl Layout {
    fn of(px: &DecodedPixelData<'_>) -> Result<Self, RenderError> {
        let bits_allocated = px.bits_allocated();
        if !matches!(bits_allocated, 1 | 8 | 16 | 32) {
            return Err(RenderError::Unsupported(format!(
                "{bits_allocated} bits allocated"
            )));
        }
        let mut bits_stored = px.bits_stored();
        if bits_stored == 0 || bits_stored > bits_allocated {
            bits_stored = bits_allocated;
        }
        let high_bit = px.high_bit();
        let shift = (high_bit + 1)
            .checked_sub(bits_stored)
            .filter(|s| s + bits_stored <= bits_allocated)
            .unwrap_or(0);
        Ok(Self {
            bits_allocated,
            bits_stored,
            shift,
            signed: px.pixel_representation() == PixelRepresentation::Signed,
        })
    }

    fn bytes_per_sample(&self) -> usize {
        (self.bits_allocated as usize).div_ceil(8)
    }

    /// The stored value of one sample word (shifted, masked, sign-extended).
    fn value(&self, word: u32) -> i64 {
        let bits = self.bits_stored as u32;
        let v = (word >> self.shift) as u64 & ((1u64 << bits) - 1);
        if self.signed && bits > 0 && v & (1u64 << (bits - 1)) != 0 {
            v as i64 - (1i64 << bits)
        } else {
            v as i64
        }
    }

    /// Sample words of `count` samples from native little-endian bytes.
    fn words(&self, data: &[u8], count: usize) -> Result<Vec<u32>, RenderError> {
        let bps = self.bytes_per_sample();
        let need = count
            .checked_mul(bps)
            .ok_or_else(|| RenderError::Unsupported("frame too large".into()))?;
        let data = data.get(..need).ok_or_else(|| {
            RenderError::Decode(format!("frame has {} bytes, {need} expected", data.len()))
        })?;
        Ok(match bps {
            1 => data.iter().map(|b| *b as u32).collect(),
            2 => data
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32)
                .collect(),
            _ => data
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        })
    }
}

/// Modality values (rescale slope/intercept applied) of a monochrome frame.
fn mono_values(px: &DecodedPixelData<'_>, pixels: usize) -> Result<Vec<f64>, RenderError> {
    let layout = Layout::of(px)?;
    let words = layout.words(px.data(), pixels)?;
    let rescale = px.rescale().ok().and_then(|r| r.first().copied());
    let (slope, intercept) = rescale
        .map(|r| (r.slope, r.intercept))
        .filter(|(s, i)| s.is_finite() && i.is_finite() && *s != 0.0)
        .unwrap_or((1.0, 0.0));
    Ok(if layout.bits_allocated == 1 {
        // dicom-pixeldata expands 1-bit samples to bytes of 0 or 255.
        words
            .iter()
            .map(|w| (*w != 0) as u8 as f64 * slope + intercept)
            .collect()
    } else {
        words
            .iter()
            .map(|w| layout.value(*w) as f64 * slope + intercept)
            .collect()
    })
}

/// Interleaved 8-bit RGB samples of a colour frame.
fn colour_values(px: &DecodedPixelData<'_>, pixels: usize) -> Result<Vec<u8>, RenderError> {
    let layout = Layout::of(px)?;
    if layout.bits_allocated == 1 {
        return Err(RenderError::Unsupported("1-bit colour".into()));
    }
    let words = layout.words(px.data(), pixels * 3)?;
    let down = layout.bits_stored.saturating_sub(8) as u32;
    let to8 = |w: u32| -> u8 {
        let v = layout.value(w);
        // Signed colour is not meaningful; clamp at 0.
        (v.max(0) as u64 >> down).min(255) as u8
    };
    let planar = px.planar_configuration() == PlanarConfiguration::PixelFirst;
    let mut out = vec![0u8; pixels * 3];
    for p in 0..pixels {
        for s in 0..3 {
            let src = if planar { s * pixels + p } else { p * 3 + s };
            out[p * 3 + s] = to8(words[src]);
        }
    }
    Ok(out)
}

/// Map modality values to 8 bits through `window`, or min/max when there is none.
pub fn to_gray8(values: &[f64], window: Option<Window>) -> Vec<u8> {
    match window {
        Some(w) => values.iter().map(|v| w.apply(*v)).collect(),
        None => {
            let (min, max) = values
                .iter()
                .filter(|v| v.is_finite())
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                    (lo.min(*v), hi.max(*v))
                });
            // No finite value, or a constant image.
            if max <= min {
                return vec![0; values.len()];
            }
            let span = max - min;
            values
                .iter()
                .map(|v| (((v - min) / span) * 255.0).round().clamp(0.0, 255.0) as u8)
                .collect()
        }
    }
}

/// MONOCHROME1: the minimum is white.
pub fn invert(gray: &mut [u8]) {
    for g in gray {
        *g = 255 - *g;
    }
}

/// YBR_FULL → RGB in place (PS3.3 C.7.6.3.1.2).
fn ybr_full_to_rgb(px: &mut [u8]) {
    for p in px.chunks_exact_mut(3) {
        let (y, cb, cr) = (p[0] as f64, p[1] as f64 - 128.0, p[2] as f64 - 128.0);
        let r = y + 1.402 * cr;
        let g = y - 0.344136 * cb - 0.714136 * cr;
        let b = y + 1.772 * cb;
        p[0] = r.round().clamp(0.0, 255.0) as u8;
        p[1] = g.round().clamp(0.0, 255.0) as u8;
        p[2] = b.round().clamp(0.0, 255.0) as u8;
    }
}

/// The output size of a `w`×`h` image fitted into `vw`×`vh`, aspect preserved
/// (each side at least 1).
pub fn fit_size(w: u32, h: u32, vw: u32, vh: u32) -> (u32, u32) {
    if w == 0 || h == 0 {
        return (vw.max(1), vh.max(1));
    }
    let scale = (vw as f64 / w as f64).min(vh as f64 / h as f64);
    let ow = ((w as f64 * scale).round() as u32).clamp(1, vw.max(1));
    let oh = ((h as f64 * scale).round() as u32).clamp(1, vh.max(1));
    (ow, oh)
}

/// Crop to the viewport's region (clipped to the image; flipped for negative sizes),
/// then scale to fit the viewport.
pub fn fit_viewport(
    img: DynamicImage,
    viewport: Option<Viewport>,
) -> Result<DynamicImage, RenderError> {
    let Some(vp) = viewport else { return Ok(img) };
    let mut img = img;
    if let Some(r) = vp.region {
        let (iw, ih) = (img.width() as i64, img.height() as i64);
        let x0 = (r.x as i64).min(iw);
        let y0 = (r.y as i64).min(ih);
        let x1 = (x0 + r.width.abs()).min(iw);
        let y1 = (y0 + r.height.abs()).min(ih);
        if x1 <= x0 || y1 <= y0 {
            return Err(RenderError::EmptyRegion);
        }
        img = img.crop_imm(x0 as u32, y0 as u32, (x1 - x0) as u32, (y1 - y0) as u32);
        if r.width < 0 {
            img = img.fliph();
        }
        if r.height < 0 {
            img = img.flipv();
        }
    }
    let (ow, oh) = fit_size(img.width(), img.height(), vp.width, vp.height);
    if (ow, oh) == (img.width(), img.height()) {
        return Ok(img);
    }
    let filter = if ow < img.width() {
        FilterType::Triangle
    } else {
        FilterType::CatmullRom
    };
    Ok(img.resize_exact(ow, oh, filter))
}

/// Encode as JPEG (with `quality`) or PNG.
pub fn encode(img: &DynamicImage, format: Format, quality: u8) -> Result<Vec<u8>, RenderError> {
    use image::codecs::jpeg::JpegEncoder;
    use image::codecs::png::PngEncoder;
    let mut out = Vec::new();
    let res = match format {
        Format::Jpeg => img.write_with_encoder(JpegEncoder::new_with_quality(
            &mut out,
            quality.clamp(1, 100),
        )),
        Format::Png => img.write_with_encoder(PngEncoder::new(&mut out)),
    };
    res.map_err(|e| RenderError::Encode(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
#[path = "render_image_tests.rs"]
mod tests;
