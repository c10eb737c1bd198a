//! `study` rows: one per Study Instance UID.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "study")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub patient_fk: i64,
    pub study_instance_uid: String,
    pub study_date: Option<String>,
    pub study_time: Option<String>,
    pub accession_number: Option<String>,
    pub study_id: Option<String>,
    pub referring_physician_name: Option<String>,
    pub referring_physician_name_norm: Option<String>,
    /// Folded words for fuzzy matching (`record::fuzzy_person_name`).
    pub referring_physician_name_fuzzy: Option<String>,
    pub study_description: Option<String>,
    pub institution_name: Option<String>,
    /// Distinct modalities of the study's series, sorted, backslash-separated.
    pub modalities_in_study: String,
    /// Distinct SOP class UIDs of the study's instances, backslash-separated.
    pub sop_classes_in_study: String,
    pub num_series: i64,
    pub num_instances: i64,
    pub specific_character_set: Option<String>,
    pub created_at: DateTimeUtc,
    pub last_received_at: DateTimeUtc,
    /// The diagnostic centre the study belongs to (of the AE or user that sent its
    /// first instance); `None` when unknown.
    pub centre_id: Option<i64>,
    /// The `last_received_at` for which the study was last handed to the AI pipeline.
    pub ai_checked_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
