//! `job` rows: the durable job queue (see `db::jobs`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "job")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub kind: String,
    pub key: String,
    pub payload: String,
    pub state: String,
    pub reason: Option<String>,
    pub progress: f64,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_after: DateTimeUtc,
    pub claimed_by: Option<String>,
    pub heartbeat_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
