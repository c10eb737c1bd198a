//! Identity: diagnostic centres (`centre`), users (`app_user`, with password hash,
//! two-factor secret and lockout state), the PatientIDs linked to patient users
//! (`user_patient`), explicit study grants (`study_grant`) and the refresh-token
//! revocation list (`refresh_token`, hashed tokens only) shared by every node.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000009_identity"
    }
}

#[derive(DeriveIden)]
enum Centre {
    Table,
    Id,
    Name,
    Address,
    ContactEmail,
    ContactPhone,
    Active,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AppUser {
    Table,
    Id,
    Username,
    Email,
    FullName,
    Role,
    CentreId,
    Active,
    PasswordHash,
    TotpSecret,
    TotpEnabled,
    FailedLogins,
    LockedUntil,
    PhysicianName,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum UserPatient {
    Table,
    Id,
    UserId,
    PatientId,
    Issuer,
}

#[derive(DeriveIden)]
enum StudyGrant {
    Table,
    Id,
    UserId,
    StudyInstanceUid,
    GrantedAt,
}

#[derive(DeriveIden)]
enum RefreshToken {
    Table,
    Id,
    UserId,
    TokenHash,
    ExpiresAt,
    RevokedAt,
    CreatedAt,
}

fn id_col<T: IntoIden>(col: T) -> ColumnDef {
    ColumnDef::new(col)
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .to_owned()
}

fn ts_col<T: IntoIden>(col: T, null: bool) -> ColumnDef {
    let mut c = ColumnDef::new(col);
    c.timestamp_with_time_zone();
    if null {
        c.null();
    } else {
        c.not_null();
    }
    c.to_owned()
}

fn user_fk<T: IntoIden + 'static>(table: T, col: T) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, col)
        .to(AppUser::Table, AppUser::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Centre::Table)
                .col(id_col(Centre::Id))
                .col(
                    ColumnDef::new(Centre::Name)
                        .string()
                        .not_null()
                        .unique_key(),
                )
                .col(ColumnDef::new(Centre::Address).string().null())
                .col(ColumnDef::new(Centre::ContactEmail).string().null())
                .col(ColumnDef::new(Centre::ContactPhone).string().null())
                .col(
                    ColumnDef::new(Centre::Active)
                        .boolean()
                        .not_null()
                        .default(true),
                )
                .col(ts_col(Centre::CreatedAt, false))
                .col(ts_col(Centre::UpdatedAt, false))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(AppUser::Table)
                .col(id_col(AppUser::Id))
                .col(
                    ColumnDef::new(AppUser::Username)
                        .string()
                        .not_null()
                        .unique_key(),
                )
                .col(ColumnDef::new(AppUser::Email).string().null())
                .col(ColumnDef::new(AppUser::FullName).string().null())
                .col(ColumnDef::new(AppUser::Role).string().not_null())
                .col(ColumnDef::new(AppUser::CentreId).big_integer().null())
                .col(
                    ColumnDef::new(AppUser::Active)
                        .boolean()
                        .not_null()
                        .default(true),
                )
                .col(ColumnDef::new(AppUser::PasswordHash).string().not_null())
                .col(ColumnDef::new(AppUser::TotpSecret).string().null())
                .col(
                    ColumnDef::new(AppUser::TotpEnabled)
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .col(
                    ColumnDef::new(AppUser::FailedLogins)
                        .integer()
                        .not_null()
                        .default(0),
                )
                .col(ts_col(AppUser::LockedUntil, true))
                .col(ColumnDef::new(AppUser::PhysicianName).string().null())
                .col(ts_col(AppUser::CreatedAt, false))
                .col(ts_col(AppUser::UpdatedAt, false))
                .foreign_key(
                    ForeignKey::create()
                        .from(AppUser::Table, AppUser::CentreId)
                        .to(Centre::Table, Centre::Id)
                        .on_delete(ForeignKeyAction::SetNull),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_app_user_centre")
                .table(AppUser::Table)
                .col(AppUser::CentreId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(UserPatient::Table)
                .col(id_col(UserPatient::Id))
                .col(ColumnDef::new(UserPatient::UserId).big_integer().not_null())
                .col(ColumnDef::new(UserPatient::PatientId).string().not_null())
                .col(
                    ColumnDef::new(UserPatient::Issuer)
                        .string()
                        .not_null()
                        .default(""),
                )
                .foreign_key(&mut user_fk(UserPatient::Table, UserPatient::UserId))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_user_patient")
                .table(UserPatient::Table)
                .col(UserPatient::UserId)
                .col(UserPatient::PatientId)
                .col(UserPatient::Issuer)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(StudyGrant::Table)
                .col(id_col(StudyGrant::Id))
                .col(ColumnDef::new(StudyGrant::UserId).big_integer().not_null())
                .col(
                    ColumnDef::new(StudyGrant::StudyInstanceUid)
                        .string()
                        .not_null(),
                )
                .col(ts_col(StudyGrant::GrantedAt, false))
                .foreign_key(&mut user_fk(StudyGrant::Table, StudyGrant::UserId))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_study_grant")
                .table(StudyGrant::Table)
                .col(StudyGrant::UserId)
                .col(StudyGrant::StudyInstanceUid)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(RefreshToken::Table)
                .col(id_col(RefreshToken::Id))
                .col(
                    ColumnDef::new(RefreshToken::UserId)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(RefreshToken::TokenHash)
                        .string()
                        .not_null()
                        .unique_key(),
                )
                .col(ts_col(RefreshToken::ExpiresAt, false))
                .col(ts_col(RefreshToken::RevokedAt, true))
                .col(ts_col(RefreshToken::CreatedAt, false))
                .foreign_key(&mut user_fk(RefreshToken::Table, RefreshToken::UserId))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_refresh_token_user")
                .table(RefreshToken::Table)
                .col(RefreshToken::UserId)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            RefreshToken::Table.into_iden(),
            StudyGrant::Table.into_iden(),
            UserPatient::Table.into_iden(),
            AppUser::Table.into_iden(),
            Centre::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}
