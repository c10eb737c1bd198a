//! `instance` rows: one per stored SOP instance, with its blob key.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "instance")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub series_fk: i64,
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
    pub blob_key: String,
    pub source_ae: Option<String>,
    pub received_at: DateTimeUtc,
    /// WADO-RS metadata (DICOM JSON, BulkDataURIs with the base marker).
    pub metadata: Option<String>,
    /// Byte layout of large values in the blob (`ingest::layout::Layout` as JSON).
    pub layout: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
