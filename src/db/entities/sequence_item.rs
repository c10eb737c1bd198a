//! `sequence_item` rows: one attribute of one item of a matchable sequence, owned by a
//! study (`level` 2) or series (`level` 3) row.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sequence_item")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub level: i16,
    pub owner_fk: i64,
    pub sequence_tag: i64,
    pub item: i32,
    pub attr_tag: i64,
    pub value: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
