//! `ai_result` rows: completed segmentations of a study (see `db::ai`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "ai_result")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub study_uid: String,
    pub job_id: Option<i64>,
    /// `current` or `superseded`.
    pub state: String,
    pub seg_series_uid: String,
    pub seg_sop_uid: String,
    pub reference_series_uid: String,
    /// JSON: the four input series' UIDs by channel.
    pub input_series: String,
    pub model_name: String,
    pub model_version: String,
    /// JSON `ai::seg::Measurements`.
    pub measurements: String,
    /// JSON: structured findings of the preliminary report.
    pub report_findings: String,
    pub report_text: String,
    /// `preliminary` (AI-generated, unverified) or `verified`.
    pub report_status: String,
    pub verified_by: Option<String>,
    pub verified_at: Option<DateTimeUtc>,
    /// JSON: seconds per stage.
    pub timings: String,
    pub created_at: DateTimeUtc,
    pub superseded_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
