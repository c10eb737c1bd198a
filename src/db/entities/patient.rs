//! `patient` rows: one per (PatientID, IssuerOfPatientID).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "patient")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub patient_id: String,
    pub issuer_of_patient_id: String,
    pub patient_name: Option<String>,
    pub patient_name_norm: Option<String>,
    /// Folded words for fuzzy matching (`record::fuzzy_person_name`).
    pub patient_name_fuzzy: Option<String>,
    pub patient_birth_date: Option<String>,
    pub patient_sex: Option<String>,
    pub num_studies: i64,
    pub num_series: i64,
    pub num_instances: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
