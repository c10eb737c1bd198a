//! Where the bytes of an object's large values lie inside its stored blob, recorded
//! once at ingest so that WADO-RS frames and bulk data are ranged reads of the blob,
//! never a whole-object read and parse.
//!
//! A structural walk over the Part 10 file: the file meta group, then the top-level
//! elements of the data set in its transfer syntax (explicit or implicit VR, little or
//! big endian), skipping nested sequences of undefined length, and the items of
//! encapsulated pixel data (Basic Offset Table and fragments). Deflated data sets have
//! no stable offsets: they get no layout (and are served by parsing the object).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub(super) const PIXEL_DATA: u32 = 0x7FE0_0010;
const FLOAT_PIXEL_DATA: u32 = 0x7FE0_0008;
const DOUBLE_PIXEL_DATA: u32 = 0x7FE0_0009;
pub(super) const ITEM: u32 = 0xFFFE_E000;
pub(super) const ITEM_END: u32 = 0xFFFE_E00D;
pub(super) const SEQ_END: u32 = 0xFFFE_E0DD;
pub(super) const UNDEFINED: u32 = 0xFFFF_FFFF;
/// Nesting deeper than this is refused as malformed (stack safety).
pub(super) const MAX_DEPTH: usize = 32;

/// Byte ranges of an object's large values, offsets relative to the blob's start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Top-level values longer than the threshold (and pixel data): `(tag, offset,
    /// length)` of the value bytes. Encapsulated pixel data is not listed here.
    pub bulk: Vec<(u32, u64, u64)>,
    /// Pixel data frames, when they can be located.
    pub pixel: Option<PixelLayout>,
}

/// How pixel data frames are laid out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PixelLayout {
    /// Native pixel data: frame `n` (1-based) is `frame_len` bytes at
    /// `offset + (n - 1) * frame_len`. `frame_len` is 0 when frames are not byte
    /// aligned (1-bit data): then the whole value has to be read.
    Native {
        offset: u64,
        length: u64,
        frame_len: u64,
        frames: u32,
    },
    /// Encapsulated pixel data: the fragments `(offset, length)` of each frame.
    Encapsulated { frames: Vec<Vec<(u64, u64)>> },
}

/// Image attributes the frame split needs (from the parsed header).
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameInfo {
    pub rows: u32,
    pub columns: u32,
    pub samples_per_pixel: u32,
    pub bits_allocated: u32,
    pub number_of_frames: u32,
}

/// The fragments `(offset, length)` of each frame.
type FrameFragments = Vec<Vec<(u64, u64)>>;

/// Errors of the walk (the object was already parsed, so these mean "no layout").
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed at byte {0}")]
    Malformed(u64),
    #[error("deflated data set")]
    Deflated,
}

/// Bytes read ahead around a header, so walking an object's elements costs a few
/// reads, not one system call per element.
const WINDOW: usize = 64 << 10;

/// What a walk reads: a spool/blob file, or an object held in memory.
pub(super) enum Source<'a> {
    File(File),
    Bytes(&'a [u8]),
}

pub(super) struct Walker<'a> {
    src: Source<'a>,
    pub(super) len: u64,
    /// `(offset, bytes)` of the last window read.
    window: std::cell::RefCell<(u64, Vec<u8>)>,
    pub(super) explicit: bool,
    pub(super) big_endian: bool,
}

pub(super) struct Header {
    pub(super) tag: u32,
    pub(super) vr: [u8; 2],
    pub(super) length: u32,
    /// Offset of the value.
    pub(super) value: u64,
}

impl<'a> Walker<'a> {
    /// A walker over a data set in the given encoding.
    pub(super) fn new(src: Source<'a>, len: u64, explicit: bool, big_endian: bool) -> Self {
        Walker {
            src,
            len,
            window: std::cell::RefCell::new((0, Vec::new())),
            explicit,
            big_endian,
        }
    }

    /// A walker over a Part 10 object set to its data set's encoding, and the position
    /// of the data set (after the file meta group). Deflated data sets: `Deflated`.
    pub(super) fn part10(src: Source<'a>, len: u64) -> Result<(Self, u64), LayoutError> {
        let mut w = Self::new(src, len, true, false);
        let (pos, ts) = meta_group(&w, len)?;
        match ts.as_str() {
            "1.2.840.10008.1.2" => w.explicit = false,
            "1.2.840.10008.1.2.2" => w.big_endian = true,
            "1.2.840.10008.1.2.1.99" => return Err(LayoutError::Deflated),
            _ => {}
        }
        Ok((w, pos))
    }

    fn read(&self, pos: u64, buf: &mut [u8]) -> Result<(), LayoutError> {
        if pos + buf.len() as u64 > self.len {
            return Err(LayoutError::Malformed(pos));
        }
        let file = match &self.src {
            Source::Bytes(b) => {
                let at = pos as usize;
                buf.copy_from_slice(&b[at..at + buf.len()]);
                return Ok(());
            }
            Source::File(f) => f,
        };
        let mut w = self.window.borrow_mut();
        let (start, data) = &mut *w;
        let end = pos + buf.len() as u64;
        if pos < *start || end > *start + data.len() as u64 {
            if buf.len() >= WINDOW {
                file.read_exact_at(buf, pos)?;
                return Ok(());
            }
            let n = WINDOW.min((self.len - pos) as usize);
            data.resize(n, 0);
            file.read_exact_at(data, pos)?;
            *start = pos;
        }
        let at = (pos - *start) as usize;
        buf.copy_from_slice(&data[at..at + buf.len()]);
        Ok(())
    }

    fn u16(&self, b: [u8; 2], be: bool) -> u16 {
        if be {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    fn u32(&self, b: [u8; 4], be: bool) -> u32 {
        if be {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    /// Read an element (or item/delimiter) header at `pos`.
    pub(super) fn header(&self, pos: u64, explicit: bool, be: bool) -> Result<Header, LayoutError> {
        let mut b = [0u8; 8];
        self.read(pos, &mut b)?;
        let group = self.u16([b[0], b[1]], be);
        let elem = self.u16([b[2], b[3]], be);
        let tag = (u32::from(group) << 16) | u32::from(elem);
        if group == 0xFFFE || !explicit {
            return Ok(Header {
                tag,
                vr: *b"  ",
                length: self.u32([b[4], b[5], b[6], b[7]], be),
                value: pos + 8,
            });
        }
        let vr = [b[4], b[5]];
        // The VRs with a 2-byte length; any other (unknown VRs too, which the parser
        // reads as UN) has 2 reserved bytes and a 4-byte length.
        let short = matches!(
            &vr,
            b"AE"
                | b"AS"
                | b"AT"
                | b"CS"
                | b"DA"
                | b"DS"
                | b"DT"
                | b"FL"
                | b"FD"
                | b"IS"
                | b"LO"
                | b"LT"
                | b"PN"
                | b"SH"
                | b"SL"
                | b"SS"
                | b"ST"
                | b"TM"
                | b"UI"
                | b"UL"
                | b"US"
        );
        if !short {
            let mut l = [0u8; 4];
            self.read(pos + 8, &mut l)?;
            Ok(Header {
                tag,
                vr,
                length: self.u32(l, be),
                value: pos + 12,
            })
        } else {
            Ok(Header {
                tag,
                vr,
                length: u32::from(self.u16([b[6], b[7]], be)),
                value: pos + 8,
            })
        }
    }

    /// Skip the items of an undefined-length sequence starting at `pos`; returns the
    /// position after its delimiter.
    fn skip_sequence(&self, mut pos: u64, depth: usize) -> Result<u64, LayoutError> {
        if depth > MAX_DEPTH {
            return Err(LayoutError::Malformed(pos));
        }
        loop {
            let h = self.header(pos, false, self.big_endian)?;
            match h.tag {
                SEQ_END => return Ok(h.value),
                ITEM if h.length == UNDEFINED => pos = self.skip_item(h.value, depth + 1)?,
                ITEM => pos = h.value + u64::from(h.length),
                _ => return Err(LayoutError::Malformed(pos)),
            }
        }
    }

    /// Skip the elements of an undefined-length item; returns the position after its
    /// delimiter.
    fn skip_item(&self, mut pos: u64, depth: usize) -> Result<u64, LayoutError> {
        loop {
            let h = self.header(pos, self.explicit, self.big_endian)?;
            if h.tag == ITEM_END {
                return Ok(h.value);
            }
            pos = self.skip_value(&h, depth)?;
        }
    }

    fn skip_value(&self, h: &Header, depth: usize) -> Result<u64, LayoutError> {
        if h.length == UNDEFINED {
            self.skip_sequence(h.value, depth + 1)
        } else {
            Ok(h.value + u64::from(h.length))
        }
    }
}

/// The last top-level element of a walked data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastElement {
    /// Its tag (`group << 16 | element`).
    pub tag: u32,
    /// Its VR as written, `None` in implicit VR.
    pub vr: Option<[u8; 2]>,
    /// Value length; `None` when undefined (a sequence or encapsulated pixel data).
    pub length: Option<u64>,
    /// How many top-level elements precede it in the data set.
    pub index: usize,
}

/// Walk the Part 10 file at `path`. Values longer than `threshold` bytes are listed.
pub fn scan(path: &Path, threshold: u64, info: FrameInfo) -> Result<Layout, LayoutError> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    walk(Source::File(file), len, threshold, info).map(|(l, _)| l)
}

/// [`scan`] over an object held in memory, also naming its last top-level element
/// (`None` for an empty data set). A successful walk means every element's value lies
/// inside `bytes`: the object is not truncated.
pub fn scan_bytes(
    bytes: &[u8],
    threshold: u64,
    info: FrameInfo,
) -> Result<(Layout, Option<LastElement>), LayoutError> {
    walk(Source::Bytes(bytes), bytes.len() as u64, threshold, info)
}

fn walk(
    src: Source<'_>,
    len: u64,
    threshold: u64,
    info: FrameInfo,
) -> Result<(Layout, Option<LastElement>), LayoutError> {
    let (w, mut pos) = Walker::part10(src, len)?;
    let mut layout = Layout {
        bulk: Vec::new(),
        pixel: None,
    };
    let mut last = None;
    let mut index = 0;
    while pos < len {
        let h = w.header(pos, w.explicit, w.big_endian)?;
        last = Some(LastElement {
            tag: h.tag,
            vr: w.explicit.then_some(h.vr),
            length: (h.length != UNDEFINED).then_some(u64::from(h.length)),
            index,
        });
        index += 1;
        if h.tag == PIXEL_DATA && h.length == UNDEFINED {
            let (frames, end) = encapsulated(&w, h.value, info.number_of_frames.max(1))?;
            layout.pixel = frames.map(|frames| PixelLayout::Encapsulated { frames });
            pos = end;
            continue;
        }
        if h.length == UNDEFINED {
            pos = w.skip_sequence(h.value, 0)?;
            continue;
        }
        let length = u64::from(h.length);
        if h.value + length > len {
            return Err(LayoutError::Malformed(pos));
        }
        let is_pixels = matches!(h.tag, PIXEL_DATA | FLOAT_PIXEL_DATA | DOUBLE_PIXEL_DATA);
        if (is_pixels || length > threshold) && &h.vr != b"SQ" {
            layout.bulk.push((h.tag, h.value, length));
        }
        if is_pixels {
            let frames = info.number_of_frames.max(1);
            let bits = u64::from(info.rows)
                * u64::from(info.columns)
                * u64::from(info.samples_per_pixel.max(1))
                * u64::from(info.bits_allocated);
            let frame_len = if bits % 8 == 0 { bits / 8 } else { 0 };
            layout.pixel = Some(PixelLayout::Native {
                offset: h.value,
                length,
                frame_len,
                frames,
            });
        }
        pos = h.value + length;
    }
    Ok((layout, last))
}

/// Skip the preamble and the file meta group (explicit VR little endian): the
/// position of the data set and the transfer syntax UID.
fn meta_group(w: &Walker, len: u64) -> Result<(u64, String), LayoutError> {
    // Preamble + DICM, or a bare meta group.
    let mut magic = [0u8; 4];
    let mut pos = if len >= 132 && w.read(128, &mut magic).is_ok() && &magic == b"DICM" {
        132
    } else {
        0
    };
    let mut ts = String::new();
    while pos < len {
        let h = w.header(pos, true, false)?;
        if h.tag >> 16 != 0x0002 {
            break;
        }
        if h.length == UNDEFINED || h.value + u64::from(h.length) > len {
            return Err(LayoutError::Malformed(pos));
        }
        if h.tag == 0x0002_0010 {
            let mut b = vec![0u8; h.length as usize];
            w.read(h.value, &mut b)?;
            ts = String::from_utf8_lossy(&b)
                .trim_end_matches(['\0', ' '])
                .to_string();
        }
        pos = h.value + u64::from(h.length);
    }
    Ok((pos, ts))
}

/// The items of encapsulated pixel data starting at `pos`: frames (when they can be
/// located) and the position after the sequence delimiter.
pub(super) fn encapsulated(
    w: &Walker,
    mut pos: u64,
    frames: u32,
) -> Result<(Option<FrameFragments>, u64), LayoutError> {
    let mut bot: Vec<u64> = Vec::new();
    let mut fragments: Vec<(u64, u64)> = Vec::new();
    let mut first = true;
    let end = loop {
        let h = w.header(pos, false, false)?;
        match h.tag {
            SEQ_END => break h.value,
            ITEM if h.length != UNDEFINED => {
                let length = u64::from(h.length);
                if h.value + length > w.len {
                    return Err(LayoutError::Malformed(pos));
                }
                if first {
                    let mut b = vec![0u8; h.length as usize];
                    w.read(h.value, &mut b)?;
                    bot = b
                        .chunks_exact(4)
                        .map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                        .collect();
                } else {
                    fragments.push((h.value, length));
                }
                first = false;
                pos = h.value + length;
            }
            _ => return Err(LayoutError::Malformed(pos)),
        }
    };
    Ok((split_frames(w, &bot, &fragments, frames), end))
}

/// Group fragments into frames: by the Basic Offset Table when present, one fragment
/// per frame when the counts agree, everything for a single frame, else by the
/// codec's start-of-image marker at the start of a fragment (JPEG `FFD8`, JPEG 2000
/// `FF4F`). `None` when no rule gives exactly `frames` frames.
fn split_frames(
    w: &Walker,
    bot: &[u64],
    fragments: &[(u64, u64)],
    frames: u32,
) -> Option<FrameFragments> {
    let frames = frames as usize;
    if fragments.is_empty() {
        return None;
    }
    if frames == 1 {
        return Some(vec![fragments.to_vec()]);
    }
    if bot.len() == frames {
        // Offsets are from the first byte of the first fragment's item tag.
        let base = fragments[0].0 - 8;
        let mut out: Vec<Vec<(u64, u64)>> = vec![Vec::new(); frames];
        for &(off, len) in fragments {
            let rel = off - 8 - base;
            let idx = bot.iter().rposition(|&b| b <= rel)?;
            out[idx].push((off, len));
        }
        return out.iter().all(|f| !f.is_empty()).then_some(out);
    }
    if fragments.len() == frames {
        return Some(fragments.iter().map(|f| vec![*f]).collect());
    }
    let mut out: Vec<Vec<(u64, u64)>> = Vec::new();
    for &(off, len) in fragments {
        let mut m = [0u8; 2];
        let starts =
            len >= 2 && w.read(off, &mut m).is_ok() && matches!(m, [0xFF, 0xD8] | [0xFF, 0x4F]);
        match out.last_mut() {
            Some(cur) if !starts => cur.push((off, len)),
            _ => out.push(vec![(off, len)]),
        }
    }
    (out.len() == frames).then_some(out)
}

impl Layout {
    /// The byte range of a top-level value.
    pub fn bulk_range(&self, tag: u32) -> Option<(u64, u64)> {
        self.bulk
            .iter()
            .find(|(t, _, _)| *t == tag)
            .map(|&(_, o, l)| (o, l))
    }
}
