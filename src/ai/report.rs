//! The preliminary AI report of a segmentation: structured findings and a short
//! text, always flagged as AI-generated and unverified until a radiologist verifies
//! it (`db::ai::verify_result`). Wording is deliberately factual: volumes and
//! location, no diagnosis.

use serde::{Deserialize, Serialize};

use super::seg::Measurements;

/// Structured findings of a preliminary report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Findings {
    /// Always true: the report was produced by a model.
    pub ai_generated: bool,
    /// Whether any tumour voxel was segmented.
    pub tumour_detected: bool,
    pub whole_tumor_ml: f64,
    pub tumor_core_ml: f64,
    pub enhancing_ml: f64,
    pub necrotic_ml: f64,
    pub edema_ml: f64,
    /// Enhancing share of the tumour core (0..1), when there is a core.
    pub enhancing_fraction_of_core: Option<f64>,
    /// Whole-tumour centroid (patient LPS, mm).
    pub centroid_mm: Option<[f64; 3]>,
    /// Side of the centroid: `left` / `right` (patient), from the LPS x coordinate.
    pub side: Option<String>,
    pub model: String,
    pub model_version: String,
}

/// A preliminary report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub findings: Findings,
    pub text: String,
}

/// Volumes below this (mL) count as no tumour detected.
const DETECTION_ML: f64 = 0.05;

/// Write the preliminary report of `m`.
pub fn preliminary(m: &Measurements, model: &str, version: &str) -> Report {
    let detected = m.whole_tumor_ml >= DETECTION_ML;
    let centroid = m.centroid_mm.map(|c| [c[0], c[1], c[2]]);
    // LPS: +x points to the patient's left.
    let side = centroid.map(|c| if c[0] >= 0.0 { "left" } else { "right" }.to_string());
    let findings = Findings {
        ai_generated: true,
        tumour_detected: detected,
        whole_tumor_ml: m.whole_tumor_ml,
        tumor_core_ml: m.tumor_core_ml,
        enhancing_ml: m.enhancing_ml,
        necrotic_ml: m.necrotic_ml,
        edema_ml: m.edema_ml,
        enhancing_fraction_of_core: (m.tumor_core_ml > 0.0)
            .then(|| (m.enhancing_ml / m.tumor_core_ml).clamp(0.0, 1.0)),
        centroid_mm: centroid,
        side: if detected { side } else { None },
        model: model.to_string(),
        model_version: version.to_string(),
    };
    let text = if detected {
        format!(
            "PRELIMINARY AI RESULT - NOT VERIFIED BY A RADIOLOGIST. Automatic segmentation \
             ({model} {version}) found a lesion of {:.1} mL in total ({}): enhancing \
             tumour {:.1} mL, necrotic/non-enhancing core {:.1} mL, peritumoural oedema \
             {:.1} mL (tumour core {:.1} mL). Volumes are model estimates for research \
             use and must be verified.",
            m.whole_tumor_ml,
            findings
                .side
                .as_deref()
                .map(|s| format!("centred in the {s} hemisphere"))
                .unwrap_or_else(|| "location not determined".into()),
            m.enhancing_ml,
            m.necrotic_ml,
            m.edema_ml,
            m.tumor_core_ml,
        )
    } else {
        format!(
            "PRELIMINARY AI RESULT - NOT VERIFIED BY A RADIOLOGIST. Automatic segmentation \
             ({model} {version}) found no tumour above {DETECTION_ML} mL. This does not \
             exclude disease and must be verified."
        )
    };
    Report { findings, text }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(wt: f64, core: f64, et: f64, x: f64) -> Measurements {
        Measurements {
            necrotic_ml: core - et,
            edema_ml: wt - core,
            enhancing_ml: et,
            tumor_core_ml: core,
            whole_tumor_ml: wt,
            bbox_min_mm: None,
            bbox_max_mm: None,
            centroid_mm: Some([x, 0.0, 0.0]),
        }
    }

    #[test]
    fn tumour_report_names_volumes_side_and_is_flagged() {
        let r = preliminary(&m(30.0, 10.0, 6.0, 25.0), "net", "abc");
        assert!(r.findings.ai_generated && r.findings.tumour_detected);
        assert_eq!(r.findings.side.as_deref(), Some("left"));
        assert!((r.findings.enhancing_fraction_of_core.unwrap() - 0.6).abs() < 1e-9);
        assert!(r.text.starts_with("PRELIMINARY AI RESULT"));
        assert!(r.text.contains("30.0 mL") && r.text.contains("left hemisphere"));
        let right = preliminary(&m(30.0, 10.0, 6.0, -5.0), "net", "abc");
        assert_eq!(right.findings.side.as_deref(), Some("right"));
    }

    #[test]
    fn empty_segmentation_says_no_tumour() {
        let r = preliminary(&m(0.0, 0.0, 0.0, 0.0), "net", "abc");
        assert!(!r.findings.tumour_detected);
        assert_eq!(r.findings.side, None);
        assert!(r.text.contains("found no tumour"));
    }
}
