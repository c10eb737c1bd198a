//! Study grants (explicit assignments of studies to users) and refresh tokens (stored
//! as digests, with their revocation) of the identity repository.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
};

use super::{IdentityRepo, RefreshRecord};
use crate::db::entities::{refresh_token, study_grant};
use crate::db::DbError;

impl IdentityRepo {
    // ---- study grants ----

    /// Grant (assign) a study to a user; granting twice is a no-op.
    pub async fn grant_study(&self, user_id: i64, study_uid: &str) -> Result<(), DbError> {
        let exists = study_grant::Entity::find()
            .filter(study_grant::Column::UserId.eq(user_id))
            .filter(study_grant::Column::StudyInstanceUid.eq(study_uid))
            .one(&self.db)
            .await?
            .is_some();
        if !exists {
            study_grant::ActiveModel {
                user_id: Set(user_id),
                study_instance_uid: Set(study_uid.to_string()),
                granted_at: Set(Utc::now()),
                ..Default::default()
            }
            .insert(&self.db)
            .await?;
        }
        Ok(())
    }

    /// Withdraw a grant; returns whether one existed.
    pub async fn revoke_study(&self, user_id: i64, study_uid: &str) -> Result<bool, DbError> {
        let r = study_grant::Entity::delete_many()
            .filter(study_grant::Column::UserId.eq(user_id))
            .filter(study_grant::Column::StudyInstanceUid.eq(study_uid))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected > 0)
    }

    /// The StudyInstanceUIDs explicitly granted to a user.
    pub async fn granted_studies(&self, user_id: i64) -> Result<Vec<String>, DbError> {
        Ok(study_grant::Entity::find()
            .filter(study_grant::Column::UserId.eq(user_id))
            .order_by_asc(study_grant::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|g| g.study_instance_uid)
            .collect())
    }

    // ---- refresh tokens ----

    /// Remember an issued refresh token by its hash.
    pub async fn insert_refresh(
        &self,
        user_id: i64,
        token_hash: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), DbError> {
        refresh_token::ActiveModel {
            user_id: Set(user_id),
            token_hash: Set(token_hash.to_string()),
            expires_at: Set(expires_at),
            revoked_at: Set(None),
            created_at: Set(Utc::now()),
            ..Default::default()
        }
        .insert(&self.db)
        .await?;
        Ok(())
    }

    /// A stored refresh token by hash.
    pub async fn refresh(&self, token_hash: &str) -> Result<Option<RefreshRecord>, DbError> {
        Ok(refresh_token::Entity::find()
            .filter(refresh_token::Column::TokenHash.eq(token_hash))
            .one(&self.db)
            .await?
            .map(|r| RefreshRecord {
                user_id: r.user_id,
                expires_at: r.expires_at,
                revoked_at: r.revoked_at,
            }))
    }

    /// Revoke a refresh token if it is still live; returns its user when this call
    /// revoked it (so two concurrent refreshes cannot both succeed).
    pub async fn revoke_refresh(&self, token_hash: &str) -> Result<Option<i64>, DbError> {
        let now = Utc::now();
        let Some(rec) = self.refresh(token_hash).await? else {
            return Ok(None);
        };
        let r = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::RevokedAt, Expr::value(Some(now)))
            .filter(refresh_token::Column::TokenHash.eq(token_hash))
            .filter(refresh_token::Column::RevokedAt.is_null())
            .filter(refresh_token::Column::ExpiresAt.gt(now))
            .exec(&self.db)
            .await?;
        Ok((r.rows_affected == 1).then_some(rec.user_id))
    }

    /// Revoke every live refresh token of a user (deactivation, password change).
    pub async fn revoke_all_refresh(&self, user_id: i64) -> Result<u64, DbError> {
        let r = refresh_token::Entity::update_many()
            .col_expr(
                refresh_token::Column::RevokedAt,
                Expr::value(Some(Utc::now())),
            )
            .filter(refresh_token::Column::UserId.eq(user_id))
            .filter(refresh_token::Column::RevokedAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected)
    }
}
