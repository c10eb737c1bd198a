//! The AI pipeline's state: `study.ai_checked_at` (the `last_received_at` for which
//! a study was last handed to the pipeline, so stable-study detection fires once
//! per burst of instances, on every node sharing the database) and `ai_result`
//! (one row per completed segmentation: SEG reference, measurements, preliminary
//! report, superseded rows kept).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000008_ai"
    }
}

#[derive(DeriveIden)]
enum Study {
    Table,
    AiCheckedAt,
}

#[derive(DeriveIden)]
enum AiResult {
    Table,
    Id,
    StudyUid,
    JobId,
    State,
    SegSeriesUid,
    SegSopUid,
    ReferenceSeriesUid,
    InputSeries,
    ModelName,
    ModelVersion,
    Measurements,
    ReportFindings,
    ReportText,
    ReportStatus,
    VerifiedBy,
    VerifiedAt,
    Timings,
    CreatedAt,
    SupersededAt,
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Study::Table)
                .add_column(
                    ColumnDef::new(Study::AiCheckedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .to_owned(),
        )
        .await?;
        let text = |c: AiResult| ColumnDef::new(c).text().not_null().to_owned();
        m.create_table(
            Table::create()
                .table(AiResult::Table)
                .col(
                    ColumnDef::new(AiResult::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(ColumnDef::new(AiResult::StudyUid).string().not_null())
                .col(ColumnDef::new(AiResult::JobId).big_integer().null())
                .col(ColumnDef::new(AiResult::State).string().not_null())
                .col(ColumnDef::new(AiResult::SegSeriesUid).string().not_null())
                .col(ColumnDef::new(AiResult::SegSopUid).string().not_null())
                .col(
                    ColumnDef::new(AiResult::ReferenceSeriesUid)
                        .string()
                        .not_null(),
                )
                .col(text(AiResult::InputSeries))
                .col(ColumnDef::new(AiResult::ModelName).string().not_null())
                .col(ColumnDef::new(AiResult::ModelVersion).string().not_null())
                .col(text(AiResult::Measurements))
                .col(text(AiResult::ReportFindings))
                .col(text(AiResult::ReportText))
                .col(ColumnDef::new(AiResult::ReportStatus).string().not_null())
                .col(ColumnDef::new(AiResult::VerifiedBy).string().null())
                .col(
                    ColumnDef::new(AiResult::VerifiedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(text(AiResult::Timings))
                .col(
                    ColumnDef::new(AiResult::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(AiResult::SupersededAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_ai_result_study")
                .table(AiResult::Table)
                .col(AiResult::StudyUid)
                .to_owned(),
        )
        .await?;
        // One result per job: a retried job (its worker died after storing) finds
        // its own row instead of writing a second one.
        m.create_index(
            Index::create()
                .name("ux_ai_result_job")
                .table(AiResult::Table)
                .col(AiResult::JobId)
                .unique()
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(AiResult::Table).to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table(Study::Table)
                .drop_column(Study::AiCheckedAt)
                .to_owned(),
        )
        .await
    }
}
