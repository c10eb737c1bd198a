//! SOP classes Glia serves and the service each belongs to.

/// Verification SOP Class.
pub const VERIFICATION: &str = "1.2.840.10008.1.1";

/// Patient Root Query/Retrieve Information Model - FIND / MOVE / GET.
pub const PATIENT_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.1.1";
pub const PATIENT_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.1.2";
pub const PATIENT_ROOT_GET: &str = "1.2.840.10008.5.1.4.1.2.1.3";
/// Study Root Query/Retrieve Information Model - FIND / MOVE / GET.
pub const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
pub const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";
pub const STUDY_ROOT_GET: &str = "1.2.840.10008.5.1.4.1.2.2.3";

/// The information model of a Query/Retrieve SOP class.
pub fn information_model(uid: &str) -> Option<crate::query::dimse::InformationModel> {
    use crate::query::dimse::InformationModel::*;
    match uid {
        PATIENT_ROOT_FIND | PATIENT_ROOT_MOVE | PATIENT_ROOT_GET => Some(PatientRoot),
        STUDY_ROOT_FIND | STUDY_ROOT_MOVE | STUDY_ROOT_GET => Some(StudyRoot),
        _ => None,
    }
}

/// A short name of a Query/Retrieve information model (logs, audit details).
pub fn model_name(uid: &str) -> &'static str {
    match uid {
        PATIENT_ROOT_FIND | PATIENT_ROOT_MOVE | PATIENT_ROOT_GET => "patient-root",
        STUDY_ROOT_FIND | STUDY_ROOT_MOVE | STUDY_ROOT_GET => "study-root",
        _ => "other",
    }
}

/// Storage Commitment Push Model SOP Class and its well-known SOP instance.
pub const STORAGE_COMMITMENT_PUSH: &str = "1.2.840.10008.1.20.1";
pub const STORAGE_COMMITMENT_INSTANCE: &str = "1.2.840.10008.1.20.1.1";

/// Storage SOP classes of PS3.4 Annex B live under this root...
const STORAGE_ROOT: &str = "1.2.840.10008.5.1.4.1.1.";
/// ...except these few standard storage classes registered elsewhere.
const OTHER_STANDARD_STORAGE: &[&str] = &[
    "1.2.840.10008.5.1.4.38.1",  // Hanging Protocol Storage
    "1.2.840.10008.5.1.4.39.1",  // Color Palette Storage
    "1.2.840.10008.5.1.4.43.1",  // Generic Implant Template Storage
    "1.2.840.10008.5.1.4.44.1",  // Implant Assembly Template Storage
    "1.2.840.10008.5.1.4.45.1",  // Implant Template Group Storage
    "1.2.840.10008.5.1.4.34.7",  // RT Beams Delivery Instruction Storage
    "1.2.840.10008.5.1.4.34.10", // RT Brachy Application Setup Delivery Instruction
];
/// The root of every UID the standard defines.
const DICOM_ROOT: &str = "1.2.840.10008.";

/// Is this a storage SOP class? Any standard Annex B class, and any private
/// (non-`1.2.840.10008`) SOP class, which by convention is a storage class.
pub fn is_storage(uid: &str) -> bool {
    uid.starts_with(STORAGE_ROOT)
        || OTHER_STANDARD_STORAGE.contains(&uid)
        || (!uid.starts_with(DICOM_ROOT) && crate::ingest::uid::check_uid(uid).is_ok())
}

/// The service (as named in `[[dimse.peers]] services`) an abstract syntax belongs to.
pub fn service_of(abstract_syntax: &str) -> Option<&'static str> {
    if abstract_syntax == VERIFICATION {
        Some("echo")
    } else if abstract_syntax == PATIENT_ROOT_FIND || abstract_syntax == STUDY_ROOT_FIND {
        Some("find")
    } else if abstract_syntax == PATIENT_ROOT_MOVE || abstract_syntax == STUDY_ROOT_MOVE {
        Some("move")
    } else if abstract_syntax == PATIENT_ROOT_GET || abstract_syntax == STUDY_ROOT_GET {
        Some("get")
    } else if abstract_syntax == STORAGE_COMMITMENT_PUSH {
        Some("commit")
    } else if is_storage(abstract_syntax) {
        Some("store")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_classes() {
        assert!(is_storage("1.2.840.10008.5.1.4.1.1.4")); // MR
        assert!(is_storage("1.2.840.10008.5.1.4.1.1.66.4")); // SEG
        assert!(is_storage("1.3.46.670589.11.0.0.12.1")); // a private class
        assert!(!is_storage("1.2.840.10008.5.1.4.1.2.2.1")); // Q/R FIND
        assert!(!is_storage("1.2.840.10008.3.1.1.1")); // application context
        assert_eq!(service_of(VERIFICATION), Some("echo"));
    }
}
