//! The identity repository: users (`app_user` with their linked PatientIDs),
//! diagnostic centres, explicit study grants and the refresh-token revocation list.
//! Returns plain domain records, never sea-orm models. Lockout counters and
//! revocations live here, in the database, so they hold across every node. Study
//! grants and refresh tokens are in [`grants`].

mod grants;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, SqlErr, TransactionTrait,
};

use super::entities::{app_user, centre, user_patient};
use super::DbError;
use crate::auth::Role;

/// A PatientID (with its issuer, empty = none) linked to a patient user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientLink {
    pub patient_id: String,
    pub issuer: String,
}

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub role: Role,
    pub centre_id: Option<i64>,
    pub active: bool,
    pub password_hash: String,
    /// Base32 TOTP secret, once enrolled.
    pub totp_secret: Option<String>,
    pub totp_enabled: bool,
    pub failed_logins: i32,
    pub locked_until: Option<DateTime<Utc>>,
    /// DICOM PN as it appears in ReferringPhysicianName.
    pub physician_name: Option<String>,
    pub patient_ids: Vec<PatientLink>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A user to create (the password already hashed).
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub role: Role,
    pub centre_id: Option<i64>,
    pub password_hash: String,
    pub physician_name: Option<String>,
    pub patient_ids: Vec<PatientLink>,
}

/// Changes to a user; `None` = unchanged (`Some(None)` clears an optional field).
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    pub email: Option<Option<String>>,
    pub full_name: Option<Option<String>>,
    pub role: Option<Role>,
    pub centre_id: Option<Option<i64>>,
    pub active: Option<bool>,
    pub physician_name: Option<Option<String>>,
    /// Replaces every linked PatientID.
    pub patient_ids: Option<Vec<PatientLink>>,
}

/// Filters of a user listing; `None` = any.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    pub role: Option<Role>,
    pub centre_id: Option<i64>,
    pub active: Option<bool>,
    /// Leave admins out (a centre manager's view).
    pub exclude_admins: bool,
    pub skip: u64,
    pub limit: u64,
}

/// A diagnostic centre as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Centre {
    pub id: i64,
    pub name: String,
    pub address: Option<String>,
    pub contact_email: Option<String>,
    pub contact_phone: Option<String>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A centre to create.
#[derive(Debug, Clone, Default)]
pub struct NewCentre {
    pub name: String,
    pub address: Option<String>,
    pub contact_email: Option<String>,
    pub contact_phone: Option<String>,
}

/// Changes to a centre; `None` = unchanged.
#[derive(Debug, Clone, Default)]
pub struct CentreUpdate {
    pub name: Option<String>,
    pub address: Option<Option<String>>,
    pub contact_email: Option<Option<String>>,
    pub contact_phone: Option<Option<String>>,
    pub active: Option<bool>,
}

/// A stored refresh token (by hash).
#[derive(Debug, Clone)]
pub struct RefreshRecord {
    pub user_id: i64,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Is this error a unique-constraint violation (duplicate username, centre name ...)?
pub fn is_unique_violation(e: &DbError) -> bool {
    match e {
        DbError::Db(err) => matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))),
        DbError::Config(_) => false,
    }
}

/// Is this error a foreign-key violation (unknown centre id ...)?
pub fn is_foreign_key_violation(e: &DbError) -> bool {
    match e {
        DbError::Db(err) => matches!(
            err.sql_err(),
            Some(SqlErr::ForeignKeyConstraintViolation(_))
        ),
        DbError::Config(_) => false,
    }
}

fn centre_from(m: centre::Model) -> Centre {
    Centre {
        id: m.id,
        name: m.name,
        address: m.address,
        contact_email: m.contact_email,
        contact_phone: m.contact_phone,
        active: m.active,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

fn user_from(m: app_user::Model, patient_ids: Vec<PatientLink>) -> Result<User, DbError> {
    let role = Role::parse(&m.role)
        .ok_or_else(|| DbError::Config(format!("user {} has an unknown role", m.id)))?;
    Ok(User {
        id: m.id,
        username: m.username,
        email: m.email,
        full_name: m.full_name,
        role,
        centre_id: m.centre_id,
        active: m.active,
        password_hash: m.password_hash,
        totp_secret: m.totp_secret,
        totp_enabled: m.totp_enabled,
        failed_logins: m.failed_logins,
        locked_until: m.locked_until,
        physician_name: m.physician_name,
        patient_ids,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

/// The identity repository; cheap to clone.
#[derive(Clone)]
pub struct IdentityRepo {
    db: DatabaseConnection,
}

impl IdentityRepo {
    /// A repository over the index connection.
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    // ---- centres ----

    /// Create a centre.
    pub async fn create_centre(&self, c: NewCentre) -> Result<Centre, DbError> {
        let now = Utc::now();
        let m = centre::ActiveModel {
            name: Set(c.name),
            address: Set(c.address),
            contact_email: Set(c.contact_email),
            contact_phone: Set(c.contact_phone),
            active: Set(true),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(&self.db)
        .await?;
        Ok(centre_from(m))
    }

    /// One centre.
    pub async fn centre(&self, id: i64) -> Result<Option<Centre>, DbError> {
        Ok(centre::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .map(centre_from))
    }

    /// Centres by name, optionally only active (or inactive) ones.
    pub async fn list_centres(
        &self,
        active: Option<bool>,
        skip: u64,
        limit: u64,
    ) -> Result<Vec<Centre>, DbError> {
        let mut q = centre::Entity::find();
        if let Some(a) = active {
            q = q.filter(centre::Column::Active.eq(a));
        }
        Ok(q.order_by_asc(centre::Column::Id)
            .offset(skip)
            .limit(limit.max(1))
            .all(&self.db)
            .await?
            .into_iter()
            .map(centre_from)
            .collect())
    }

    /// Apply `u` to a centre; `None` when it does not exist.
    pub async fn update_centre(&self, id: i64, u: CentreUpdate) -> Result<Option<Centre>, DbError> {
        let Some(m) = centre::Entity::find_by_id(id).one(&self.db).await? else {
            return Ok(None);
        };
        let mut a = m.into_active_model();
        if let Some(v) = u.name {
            a.name = Set(v);
        }
        if let Some(v) = u.address {
            a.address = Set(v);
        }
        if let Some(v) = u.contact_email {
            a.contact_email = Set(v);
        }
        if let Some(v) = u.contact_phone {
            a.contact_phone = Set(v);
        }
        if let Some(v) = u.active {
            a.active = Set(v);
        }
        a.updated_at = Set(Utc::now());
        Ok(Some(centre_from(a.update(&self.db).await?)))
    }

    // ---- users ----

    /// Users with their PatientID links, read in one query for all of them.
    async fn with_links_all(&self, users: Vec<app_user::Model>) -> Result<Vec<User>, DbError> {
        let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
        let mut links: HashMap<i64, Vec<PatientLink>> = HashMap::new();
        if !ids.is_empty() {
            for l in user_patient::Entity::find()
                .filter(user_patient::Column::UserId.is_in(ids))
                .order_by_asc(user_patient::Column::Id)
                .all(&self.db)
                .await?
            {
                links.entry(l.user_id).or_default().push(PatientLink {
                    patient_id: l.patient_id,
                    issuer: l.issuer,
                });
            }
        }
        users
            .into_iter()
            .map(|m| {
                let l = links.remove(&m.id).unwrap_or_default();
                user_from(m, l)
            })
            .collect()
    }

    async fn with_links(&self, m: app_user::Model) -> Result<User, DbError> {
        Ok(self
            .with_links_all(vec![m])
            .await?
            .pop()
            .expect("one user in, one out"))
    }

    /// Create a user with its PatientID links, in one transaction.
    pub async fn create_user(&self, u: NewUser) -> Result<User, DbError> {
        let now = Utc::now();
        let txn = self.db.begin().await?;
        let m = app_user::ActiveModel {
            username: Set(u.username),
            email: Set(u.email),
            full_name: Set(u.full_name),
            role: Set(u.role.as_str().to_string()),
            centre_id: Set(u.centre_id),
            active: Set(true),
            password_hash: Set(u.password_hash),
            totp_secret: Set(None),
            totp_enabled: Set(false),
            failed_logins: Set(0),
            locked_until: Set(None),
            physician_name: Set(u.physician_name),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        insert_links(&txn, m.id, &u.patient_ids).await?;
        txn.commit().await?;
        user_from(m, u.patient_ids)
    }

    /// One user by id.
    pub async fn user(&self, id: i64) -> Result<Option<User>, DbError> {
        match app_user::Entity::find_by_id(id).one(&self.db).await? {
            Some(m) => Ok(Some(self.with_links(m).await?)),
            None => Ok(None),
        }
    }

    /// One user, for authenticating a request: its PatientID links are read only when
    /// it is a patient (the one role whose study scope uses them), so that a verified
    /// token of any other role costs one indexed lookup.
    pub async fn user_for_principal(&self, id: i64) -> Result<Option<User>, DbError> {
        match app_user::Entity::find_by_id(id).one(&self.db).await? {
            Some(m) if m.role == crate::auth::Role::Patient.as_str() => {
                Ok(Some(self.with_links(m).await?))
            }
            Some(m) => Ok(Some(user_from(m, Vec::new())?)),
            None => Ok(None),
        }
    }

    /// One user by username (exact).
    pub async fn user_by_username(&self, username: &str) -> Result<Option<User>, DbError> {
        match app_user::Entity::find()
            .filter(app_user::Column::Username.eq(username))
            .one(&self.db)
            .await?
        {
            Some(m) => Ok(Some(self.with_links(m).await?)),
            None => Ok(None),
        }
    }

    /// Users matching `f`, by id.
    pub async fn list_users(&self, f: &UserFilter) -> Result<Vec<User>, DbError> {
        let mut q = app_user::Entity::find();
        if let Some(r) = f.role {
            q = q.filter(app_user::Column::Role.eq(r.as_str()));
        }
        if let Some(c) = f.centre_id {
            q = q.filter(app_user::Column::CentreId.eq(c));
        }
        if let Some(a) = f.active {
            q = q.filter(app_user::Column::Active.eq(a));
        }
        if f.exclude_admins {
            q = q.filter(app_user::Column::Role.ne(Role::Admin.as_str()));
        }
        let rows = q
            .order_by_asc(app_user::Column::Id)
            .offset(f.skip)
            .limit(f.limit.max(1))
            .all(&self.db)
            .await?;
        self.with_links_all(rows).await
    }

    /// Apply `u` to a user; `None` when it does not exist.
    pub async fn update_user(&self, id: i64, u: UserUpdate) -> Result<Option<User>, DbError> {
        let txn = self.db.begin().await?;
        let Some(m) = app_user::Entity::find_by_id(id).one(&txn).await? else {
            return Ok(None);
        };
        let mut a = m.into_active_model();
        if let Some(v) = u.email {
            a.email = Set(v);
        }
        if let Some(v) = u.full_name {
            a.full_name = Set(v);
        }
        if let Some(v) = u.role {
            a.role = Set(v.as_str().to_string());
        }
        if let Some(v) = u.centre_id {
            a.centre_id = Set(v);
        }
        if let Some(v) = u.active {
            a.active = Set(v);
        }
        if let Some(v) = u.physician_name {
            a.physician_name = Set(v);
        }
        a.updated_at = Set(Utc::now());
        a.update(&txn).await?;
        if let Some(links) = &u.patient_ids {
            user_patient::Entity::delete_many()
                .filter(user_patient::Column::UserId.eq(id))
                .exec(&txn)
                .await?;
            insert_links(&txn, id, links).await?;
        }
        txn.commit().await?;
        self.user(id).await
    }

    /// Store a new password hash.
    pub async fn set_password_hash(&self, id: i64, hash: &str) -> Result<(), DbError> {
        app_user::Entity::update_many()
            .col_expr(app_user::Column::PasswordHash, Expr::value(hash))
            .col_expr(app_user::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(app_user::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Store a TOTP secret (`None` clears it) and whether two-factor is enforced.
    pub async fn set_totp(
        &self,
        id: i64,
        secret: Option<&str>,
        enabled: bool,
    ) -> Result<(), DbError> {
        app_user::Entity::update_many()
            .col_expr(
                app_user::Column::TotpSecret,
                Expr::value(secret.map(str::to_string)),
            )
            .col_expr(app_user::Column::TotpEnabled, Expr::value(enabled))
            .col_expr(app_user::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(app_user::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Count one wrong password (atomically, so concurrent nodes add up). When the
    /// count reaches `max_failed`, lock the account until `lock_until` and restart the
    /// count. Returns whether this failure locked the account.
    pub async fn record_failed_login(
        &self,
        id: i64,
        max_failed: u32,
        lock_until: DateTime<Utc>,
    ) -> Result<bool, DbError> {
        app_user::Entity::update_many()
            .col_expr(
                app_user::Column::FailedLogins,
                Expr::col(app_user::Column::FailedLogins).add(1),
            )
            .filter(app_user::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        if max_failed == 0 {
            return Ok(false);
        }
        // Only the failure that crosses the threshold locks (and resets the count).
        let locked = app_user::Entity::update_many()
            .col_expr(app_user::Column::LockedUntil, Expr::value(Some(lock_until)))
            .col_expr(app_user::Column::FailedLogins, Expr::value(0))
            .filter(app_user::Column::Id.eq(id))
            .filter(app_user::Column::FailedLogins.gte(max_failed as i32))
            .exec(&self.db)
            .await?;
        Ok(locked.rows_affected > 0)
    }

    /// Forget failed logins and any lock (after a successful login).
    pub async fn clear_failed_logins(&self, id: i64) -> Result<(), DbError> {
        app_user::Entity::update_many()
            .col_expr(app_user::Column::FailedLogins, Expr::value(0))
            .col_expr(
                app_user::Column::LockedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(app_user::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

async fn insert_links<C: sea_orm::ConnectionTrait>(
    db: &C,
    user_id: i64,
    links: &[PatientLink],
) -> Result<(), DbError> {
    if links.is_empty() {
        return Ok(());
    }
    let rows = links.iter().map(|l| user_patient::ActiveModel {
        user_id: Set(user_id),
        patient_id: Set(l.patient_id.clone()),
        issuer: Set(l.issuer.clone()),
        ..Default::default()
    });
    user_patient::Entity::insert_many(rows)
        .exec_without_returning(db)
        .await?;
    Ok(())
}
