//! `series` rows: one per Series Instance UID.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "series")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub study_fk: i64,
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
    pub num_instances: i64,
    pub created_at: DateTimeUtc,
    pub last_received_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
