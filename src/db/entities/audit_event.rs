//! `audit_event` rows: the append-only audit trail (see `audit`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_event")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub at: DateTimeUtc,
    pub actor_kind: String,
    pub actor: Option<String>,
    pub user_id: Option<i64>,
    pub role: Option<String>,
    pub centre_id: Option<i64>,
    pub remote_ip: Option<String>,
    pub surface: String,
    pub action: String,
    pub outcome: String,
    pub status: Option<i32>,
    pub patient_id: Option<String>,
    pub study_uid: Option<String>,
    pub series_uid: Option<String>,
    pub sop_uid: Option<String>,
    pub detail: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
