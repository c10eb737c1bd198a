//! The structure check every received object and data set passes before the DICOM
//! parser sees it: each element, at every depth the parser descends to, must have a
//! value that ends inside its container. dicom-rs allocates and zero-fills a value at
//! its declared length before reading it, so without this check a few hundred bytes
//! declaring a 4 GB value cost 4 GB of memory (pydicom's `UN_sequence.dcm`, 674 bytes,
//! made the node allocate 3.6 GB).
//!
//! The walk mirrors the parser's reading of the bytes (the layout walker's header
//! decoding; the standard dictionary for sequences in implicit VR), so it refuses only
//! what the parser would fail on too.

use std::fs::File;
use std::path::Path;

use super::layout::{
    encapsulated, LayoutError, Source, Walker, ITEM, ITEM_END, MAX_DEPTH, PIXEL_DATA, SEQ_END,
    UNDEFINED,
};

/// Checks that every element of the data set in `bytes` (a Part 10 object), at every
/// nesting depth the parser will descend to, has a value that ends inside its
/// container. Run before the DICOM parser sees an object: the parser allocates (and
/// zero-fills) each value at its declared length before reading it, so a few hundred
/// bytes declaring a 4 GB value would otherwise cost 4 GB of memory. Deflated data
/// sets are not checked (`Err(Deflated)`).
pub fn check_structure_bytes(bytes: &[u8]) -> Result<(), LayoutError> {
    check_structure(Source::Bytes(bytes), bytes.len() as u64)
}

/// [`check_structure_bytes`] for an object in a file.
pub fn check_structure_file(path: &Path) -> Result<(), LayoutError> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    check_structure(Source::File(file), len)
}

/// [`check_structure_bytes`] for a bare data set (no preamble or file meta group) in
/// the transfer syntax `ts_uid`: DIMSE command sets and identifiers.
pub fn check_data_set(bytes: &[u8], ts_uid: &str) -> Result<(), LayoutError> {
    let ts = ts_uid.trim_end_matches(['\0', ' ']);
    if ts == "1.2.840.10008.1.2.1.99" {
        return Err(LayoutError::Deflated);
    }
    let implicit = ts == "1.2.840.10008.1.2";
    let w = Walker::new(
        Source::Bytes(bytes),
        bytes.len() as u64,
        !implicit,
        ts == "1.2.840.10008.1.2.2",
    );
    w.check_elements(0, Some(w.len), w.explicit, 0).map(|_| ())
}

fn check_structure(src: Source<'_>, len: u64) -> Result<(), LayoutError> {
    let (w, pos) = Walker::part10(src, len)?;
    w.check_elements(pos, Some(len), w.explicit, 0).map(|_| ())
}

impl Walker<'_> {
    /// Check the elements from `pos` up to `end` (`None`: up to an item delimiter);
    /// returns the position after them.
    fn check_elements(
        &self,
        mut pos: u64,
        end: Option<u64>,
        explicit: bool,
        depth: usize,
    ) -> Result<u64, LayoutError> {
        use dicom_core::dictionary::DataDictionary;
        if depth > MAX_DEPTH {
            return Err(LayoutError::Malformed(pos));
        }
        loop {
            match end {
                Some(e) if pos == e => return Ok(pos),
                Some(e) if pos > e => return Err(LayoutError::Malformed(pos)),
                None if pos >= self.len => return Err(LayoutError::Malformed(pos)),
                _ => {}
            }
            let h = self.header(pos, explicit, self.big_endian)?;
            if h.tag == ITEM_END && end.is_none() {
                return Ok(h.value);
            }
            if h.length == UNDEFINED {
                pos = if h.tag == PIXEL_DATA && depth == 0 {
                    encapsulated(self, h.value, 1)?.1
                } else {
                    // A sequence. The parser reads any undefined-length element so, in
                    // the data set's own VR encoding, UN included (PS3.5 §6.2.2 says
                    // implicit VR there): the check has to see what the parser will.
                    self.check_items(h.value, None, explicit, depth + 1)?
                };
                continue;
            }
            let value_end = h.value + u64::from(h.length);
            if value_end > end.unwrap_or(self.len) || value_end > self.len {
                return Err(LayoutError::Malformed(pos));
            }
            let is_sequence = if explicit {
                &h.vr == b"SQ"
            } else {
                let tag = dicom_core::Tag((h.tag >> 16) as u16, h.tag as u16);
                dicom_dictionary_std::StandardDataDictionary
                    .by_tag(tag)
                    .is_some_and(|e| e.vr.relaxed() == dicom_core::VR::SQ)
            };
            if is_sequence {
                self.check_items(h.value, Some(value_end), explicit, depth + 1)?;
            }
            pos = value_end;
        }
    }

    /// Check the items of a sequence from `pos` up to `end` (`None`: up to the
    /// sequence delimiter); returns the position after them.
    fn check_items(
        &self,
        mut pos: u64,
        end: Option<u64>,
        explicit: bool,
        depth: usize,
    ) -> Result<u64, LayoutError> {
        if depth > MAX_DEPTH {
            return Err(LayoutError::Malformed(pos));
        }
        loop {
            if end == Some(pos) {
                return Ok(pos);
            }
            let h = self.header(pos, false, self.big_endian)?;
            match h.tag {
                SEQ_END if end.is_none() => return Ok(h.value),
                ITEM if h.length == UNDEFINED => {
                    pos = self.check_elements(h.value, None, explicit, depth + 1)?;
                }
                ITEM => {
                    let item_end = h.value + u64::from(h.length);
                    if item_end > end.unwrap_or(self.len) || item_end > self.len {
                        return Err(LayoutError::Malformed(pos));
                    }
                    pos = self.check_elements(h.value, Some(item_end), explicit, depth + 1)?;
                }
                _ => return Err(LayoutError::Malformed(pos)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMPLICIT: &str = "1.2.840.10008.1.2";
    const EXPLICIT: &str = "1.2.840.10008.1.2.1";

    /// An implicit VR LE element header.
    fn implicit(group: u16, elem: u16, len: u32) -> Vec<u8> {
        let mut v = group.to_le_bytes().to_vec();
        v.extend(elem.to_le_bytes());
        v.extend(len.to_le_bytes());
        v
    }

    #[test]
    fn nested_values_must_fit_their_item_and_the_object() {
        // (0008,1115) ReferencedSeriesSequence, defined length 20: one item of 12
        // holding (0020,000E) with a 4-byte value.
        let mut ok = implicit(0x0008, 0x1115, 20);
        ok.extend(implicit(0xFFFE, 0xE000, 12));
        ok.extend(implicit(0x0020, 0x000E, 4));
        ok.extend(b"1.2\0");
        assert!(check_data_set(&ok, IMPLICIT).is_ok());

        // The inner value declares 3.75 GiB: the dictionary says SQ, so the check
        // descends (as the parser would) and refuses it.
        let mut huge = implicit(0x0008, 0x1115, 20);
        huge.extend(implicit(0xFFFE, 0xE000, 12));
        huge.extend(implicit(0x0020, 0x000E, 0xF000_0000));
        huge.extend(b"1.2\0");
        assert!(matches!(
            check_data_set(&huge, IMPLICIT),
            Err(LayoutError::Malformed(_))
        ));

        // A value longer than its item, though not than the object.
        let mut spill = implicit(0x0008, 0x1115, 28);
        spill.extend(implicit(0xFFFE, 0xE000, 12));
        spill.extend(implicit(0x0020, 0x000E, 12));
        spill.extend([0u8; 12]);
        assert!(check_data_set(&spill, IMPLICIT).is_err());
    }

    #[test]
    fn undefined_length_elements_are_read_as_the_parser_reads_them() {
        // Explicit VR: (0009,1010) UN of undefined length, one undefined-length item
        // whose element is written in explicit VR (as dicom-rs reads it) and fits.
        let mut v = vec![0x09, 0x00, 0x10, 0x10, b'U', b'N', 0, 0];
        v.extend(0xFFFF_FFFFu32.to_le_bytes());
        v.extend(implicit(0xFFFE, 0xE000, 0xFFFF_FFFF));
        v.extend([0x20, 0x00, 0x0E, 0x00, b'U', b'I', 4, 0]);
        v.extend(b"1.2\0");
        v.extend(implicit(0xFFFE, 0xE00D, 0));
        v.extend(implicit(0xFFFE, 0xE0DD, 0));
        assert!(check_data_set(&v, EXPLICIT).is_ok());
        // Without its delimiters it runs off the end.
        assert!(check_data_set(&v[..v.len() - 16], EXPLICIT).is_err());
        // An unknown VR has a 4-byte length, as the parser reads it (as UN).
        let mut unknown = vec![0x09, 0x00, 0x11, 0x10, 0xFF, 0xFF, 0, 0];
        unknown.extend(0xE000_FFFEu32.to_le_bytes());
        assert!(check_data_set(&unknown, EXPLICIT).is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let mut v = Vec::new();
        for _ in 0..(MAX_DEPTH + 2) {
            v.extend(implicit(0x0008, 0x1115, 0xFFFF_FFFF));
            v.extend(implicit(0xFFFE, 0xE000, 0xFFFF_FFFF));
        }
        assert!(check_data_set(&v, IMPLICIT).is_err());
    }
}
