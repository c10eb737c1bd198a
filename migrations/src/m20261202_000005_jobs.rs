//! The durable job queue (`job`): background work (AI runs on stable studies, ...)
//! that survives restarts and is shared by every node on one database. A partial
//! unique index keeps at most one active (queued or running) job per (kind, key).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000005_jobs"
    }
}

#[derive(DeriveIden)]
enum Job {
    Table,
    Id,
    Kind,
    Key,
    Payload,
    State,
    Reason,
    Progress,
    Attempts,
    MaxAttempts,
    RunAfter,
    ClaimedBy,
    HeartbeatAt,
    CreatedAt,
    StartedAt,
    FinishedAt,
}

fn ts(col: Job) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Job::Table)
                .col(
                    ColumnDef::new(Job::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(ColumnDef::new(Job::Kind).string().not_null())
                .col(ColumnDef::new(Job::Key).string().not_null())
                .col(ColumnDef::new(Job::Payload).text().not_null())
                .col(ColumnDef::new(Job::State).string().not_null())
                .col(ColumnDef::new(Job::Reason).text().null())
                .col(
                    ColumnDef::new(Job::Progress)
                        .double()
                        .not_null()
                        .default(0.0),
                )
                .col(
                    ColumnDef::new(Job::Attempts)
                        .integer()
                        .not_null()
                        .default(0),
                )
                .col(ColumnDef::new(Job::MaxAttempts).integer().not_null())
                .col(
                    ColumnDef::new(Job::RunAfter)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(ColumnDef::new(Job::ClaimedBy).string().null())
                .col(ts(Job::HeartbeatAt))
                .col(
                    ColumnDef::new(Job::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(ts(Job::StartedAt))
                .col(ts(Job::FinishedAt))
                .to_owned(),
        )
        .await?;
        // Claiming: the oldest due queued job of a kind.
        m.create_index(
            Index::create()
                .name("ix_job_claim")
                .table(Job::Table)
                .col(Job::State)
                .col(Job::Kind)
                .col(Job::RunAfter)
                .to_owned(),
        )
        .await?;
        // At most one active job per (kind, key); same SQL on SQLite and PostgreSQL.
        m.get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX ux_job_active ON job (kind, key) \
                 WHERE state IN ('queued', 'running')",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Job::Table).to_owned())
            .await
    }
}
