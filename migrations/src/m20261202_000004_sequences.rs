//! Sequence attributes for sequence matching (PS3.4 C.2.2.2.6): one row per attribute
//! of each item of the sequences the query model supports (ProcedureCodeSequence at
//! study level, RequestAttributesSequence at series level, ...). `level` names the
//! owning table (2 = study, 3 = series) and `owner_fk` its row.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000004_sequences"
    }
}

#[derive(DeriveIden)]
enum SequenceItem {
    Table,
    Id,
    Level,
    OwnerFk,
    SequenceTag,
    Item,
    AttrTag,
    Value,
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(SequenceItem::Table)
                .col(
                    ColumnDef::new(SequenceItem::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(SequenceItem::Level)
                        .small_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(SequenceItem::OwnerFk)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(SequenceItem::SequenceTag)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(SequenceItem::Item).integer().not_null())
                .col(
                    ColumnDef::new(SequenceItem::AttrTag)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(SequenceItem::Value).string().not_null())
                .to_owned(),
        )
        .await?;
        // Results: the items of given owners. Matching: a value of an item attribute.
        m.create_index(
            Index::create()
                .name("ix_sequence_item_owner")
                .table(SequenceItem::Table)
                .col(SequenceItem::Level)
                .col(SequenceItem::OwnerFk)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_sequence_item_value")
                .table(SequenceItem::Table)
                .col(SequenceItem::SequenceTag)
                .col(SequenceItem::AttrTag)
                .col(SequenceItem::Value)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(SequenceItem::Table).to_owned())
            .await
    }
}
