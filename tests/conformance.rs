//! The DICOM Conformance Statement (`dicom-conformance/conformance-statement.md`) is
//! checked against the code: its machine-readable lists of SOP classes
//! (` ```sop-classes `, ` ```storage-sop-classes `) and transfer syntaxes
//! (` ```transfer-syntaxes `) must be exactly what the listener negotiates, proven by
//! proposing every SOP class and every transfer syntax dicom-rs knows to
//! `glia::dimse::association::negotiate` with the default `[dimse]` configuration; its
//! table of supported C-FIND keys must be the query catalogue; and the implementation
//! identification it quotes must be the one Glia sends.

#![allow(deprecated)] // retired UIDs are deprecated constants in dicom-dictionary-std

use std::collections::BTreeSet;

use dicom_dictionary_std::uids;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::pdu::{
    AssociationRQ, PresentationContextProposed, PresentationContextResultReason, UserVariableItem,
};
use glia::config::DimseConfig;
use glia::dimse::association::negotiate;
use glia::ingest::spool::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME};

const STATEMENT: &str = include_str!("../dicom-conformance/conformance-statement.md");

const MR_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.4";
const DICOM_ROOT: &str = "1.2.840.10008.";

/// Every SOP class (and meta SOP class) UID constant of dicom-dictionary-std 0.10.1
/// (its registry is not iterable; this list names the crate's public constants, so a
/// constant that disappears fails to compile).
const DICTIONARY_SOP_CLASSES: &[&str] = &[
    uids::VERIFICATION,
    uids::STORAGE_COMMITMENT_PUSH_MODEL,
    uids::STORAGE_COMMITMENT_PULL_MODEL,
    uids::MEDIA_STORAGE_DIRECTORY_STORAGE,
    uids::PROCEDURAL_EVENT_LOGGING,
    uids::SUBSTANCE_ADMINISTRATION_LOGGING,
    uids::BASIC_STUDY_CONTENT_NOTIFICATION,
    uids::VIDEO_ENDOSCOPIC_IMAGE_REAL_TIME_COMMUNICATION,
    uids::VIDEO_PHOTOGRAPHIC_IMAGE_REAL_TIME_COMMUNICATION,
    uids::AUDIO_WAVEFORM_REAL_TIME_COMMUNICATION,
    uids::RENDITION_SELECTION_DOCUMENT_REAL_TIME_COMMUNICATION,
    uids::DETACHED_PATIENT_MANAGEMENT,
    uids::DETACHED_PATIENT_MANAGEMENT_META,
    uids::DETACHED_VISIT_MANAGEMENT,
    uids::DETACHED_STUDY_MANAGEMENT,
    uids::STUDY_COMPONENT_MANAGEMENT,
    uids::MODALITY_PERFORMED_PROCEDURE_STEP,
    uids::MODALITY_PERFORMED_PROCEDURE_STEP_RETRIEVE,
    uids::MODALITY_PERFORMED_PROCEDURE_STEP_NOTIFICATION,
    uids::DETACHED_RESULTS_MANAGEMENT,
    uids::DETACHED_RESULTS_MANAGEMENT_META,
    uids::DETACHED_STUDY_MANAGEMENT_META,
    uids::DETACHED_INTERPRETATION_MANAGEMENT,
    uids::BASIC_FILM_SESSION,
    uids::PRINT_JOB,
    uids::BASIC_ANNOTATION_BOX,
    uids::PRINTER,
    uids::PRINTER_CONFIGURATION_RETRIEVAL,
    uids::BASIC_COLOR_PRINT_MANAGEMENT_META,
    uids::REFERENCED_COLOR_PRINT_MANAGEMENT_META,
    uids::BASIC_FILM_BOX,
    uids::VOILUT_BOX,
    uids::PRESENTATION_LUT,
    uids::IMAGE_OVERLAY_BOX,
    uids::BASIC_PRINT_IMAGE_OVERLAY_BOX,
    uids::PRINT_QUEUE_MANAGEMENT,
    uids::STORED_PRINT_STORAGE,
    uids::HARDCOPY_GRAYSCALE_IMAGE_STORAGE,
    uids::HARDCOPY_COLOR_IMAGE_STORAGE,
    uids::PULL_PRINT_REQUEST,
    uids::PULL_STORED_PRINT_MANAGEMENT_META,
    uids::MEDIA_CREATION_MANAGEMENT,
    uids::BASIC_GRAYSCALE_IMAGE_BOX,
    uids::BASIC_COLOR_IMAGE_BOX,
    uids::REFERENCED_IMAGE_BOX,
    uids::DISPLAY_SYSTEM,
    uids::BASIC_GRAYSCALE_PRINT_MANAGEMENT_META,
    uids::REFERENCED_GRAYSCALE_PRINT_MANAGEMENT_META,
    uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE,
    uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PROCESSING,
    uids::DIGITAL_MAMMOGRAPHY_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    uids::DIGITAL_MAMMOGRAPHY_X_RAY_IMAGE_STORAGE_FOR_PROCESSING,
    uids::DIGITAL_INTRA_ORAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    uids::DIGITAL_INTRA_ORAL_X_RAY_IMAGE_STORAGE_FOR_PROCESSING,
    uids::STANDALONE_MODALITY_LUT_STORAGE,
    uids::ENCAPSULATED_PDF_STORAGE,
    uids::ENCAPSULATED_CDA_STORAGE,
    uids::ENCAPSULATED_STL_STORAGE,
    uids::ENCAPSULATED_OBJ_STORAGE,
    uids::ENCAPSULATED_MTL_STORAGE,
    uids::STANDALONE_VOILUT_STORAGE,
    uids::GRAYSCALE_SOFTCOPY_PRESENTATION_STATE_STORAGE,
    uids::SEGMENTED_VOLUME_RENDERING_VOLUMETRIC_PRESENTATION_STATE_STORAGE,
    uids::MULTIPLE_VOLUME_RENDERING_VOLUMETRIC_PRESENTATION_STATE_STORAGE,
    uids::VARIABLE_MODALITY_LUT_SOFTCOPY_PRESENTATION_STATE_STORAGE,
    uids::COLOR_SOFTCOPY_PRESENTATION_STATE_STORAGE,
    uids::PSEUDO_COLOR_SOFTCOPY_PRESENTATION_STATE_STORAGE,
    uids::BLENDING_SOFTCOPY_PRESENTATION_STATE_STORAGE,
    uids::XAXRF_GRAYSCALE_SOFTCOPY_PRESENTATION_STATE_STORAGE,
    uids::GRAYSCALE_PLANAR_MPR_VOLUMETRIC_PRESENTATION_STATE_STORAGE,
    uids::COMPOSITING_PLANAR_MPR_VOLUMETRIC_PRESENTATION_STATE_STORAGE,
    uids::ADVANCED_BLENDING_PRESENTATION_STATE_STORAGE,
    uids::VOLUME_RENDERING_VOLUMETRIC_PRESENTATION_STATE_STORAGE,
    uids::X_RAY_ANGIOGRAPHIC_IMAGE_STORAGE,
    uids::ENHANCED_XA_IMAGE_STORAGE,
    uids::X_RAY_RADIOFLUOROSCOPIC_IMAGE_STORAGE,
    uids::ENHANCED_XRF_IMAGE_STORAGE,
    uids::X_RAY_ANGIOGRAPHIC_BI_PLANE_IMAGE_STORAGE,
    uids::POSITRON_EMISSION_TOMOGRAPHY_IMAGE_STORAGE,
    uids::LEGACY_CONVERTED_ENHANCED_PET_IMAGE_STORAGE,
    uids::STANDALONE_PET_CURVE_STORAGE,
    uids::X_RAY3_D_ANGIOGRAPHIC_IMAGE_STORAGE,
    uids::X_RAY3_D_CRANIOFACIAL_IMAGE_STORAGE,
    uids::BREAST_TOMOSYNTHESIS_IMAGE_STORAGE,
    uids::BREAST_PROJECTION_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    uids::BREAST_PROJECTION_X_RAY_IMAGE_STORAGE_FOR_PROCESSING,
    uids::ENHANCED_PET_IMAGE_STORAGE,
    uids::BASIC_STRUCTURED_DISPLAY_STORAGE,
    uids::INTRAVASCULAR_OPTICAL_COHERENCE_TOMOGRAPHY_IMAGE_STORAGE_FOR_PRESENTATION,
    uids::INTRAVASCULAR_OPTICAL_COHERENCE_TOMOGRAPHY_IMAGE_STORAGE_FOR_PROCESSING,
    uids::CT_IMAGE_STORAGE,
    uids::ENHANCED_CT_IMAGE_STORAGE,
    uids::LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE,
    uids::CT_IMAGE_STORAGE_FOR_PROCESSING,
    uids::ENHANCED_CT_IMAGE_STORAGE_FOR_PROCESSING,
    uids::LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE_FOR_PROCESSING,
    uids::NUCLEAR_MEDICINE_IMAGE_STORAGE,
    uids::CT_DEFINED_PROCEDURE_PROTOCOL_STORAGE,
    uids::CT_PERFORMED_PROCEDURE_PROTOCOL_STORAGE,
    uids::PROTOCOL_APPROVAL_STORAGE,
    uids::PROTOCOL_APPROVAL_INFORMATION_MODEL_FIND,
    uids::PROTOCOL_APPROVAL_INFORMATION_MODEL_MOVE,
    uids::PROTOCOL_APPROVAL_INFORMATION_MODEL_GET,
    uids::XA_DEFINED_PROCEDURE_PROTOCOL_STORAGE,
    uids::XA_PERFORMED_PROCEDURE_PROTOCOL_STORAGE,
    uids::INVENTORY_STORAGE,
    uids::INVENTORY_FIND,
    uids::INVENTORY_MOVE,
    uids::INVENTORY_GET,
    uids::INVENTORY_CREATION,
    uids::REPOSITORY_QUERY,
    uids::ULTRASOUND_MULTI_FRAME_IMAGE_STORAGE_RETIRED,
    uids::ULTRASOUND_MULTI_FRAME_IMAGE_STORAGE,
    uids::PARAMETRIC_MAP_STORAGE,
    uids::MR_IMAGE_STORAGE,
    uids::ENHANCED_MR_IMAGE_STORAGE,
    uids::MR_SPECTROSCOPY_STORAGE,
    uids::ENHANCED_MR_COLOR_IMAGE_STORAGE,
    uids::LEGACY_CONVERTED_ENHANCED_MR_IMAGE_STORAGE,
    uids::RT_IMAGE_STORAGE,
    uids::RT_PHYSICIAN_INTENT_STORAGE,
    uids::RT_SEGMENT_ANNOTATION_STORAGE,
    uids::RT_RADIATION_SET_STORAGE,
    uids::C_ARM_PHOTON_ELECTRON_RADIATION_STORAGE,
    uids::TOMOTHERAPEUTIC_RADIATION_STORAGE,
    uids::ROBOTIC_ARM_RADIATION_STORAGE,
    uids::RT_RADIATION_RECORD_SET_STORAGE,
    uids::RT_RADIATION_SALVAGE_RECORD_STORAGE,
    uids::TOMOTHERAPEUTIC_RADIATION_RECORD_STORAGE,
    uids::C_ARM_PHOTON_ELECTRON_RADIATION_RECORD_STORAGE,
    uids::RT_DOSE_STORAGE,
    uids::ROBOTIC_RADIATION_RECORD_STORAGE,
    uids::RT_RADIATION_SET_DELIVERY_INSTRUCTION_STORAGE,
    uids::RT_TREATMENT_PREPARATION_STORAGE,
    uids::ENHANCED_RT_IMAGE_STORAGE,
    uids::ENHANCED_CONTINUOUS_RT_IMAGE_STORAGE,
    uids::RT_PATIENT_POSITION_ACQUISITION_INSTRUCTION_STORAGE,
    uids::RT_STRUCTURE_SET_STORAGE,
    uids::RT_BEAMS_TREATMENT_RECORD_STORAGE,
    uids::RT_PLAN_STORAGE,
    uids::RT_BRACHY_TREATMENT_RECORD_STORAGE,
    uids::RT_TREATMENT_SUMMARY_RECORD_STORAGE,
    uids::RT_ION_PLAN_STORAGE,
    uids::RT_ION_BEAMS_TREATMENT_RECORD_STORAGE,
    uids::NUCLEAR_MEDICINE_IMAGE_STORAGE_RETIRED,
    uids::DICOSCT_IMAGE_STORAGE,
    uids::DICOS_DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    uids::DICOS_DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PROCESSING,
    uids::DICOS_THREAT_DETECTION_REPORT_STORAGE,
    uids::DICOS2DAIT_STORAGE,
    uids::DICOS3DAIT_STORAGE,
    uids::DICOS_QUADRUPOLE_RESONANCE_STORAGE,
    uids::ULTRASOUND_IMAGE_STORAGE_RETIRED,
    uids::ULTRASOUND_IMAGE_STORAGE,
    uids::ENHANCED_US_VOLUME_STORAGE,
    uids::PHOTOACOUSTIC_IMAGE_STORAGE,
    uids::EDDY_CURRENT_IMAGE_STORAGE,
    uids::EDDY_CURRENT_MULTI_FRAME_IMAGE_STORAGE,
    uids::THERMOGRAPHY_IMAGE_STORAGE,
    uids::THERMOGRAPHY_MULTI_FRAME_IMAGE_STORAGE,
    uids::ULTRASOUND_WAVEFORM_STORAGE,
    uids::RAW_DATA_STORAGE,
    uids::SPATIAL_REGISTRATION_STORAGE,
    uids::SPATIAL_FIDUCIALS_STORAGE,
    uids::DEFORMABLE_SPATIAL_REGISTRATION_STORAGE,
    uids::SEGMENTATION_STORAGE,
    uids::SURFACE_SEGMENTATION_STORAGE,
    uids::TRACTOGRAPHY_RESULTS_STORAGE,
    uids::LABEL_MAP_SEGMENTATION_STORAGE,
    uids::HEIGHT_MAP_SEGMENTATION_STORAGE,
    uids::REAL_WORLD_VALUE_MAPPING_STORAGE,
    uids::SURFACE_SCAN_MESH_STORAGE,
    uids::SURFACE_SCAN_POINT_CLOUD_STORAGE,
    uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::MULTI_FRAME_SINGLE_BIT_SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::MULTI_FRAME_GRAYSCALE_BYTE_SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::MULTI_FRAME_GRAYSCALE_WORD_SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::MULTI_FRAME_TRUE_COLOR_SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::VL_IMAGE_STORAGE_TRIAL,
    uids::VL_ENDOSCOPIC_IMAGE_STORAGE,
    uids::VIDEO_ENDOSCOPIC_IMAGE_STORAGE,
    uids::VL_MICROSCOPIC_IMAGE_STORAGE,
    uids::VIDEO_MICROSCOPIC_IMAGE_STORAGE,
    uids::VL_SLIDE_COORDINATES_MICROSCOPIC_IMAGE_STORAGE,
    uids::VL_PHOTOGRAPHIC_IMAGE_STORAGE,
    uids::VIDEO_PHOTOGRAPHIC_IMAGE_STORAGE,
    uids::OPHTHALMIC_PHOTOGRAPHY8_BIT_IMAGE_STORAGE,
    uids::OPHTHALMIC_PHOTOGRAPHY16_BIT_IMAGE_STORAGE,
    uids::STEREOMETRIC_RELATIONSHIP_STORAGE,
    uids::OPHTHALMIC_TOMOGRAPHY_IMAGE_STORAGE,
    uids::WIDE_FIELD_OPHTHALMIC_PHOTOGRAPHY_STEREOGRAPHIC_PROJECTION_IMAGE_STORAGE,
    uids::WIDE_FIELD_OPHTHALMIC_PHOTOGRAPHY3_D_COORDINATES_IMAGE_STORAGE,
    uids::OPHTHALMIC_OPTICAL_COHERENCE_TOMOGRAPHY_EN_FACE_IMAGE_STORAGE,
    uids::OPHTHALMIC_OPTICAL_COHERENCE_TOMOGRAPHY_BSCAN_VOLUME_ANALYSIS_STORAGE,
    uids::VL_WHOLE_SLIDE_MICROSCOPY_IMAGE_STORAGE,
    uids::DERMOSCOPIC_PHOTOGRAPHY_IMAGE_STORAGE,
    uids::CONFOCAL_MICROSCOPY_IMAGE_STORAGE,
    uids::CONFOCAL_MICROSCOPY_TILED_PYRAMIDAL_IMAGE_STORAGE,
    uids::VL_MULTI_FRAME_IMAGE_STORAGE_TRIAL,
    uids::LENSOMETRY_MEASUREMENTS_STORAGE,
    uids::AUTOREFRACTION_MEASUREMENTS_STORAGE,
    uids::KERATOMETRY_MEASUREMENTS_STORAGE,
    uids::SUBJECTIVE_REFRACTION_MEASUREMENTS_STORAGE,
    uids::VISUAL_ACUITY_MEASUREMENTS_STORAGE,
    uids::SPECTACLE_PRESCRIPTION_REPORT_STORAGE,
    uids::OPHTHALMIC_AXIAL_MEASUREMENTS_STORAGE,
    uids::INTRAOCULAR_LENS_CALCULATIONS_STORAGE,
    uids::MACULAR_GRID_THICKNESS_AND_VOLUME_REPORT_STORAGE,
    uids::STANDALONE_OVERLAY_STORAGE,
    uids::OPHTHALMIC_VISUAL_FIELD_STATIC_PERIMETRY_MEASUREMENTS_STORAGE,
    uids::OPHTHALMIC_THICKNESS_MAP_STORAGE,
    uids::CORNEAL_TOPOGRAPHY_MAP_STORAGE,
    uids::TEXT_SR_STORAGE_TRIAL,
    uids::BASIC_TEXT_SR_STORAGE,
    uids::AUDIO_SR_STORAGE_TRIAL,
    uids::ENHANCED_SR_STORAGE,
    uids::DETAIL_SR_STORAGE_TRIAL,
    uids::COMPREHENSIVE_SR_STORAGE,
    uids::COMPREHENSIVE3_DSR_STORAGE,
    uids::EXTENSIBLE_SR_STORAGE,
    uids::COMPREHENSIVE_SR_STORAGE_TRIAL,
    uids::PROCEDURE_LOG_STORAGE,
    uids::MAMMOGRAPHY_CADSR_STORAGE,
    uids::KEY_OBJECT_SELECTION_DOCUMENT_STORAGE,
    uids::CHEST_CADSR_STORAGE,
    uids::X_RAY_RADIATION_DOSE_SR_STORAGE,
    uids::RADIOPHARMACEUTICAL_RADIATION_DOSE_SR_STORAGE,
    uids::COLON_CADSR_STORAGE,
    uids::IMPLANTATION_PLAN_SR_STORAGE,
    uids::ACQUISITION_CONTEXT_SR_STORAGE,
    uids::SIMPLIFIED_ADULT_ECHO_SR_STORAGE,
    uids::PATIENT_RADIATION_DOSE_SR_STORAGE,
    uids::PLANNED_IMAGING_AGENT_ADMINISTRATION_SR_STORAGE,
    uids::PERFORMED_IMAGING_AGENT_ADMINISTRATION_SR_STORAGE,
    uids::ENHANCED_X_RAY_RADIATION_DOSE_SR_STORAGE,
    uids::WAVEFORM_ANNOTATION_SR_STORAGE,
    uids::STANDALONE_CURVE_STORAGE,
    uids::WAVEFORM_STORAGE_TRIAL,
    uids::TWELVE_LEAD_ECG_WAVEFORM_STORAGE,
    uids::GENERAL_ECG_WAVEFORM_STORAGE,
    uids::AMBULATORY_ECG_WAVEFORM_STORAGE,
    uids::GENERAL32BIT_ECG_WAVEFORM_STORAGE,
    uids::WAVEFORM_PRESENTATION_STATE_STORAGE,
    uids::WAVEFORM_ACQUISITION_PRESENTATION_STATE_STORAGE,
    uids::HEMODYNAMIC_WAVEFORM_STORAGE,
    uids::CARDIAC_ELECTROPHYSIOLOGY_WAVEFORM_STORAGE,
    uids::BASIC_VOICE_AUDIO_WAVEFORM_STORAGE,
    uids::GENERAL_AUDIO_WAVEFORM_STORAGE,
    uids::ARTERIAL_PULSE_WAVEFORM_STORAGE,
    uids::RESPIRATORY_WAVEFORM_STORAGE,
    uids::MULTICHANNEL_RESPIRATORY_WAVEFORM_STORAGE,
    uids::ROUTINE_SCALP_ELECTROENCEPHALOGRAM_WAVEFORM_STORAGE,
    uids::ELECTROMYOGRAM_WAVEFORM_STORAGE,
    uids::ELECTROOCULOGRAM_WAVEFORM_STORAGE,
    uids::SLEEP_ELECTROENCEPHALOGRAM_WAVEFORM_STORAGE,
    uids::BODY_POSITION_WAVEFORM_STORAGE,
    uids::CONTENT_ASSESSMENT_RESULTS_STORAGE,
    uids::MICROSCOPY_BULK_SIMPLE_ANNOTATIONS_STORAGE,
    uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND,
    uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE,
    uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET,
    uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND,
    uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE,
    uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET,
    uids::PATIENT_STUDY_ONLY_QUERY_RETRIEVE_INFORMATION_MODEL_FIND,
    uids::PATIENT_STUDY_ONLY_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE,
    uids::PATIENT_STUDY_ONLY_QUERY_RETRIEVE_INFORMATION_MODEL_GET,
    uids::COMPOSITE_INSTANCE_ROOT_RETRIEVE_MOVE,
    uids::COMPOSITE_INSTANCE_ROOT_RETRIEVE_GET,
    uids::COMPOSITE_INSTANCE_RETRIEVE_WITHOUT_BULK_DATA_GET,
    uids::DEFINED_PROCEDURE_PROTOCOL_INFORMATION_MODEL_FIND,
    uids::DEFINED_PROCEDURE_PROTOCOL_INFORMATION_MODEL_MOVE,
    uids::DEFINED_PROCEDURE_PROTOCOL_INFORMATION_MODEL_GET,
    uids::MODALITY_WORKLIST_INFORMATION_MODEL_FIND,
    uids::GENERAL_PURPOSE_WORKLIST_MANAGEMENT_META,
    uids::GENERAL_PURPOSE_WORKLIST_INFORMATION_MODEL_FIND,
    uids::GENERAL_PURPOSE_SCHEDULED_PROCEDURE_STEP,
    uids::GENERAL_PURPOSE_PERFORMED_PROCEDURE_STEP,
    uids::INSTANCE_AVAILABILITY_NOTIFICATION,
    uids::RT_BEAMS_DELIVERY_INSTRUCTION_STORAGE_TRIAL,
    uids::RT_BRACHY_APPLICATION_SETUP_DELIVERY_INSTRUCTION_STORAGE,
    uids::RT_CONVENTIONAL_MACHINE_VERIFICATION_TRIAL,
    uids::RT_ION_MACHINE_VERIFICATION_TRIAL,
    uids::UNIFIED_PROCEDURE_STEP_PUSH_TRIAL,
    uids::UNIFIED_PROCEDURE_STEP_WATCH_TRIAL,
    uids::UNIFIED_PROCEDURE_STEP_PULL_TRIAL,
    uids::UNIFIED_PROCEDURE_STEP_EVENT_TRIAL,
    uids::UNIFIED_PROCEDURE_STEP_PUSH,
    uids::UNIFIED_PROCEDURE_STEP_WATCH,
    uids::UNIFIED_PROCEDURE_STEP_PULL,
    uids::UNIFIED_PROCEDURE_STEP_EVENT,
    uids::UNIFIED_PROCEDURE_STEP_QUERY,
    uids::RT_BEAMS_DELIVERY_INSTRUCTION_STORAGE,
    uids::RT_CONVENTIONAL_MACHINE_VERIFICATION,
    uids::RT_ION_MACHINE_VERIFICATION,
    uids::GENERAL_RELEVANT_PATIENT_INFORMATION_QUERY,
    uids::BREAST_IMAGING_RELEVANT_PATIENT_INFORMATION_QUERY,
    uids::CARDIAC_RELEVANT_PATIENT_INFORMATION_QUERY,
    uids::HANGING_PROTOCOL_STORAGE,
    uids::HANGING_PROTOCOL_INFORMATION_MODEL_FIND,
    uids::HANGING_PROTOCOL_INFORMATION_MODEL_MOVE,
    uids::HANGING_PROTOCOL_INFORMATION_MODEL_GET,
    uids::COLOR_PALETTE_STORAGE,
    uids::COLOR_PALETTE_QUERY_RETRIEVE_INFORMATION_MODEL_FIND,
    uids::COLOR_PALETTE_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE,
    uids::COLOR_PALETTE_QUERY_RETRIEVE_INFORMATION_MODEL_GET,
    uids::PRODUCT_CHARACTERISTICS_QUERY,
    uids::SUBSTANCE_APPROVAL_QUERY,
    uids::GENERIC_IMPLANT_TEMPLATE_STORAGE,
    uids::GENERIC_IMPLANT_TEMPLATE_INFORMATION_MODEL_FIND,
    uids::GENERIC_IMPLANT_TEMPLATE_INFORMATION_MODEL_MOVE,
    uids::GENERIC_IMPLANT_TEMPLATE_INFORMATION_MODEL_GET,
    uids::IMPLANT_ASSEMBLY_TEMPLATE_STORAGE,
    uids::IMPLANT_ASSEMBLY_TEMPLATE_INFORMATION_MODEL_FIND,
    uids::IMPLANT_ASSEMBLY_TEMPLATE_INFORMATION_MODEL_MOVE,
    uids::IMPLANT_ASSEMBLY_TEMPLATE_INFORMATION_MODEL_GET,
    uids::IMPLANT_TEMPLATE_GROUP_STORAGE,
    uids::IMPLANT_TEMPLATE_GROUP_INFORMATION_MODEL_FIND,
    uids::IMPLANT_TEMPLATE_GROUP_INFORMATION_MODEL_MOVE,
    uids::IMPLANT_TEMPLATE_GROUP_INFORMATION_MODEL_GET,
];

const DICTIONARY_TRANSFER_SYNTAXES: &[&str] = &[
    uids::IMPLICIT_VR_LITTLE_ENDIAN,
    uids::EXPLICIT_VR_LITTLE_ENDIAN,
    uids::ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LITTLE_ENDIAN,
    uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    uids::EXPLICIT_VR_BIG_ENDIAN,
    uids::MPEG2MPML,
    uids::MPEG2MPMLF,
    uids::MPEG2MPHL,
    uids::MPEG2MPHLF,
    uids::MPEG4HP41,
    uids::MPEG4HP41F,
    uids::MPEG4HP41BD,
    uids::MPEG4HP41BDF,
    uids::MPEG4HP422D,
    uids::MPEG4HP422DF,
    uids::MPEG4HP423D,
    uids::MPEG4HP423DF,
    uids::MPEG4HP42STEREO,
    uids::MPEG4HP42STEREOF,
    uids::HEVCMP51,
    uids::HEVCM10P51,
    uids::JPEGXL_LOSSLESS,
    uids::JPEGXLJPEG_RECOMPRESSION,
    uids::JPEGXL,
    uids::HTJ2K_LOSSLESS,
    uids::HTJ2K_LOSSLESS_RPCL,
    uids::HTJ2K,
    uids::JPIPHTJ2K_REFERENCED,
    uids::JPIPHTJ2K_REFERENCED_DEFLATE,
    uids::JPEG_BASELINE8_BIT,
    uids::JPEG_EXTENDED12_BIT,
    uids::JPEG_EXTENDED35,
    uids::JPEG_SPECTRAL_SELECTION_NON_HIERARCHICAL68,
    uids::JPEG_SPECTRAL_SELECTION_NON_HIERARCHICAL79,
    uids::JPEG_FULL_PROGRESSION_NON_HIERARCHICAL1012,
    uids::JPEG_FULL_PROGRESSION_NON_HIERARCHICAL1113,
    uids::JPEG_LOSSLESS,
    uids::JPEG_LOSSLESS_NON_HIERARCHICAL15,
    uids::JPEG_EXTENDED_HIERARCHICAL1618,
    uids::JPEG_EXTENDED_HIERARCHICAL1719,
    uids::JPEG_SPECTRAL_SELECTION_HIERARCHICAL2022,
    uids::JPEG_SPECTRAL_SELECTION_HIERARCHICAL2123,
    uids::JPEG_FULL_PROGRESSION_HIERARCHICAL2426,
    uids::JPEG_FULL_PROGRESSION_HIERARCHICAL2527,
    uids::JPEG_LOSSLESS_HIERARCHICAL28,
    uids::JPEG_LOSSLESS_HIERARCHICAL29,
    uids::JPEG_LOSSLESS_SV1,
    uids::JPEGLS_LOSSLESS,
    uids::JPEGLS_NEAR_LOSSLESS,
    uids::JPEG2000_LOSSLESS,
    uids::JPEG2000,
    uids::JPEG2000MC_LOSSLESS,
    uids::JPEG2000MC,
    uids::JPIP_REFERENCED,
    uids::JPIP_REFERENCED_DEFLATE,
    uids::RLE_LOSSLESS,
    uids::RFC2557MIME_ENCAPSULATION,
    uids::XML_ENCODING,
    uids::SMPTEST211020_UNCOMPRESSED_PROGRESSIVE_ACTIVE_VIDEO,
    uids::SMPTEST211020_UNCOMPRESSED_INTERLACED_ACTIVE_VIDEO,
    uids::SMPTEST211030PCM_DIGITAL_AUDIO,
    uids::DEFLATED_IMAGE_FRAME_COMPRESSION,
    uids::PAPYRUS3_IMPLICIT_VR_LITTLE_ENDIAN,
];

/// The lines of the fenced block tagged `tag`, split into whitespace-separated fields
/// (the last field of a line runs to its end); blank lines and `#` comments skipped.
fn block(tag: &str) -> Vec<(String, Vec<String>)> {
    let fence = format!("```{tag}\n");
    let start = STATEMENT
        .find(&fence)
        .unwrap_or_else(|| panic!("the statement has no ```{tag} block"))
        + fence.len();
    assert!(
        !STATEMENT[start..].contains(&fence),
        "the statement has two ```{tag} blocks"
    );
    let end = start + STATEMENT[start..].find("```").expect("block is closed");
    STATEMENT[start..end]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut it = l.split_whitespace();
            let first = it.next().unwrap().to_string();
            (first, it.map(str::to_string).collect())
        })
        .collect()
}

/// A syntactically valid UID (PS3.5 §9.1).
fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid.split('.').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_digit())
                && (c == "0" || !c.starts_with('0'))
        })
}

/// The storage rule of the statement (` ```storage-sop-classes `): UIDs, `ROOT.*`
/// prefixes, and `private` (any valid UID outside `1.2.840.10008.`).
struct StorageRule(Vec<String>);

impl StorageRule {
    fn from_statement() -> Self {
        let lines = block("storage-sop-classes");
        for (uid, rest) in &lines {
            assert_eq!(rest.first().map(String::as_str), Some("SCP"), "{uid}: role");
        }
        Self(lines.into_iter().map(|(uid, _)| uid).collect())
    }

    fn matches(&self, uid: &str) -> bool {
        self.0.iter().any(|r| match r.strip_suffix('*') {
            Some(prefix) => uid.starts_with(prefix),
            None if r == "private" => !uid.starts_with(DICOM_ROOT) && valid_uid(uid),
            None => r == uid,
        })
    }
}

/// The non-storage SOP classes of the statement (` ```sop-classes `), all SCP.
fn listed_sop_classes() -> BTreeSet<String> {
    let lines = block("sop-classes");
    let mut set = BTreeSet::new();
    for (uid, rest) in lines {
        assert_eq!(rest.first().map(String::as_str), Some("SCP"), "{uid}: role");
        assert!(rest.len() > 1, "{uid}: a name follows the role");
        assert!(set.insert(uid.clone()), "{uid} listed twice");
    }
    set
}

/// Propose `abstract_syntax` in `transfer_syntax` alone; the accepted transfer
/// syntax, or `None` when the context is refused.
fn negotiated(abstract_syntax: &str, transfer_syntax: &str) -> Option<String> {
    let rq = AssociationRQ {
        protocol_version: 1,
        calling_ae_title: "CONFORMANCE".into(),
        called_ae_title: "GLIA".into(),
        application_context_name: "1.2.840.10008.3.1.1.1".into(),
        presentation_contexts: vec![PresentationContextProposed {
            id: 1,
            abstract_syntax: abstract_syntax.into(),
            transfer_syntaxes: vec![transfer_syntax.into()],
        }],
        user_variables: vec![UserVariableItem::MaxLength(16_384)],
    };
    let (ac, negotiated) = negotiate(&rq, &DimseConfig::default())
        .unwrap_or_else(|rj| panic!("association rejected: {rj:?}"));
    assert_eq!(ac.presentation_contexts.len(), 1);
    let result = &ac.presentation_contexts[0];
    assert_eq!(result.id, 1);
    match result.reason {
        PresentationContextResultReason::Acceptance => {
            assert_eq!(negotiated.contexts.len(), 1);
            Some(result.transfer_syntax.clone())
        }
        _ => {
            assert!(negotiated.contexts.is_empty());
            None
        }
    }
}

fn accepted(abstract_syntax: &str) -> bool {
    negotiated(abstract_syntax, uids::EXPLICIT_VR_LITTLE_ENDIAN).is_some()
}

#[test]
fn sop_classes_are_exactly_those_negotiated() {
    let listed = listed_sop_classes();
    let storage = StorageRule::from_statement();
    let dictionary: BTreeSet<&str> = DICTIONARY_SOP_CLASSES.iter().copied().collect();

    // The listed classes are standard SOP classes, not storage ones, and accepted.
    for uid in &listed {
        assert!(
            dictionary.contains(uid.as_str()),
            "{uid} is not a SOP class"
        );
        assert!(!storage.matches(uid), "{uid} is listed and also storage");
        assert!(accepted(uid), "{uid} is listed but refused");
    }
    // The storage rule names real classes.
    for r in &storage.0 {
        if !r.ends_with('*') && r != "private" {
            assert!(dictionary.contains(r.as_str()), "{r} is not a SOP class");
        }
    }

    // Every SOP class of the dictionary: accepted ⇔ listed or storage by the rule.
    let mut wrong = Vec::new();
    let mut accepted_non_storage = BTreeSet::new();
    for uid in &dictionary {
        let is_accepted = accepted(uid);
        let expected = listed.contains(*uid) || storage.matches(uid);
        if is_accepted != expected {
            wrong.push(format!(
                "{uid}: negotiated {is_accepted}, statement says {expected}"
            ));
        }
        if is_accepted && !storage.matches(uid) {
            accepted_non_storage.insert(uid.to_string());
        }
    }
    assert!(
        wrong.is_empty(),
        "statement ≠ negotiation:\n{}",
        wrong.join("\n")
    );
    assert_eq!(accepted_non_storage, listed);

    // Private classes: any valid UID outside the DICOM root; nothing else.
    for uid in [
        "1.3.46.670589.11.0.0.12.1",
        "1.2.276.0.7230010.3.1.0.1",
        "2.25.1234567890",
    ] {
        assert!(storage.matches(uid) && accepted(uid), "{uid}");
    }
    for uid in [
        "1.2.840.10008.5.1.4.1.2.9.9",
        "1.2.840.10008.999",
        "1.2.3.04",
        "1..2",
        "not.a.uid",
    ] {
        assert!(!storage.matches(uid) && !accepted(uid), "{uid}");
    }
}

#[test]
fn transfer_syntaxes_are_exactly_those_negotiated() {
    let listed: BTreeSet<String> = block("transfer-syntaxes")
        .into_iter()
        .map(|(uid, _)| uid)
        .collect();
    let mut candidates: BTreeSet<String> = TransferSyntaxRegistry
        .iter()
        .map(|ts| ts.uid().to_string())
        .collect();
    candidates.extend(DICTIONARY_TRANSFER_SYNTAXES.iter().map(|s| s.to_string()));
    candidates.insert("1.2.826.0.1.3680043.10.1.1".into()); // a private syntax
    for uid in &listed {
        assert!(
            candidates.contains(uid),
            "{uid} is not a known transfer syntax"
        );
    }
    let mut wrong = Vec::new();
    for uid in &candidates {
        let got = negotiated(MR_IMAGE_STORAGE, uid);
        if let Some(ts) = &got {
            assert_eq!(ts, uid, "the one proposed syntax is the one accepted");
        }
        if got.is_some() != listed.contains(uid) {
            wrong.push(format!(
                "{uid}: negotiated {}, listed {}",
                got.is_some(),
                listed.contains(uid)
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "statement ≠ negotiation:\n{}",
        wrong.join("\n")
    );
}

/// Every table row of the statement naming `item`, by its backquoted value.
fn quoted_values(item: &str) -> Vec<&'static str> {
    let prefix = format!("| {item} |");
    STATEMENT
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .map(|rest| {
            let v = rest.trim().trim_end_matches('|').trim();
            v.strip_prefix('`')
                .and_then(|v| v.strip_suffix('`'))
                .unwrap_or_else(|| panic!("{item}: value not in backquotes: {v}"))
        })
        .collect()
}

#[test]
fn implementation_identification_is_the_one_sent() {
    let class = quoted_values("Implementation Class UID");
    let version = quoted_values("Implementation Version Name");
    assert!(!class.is_empty() && !version.is_empty());
    assert!(
        class.iter().all(|v| *v == IMPLEMENTATION_CLASS_UID),
        "{class:?}"
    );
    assert!(
        version.iter().all(|v| *v == IMPLEMENTATION_VERSION_NAME),
        "{version:?}"
    );
}

/// The supported-keys table of the Q/R SCP (rows `| LEVEL | Keyword | (gggg,eeee) | VR
/// | matching |`) lists exactly the query catalogue, with return-only keys and unique
/// keys marked as such.
#[test]
fn query_keys_are_the_catalogue() {
    use glia::query::catalog::{unique_key, CATALOG};
    use glia::query::{Kind, Level};
    let mut rows = BTreeSet::new();
    for line in STATEMENT.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() != 7 || !["PATIENT", "STUDY", "SERIES", "IMAGE"].contains(&cells[1]) {
            continue;
        }
        let matching = cells[5];
        assert!(
            rows.insert((
                cells[1].to_string(),
                cells[2].to_string(),
                cells[3].to_string(),
                cells[4].to_string(),
                matching == "return",
                matching.contains("(unique key)"),
            )),
            "{line}"
        );
    }
    let catalogue: BTreeSet<_> = CATALOG
        .iter()
        .map(|a| {
            let level = match a.level {
                Level::Patient => "PATIENT",
                Level::Study => "STUDY",
                Level::Series => "SERIES",
                Level::Image => "IMAGE",
            };
            (
                level.to_string(),
                a.keyword.to_string(),
                format!("({:04X},{:04X})", a.tag.group(), a.tag.element()),
                String::from(a.vr.to_string()),
                a.kind == Kind::Count,
                unique_key(a.level).tag == a.tag,
            )
        })
        .collect();
    assert_eq!(rows, catalogue);
}
