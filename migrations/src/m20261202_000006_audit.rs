//! Access control and audit: the append-only `audit_event` table (one row per access
//! to patient data, on every surface, allowed or denied) and `study.centre_id`, the
//! diagnostic centre a study belongs to (the centre of the AE title or user that sent
//! its first instance; NULL when unknown).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000006_audit"
    }
}

#[derive(DeriveIden)]
enum AuditEvent {
    Table,
    Id,
    At,
    ActorKind,
    Actor,
    UserId,
    Role,
    CentreId,
    RemoteIp,
    Surface,
    Action,
    Outcome,
    Status,
    PatientId,
    StudyUid,
    SeriesUid,
    SopUid,
    Detail,
}

#[derive(DeriveIden)]
enum Study {
    Table,
    CentreId,
}

fn opt_string(col: AuditEvent) -> ColumnDef {
    ColumnDef::new(col).string().null().to_owned()
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(AuditEvent::Table)
                .col(
                    ColumnDef::new(AuditEvent::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(AuditEvent::At)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(ColumnDef::new(AuditEvent::ActorKind).string().not_null())
                .col(opt_string(AuditEvent::Actor))
                .col(ColumnDef::new(AuditEvent::UserId).big_integer().null())
                .col(opt_string(AuditEvent::Role))
                .col(ColumnDef::new(AuditEvent::CentreId).big_integer().null())
                .col(opt_string(AuditEvent::RemoteIp))
                .col(ColumnDef::new(AuditEvent::Surface).string().not_null())
                .col(ColumnDef::new(AuditEvent::Action).string().not_null())
                .col(ColumnDef::new(AuditEvent::Outcome).string().not_null())
                .col(ColumnDef::new(AuditEvent::Status).integer().null())
                .col(opt_string(AuditEvent::PatientId))
                .col(opt_string(AuditEvent::StudyUid))
                .col(opt_string(AuditEvent::SeriesUid))
                .col(opt_string(AuditEvent::SopUid))
                .col(ColumnDef::new(AuditEvent::Detail).text().null())
                .to_owned(),
        )
        .await?;
        for (name, col) in [
            ("ix_audit_at", AuditEvent::At),
            ("ix_audit_actor", AuditEvent::Actor),
            ("ix_audit_study", AuditEvent::StudyUid),
        ] {
            m.create_index(
                Index::create()
                    .name(name)
                    .table(AuditEvent::Table)
                    .col(col)
                    .to_owned(),
            )
            .await?;
        }
        // Append-only: updates and deletes are refused by the database itself.
        let conn = m.get_connection();
        match conn.get_database_backend() {
            DbBackend::Postgres => {
                conn.execute_unprepared(
                    "CREATE FUNCTION audit_event_append_only() RETURNS trigger AS $$ \
                     BEGIN RAISE EXCEPTION 'audit_event is append-only'; END; \
                     $$ LANGUAGE plpgsql",
                )
                .await?;
                conn.execute_unprepared(
                    "CREATE TRIGGER audit_event_no_change BEFORE UPDATE OR DELETE ON audit_event \
                     FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()",
                )
                .await?;
            }
            _ => {
                for op in ["UPDATE", "DELETE"] {
                    conn.execute_unprepared(&format!(
                        "CREATE TRIGGER audit_event_no_{} BEFORE {op} ON audit_event \
                         BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END",
                        op.to_lowercase()
                    ))
                    .await?;
                }
            }
        }

        m.alter_table(
            Table::alter()
                .table(Study::Table)
                .add_column(ColumnDef::new(Study::CentreId).big_integer().null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_study_centre")
                .table(Study::Table)
                .col(Study::CentreId)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name("ix_study_centre").to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table(Study::Table)
                .drop_column(Study::CentreId)
                .to_owned(),
        )
        .await?;
        if m.get_connection().get_database_backend() == DbBackend::Postgres {
            m.get_connection()
                .execute_unprepared("DROP FUNCTION IF EXISTS audit_event_append_only CASCADE")
                .await?;
        }
        m.drop_table(Table::drop().table(AuditEvent::Table).to_owned())
            .await
    }
}
