//! DICOMweb: each instance's WADO-RS metadata (DICOM JSON with BulkDataURIs) and the
//! byte layout of its large values (frames, bulk data) inside its blob, both computed
//! once at ingest, so that metadata and frame requests never open a DICOM object.
//! Nullable: instances indexed before this migration are served by parsing the blob.
//! Also the folded person-name columns behind QIDO-RS `fuzzymatching` (accent- and
//! case-insensitive prefix-of-word matching).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000003_dicomweb"
    }
}

#[derive(DeriveIden)]
enum Patient {
    Table,
    PatientNameFuzzy,
}

#[derive(DeriveIden)]
enum Study {
    Table,
    ReferringPhysicianNameFuzzy,
}

#[derive(DeriveIden)]
enum Instance {
    Table,
    Metadata,
    Layout,
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per ALTER: SQLite adds a single column per statement.
        for col in [Instance::Metadata, Instance::Layout] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Instance::Table)
                        .add_column(ColumnDef::new(col).text().null())
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Patient::Table)
                    .add_column(ColumnDef::new(Patient::PatientNameFuzzy).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Study::Table)
                    .add_column(
                        ColumnDef::new(Study::ReferringPhysicianNameFuzzy)
                            .text()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for col in [Instance::Layout, Instance::Metadata] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Instance::Table)
                        .drop_column(col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Patient::Table)
                    .drop_column(Patient::PatientNameFuzzy)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Study::Table)
                    .drop_column(Study::ReferringPhysicianNameFuzzy)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
