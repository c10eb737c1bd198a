//! Which studies a query may see: the authorisation filter the one query model
//! applies at every level, so QIDO-RS results (and every retrieve, which resolves
//! through the query model) are filtered in SQL, not after the fact.

/// The studies visible to a caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StudyScope {
    /// No restriction (admins, DIMSE peers, Glia itself).
    #[default]
    All,
    /// Only studies matching at least one rule of the filter (an empty filter sees
    /// nothing).
    Only(StudyFilter),
}

/// A study is visible when any listed rule matches it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StudyFilter {
    /// Studies belonging to one of these centres (`study.centre_id`).
    pub centre_ids: Vec<i64>,
    /// Studies whose ReferringPhysicianName matches this name (case-insensitive,
    /// as person-name matching is).
    pub referring_physician: Option<String>,
    /// Studies of these patients (PatientID, IssuerOfPatientID; empty issuer = any).
    pub patient_ids: Vec<(String, String)>,
    /// Studies named explicitly.
    pub study_uids: Vec<String>,
    /// Studies granted or assigned to this user (rows of `study_grant`).
    pub grants_of_user: Option<i64>,
}
