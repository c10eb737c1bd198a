//! The study index: patient / study / series / instance.
//!
//! Holds what C-FIND and QIDO-RS match and return at every level (PS3.4 C.6 unique,
//! required and common optional keys), per-level counts, the blob key of each instance
//! and received-at timestamps. Indexed on what queries filter by, for 1M+ instances.

// Column names mirror DICOM keywords (PatientName in table patient, ...).
#![allow(clippy::enum_variant_names)]

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000001_index"
    }
}

#[derive(DeriveIden)]
enum Patient {
    Table,
    Id,
    PatientId,
    IssuerOfPatientId,
    PatientName,
    PatientNameNorm,
    PatientBirthDate,
    PatientSex,
    NumStudies,
    NumSeries,
    NumInstances,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Study {
    Table,
    Id,
    PatientFk,
    StudyInstanceUid,
    StudyDate,
    StudyTime,
    AccessionNumber,
    StudyId,
    ReferringPhysicianName,
    ReferringPhysicianNameNorm,
    StudyDescription,
    InstitutionName,
    ModalitiesInStudy,
    SopClassesInStudy,
    NumSeries,
    NumInstances,
    SpecificCharacterSet,
    CreatedAt,
    LastReceivedAt,
}

#[derive(DeriveIden)]
enum Series {
    Table,
    Id,
    StudyFk,
    SeriesInstanceUid,
    Modality,
    SeriesNumber,
    SeriesDescription,
    BodyPartExamined,
    ProtocolName,
    SeriesDate,
    SeriesTime,
    PerformedProcedureStepStartDate,
    FrameOfReferenceUid,
    Laterality,
    Manufacturer,
    StationName,
    NumInstances,
    CreatedAt,
    LastReceivedAt,
}

#[derive(DeriveIden)]
enum Instance {
    Table,
    Id,
    SeriesFk,
    SopInstanceUid,
    SopClassUid,
    InstanceNumber,
    ContentDate,
    ContentTime,
    Rows,
    Columns,
    NumberOfFrames,
    BitsAllocated,
    PhotometricInterpretation,
    TransferSyntaxUid,
    SizeBytes,
    BlobKey,
    SourceAe,
    ReceivedAt,
}

fn text(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string().null().to_owned()
}

fn count(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .big_integer()
        .not_null()
        .default(0)
        .to_owned()
}

fn ts(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn pk(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .to_owned()
}

fn idx(
    table: impl IntoIden + 'static,
    name: &str,
    cols: &[&str],
    unique: bool,
) -> IndexCreateStatement {
    let mut stmt = Index::create();
    stmt.name(name).table(table);
    for c in cols {
        stmt.col(Alias::new(*c));
    }
    if unique {
        stmt.unique();
    }
    stmt.to_owned()
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Patient::Table)
                .col(pk(Patient::Id))
                .col(ColumnDef::new(Patient::PatientId).string().not_null())
                .col(
                    ColumnDef::new(Patient::IssuerOfPatientId)
                        .string()
                        .not_null()
                        .default(""),
                )
                .col(text(Patient::PatientName))
                .col(text(Patient::PatientNameNorm))
                .col(text(Patient::PatientBirthDate))
                .col(text(Patient::PatientSex))
                .col(count(Patient::NumStudies))
                .col(count(Patient::NumSeries))
                .col(count(Patient::NumInstances))
                .col(ts(Patient::CreatedAt))
                .col(ts(Patient::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(idx(
            Patient::Table,
            "ux_patient_id_issuer",
            &["patient_id", "issuer_of_patient_id"],
            true,
        ))
        .await?;
        m.create_index(idx(
            Patient::Table,
            "ix_patient_name_norm",
            &["patient_name_norm"],
            false,
        ))
        .await?;
        m.create_index(idx(
            Patient::Table,
            "ix_patient_birth_date",
            &["patient_birth_date"],
            false,
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(Study::Table)
                .col(pk(Study::Id))
                .col(ColumnDef::new(Study::PatientFk).big_integer().not_null())
                .col(
                    ColumnDef::new(Study::StudyInstanceUid)
                        .string_len(64)
                        .not_null(),
                )
                .col(text(Study::StudyDate))
                .col(text(Study::StudyTime))
                .col(text(Study::AccessionNumber))
                .col(text(Study::StudyId))
                .col(text(Study::ReferringPhysicianName))
                .col(text(Study::ReferringPhysicianNameNorm))
                .col(text(Study::StudyDescription))
                .col(text(Study::InstitutionName))
                .col(
                    ColumnDef::new(Study::ModalitiesInStudy)
                        .string()
                        .not_null()
                        .default(""),
                )
                .col(
                    ColumnDef::new(Study::SopClassesInStudy)
                        .text()
                        .not_null()
                        .default(""),
                )
                .col(count(Study::NumSeries))
                .col(count(Study::NumInstances))
                .col(text(Study::SpecificCharacterSet))
                .col(ts(Study::CreatedAt))
                .col(ts(Study::LastReceivedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Study::Table, Study::PatientFk)
                        .to(Patient::Table, Patient::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(idx(
            Study::Table,
            "ux_study_uid",
            &["study_instance_uid"],
            true,
        ))
        .await?;
        m.create_index(idx(
            Study::Table,
            "ix_study_patient",
            &["patient_fk"],
            false,
        ))
        .await?;
        m.create_index(idx(
            Study::Table,
            "ix_study_date_time",
            &["study_date", "study_time"],
            false,
        ))
        .await?;
        m.create_index(idx(
            Study::Table,
            "ix_study_accession",
            &["accession_number"],
            false,
        ))
        .await?;
        m.create_index(idx(
            Study::Table,
            "ix_study_referring_norm",
            &["referring_physician_name_norm"],
            false,
        ))
        .await?;
        m.create_index(idx(
            Study::Table,
            "ix_study_last_received",
            &["last_received_at"],
            false,
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(Series::Table)
                .col(pk(Series::Id))
                .col(ColumnDef::new(Series::StudyFk).big_integer().not_null())
                .col(
                    ColumnDef::new(Series::SeriesInstanceUid)
                        .string_len(64)
                        .not_null(),
                )
                .col(text(Series::Modality))
                .col(ColumnDef::new(Series::SeriesNumber).integer().null())
                .col(text(Series::SeriesDescription))
                .col(text(Series::BodyPartExamined))
                .col(text(Series::ProtocolName))
                .col(text(Series::SeriesDate))
                .col(text(Series::SeriesTime))
                .col(text(Series::PerformedProcedureStepStartDate))
                .col(text(Series::FrameOfReferenceUid))
                .col(text(Series::Laterality))
                .col(text(Series::Manufacturer))
                .col(text(Series::StationName))
                .col(count(Series::NumInstances))
                .col(ts(Series::CreatedAt))
                .col(ts(Series::LastReceivedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Series::Table, Series::StudyFk)
                        .to(Study::Table, Study::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(idx(
            Series::Table,
            "ux_series_uid",
            &["series_instance_uid"],
            true,
        ))
        .await?;
        m.create_index(idx(Series::Table, "ix_series_study", &["study_fk"], false))
            .await?;
        m.create_index(idx(
            Series::Table,
            "ix_series_modality",
            &["modality"],
            false,
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(Instance::Table)
                .col(pk(Instance::Id))
                .col(ColumnDef::new(Instance::SeriesFk).big_integer().not_null())
                .col(
                    ColumnDef::new(Instance::SopInstanceUid)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Instance::SopClassUid)
                        .string_len(64)
                        .not_null(),
                )
                .col(ColumnDef::new(Instance::InstanceNumber).integer().null())
                .col(text(Instance::ContentDate))
                .col(text(Instance::ContentTime))
                .col(ColumnDef::new(Instance::Rows).integer().null())
                .col(ColumnDef::new(Instance::Columns).integer().null())
                .col(ColumnDef::new(Instance::NumberOfFrames).integer().null())
                .col(ColumnDef::new(Instance::BitsAllocated).integer().null())
                .col(text(Instance::PhotometricInterpretation))
                .col(
                    ColumnDef::new(Instance::TransferSyntaxUid)
                        .string_len(64)
                        .not_null(),
                )
                .col(ColumnDef::new(Instance::SizeBytes).big_integer().not_null())
                .col(ColumnDef::new(Instance::BlobKey).string().not_null())
                .col(text(Instance::SourceAe))
                .col(ts(Instance::ReceivedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Instance::Table, Instance::SeriesFk)
                        .to(Series::Table, Series::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(idx(
            Instance::Table,
            "ux_instance_uid",
            &["sop_instance_uid"],
            true,
        ))
        .await?;
        m.create_index(idx(
            Instance::Table,
            "ix_instance_series",
            &["series_fk", "instance_number"],
            false,
        ))
        .await?;
        m.create_index(idx(
            Instance::Table,
            "ix_instance_sop_class",
            &["sop_class_uid"],
            false,
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            Instance::Table.into_iden(),
            Series::Table.into_iden(),
            Study::Table.into_iden(),
            Patient::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}
