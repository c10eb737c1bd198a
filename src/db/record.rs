//! `InstanceRecord`: the attributes of one instance that the index keeps, at every
//! level, as extracted by the ingest path from the object's header.

/// What the index stores about one instance (and its patient, study and series).
/// Strings are already decoded (per SpecificCharacterSet) and trimmed; empty = absent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceRecord {
    // patient
    pub patient_id: String,
    pub issuer_of_patient_id: String,
    pub patient_name: Option<String>,
    pub patient_birth_date: Option<String>,
    pub patient_sex: Option<String>,
    // study
    pub study_instance_uid: String,
    pub study_date: Option<String>,
    pub study_time: Option<String>,
    pub accession_number: Option<String>,
    pub study_id: Option<String>,
    pub referring_physician_name: Option<String>,
    pub study_description: Option<String>,
    pub institution_name: Option<String>,
    pub specific_character_set: Option<String>,
    // series
    pub series_instance_uid: String,
    pub modality: Option<String>,
    pub series_number: Option<i32>,
    pub series_description: Option<String>,
    pub body_part_examined: Option<String>,
    pub protocol_name: Option<String>,
    pub series_date: Option<String>,
    pub series_time: Option<String>,
    pub performed_procedure_step_start_date: Option<String>,
    pub frame_of_reference_uid: Option<String>,
    pub laterality: Option<String>,
    pub manufacturer: Option<String>,
    pub station_name: Option<String>,
    // instance
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub instance_number: Option<i32>,
    pub content_date: Option<String>,
    pub content_time: Option<String>,
    pub rows: Option<i32>,
    pub columns: Option<i32>,
    pub number_of_frames: Option<i32>,
    pub bits_allocated: Option<i32>,
    pub photometric_interpretation: Option<String>,
    pub transfer_syntax_uid: String,
    pub size_bytes: i64,
    pub source_ae: Option<String>,
    /// Centre of the sender (AE or user); stamped on the study when it is created.
    pub centre_id: Option<i64>,
    // DICOMweb, precomputed at ingest
    /// WADO-RS metadata of the instance (DICOM JSON; see `dicom_json`).
    pub metadata: Option<String>,
    /// Byte layout of the instance's large values (`ingest::layout::Layout` as JSON).
    pub layout: Option<String>,
    /// Attributes of the items of matchable sequences (`query::sequence`).
    pub sequence_items: Vec<SequenceValue>,
}

/// One attribute of one item of a matchable sequence (a `sequence_item` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceValue {
    /// Owning level: 2 = study, 3 = series.
    pub level: i16,
    /// `(group << 16) | element` of the sequence.
    pub sequence_tag: i64,
    /// Item number, from 0.
    pub item: i32,
    /// `(group << 16) | element` of the item attribute.
    pub attr_tag: i64,
    pub value: String,
}

/// Normalised form of a person name for case-insensitive matching: each character
/// upper-cased on its own, kept as is when its upper case is several characters
/// (`ß` stays `ß`), so lengths and `?` wildcards line up between value and pattern.
pub fn normalize_person_name(name: &str) -> String {
    name.trim()
        .chars()
        .map(|c| {
            let mut up = c.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        })
        .collect()
}

/// Fold one word for fuzzy matching: compatibility-decomposed, combining marks
/// dropped, upper-cased (`Müller` → `MULLER`, `ß` → `SS`).
pub fn fold_word(word: &str) -> String {
    use unicode_normalization::char::is_combining_mark;
    use unicode_normalization::UnicodeNormalization;
    word.nfkd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_uppercase)
        .collect()
}

/// The words of a person name, folded, for fuzzy (prefix-of-word, accent- and
/// case-insensitive) matching, each preceded by a space so that a word prefix is a
/// plain substring search: `Müller^Hans-Jürgen` → ` MULLER HANS JURGEN`.
pub fn fuzzy_person_name(name: &str) -> String {
    let mut out = String::new();
    for w in name
        .split(['^', '=', ' ', '-', ',', '.'])
        .filter(|w| !w.is_empty())
    {
        out.push(' ');
        out.push_str(&fold_word(w));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{fuzzy_person_name, normalize_person_name};

    #[test]
    fn fuzzy_names_fold_accents_and_split_words() {
        assert_eq!(
            fuzzy_person_name("Müller^Hans-Jürgen"),
            " MULLER HANS JURGEN"
        );
        assert_eq!(fuzzy_person_name("Weiß^Zoë=ワイス"), " WEISS ZOE ワイス");
    }

    #[test]
    fn names_normalise_char_by_char() {
        assert_eq!(normalize_person_name("Müller^Jürgen "), "MÜLLER^JÜRGEN");
        assert_eq!(normalize_person_name("Weiß^Bernd"), "WEIß^BERND");
        assert_eq!(normalize_person_name("Wei?^*").chars().count(), 6);
    }
}
