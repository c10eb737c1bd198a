//! The attribute catalogue: every key the index can match and return, with its
//! level, VR, index column and kind. The one place that maps DICOM keys to columns.

use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;

use super::Level;

/// How a key is stored and matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Free text (LO, SH, CS, AE, ...): exact or wildcard, case-sensitive.
    Text,
    /// Person name: matched on an upper-cased column (case-insensitive by default).
    /// `fuzzy_column` holds the folded words (QIDO-RS `fuzzymatching`).
    PersonName {
        norm_column: &'static str,
        fuzzy_column: &'static str,
    },
    /// DA: `YYYYMMDD`, single value or range.
    Date,
    /// TM: `HHMMSS.FFFFFF`, single value (as a range of its precision) or range.
    Time,
    /// UI: single value or list.
    Uid,
    /// IS stored as an integer column.
    Int,
    /// A computed count (return only).
    Count,
    /// A backslash-separated list column (ModalitiesInStudy, SOPClassesInStudy):
    /// matches when any requested value is in the list.
    List,
}

/// One queryable attribute.
#[derive(Debug)]
pub struct Attr {
    pub tag: Tag,
    pub keyword: &'static str,
    pub vr: VR,
    pub level: Level,
    /// `alias.column` in the joined query (p = patient, st = study, se = series, i = instance).
    pub column: &'static str,
    pub kind: Kind,
}

macro_rules! attr {
    ($tag:expr, $kw:literal, $vr:ident, $level:ident, $col:literal, $kind:expr) => {
        Attr {
            tag: $tag,
            keyword: $kw,
            vr: VR::$vr,
            level: Level::$level,
            column: $col,
            kind: $kind,
        }
    };
}

/// Every attribute Glia can match and return.
pub static CATALOG: &[Attr] = &[
    // Patient
    attr!(
        tags::PATIENT_NAME,
        "PatientName",
        PN,
        Patient,
        "p.patient_name",
        Kind::PersonName {
            norm_column: "p.patient_name_norm",
            fuzzy_column: "p.patient_name_fuzzy"
        }
    ),
    attr!(
        tags::PATIENT_ID,
        "PatientID",
        LO,
        Patient,
        "p.patient_id",
        Kind::Text
    ),
    attr!(
        tags::ISSUER_OF_PATIENT_ID,
        "IssuerOfPatientID",
        LO,
        Patient,
        "p.issuer_of_patient_id",
        Kind::Text
    ),
    attr!(
        tags::PATIENT_BIRTH_DATE,
        "PatientBirthDate",
        DA,
        Patient,
        "p.patient_birth_date",
        Kind::Date
    ),
    attr!(
        tags::PATIENT_SEX,
        "PatientSex",
        CS,
        Patient,
        "p.patient_sex",
        Kind::Text
    ),
    attr!(
        tags::NUMBER_OF_PATIENT_RELATED_STUDIES,
        "NumberOfPatientRelatedStudies",
        IS,
        Patient,
        "p.num_studies",
        Kind::Count
    ),
    attr!(
        tags::NUMBER_OF_PATIENT_RELATED_SERIES,
        "NumberOfPatientRelatedSeries",
        IS,
        Patient,
        "p.num_series",
        Kind::Count
    ),
    attr!(
        tags::NUMBER_OF_PATIENT_RELATED_INSTANCES,
        "NumberOfPatientRelatedInstances",
        IS,
        Patient,
        "p.num_instances",
        Kind::Count
    ),
    // Study
    attr!(
        tags::STUDY_INSTANCE_UID,
        "StudyInstanceUID",
        UI,
        Study,
        "st.study_instance_uid",
        Kind::Uid
    ),
    attr!(
        tags::STUDY_DATE,
        "StudyDate",
        DA,
        Study,
        "st.study_date",
        Kind::Date
    ),
    attr!(
        tags::STUDY_TIME,
        "StudyTime",
        TM,
        Study,
        "st.study_time",
        Kind::Time
    ),
    attr!(
        tags::ACCESSION_NUMBER,
        "AccessionNumber",
        SH,
        Study,
        "st.accession_number",
        Kind::Text
    ),
    attr!(
        tags::STUDY_ID,
        "StudyID",
        SH,
        Study,
        "st.study_id",
        Kind::Text
    ),
    attr!(
        tags::REFERRING_PHYSICIAN_NAME,
        "ReferringPhysicianName",
        PN,
        Study,
        "st.referring_physician_name",
        Kind::PersonName {
            norm_column: "st.referring_physician_name_norm",
            fuzzy_column: "st.referring_physician_name_fuzzy"
        }
    ),
    attr!(
        tags::STUDY_DESCRIPTION,
        "StudyDescription",
        LO,
        Study,
        "st.study_description",
        Kind::Text
    ),
    attr!(
        tags::INSTITUTION_NAME,
        "InstitutionName",
        LO,
        Study,
        "st.institution_name",
        Kind::Text
    ),
    attr!(
        tags::MODALITIES_IN_STUDY,
        "ModalitiesInStudy",
        CS,
        Study,
        "st.modalities_in_study",
        Kind::List
    ),
    attr!(
        tags::SOP_CLASSES_IN_STUDY,
        "SOPClassesInStudy",
        UI,
        Study,
        "st.sop_classes_in_study",
        Kind::List
    ),
    attr!(
        tags::NUMBER_OF_STUDY_RELATED_SERIES,
        "NumberOfStudyRelatedSeries",
        IS,
        Study,
        "st.num_series",
        Kind::Count
    ),
    attr!(
        tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
        "NumberOfStudyRelatedInstances",
        IS,
        Study,
        "st.num_instances",
        Kind::Count
    ),
    // Series
    attr!(
        tags::SERIES_INSTANCE_UID,
        "SeriesInstanceUID",
        UI,
        Series,
        "se.series_instance_uid",
        Kind::Uid
    ),
    attr!(
        tags::MODALITY,
        "Modality",
        CS,
        Series,
        "se.modality",
        Kind::Text
    ),
    attr!(
        tags::SERIES_NUMBER,
        "SeriesNumber",
        IS,
        Series,
        "se.series_number",
        Kind::Int
    ),
    attr!(
        tags::SERIES_DESCRIPTION,
        "SeriesDescription",
        LO,
        Series,
        "se.series_description",
        Kind::Text
    ),
    attr!(
        tags::BODY_PART_EXAMINED,
        "BodyPartExamined",
        CS,
        Series,
        "se.body_part_examined",
        Kind::Text
    ),
    attr!(
        tags::PROTOCOL_NAME,
        "ProtocolName",
        LO,
        Series,
        "se.protocol_name",
        Kind::Text
    ),
    attr!(
        tags::SERIES_DATE,
        "SeriesDate",
        DA,
        Series,
        "se.series_date",
        Kind::Date
    ),
    attr!(
        tags::SERIES_TIME,
        "SeriesTime",
        TM,
        Series,
        "se.series_time",
        Kind::Time
    ),
    attr!(
        tags::PERFORMED_PROCEDURE_STEP_START_DATE,
        "PerformedProcedureStepStartDate",
        DA,
        Series,
        "se.performed_procedure_step_start_date",
        Kind::Date
    ),
    attr!(
        tags::FRAME_OF_REFERENCE_UID,
        "FrameOfReferenceUID",
        UI,
        Series,
        "se.frame_of_reference_uid",
        Kind::Uid
    ),
    attr!(
        tags::LATERALITY,
        "Laterality",
        CS,
        Series,
        "se.laterality",
        Kind::Text
    ),
    attr!(
        tags::MANUFACTURER,
        "Manufacturer",
        LO,
        Series,
        "se.manufacturer",
        Kind::Text
    ),
    attr!(
        tags::STATION_NAME,
        "StationName",
        SH,
        Series,
        "se.station_name",
        Kind::Text
    ),
    attr!(
        tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
        "NumberOfSeriesRelatedInstances",
        IS,
        Series,
        "se.num_instances",
        Kind::Count
    ),
    // Instance
    attr!(
        tags::SOP_INSTANCE_UID,
        "SOPInstanceUID",
        UI,
        Image,
        "i.sop_instance_uid",
        Kind::Uid
    ),
    attr!(
        tags::SOP_CLASS_UID,
        "SOPClassUID",
        UI,
        Image,
        "i.sop_class_uid",
        Kind::Uid
    ),
    attr!(
        tags::INSTANCE_NUMBER,
        "InstanceNumber",
        IS,
        Image,
        "i.instance_number",
        Kind::Int
    ),
    attr!(
        tags::CONTENT_DATE,
        "ContentDate",
        DA,
        Image,
        "i.content_date",
        Kind::Date
    ),
    attr!(
        tags::CONTENT_TIME,
        "ContentTime",
        TM,
        Image,
        "i.content_time",
        Kind::Time
    ),
    attr!(tags::ROWS, "Rows", US, Image, "i.rows", Kind::Int),
    attr!(tags::COLUMNS, "Columns", US, Image, "i.columns", Kind::Int),
    attr!(
        tags::NUMBER_OF_FRAMES,
        "NumberOfFrames",
        IS,
        Image,
        "i.number_of_frames",
        Kind::Int
    ),
    attr!(
        tags::BITS_ALLOCATED,
        "BitsAllocated",
        US,
        Image,
        "i.bits_allocated",
        Kind::Int
    ),
    attr!(
        tags::PHOTOMETRIC_INTERPRETATION,
        "PhotometricInterpretation",
        CS,
        Image,
        "i.photometric_interpretation",
        Kind::Text
    ),
    attr!(
        tags::AVAILABLE_TRANSFER_SYNTAX_UID,
        "AvailableTransferSyntaxUID",
        UI,
        Image,
        "i.transfer_syntax_uid",
        Kind::Uid
    ),
];

/// Look an attribute up by tag.
pub fn by_tag(tag: Tag) -> Option<&'static Attr> {
    CATALOG.iter().find(|a| a.tag == tag)
}

/// Look an attribute up by keyword (QIDO-RS parameters).
pub fn by_keyword(kw: &str) -> Option<&'static Attr> {
    CATALOG.iter().find(|a| a.keyword == kw)
}

/// The unique key of a level.
pub fn unique_key(level: Level) -> &'static Attr {
    let tag = match level {
        Level::Patient => tags::PATIENT_ID,
        Level::Study => tags::STUDY_INSTANCE_UID,
        Level::Series => tags::SERIES_INSTANCE_UID,
        Level::Image => tags::SOP_INSTANCE_UID,
    };
    by_tag(tag).expect("unique keys are in the catalogue")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_consistent() {
        for (i, a) in CATALOG.iter().enumerate() {
            assert!(
                CATALOG[..i].iter().all(|b| b.tag != a.tag),
                "{} twice",
                a.keyword
            );
            let alias = a.column.split('.').next().unwrap();
            assert_eq!(
                alias,
                a.level.alias(),
                "{} lives at its level's table",
                a.keyword
            );
            let (name, _) = dicom_dictionary_std::StandardDataDictionary
                .by_tag(a.tag)
                .map(|e| (e.alias, e.vr))
                .unwrap();
            assert_eq!(name, a.keyword);
        }
    }

    use dicom_core::dictionary::DataDictionary;
}
