//! Segment definitions of Glia's DICOM SEG ([`super`]): the three BraTS
//! regions with their coded concepts, checked against PS3.16 CID 7150
//! (Segmentation Property Categories) and CID 7159 (Lesion Segmentation
//! Types, also in CID 7151), and the sRGB → DICOM CIELab conversion for
//! RecommendedDisplayCIELabValue.

use crate::ai::volume::labels::{EDEMA, ENHANCING, NECROTIC};

/// A coded concept (code value, coding scheme designator, code meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    /// Code value.
    pub value: &'static str,
    /// Coding scheme designator.
    pub scheme: &'static str,
    /// Code meaning.
    pub meaning: &'static str,
}

/// One segment of the output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentDef {
    /// BraTS label value in the label volume.
    pub label: u8,
    /// SegmentLabel.
    pub name: &'static str,
    /// SegmentedPropertyCategoryCodeSequence (CID 7150).
    pub category: Code,
    /// SegmentedPropertyTypeCodeSequence (CID 7159 / 7151).
    pub property: Code,
    /// Display colour (sRGB), written as RecommendedDisplayCIELabValue.
    pub rgb: [u8; 3],
}

/// SCT 49755003 "Morphologically Abnormal Structure" (CID 7150).
pub const MORPHOLOGICALLY_ABNORMAL: Code = Code {
    value: "49755003",
    scheme: "SCT",
    meaning: "Morphologically Abnormal Structure",
};

/// The three BraTS segments, numbered 1, 2, 3 in this order.
pub const SEGMENTS: [SegmentDef; 3] = [
    SegmentDef {
        label: NECROTIC,
        name: "Necrotic and non-enhancing tumour core",
        category: MORPHOLOGICALLY_ABNORMAL,
        property: Code {
            value: "6574001",
            scheme: "SCT",
            meaning: "Necrosis",
        },
        rgb: [255, 221, 0],
    },
    SegmentDef {
        label: EDEMA,
        name: "Peritumoural oedema",
        category: MORPHOLOGICALLY_ABNORMAL,
        property: Code {
            value: "79654002",
            scheme: "SCT",
            meaning: "Edema",
        },
        rgb: [0, 200, 80],
    },
    SegmentDef {
        label: ENHANCING,
        name: "Enhancing tumour",
        category: MORPHOLOGICALLY_ABNORMAL,
        // No SNOMED CT concept for an enhancing lesion exists; CIDs 7151/7159 use NCIt.
        property: Code {
            value: "C113842",
            scheme: "NCIt",
            meaning: "Enhancing Lesion",
        },
        rgb: [230, 30, 40],
    },
];

/// sRGB (0–255) → DICOM-scaled CIELab (PS3.3 C.10.7.1.1), D65.
pub fn rgb_to_dicom_lab(rgb: [u8; 3]) -> [u16; 3] {
    let lin = rgb.map(|c| {
        let c = c as f64 / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    });
    let x = (0.4124 * lin[0] + 0.3576 * lin[1] + 0.1805 * lin[2]) / 0.95047;
    let y = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2];
    let z = (0.0193 * lin[0] + 0.1192 * lin[1] + 0.9505 * lin[2]) / 1.08883;
    let f = |t: f64| {
        if t > 0.008856 {
            t.cbrt()
        } else {
            7.787 * t + 16.0 / 116.0
        }
    };
    let (fx, fy, fz) = (f(x), f(y), f(z));
    let (l, a, b) = (116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz));
    [
        (l.clamp(0.0, 100.0) / 100.0 * 65535.0).round() as u16,
        ((a.clamp(-128.0, 127.0) + 128.0) / 255.0 * 65535.0).round() as u16,
        ((b.clamp(-128.0, 127.0) + 128.0) / 255.0 * 65535.0).round() as u16,
    ]
}
