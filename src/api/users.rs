//! `/api/users/...`: user administration — list (filters role, centre, active;
//! skip/limit), get, create, update, deactivate. Admins manage everyone; a centre
//! manager manages the non-admin users of their own centre and never grants admin.
//! Every change is audited.

use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{Enum, Object, OpenApi, Tags};

use super::error::{check_text, ApiError};
use super::security::{client_ip, BearerAuth};
use crate::app::AppState;
use crate::audit::{AuditEvent, Surface};
use crate::auth::service::{conflict_or_db, UserSpec};
use crate::auth::{Principal, Role};
use crate::db::identity::{PatientLink, User, UserFilter, UserUpdate};

#[derive(Tags)]
enum UserTags {
    /// User administration.
    Users,
}

/// A role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum RoleDto {
    Admin,
    Radiologist,
    Technician,
    ReferringPhysician,
    Patient,
    CentreManager,
}

impl From<Role> for RoleDto {
    fn from(r: Role) -> Self {
        match r {
            Role::Admin => RoleDto::Admin,
            Role::Radiologist => RoleDto::Radiologist,
            Role::Technician => RoleDto::Technician,
            Role::ReferringPhysician => RoleDto::ReferringPhysician,
            Role::Patient => RoleDto::Patient,
            Role::CentreManager => RoleDto::CentreManager,
        }
    }
}

impl From<RoleDto> for Role {
    fn from(r: RoleDto) -> Self {
        match r {
            RoleDto::Admin => Role::Admin,
            RoleDto::Radiologist => Role::Radiologist,
            RoleDto::Technician => Role::Technician,
            RoleDto::ReferringPhysician => Role::ReferringPhysician,
            RoleDto::Patient => Role::Patient,
            RoleDto::CentreManager => Role::CentreManager,
        }
    }
}

/// A PatientID linked to a patient user.
#[derive(Debug, Clone, Object)]
pub struct PatientIdDto {
    pub patient_id: String,
    /// IssuerOfPatientID; empty = none.
    #[oai(default)]
    pub issuer: String,
}

/// A user.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct UserDto {
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub role: RoleDto,
    pub centre_id: Option<i64>,
    pub active: bool,
    /// For referring physicians: the DICOM PN (`Family^Given`) as it appears in
    /// ReferringPhysicianName.
    pub physician_name: Option<String>,
    /// For patients: the linked PatientIDs.
    pub patient_ids: Vec<PatientIdDto>,
    pub totp_enabled: bool,
    /// RFC 3339.
    pub created_at: String,
    pub updated_at: String,
}

impl From<User> for UserDto {
    fn from(u: User) -> Self {
        UserDto {
            id: u.id,
            username: u.username,
            email: u.email,
            full_name: u.full_name,
            role: u.role.into(),
            centre_id: u.centre_id,
            active: u.active,
            physician_name: u.physician_name,
            patient_ids: u
                .patient_ids
                .into_iter()
                .map(|l| PatientIdDto {
                    patient_id: l.patient_id,
                    issuer: l.issuer,
                })
                .collect(),
            totp_enabled: u.totp_enabled,
            created_at: u.created_at.to_rfc3339(),
            updated_at: u.updated_at.to_rfc3339(),
        }
    }
}

/// A user to create.
#[derive(Debug, Object)]
pub struct UserCreate {
    #[oai(validator(min_length = 1, max_length = 128))]
    pub username: String,
    /// At least 10 characters.
    pub password: String,
    pub role: RoleDto,
    pub email: Option<String>,
    pub full_name: Option<String>,
    /// A centre manager's users always belong to the manager's centre.
    pub centre_id: Option<i64>,
    pub physician_name: Option<String>,
    #[oai(default)]
    pub patient_ids: Vec<PatientIdDto>,
}

/// Changes to a user: absent fields are unchanged, `null` clears.
#[derive(Debug, Object)]
pub struct UserPatch {
    pub email: MaybeUndefined<String>,
    pub full_name: MaybeUndefined<String>,
    pub role: Option<RoleDto>,
    pub centre_id: MaybeUndefined<i64>,
    pub active: Option<bool>,
    pub physician_name: MaybeUndefined<String>,
    /// Replaces every linked PatientID.
    pub patient_ids: Option<Vec<PatientIdDto>>,
}

/// A JSON-merge-style field change: absent = unchanged, `null` = clear.
pub(crate) fn change<T>(m: MaybeUndefined<T>) -> Option<Option<T>> {
    match m {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v)),
    }
}

fn links(ids: Vec<PatientIdDto>) -> Vec<PatientLink> {
    ids.into_iter()
        .map(|p| PatientLink {
            patient_id: p.patient_id,
            issuer: p.issuer,
        })
        .collect()
}

fn patient_texts(ids: &[PatientIdDto]) -> Result<(), ApiError> {
    for p in ids {
        check_text(&[
            ("patient_id", Some(p.patient_id.as_str())),
            ("issuer", Some(p.issuer.as_str())),
        ])?;
    }
    Ok(())
}

/// Largest page of a listing.
pub const MAX_LIMIT: u64 = 1000;

/// What the caller may manage: everything (admin) or one centre (centre manager).
#[derive(Debug, Clone, Copy)]
enum Manages {
    All,
    Centre(i64),
}

fn manages(p: &Principal) -> Result<Manages, ApiError> {
    match (p.role, p.centre_id) {
        (Role::Admin, _) => Ok(Manages::All),
        (Role::CentreManager, Some(c)) => Ok(Manages::Centre(c)),
        (Role::CentreManager, None) => Err(ApiError::forbidden(
            "a centre manager without a centre manages no users",
        )),
        (r, _) => Err(ApiError::forbidden(format!(
            "the {r} role may not administer users"
        ))),
    }
}

/// May a centre manager touch this existing user?
fn check_target(m: Manages, target: &User) -> Result<(), ApiError> {
    match m {
        Manages::All => Ok(()),
        Manages::Centre(c) => {
            if target.centre_id != Some(c) || target.role == Role::Admin {
                Err(ApiError::forbidden(
                    "this user is not managed by your centre",
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// User administration resource.
pub struct UsersApi {
    pub state: AppState,
}

/// An audit event for an administrative change by `p`.
pub(crate) fn admin_event(
    p: &Principal,
    req: &Request,
    action: &str,
    detail: String,
) -> AuditEvent {
    AuditEvent::new(Surface::Api, action)
        .user(p.user_id, &p.username, p.role.as_str())
        .centre(p.centre_id)
        .from_ip(client_ip(req))
        .detail(detail)
}

impl UsersApi {
    async fn load(&self, m: Manages, id: i64) -> Result<User, ApiError> {
        let user = self
            .state
            .auth
            .repo()
            .user(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no user with id {id}")))?;
        check_target(m, &user)?;
        Ok(user)
    }
}

#[OpenApi(tag = "UserTags::Users")]
impl UsersApi {
    /// List users (admins: all; centre managers: their centre's, admins left out).
    #[oai(path = "/users", method = "get", operation_id = "list_users")]
    async fn list(
        &self,
        auth: BearerAuth,
        role: Query<Option<RoleDto>>,
        centre_id: Query<Option<i64>>,
        active: Query<Option<bool>>,
        #[oai(default, validator(maximum(value = "1000000000")))] skip: Query<u64>,
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u64>,
    ) -> Result<Json<Vec<UserDto>>, ApiError> {
        let m = manages(&auth.0)?;
        let centre_id = match (m, centre_id.0) {
            (Manages::All, c) => c,
            (Manages::Centre(own), Some(c)) if c != own => {
                return Err(ApiError::forbidden(
                    "you may only list your own centre's users",
                ))
            }
            (Manages::Centre(own), _) => Some(own),
        };
        let users = self
            .state
            .auth
            .repo()
            .list_users(&UserFilter {
                role: role.0.map(Role::from),
                centre_id,
                active: active.0,
                exclude_admins: matches!(m, Manages::Centre(_)),
                skip: skip.0.min(1_000_000_000),
                limit: limit.0.clamp(1, MAX_LIMIT),
            })
            .await?;
        Ok(Json(users.into_iter().map(UserDto::from).collect()))
    }

    /// One user.
    #[oai(path = "/users/:id", method = "get", operation_id = "get_user")]
    async fn get(&self, auth: BearerAuth, id: Path<i64>) -> Result<Json<UserDto>, ApiError> {
        let m = manages(&auth.0)?;
        Ok(Json(self.load(m, id.0).await?.into()))
    }

    /// Create a user.
    #[oai(path = "/users", method = "post", operation_id = "create_user")]
    async fn create(
        &self,
        req: &Request,
        auth: BearerAuth,
        body: Json<UserCreate>,
    ) -> Result<Json<UserDto>, ApiError> {
        let m = manages(&auth.0)?;
        let b = body.0;
        check_text(&[
            ("username", Some(b.username.as_str())),
            ("password", Some(b.password.as_str())),
            ("email", b.email.as_deref()),
            ("full_name", b.full_name.as_deref()),
            ("physician_name", b.physician_name.as_deref()),
        ])?;
        patient_texts(&b.patient_ids)?;
        let role = Role::from(b.role);
        let centre_id = match m {
            Manages::All => b.centre_id,
            Manages::Centre(own) => {
                if role == Role::Admin {
                    return Err(ApiError::forbidden(
                        "a centre manager may not create admins",
                    ));
                }
                if b.centre_id.is_some_and(|c| c != own) {
                    return Err(ApiError::forbidden(
                        "a centre manager may only create users of their own centre",
                    ));
                }
                Some(own)
            }
        };
        let user = self
            .state
            .auth
            .create_user(UserSpec {
                username: b.username,
                password: b.password,
                email: b.email,
                full_name: b.full_name,
                role,
                centre_id,
                physician_name: b.physician_name,
                patient_ids: links(b.patient_ids),
            })
            .await?;
        self.state
            .audit
            .record(admin_event(
                &auth.0,
                req,
                "user.create",
                format!("user_id={} role={}", user.id, user.role),
            ))
            .await;
        Ok(Json(user.into()))
    }

    /// Update a user (absent fields unchanged, `null` clears).
    #[oai(path = "/users/:id", method = "patch", operation_id = "update_user")]
    async fn update(
        &self,
        req: &Request,
        auth: BearerAuth,
        id: Path<i64>,
        body: Json<UserPatch>,
    ) -> Result<Json<UserDto>, ApiError> {
        let m = manages(&auth.0)?;
        let b = body.0;
        check_text(&[
            ("email", b.email.value().map(String::as_str)),
            ("full_name", b.full_name.value().map(String::as_str)),
            (
                "physician_name",
                b.physician_name.value().map(String::as_str),
            ),
        ])?;
        if let Some(p) = &b.patient_ids {
            patient_texts(p)?;
        }
        self.load(m, id.0).await?;
        let centre_id = change(b.centre_id);
        if let Manages::Centre(own) = m {
            if b.role == Some(RoleDto::Admin) {
                return Err(ApiError::forbidden("a centre manager may not grant admin"));
            }
            if centre_id.is_some_and(|c| c != Some(own)) {
                return Err(ApiError::forbidden(
                    "a centre manager may not move users to another centre",
                ));
            }
        }
        let user = self
            .state
            .auth
            .update_user(
                id.0,
                UserUpdate {
                    email: change(b.email),
                    full_name: change(b.full_name),
                    role: b.role.map(Role::from),
                    centre_id,
                    active: b.active,
                    physician_name: change(b.physician_name),
                    patient_ids: b.patient_ids.map(links),
                },
            )
            .await
            .map_err(conflict_or_db)?
            .ok_or_else(|| ApiError::not_found(format!("no user with id {}", id.0)))?;
        if !user.active {
            self.state.auth.repo().revoke_all_refresh(user.id).await?;
        }
        self.state
            .audit
            .record(admin_event(
                &auth.0,
                req,
                "user.update",
                format!(
                    "user_id={} role={} active={}",
                    user.id, user.role, user.active
                ),
            ))
            .await;
        Ok(Json(user.into()))
    }

    /// Deactivate a user: their tokens stop working and their refresh tokens are
    /// revoked.
    #[oai(
        path = "/users/:id/deactivate",
        method = "post",
        operation_id = "deactivate_user"
    )]
    async fn deactivate(
        &self,
        req: &Request,
        auth: BearerAuth,
        id: Path<i64>,
    ) -> Result<Json<UserDto>, ApiError> {
        let m = manages(&auth.0)?;
        self.load(m, id.0).await?;
        let user = self
            .state
            .auth
            .deactivate_user(id.0)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no user with id {}", id.0)))?;
        self.state
            .audit
            .record(admin_event(
                &auth.0,
                req,
                "user.deactivate",
                format!("user_id={}", user.id),
            ))
            .await;
        Ok(Json(user.into()))
    }
}

/// The page size of a listing when the client gives none.
pub(crate) fn default_limit() -> u64 {
    100
}
